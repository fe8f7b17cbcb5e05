//! The shim: a small single-threaded process per run that is the parent of
//! the agent (like containerd-shim or conmon). It owns the agent's output
//! pipes and writes its logs, reaps it and every orphan of its tree (it is
//! a child subreaper), runs the staged stop, and records the exit status in
//! its run directory. The daemon can die and come back; the shim and the
//! agent do not notice.
//!
//! It holds no policy, no database and no HTTP: see [`protocol`] for all it
//! says to the daemon.

#[macro_use]
mod diag;
mod capture;
mod limits;
pub mod logfiles;
pub mod logindex;
pub mod protocol;
mod reaping;
mod stop;
mod supervise;
mod tree;
pub mod zygote;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

/// The hidden first argument that makes the `wrangle` binary a shim:
/// `wrangle __shim <run-dir> <daemon-pid>`.
pub const SHIM_COMMAND: &str = "__shim";

/// Runs a shim with the arguments that follow [`SHIM_COMMAND`].
pub fn main(args: &[OsString]) -> ExitCode {
    let [dir, daemon_pid] = args else {
        diag!("usage: wrangle {SHIM_COMMAND} <run-dir> <daemon-pid> (started by the daemon, not by hand)");
        return ExitCode::from(2);
    };
    let Some(daemon_pid) = daemon_pid.to_str().and_then(|pid| pid.parse().ok()) else {
        diag!("wrangle shim: invalid daemon pid {daemon_pid:?}");
        return ExitCode::from(2);
    };
    // An agent gets the limit the daemon was started with (the zygote's
    // shims have it already).
    wrangle_os::fdtable::restore_original_limit();
    match supervise::run(Path::new(dir), daemon_pid, None) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            diag!("wrangle shim: {error}");
            ExitCode::FAILURE
        }
    }
}
