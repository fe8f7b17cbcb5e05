//! The `wrangle` binary: daemon, CLI and shim in one. A shim is started as
//! `wrangle __shim ...` (or forked by the `wrangle __zygote` process) and
//! must start fast, so both are dispatched before anything else is set up.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "wrangle runs on Linux only (kernel 5.3 or later); on Windows, run it inside WSL2, on macOS inside a Linux VM or container"
);

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|arg| arg == wrangle_shim::SHIM_COMMAND)
    {
        return wrangle_shim::main(&args[2..]);
    }
    if args
        .get(1)
        .is_some_and(|arg| arg == wrangle_shim::zygote::ZYGOTE_COMMAND)
    {
        return wrangle_shim::zygote::main(&args[2..]);
    }
    wrangle_cli::main(|options| {
        wrangle_api::serve(wrangle_api::Options {
            home: options.home,
            max_running: options.max_running,
            sample_interval: options.sample_interval,
            events_keep: options.events_keep,
            events_max: options.events_max,
            metrics_agents_max: options.metrics_agents_max,
            logs_max_total: options.logs_max_total,
        })
    })
}
