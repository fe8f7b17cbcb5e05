//! Writing to the terminal: results on stdout, `wrangle: <message>` on
//! stderr, and a quiet exit when the reader of stdout has gone away
//! (`wrangle logs -f | head`).

use std::error::Error as _;
use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use wrangle_wire::options::cli::InvalidInput;

/// Exit code of a command line clap or a value parser rejected.
const USAGE_EXIT: u8 = 2;

/// Stdout (or stderr) is a pipe nobody reads any more. Not a failure of
/// wrangle: the command stops quietly.
#[derive(Debug)]
pub struct OutputClosed;

impl fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the output was closed")
    }
}

impl std::error::Error for OutputClosed {}

/// Turns the result of a write to stdout or stderr into wrangle's error:
/// a broken pipe becomes [`OutputClosed`].
pub fn check(result: io::Result<()>) -> anyhow::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Err(OutputClosed.into()),
        Err(error) => Err(anyhow::Error::new(error).context("cannot write the output")),
    }
}

/// Writes `text` to stdout as it is and flushes it.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    check(
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush()),
    )
}

/// Writes one line to stdout.
pub fn print_line(line: &str) -> anyhow::Result<()> {
    print(&format!("{line}\n"))
}

/// Writes a JSON value to stdout, pretty, with a final newline.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    // Serializing a `Value` cannot fail: its keys are strings.
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    print_line(&text)
}

/// Writes JSON text to stdout as it came (the daemon indents it when
/// asked), with a final newline.
pub fn print_json_text(json: &[u8]) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    check(
        stdout
            .write_all(json)
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush()),
    )
}

/// Prints `wrangle: <error>` on stderr, with its causes after colons.
pub fn print_error(error: &anyhow::Error) {
    // Nothing sensible is left to do when stderr itself is gone.
    let _ = writeln!(io::stderr().lock(), "wrangle: {error:#}");
}

/// Ends a failed command: prints the error and returns exit code 1, or
/// 0 without a word when only the reader of the output went away.
pub fn report(error: &anyhow::Error) -> ExitCode {
    if error.is::<OutputClosed>() {
        return ExitCode::SUCCESS;
    }
    print_error(error);
    ExitCode::FAILURE
}

/// Ends a command line clap rejected. A value one of wrangle's parsers
/// rejected is printed as `wrangle: <the parser's message>`, the words the
/// daemon would use; anything else (help, version, a missing argument) is
/// printed the way clap prints it.
pub fn usage_error(error: &clap::Error) -> ExitCode {
    if let Some(message) = usage_message(error) {
        let _ = writeln!(io::stderr().lock(), "wrangle: {message}");
        return ExitCode::from(USAGE_EXIT);
    }
    // Help and version go to stdout; a closed stdout is no reason to fail.
    let _ = error.print();
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(USAGE_EXIT))
}

/// The message of one of wrangle's value parsers, when that is what
/// rejected the command line. Clap's own errors (a number that is not one)
/// keep clap's wording, which names the option.
fn usage_message(error: &clap::Error) -> Option<String> {
    if error.kind() != clap::error::ErrorKind::ValueValidation {
        return None;
    }
    let invalid = error.source()?.downcast_ref::<InvalidInput>()?;
    Some(invalid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Cli;
    use clap::Parser;

    #[test]
    fn a_broken_pipe_is_a_quiet_end() {
        let error = check(Err(io::ErrorKind::BrokenPipe.into())).unwrap_err();
        assert!(error.is::<OutputClosed>());
        let error = check(Err(io::Error::other("disk full"))).unwrap_err();
        assert!(!error.is::<OutputClosed>());
        assert_eq!(format!("{error:#}"), "cannot write the output: disk full");
    }

    #[test]
    fn a_bad_value_is_reported_in_the_parsers_words() {
        let error = Cli::try_parse_from(["wrangle", "run", "--stop-timeout", "10x", "--", "x"])
            .unwrap_err();
        assert_eq!(
            usage_message(&error).unwrap(),
            wrangle_wire::parse::parse_duration("10x").unwrap_err()
        );
        let error = Cli::try_parse_from(["wrangle", "run"]).unwrap_err();
        assert_eq!(usage_message(&error), None);
        // Not one of wrangle's parsers: clap's message names the option.
        let error = Cli::try_parse_from(["wrangle", "logs", "a", "--tail", "x"]).unwrap_err();
        assert_eq!(usage_message(&error), None);
    }
}
