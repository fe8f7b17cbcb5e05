//! `wrangle daemon` (start it in the background) and `wrangle daemon stop`.

use crate::args::{DaemonArgs, DaemonStopArgs};
use crate::client::Client;
use crate::{output, routes};
use anyhow::{bail, Result};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};
use wrangle_wire::{DaemonInfo, DaemonStopRequest};

/// How long a stopping daemon has to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Pause between two looks at a stopping daemon.
const STOP_POLL: Duration = Duration::from_millis(20);

/// Starts the daemon unless one runs, and says which one answers. The
/// daemon's options apply to a daemon started here only.
pub async fn start(home: &Path, args: &DaemonArgs) -> Result<u8> {
    let mut daemon_args: Vec<String> = Vec::new();
    if let Some(max) = args.max_running {
        daemon_args.extend(["--max-running".into(), max.to_string()]);
    }
    if let Some(interval) = &args.sample_interval {
        daemon_args.extend(["--sample-interval".into(), interval.clone()]);
    }
    if let Some(keep) = &args.events_keep {
        daemon_args.extend(["--events-keep".into(), keep.clone()]);
    }
    if let Some(max) = args.events_max {
        daemon_args.extend(["--events-max".into(), max.to_string()]);
    }
    if let Some(max) = args.metrics_agents_max {
        daemon_args.extend(["--metrics-agents-max".into(), max.to_string()]);
    }
    if let Some(max) = &args.logs_max_total {
        daemon_args.extend(["--logs-max-total".into(), max.clone()]);
    }
    let (client, started) = match Client::connect_running(home).await? {
        Some(client) => (client, false),
        None => (Client::start(home, &daemon_args).await?, true),
    };
    let info: DaemonInfo = client.get(&routes::daemon()).await?;
    let line = if started {
        format!(
            "started the daemon (pid {}) for {}",
            info.pid,
            home.display()
        )
    } else {
        let unchanged = if daemon_args.is_empty() {
            String::new()
        } else {
            format!(
                "; {} is not applied to it (stop it first to change it)",
                daemon_args.join(" ")
            )
        };
        format!(
            "the daemon is already running (pid {}) for {}{unchanged}",
            info.pid,
            home.display()
        )
    };
    output::print_line(&line)?;
    Ok(0)
}

/// Asks the daemon to stop and waits until its process is gone. Never
/// starts one: with no daemon there is nothing to do.
pub async fn stop(home: &Path, args: &DaemonStopArgs) -> Result<u8> {
    let Some(client) = Client::connect_running(home).await? else {
        output::print_line(&format!("no daemon is running for {}", home.display()))?;
        return Ok(0);
    };
    let info: DaemonInfo = client.get(&routes::daemon()).await?;
    let request = DaemonStopRequest {
        stop_agents: args.stop_agents,
    };
    client
        .post_accepted(&routes::daemon_stop(), &request)
        .await?;

    let deadline = Instant::now() + STOP_TIMEOUT;
    while process_alive(info.pid) {
        if Instant::now() >= deadline {
            bail!(
                "the daemon (pid {}) is still running {}s after it was asked to stop",
                info.pid,
                STOP_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(STOP_POLL).await;
    }
    output::print_line(&format!(
        "stopped the daemon (pid {}) for {}",
        info.pid,
        home.display()
    ))?;
    Ok(0)
}

/// Whether `pid` is a live process. A zombie counts as gone: it has exited
/// and only waits for its parent to reap it.
fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name, which is in
        // parentheses and may itself hold spaces or parentheses.
        Ok(stat) => match stat.rfind(')') {
            Some(end) => !matches!(stat[end + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn this_process_is_alive() {
        assert!(process_alive(std::process::id() as i32));
        assert!(!process_alive(0));
        assert!(!process_alive(-1));
    }

    #[test]
    fn an_exited_child_is_gone_even_before_it_is_reaped() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        // Not reaped yet: it becomes a zombie, which counts as gone.
        while process_alive(pid) {
            assert!(Instant::now() < deadline, "child {pid} never exited");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }
}
