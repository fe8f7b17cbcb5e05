//! `wrangle logs`: an agent's output, written to standard output as it
//! arrives, whichever stream it came from (as journalctl and kubectl do),
//! so that `wrangle logs --stderr a | grep x` works.

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

/// Streams the agent's log lines to stdout. With `--follow` it ends when
/// the daemon ends the body (the agent has ended, or `--until` passed).
pub async fn logs(client: &Client, args: &LogsArgs) -> Result<u8> {
    let path = routes::logs(&args.agent, &query(args));
    let mut body = client.get_stream(&path).await?;
    let merged = !args.stdout && !args.stderr;
    let mut writer = LogWriter::new(
        io::stdout(),
        LineFormat {
            timestamps: args.timestamps,
            stream: args.prefix || (merged && args.timestamps),
        },
    );
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
        since: args.since.clone(),
        until: args.until.clone(),
    }
}

/// One NDJSON line of the body.
fn parse(line: &[u8]) -> Result<LogLine> {
    serde_json::from_slice(line)
        .map_err(|error| anyhow!("the daemon sent a log line wrangle cannot read: {error}"))
}

/// What leads each printed line.
#[derive(Debug, Clone, Copy, Default)]
struct LineFormat {
    /// The capture time.
    timestamps: bool,
    /// The stream's name (`stdout`, `stderr`).
    stream: bool,
}

/// Writes log lines to the CLI's own stdout.
struct LogWriter<O: Write> {
    out: O,
    format: LineFormat,
}

impl<O: Write> LogWriter<O> {
    /// A writer to `out`.
    fn new(out: O, format: LineFormat) -> Self {
        LogWriter { out, format }
    }

    /// Writes one line.
    fn write(&mut self, line: &LogLine) -> Result<()> {
        output::check(self.out.write_all(render(line, self.format).as_bytes()))
    }

    /// Shows what was written so far, as it arrives.
    fn flush(&mut self) -> Result<()> {
        output::check(self.out.flush())
    }
}

/// The text of a line as printed: the optional time and stream, the text,
/// and the newline unless the agent has not written it yet.
fn render(line: &LogLine, format: LineFormat) -> String {
    let mut text = String::with_capacity(line.text.len() + 40);
    if format.timestamps {
        text.push_str(&timestamp_micros(&line.time));
        text.push(' ');
    }
    if format.stream {
        text.push_str(line.stream.as_str());
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
    fn every_line_goes_to_stdout_in_order() {
        let mut writer = LogWriter::new(Vec::new(), LineFormat::default());
        writer
            .write(&line(LogStream::Stdout, "out 1", true))
            .unwrap();
        writer.write(&line(LogStream::Stderr, "err", true)).unwrap();
        writer
            .write(&line(LogStream::Stdout, "prompt> ", false))
            .unwrap();
        writer.flush().unwrap();
        assert_eq!(writer.out, b"out 1\nerr\nprompt> ");
    }

    #[test]
    fn timestamps_and_the_stream_lead_the_line() {
        let both = LineFormat {
            timestamps: true,
            stream: true,
        };
        assert_eq!(
            render(&line(LogStream::Stderr, "hello", true), both),
            "2024-05-01T12:00:00.001500Z stderr hello\n"
        );
        let time_only = LineFormat {
            timestamps: true,
            stream: false,
        };
        assert_eq!(
            render(&line(LogStream::Stdout, "hello", true), time_only),
            "2024-05-01T12:00:00.001500Z hello\n"
        );
        assert_eq!(
            render(&line(LogStream::Stdout, "", true), LineFormat::default()),
            "\n"
        );
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
        let mut writer = LogWriter::new(Closed, LineFormat::default());
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
                run: None,
                since: None,
                until: None,
            }
        );
    }
}
