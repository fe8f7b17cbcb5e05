//! One module per group of commands. Each takes its parsed arguments, talks
//! to the daemon and returns the exit code.

mod control;
mod cost;
mod daemon;
mod doctor;
mod events;
mod group;
mod inspect;
mod logs;
mod ps;
mod run;
mod runs;
mod summary;
mod top;
mod up;
mod wait;

use crate::args::{Command, DaemonAction};
use crate::client::Client;
use anyhow::Result;
use std::path::Path;

/// Runs one command against the daemon of `home`. `daemon --foreground` is
/// handled before this (it runs the daemon, not a client), so here
/// `daemon` means start it in the background.
pub async fn dispatch(home: &Path, command: Command) -> Result<u8> {
    match command {
        Command::Daemon(args) => match args.action {
            Some(DaemonAction::Stop(stop)) => daemon::stop(home, &stop).await,
            None => daemon::start(home, &args).await,
        },
        Command::Run(args) => run::run(&Client::connect(home).await?, &args).await,
        Command::Ps(args) => ps::ps(&Client::connect(home).await?, &args).await,
        Command::Inspect(args) => inspect::inspect(&Client::connect(home).await?, &args).await,
        Command::Logs(args) => logs::logs(&Client::connect(home).await?, &args).await,
        Command::Up(args) => up::up(&Client::connect(home).await?, &args).await,
        Command::Down(args) => up::down(&Client::connect(home).await?, &args).await,
        Command::Group(args) => group::group(&Client::connect(home).await?, &args).await,
        Command::Runs(args) => runs::runs(&Client::connect(home).await?, &args).await,
        Command::Stop(args) => control::stop(&Client::connect(home).await?, &args).await,
        Command::Restart(args) => control::restart(&Client::connect(home).await?, &args).await,
        Command::Kill(args) => control::kill(&Client::connect(home).await?, &args).await,
        Command::Rm(args) => control::rm(&Client::connect(home).await?, &args).await,
        Command::Wait(args) => wait::wait(&Client::connect(home).await?, &args).await,
        Command::Events(args) => events::events(Client::connect(home).await?, &args).await,
        Command::Top(args) => top::top(home, &args).await,
        Command::Doctor(args) => doctor::doctor(&Client::connect(home).await?, &args).await,
        Command::Summary(args) => summary::summary(&Client::connect(home).await?, &args).await,
        Command::Cost(args) => cost::cost(&Client::connect(home).await?, &args).await,
    }
}

/// An agent as the daemon would describe it, for the tests to vary.
#[cfg(test)]
pub(crate) fn sample_agent() -> wrangle_wire::AgentView {
    use chrono::TimeZone;
    use wrangle_wire::{AgentView, Health, State};
    let created = chrono::Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    AgentView {
        id: "0123456789abcdef0123456789abcdef".into(),
        name: "worker-1".into(),
        state: State::Running,
        health: Health::Healthy,
        health_reason: None,
        run: 1,
        restarts: 0,
        restart: wrangle_wire::RestartPolicy::Never,
        max_restarts: 5,
        timeout_seconds: None,
        on_hang: wrangle_wire::OnHang::None,
        group: None,
        priority: 0,
        labels: Default::default(),
        pid: Some(4242),
        shim_pid: Some(4241),
        command: vec!["sleep".into(), "100".into()],
        cwd: "/work".into(),
        env: vec!["FOO".into()],
        stop_signal: "SIGTERM".into(),
        stop_timeout_seconds: 10.0,
        created_at: created,
        started_at: Some(created + chrono::Duration::milliseconds(5)),
        ended_at: None,
        exit_code: None,
        signal: None,
        reason: None,
        cause: None,
        restart_at: None,
        runtime_seconds: Some(312.4),
        containment: Some("process group + subreaper".into()),
        process: None,
        tree: None,
        progress: None,
        message: None,
        details: None,
        last_output_at: None,
        last_heartbeat_at: None,
        idle_timeout_seconds: None,
        health_check: None,
        limits: None,
        session: None,
        total_cost_usd: None,
        total_tokens: None,
        stdout_log: "/h/runs/worker-1/1/stdout.log".into(),
        stderr_log: "/h/runs/worker-1/1/stderr.log".into(),
        log_max_size_bytes: Some(20 << 20),
        log_max_files: Some(5),
    }
}
