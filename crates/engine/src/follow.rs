//! `GET /v1/agents/{agent}/logs`: a run's output as a stream of lines,
//! optionally following it until the run ends.

use crate::error::EngineError;
use crate::logs::{merge, LogCursor};
use crate::Engine;
use std::time::Duration;
use tokio::sync::mpsc;
use wrangle_wire::{LogLine, LogStream, LogsQuery};

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
        let dir = self.run_dir(&id, run);
        let streams: Vec<LogStream> = match query.stream {
            Some(stream) => vec![stream],
            None => vec![LogStream::Stdout, LogStream::Stderr],
        };
        let mut cursors = Vec::new();
        for stream in streams {
            let path = dir.join(match stream {
                LogStream::Stdout => wrangle_shim::protocol::STDOUT_LOG,
                LogStream::Stderr => wrangle_shim::protocol::STDERR_LOG,
            });
            let cursor = match query.tail {
                Some(lines) => LogCursor::at_tail(stream, &path, lines),
                None => Ok(LogCursor::new(stream, &path, 0)),
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
                let over = !query.follow || run_is_over(&engine);
                let mut lines = read_all(&mut cursors);
                if first {
                    if let Some(tail) = query.tail {
                        let excess = lines.len().saturating_sub(tail);
                        lines.drain(..excess);
                    }
                    first = false;
                }
                if over {
                    lines.extend(cursors.iter_mut().filter_map(LogCursor::take_partial));
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
