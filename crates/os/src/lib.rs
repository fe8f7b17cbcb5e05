//! wrangle's edge to the kernel: processes identified by pid and start
//! time, pidfds, cgroups, signals, and the fork/exec of an agent.
//!
//! Everything here is synchronous and free of policy; it is used by the
//! shim (a small single-threaded process) and by the daemon's engine.
//! Every `unsafe` block of wrangle lives in this crate.

// wrangle holds agents with Linux's own means (sessions, the child
// subreaper, pidfds, cgroups, /proc): elsewhere it cannot work, and one
// sentence says so before the compiler trips over the first of them.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "wrangle runs on Linux only (kernel 5.3 or later); on Windows, run it inside WSL2, on macOS inside a Linux VM or container"
);

#[cfg(target_os = "linux")]
pub mod cgroup;
#[cfg(target_os = "linux")]
pub mod exits;
#[cfg(target_os = "linux")]
pub mod fdpass;
#[cfg(target_os = "linux")]
pub mod fdtable;
#[cfg(target_os = "linux")]
pub mod features;
#[cfg(target_os = "linux")]
pub mod files;
#[cfg(target_os = "linux")]
pub mod fork;
#[cfg(target_os = "linux")]
pub mod limits;
#[cfg(target_os = "linux")]
pub mod memory;
#[cfg(target_os = "linux")]
pub mod pidfd;
#[cfg(target_os = "linux")]
pub mod proc;
#[cfg(target_os = "linux")]
pub mod proctitle;
#[cfg(target_os = "linux")]
pub mod sample;
#[cfg(target_os = "linux")]
pub mod signals;
#[cfg(target_os = "linux")]
pub mod spawn;

#[cfg(target_os = "linux")]
pub use cgroup::{CgroupMembers, Containment, RunCgroup};
#[cfg(target_os = "linux")]
pub use pidfd::PidFd;
#[cfg(target_os = "linux")]
pub use proc::ProcessId;
