//! `wrangle runs`: an agent's runs, one per start (restarts included).

use crate::args::RunsArgs;
use crate::client::{self, Client};
use crate::format::{timestamp_millis, uptime};
use crate::table::Table;
use crate::{output, routes};
use anyhow::Result;
use serde_json::Value;
use wrangle_wire::RunView;

/// Lists the runs of one agent, oldest first, as a table or as JSON.
pub async fn runs(client: &Client, args: &RunsArgs) -> Result<u8> {
    let value: Value = client.get(&routes::runs(&args.agent)).await?;
    if args.json {
        output::print_json(&value)?;
    } else {
        let runs: Vec<RunView> = client::from_value(value)?;
        output::print(&table(&runs))?;
    }
    Ok(0)
}

/// `RUN STATE PID STARTED RUNTIME EXIT REASON`, one row per run.
fn table(runs: &[RunView]) -> String {
    let mut table = Table::new(&[
        "RUN", "STATE", "PID", "STARTED", "RUNTIME", "EXIT", "REASON",
    ]);
    for run in runs {
        let exit = match (&run.exit_code, &run.signal) {
            (Some(code), _) => code.to_string(),
            (None, Some(signal)) => signal.clone(),
            (None, None) => "-".to_owned(),
        };
        table.push(vec![
            run.run.to_string(),
            run.state.to_string(),
            run.pid
                .map_or_else(|| "-".to_owned(), |pid| pid.to_string()),
            run.started_at
                .as_ref()
                .map_or_else(|| "-".to_owned(), timestamp_millis),
            uptime(run.runtime_seconds),
            exit,
            run.reason.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use wrangle_wire::State;

    #[test]
    fn a_row_per_run_with_how_it_ended() {
        let started = chrono::Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        let first = RunView {
            run: 1,
            state: State::Backoff,
            pid: Some(10),
            started_at: Some(started),
            ended_at: Some(started),
            runtime_seconds: Some(0.2),
            exit_code: Some(1),
            signal: None,
            reason: Some("exited with code 1".into()),
            stdout_log: "/h/1/stdout.log".into(),
            stderr_log: "/h/1/stderr.log".into(),
        };
        let second = RunView {
            run: 2,
            state: State::Stopped,
            exit_code: None,
            signal: Some("SIGTERM".into()),
            reason: None,
            started_at: None,
            pid: None,
            runtime_seconds: None,
            ..first.clone()
        };
        let text = table(&[first, second]);
        let expected = "\
RUN   STATE     PID   STARTED                    RUNTIME   EXIT      REASON
1     backoff   10    2024-05-01T12:00:00.000Z   0s        1         exited with code 1
2     stopped   -     -                          -         SIGTERM   -
";
        assert_eq!(text, expected);
    }
}
