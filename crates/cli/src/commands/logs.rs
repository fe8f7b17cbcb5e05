//! `wrangle logs`: an agent's output, each line to the stream it came
//! from, written as it arrives.

use crate::args::LogsArgs;
use crate::client::{lost, Client};
use crate::format::timestamp_micros;
use crate::lines::LineBuffer;
use crate::{output, routes};
use anyhow::{anyhow, Result};
use http_body_util::BodyExt;
use hyper::Method;
use std::io::{self, Write};
use wrangle_wire::{LogLine, LogStream, LogsQuery};

/// Streams the agent's log lines to stdout and stderr. With `--follow` it
/// ends when the daemon ends the body (the agent has ended).
pub async fn logs(client: &Client, args: &LogsArgs) -> Result<u8> {
    let path = routes::logs(&args.agent, &query(args));
    let mut body = client.get_stream(&path).await?;
    let mut writer = LogWriter::new(io::stdout(), io::stderr(), args.timestamps);
    let mut lines = LineBuffer::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| lost(&Method::GET, &path, &error))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        for line in lines.push(&data) {
            writer.write(&parse(&line)?)?;
        }
        // Whatever arrived is shown now, not when a buffer fills up.
        writer.flush()?;
    }
    if let Some(line) = lines.finish() {
        writer.write(&parse(&line)?)?;
        writer.flush()?;
    }
    Ok(0)
}

/// The last `lines` lines of the agent's current run, stdout and stderr
/// interleaved by capture time, read whole (for `top`'s log pane).
pub(super) async fn tail(client: &Client, agent: &str, lines: usize) -> Result<Vec<LogLine>> {
    let query = LogsQuery {
        tail: Some(lines),
        ..LogsQuery::default()
    };
    let path = routes::logs(agent, &query);
    let body = client
        .get_stream(&path)
        .await?
        .collect()
        .await
        .map_err(|error| lost(&Method::GET, &path, &error))?
        .to_bytes();
    let mut buffer = LineBuffer::default();
    let mut raw = buffer.push(&body);
    raw.extend(buffer.finish());
    raw.iter().map(|line| parse(line)).collect()
}

/// The query for the flags.
fn query(args: &LogsArgs) -> LogsQuery {
    let stream = if args.stdout {
        Some(LogStream::Stdout)
    } else if args.stderr {
        Some(LogStream::Stderr)
    } else {
        None
    };
    LogsQuery {
        stream,
        tail: args.tail,
        follow: args.follow,
        run: args.run,
    }
}

/// One NDJSON line of the body.
fn parse(line: &[u8]) -> Result<LogLine> {
    serde_json::from_slice(line)
        .map_err(|error| anyhow!("the daemon sent a log line wrangle cannot read: {error}"))
}

/// Writes log lines to the CLI's own stdout and stderr.
struct LogWriter<O: Write, E: Write> {
    /// Where the agent's stdout lines go.
    stdout: O,
    /// Where the agent's stderr lines go.
    stderr: E,
    /// Whether each line starts with its capture time.
    timestamps: bool,
}

impl<O: Write, E: Write> LogWriter<O, E> {
    /// A writer to these two outputs.
    fn new(stdout: O, stderr: E, timestamps: bool) -> Self {
        LogWriter {
            stdout,
            stderr,
            timestamps,
        }
    }

    /// Writes one line to the stream it came from.
    fn write(&mut self, line: &LogLine) -> Result<()> {
        let text = render(line, self.timestamps);
        let target: &mut dyn Write = match line.stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
        };
        output::check(target.write_all(text.as_bytes()))
    }

    /// Shows what was written so far, as it arrives.
    fn flush(&mut self) -> Result<()> {
        output::check(self.stdout.flush())?;
        output::check(self.stderr.flush())
    }
}

/// The text of a line as printed: the optional time, the text, and the
/// newline unless the agent has not written it yet.
fn render(line: &LogLine, timestamps: bool) -> String {
    let mut text = String::with_capacity(line.text.len() + 40);
    if timestamps {
        text.push_str(&timestamp_micros(&line.time));
        text.push(' ');
    }
    text.push_str(&line.text);
    if line.complete {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn line(stream: LogStream, text: &str, complete: bool) -> LogLine {
        LogLine {
            stream,
            time: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
                + chrono::Duration::microseconds(1500),
            text: text.into(),
            complete,
        }
    }

    #[test]
    fn each_line_goes_to_its_stream() {
        let mut writer = LogWriter::new(Vec::new(), Vec::new(), false);
        writer
            .write(&line(LogStream::Stdout, "out 1", true))
            .unwrap();
        writer.write(&line(LogStream::Stderr, "err", true)).unwrap();
        writer
            .write(&line(LogStream::Stdout, "prompt> ", false))
            .unwrap();
        writer.flush().unwrap();
        assert_eq!(writer.stdout, b"out 1\nprompt> ");
        assert_eq!(writer.stderr, b"err\n");
    }

    #[test]
    fn timestamps_lead_the_line() {
        assert_eq!(
            render(&line(LogStream::Stdout, "hello", true), true),
            "2024-05-01T12:00:00.001500Z hello\n"
        );
        assert_eq!(render(&line(LogStream::Stdout, "", true), false), "\n");
    }

    #[test]
    fn ndjson_lines_parse_into_log_lines() {
        let parsed =
            parse(br#"{"stream":"stderr","time":"2024-05-01T12:00:00.0015Z","text":"x"}"#).unwrap();
        assert_eq!(parsed, line(LogStream::Stderr, "x", true));
        let error = parse(b"not json").unwrap_err().to_string();
        assert!(error.starts_with("the daemon sent a log line"), "{error}");
    }

    #[test]
    fn a_closed_stdout_ends_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut writer = LogWriter::new(Closed, Vec::new(), false);
        let error = writer
            .write(&line(LogStream::Stdout, "x", true))
            .unwrap_err();
        assert!(error.is::<output::OutputClosed>());
    }

    #[test]
    fn flags_become_the_query() {
        use crate::args::{Cli, Command};
        use clap::Parser;
        let cli = Cli::try_parse_from(["wrangle", "logs", "a", "--stdout", "--tail", "3"]).unwrap();
        let Command::Logs(args) = cli.command else {
            unreachable!("parsed as logs")
        };
        assert_eq!(
            query(&args),
            LogsQuery {
                stream: Some(LogStream::Stdout),
                tail: Some(3),
                follow: false,
                run: None
            }
        );
    }
}
