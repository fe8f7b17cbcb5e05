//! `GET /v1/agents/{agent}/logs`: a run's output as a stream of lines,
//! optionally following it until the run ends.

use crate::error::EngineError;
use crate::logs::{merge, LogCursor};
use crate::Engine;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::sync::mpsc;
use wrangle_wire::{parse, LogLine, LogStream, LogsQuery};

/// How often a followed log is checked for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);
/// Lines buffered between the reader and a slow client.
const CHANNEL_DEPTH: usize = 1024;

impl Engine {
    /// Streams a run's output (the current run unless `query.run` says
    /// otherwise): the last `tail` lines or all, then, with `follow`, new
    /// lines until the run ends. Both streams are interleaved by capture
    /// time unless one is chosen.
    pub fn logs(
        &self,
        reference: &str,
        query: LogsQuery,
    ) -> Result<mpsc::Receiver<LogLine>, EngineError> {
        let id = self.registry().resolve(reference)?;
        let agent = self.snapshot(&id)?;
        let run = query.run.unwrap_or(agent.status.run.number);
        if run == 0 || run > agent.status.run.number {
            return Err(EngineError::not_found(format!(
                "agent {} has no run {run} (its runs are 1 to {})",
                agent.identity.name, agent.status.run.number
            )));
        }
        let now = Utc::now();
        let bound = |what: &str, text: &Option<String>| {
            text.as_deref()
                .map(|text| parse::parse_time_or_ago(what, text, now))
                .transpose()
                .map_err(EngineError::invalid)
        };
        let since = bound("--since", &query.since)?;
        let until = bound("--until", &query.until)?;
        if let (Some(since), Some(until)) = (since, until) {
            if since > until {
                return Err(EngineError::invalid(format!(
                    "--since ({}) is after --until ({}): nothing could match",
                    since.to_rfc3339(),
                    until.to_rfc3339()
                )));
            }
        }
        let window = TimeWindow { since, until };
        let dir = self.run_dir(&id, run);
        let streams: Vec<LogStream> = match query.stream {
            Some(stream) => vec![stream],
            None => vec![LogStream::Stdout, LogStream::Stderr],
        };
        let mut cursors = Vec::new();
        for stream in streams {
            let files = agent.identity.spec.log_files(&dir, stream);
            let path = files.current_path();
            // Counted back from the end, the last lines may all be after
            // --until: then the tail is taken from all the lines.
            let cursor = match query.tail.filter(|_| until.is_none()) {
                Some(lines) => LogCursor::at_tail(stream, files, lines),
                None => Ok(LogCursor::new(stream, files, 0)),
            }
            .map_err(|e| EngineError::internal(format!("cannot read {}: {e}", path.display())))?;
            cursors.push(cursor);
        }
        let mut states = self.subscribe(&id)?;
        let engine = self.clone();
        let (sender, receiver) = mpsc::channel(CHANNEL_DEPTH);
        tokio::spawn(async move {
            let run_is_over = |engine: &Engine| {
                engine
                    .snapshot(&id)
                    .map(|a| a.status.run.number != run || a.status.state.is_ended())
                    .unwrap_or(true)
            };
            let mut first = true;
            loop {
                // Decide before reading: output written before the end was
                // recorded is all in the files by then.
                let over = !query.follow || run_is_over(&engine) || window.has_passed();
                let mut lines = read_all(&mut cursors);
                lines.retain(|line| window.holds(line));
                if first {
                    if let Some(tail) = query.tail {
                        let excess = lines.len().saturating_sub(tail);
                        lines.drain(..excess);
                    }
                    first = false;
                }
                if over {
                    let partial = cursors.iter_mut().filter_map(LogCursor::take_partial);
                    lines.extend(partial.filter(|line| window.holds(line)));
                }
                for line in lines {
                    if sender.send(line).await.is_err() {
                        return;
                    }
                }
                if over {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
                    _ = states.changed() => {}
                    _ = sender.closed() => return,
                }
            }
        });
        Ok(receiver)
    }
}

/// The times asked for with `--since` and `--until`.
#[derive(Clone, Copy)]
struct TimeWindow {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl TimeWindow {
    /// Whether the line was captured within the window.
    fn holds(&self, line: &LogLine) -> bool {
        self.since.is_none_or(|since| line.time >= since)
            && self.until.is_none_or(|until| line.time <= until)
    }

    /// Whether the window is over: nothing captured from now on is in it.
    fn has_passed(&self) -> bool {
        self.until.is_some_and(|until| Utc::now() > until)
    }
}

/// Reads everything new from every cursor, merged by capture time.
fn read_all(cursors: &mut [LogCursor]) -> Vec<LogLine> {
    let mut merged = Vec::new();
    for cursor in cursors.iter_mut() {
        let mut lines = Vec::new();
        loop {
            match cursor.read_lines() {
                Ok(batch) if batch.is_empty() => break,
                Ok(batch) => lines.extend(batch),
                Err(error) => {
                    tracing::warn!("cannot read a log: {error}");
                    break;
                }
            }
        }
        merged = merge(merged, lines);
    }
    merged
}
