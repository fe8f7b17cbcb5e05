//! wrangle's edge to the kernel: processes identified by pid and start
//! time, pidfds, cgroups, signals, and the fork/exec of an agent.
//!
//! Everything here is synchronous and free of policy; it is used by the
//! shim (a small single-threaded process) and by the daemon's engine.
//! Every `unsafe` block of wrangle lives in this crate.

pub mod cgroup;
pub mod exits;
pub mod fdpass;
pub mod fdtable;
pub mod features;
pub mod files;
pub mod fork;
pub mod limits;
pub mod memory;
pub mod pidfd;
pub mod proc;
pub mod proctitle;
pub mod sample;
pub mod signals;
pub mod spawn;

pub use cgroup::{Containment, RunCgroup};
pub use pidfd::PidFd;
pub use proc::ProcessId;
