//! The agent of the sessions benchmark: `wrangle-bench __emit`, a stand-in
//! for `claude -p --output-format stream-json --verbose` that prints the
//! CLI's real line shapes (those of `tests/fixtures/agents/claude-stream.jsonl`)
//! at a steady rate and exits.
//!
//! The lines are a [`Script`]: line `i` is a pure function of `i` (and of
//! the line size and session id), so the benchmark knows exactly what the
//! adapter must have counted without reading the output itself: see
//! [`Script::expected`]. The process is the benchmark's own binary, so
//! that a fleet of a thousand costs one exec each and no interpreter; it
//! writes a batch of lines per wake-up (never a process or a write per
//! line at high rates) and sleeps in between.

use anyhow::{bail, Result};
use clap::Parser;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wrangle_wire::TokenCounts;

/// The hidden first argument that makes `wrangle-bench` an emitter.
pub const SUBCOMMAND: &str = "__emit";

/// The model every message names (one the price table knows, so that
/// wrangle prices the tokens as it would a real session's).
const MODEL: &str = "claude-sonnet-4-5-20250929";

/// Shortest sleep between two batches: at 10 MB/s a line is due every
/// 150 µs, and waking for each would measure the emitter's wake-ups, not
/// the daemon. 10 ms batches are what a pipe from a busy Node.js process
/// looks like too.
const MIN_BATCH_PERIOD: Duration = Duration::from_millis(10);

/// `wrangle-bench __emit`: prints `--lines` Claude stream-json lines at
/// `--lines-per-second`, then exits 0.
#[derive(Debug, Parser)]
#[command(name = "wrangle-bench __emit")]
pub struct EmitArgs {
    /// Lines in all, the `init` line and the final `result` included.
    #[arg(long)]
    pub lines: u64,
    /// Lines per second (line `i` is due `i / rate` seconds after the start).
    #[arg(long)]
    pub lines_per_second: f64,
    /// Mean size of a line in bytes (see [`Script::new`]).
    #[arg(long, default_value_t = 1500)]
    pub line_bytes: usize,
}

/// Runs the emitter with the arguments after [`SUBCOMMAND`].
pub fn main(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = EmitArgs::parse_from(args);
    match emit(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wrangle-bench __emit: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the script to stdout, paced.
fn emit(args: &EmitArgs) -> Result<()> {
    if !(args.lines_per_second > 0.0 && args.lines_per_second.is_finite()) {
        bail!("--lines-per-second must be above 0");
    }
    let script = Script::new(args.line_bytes, session_id());
    let rate = args.lines_per_second;
    let mut out = std::io::stdout().lock();
    let mut batch = String::new();
    let started = Instant::now();
    let mut next = 0u64;
    while next < args.lines {
        let elapsed = started.elapsed().as_secs_f64();
        // Every line whose time has come (line i is due at i / rate).
        let due = ((elapsed * rate).floor() as u64 + 1).min(args.lines);
        batch.clear();
        while next < due {
            script.line(next, args.lines, &mut batch);
            batch.push('\n');
            next += 1;
        }
        // One write for the batch: stdout is a pipe to the shim.
        out.write_all(batch.as_bytes())?;
        out.flush()?;
        if next >= args.lines {
            break;
        }
        let next_due = started + Duration::from_secs_f64(next as f64 / rate);
        let now = Instant::now();
        let wake = next_due.max(now + MIN_BATCH_PERIOD);
        std::thread::sleep(wake - now);
    }
    Ok(())
}

/// A session id unique to this process, of the fixed width of the CLI's
/// (a uuid), so that every emitter's lines have the same size.
pub fn session_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    format!("{:08x}-be9c-4000-8000-{:012x}", std::process::id(), nanos)
}

/// What a [`Script`] of some number of lines holds, as wrangle's Claude
/// adapter must count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expected {
    /// Lines in all.
    pub lines: u64,
    /// API messages (distinct message ids): each counted once, however
    /// many lines (content blocks) repeat it.
    pub turns: u64,
    /// `tool_use` blocks.
    pub tool_calls: u64,
    /// The sum of every message's usage, once per message.
    pub tokens: TokenCounts,
    /// The cost the final `result` line reports, in micro-USD.
    pub cost_micro_usd: u64,
}

/// The kinds of line in the body of a session, in the order they repeat:
/// the assistant says something, calls a tool, and the tool's result comes
/// back as a user message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `assistant` with a text block: a new API message (new id, usage).
    Text,
    /// `assistant` with a `tool_use` block of the same message: the CLI
    /// prints a line per content block, each repeating the usage.
    ToolUse,
    /// `user` with the tool's `tool_result` (and the CLI's own copy of it
    /// in `tool_use_result`).
    ToolResult,
}

/// Line `i` of a body (lines 1 to n-2): which kind, of which message.
fn kind_of(i: u64) -> (Kind, u64) {
    let j = i - 1;
    let kind = match j % 3 {
        0 => Kind::Text,
        1 => Kind::ToolUse,
        _ => Kind::ToolResult,
    };
    (kind, j / 3)
}

/// The usage of message `k`: distinct per message, in the ranges a real
/// session shows (a little input, most of it read from the cache).
fn usage_of(k: u64) -> TokenCounts {
    TokenCounts {
        input: 1 + k % 7,
        output: 50 + (k * 53) % 400,
        cache_read: 18_000 + (k * 131) % 9_000,
        cache_write: 100 + (k * 37) % 2_000,
    }
}

/// The session's lines: an `init`, a body of text / tool call / tool
/// result, and a final `result`.
#[derive(Debug, Clone)]
pub struct Script {
    session: String,
    /// The padding of each kind of line (the assistant's text, the tool's
    /// command, the tool's output), sized so that the lines average the
    /// size asked for.
    text: String,
    command: String,
    output: String,
}

/// Prose for the assistant's text, with the escapes real text has
/// (newlines, quotes), which make the parser unescape into a copy.
const PROSE: &str = r#"I'll look at how the sampler reads each run's output and check whether the totals match what the tests expect.\n\nThe adapter counts usage once per message id, so repeated content blocks must not add tokens twice: \"once per id\" is the rule. "#;

/// A line of a file as Claude Code's Read tool shows it (`→` after the
/// line number, JSON-escaped newlines).
const LISTING: &str = "    42→    let totals = session.total_tokens();\\n";

/// Repeats `unit` until the text is at least `length` bytes long.
fn padding(unit: &str, length: usize) -> String {
    let mut text = String::with_capacity(length + unit.len());
    while text.len() < length {
        text.push_str(unit);
    }
    text
}

impl Script {
    /// A script whose body lines average about `line_bytes` (text lines
    /// that size, tool calls 0.6x, tool results 1.4x, as real sessions
    /// vary), for session id `session`.
    pub fn new(line_bytes: usize, session: String) -> Script {
        let mut script = Script {
            session,
            text: String::new(),
            command: String::new(),
            output: String::new(),
        };
        // The size of each kind with no padding, then padding to its share.
        let mut line = String::new();
        let mut bare = |kind: usize| {
            line.clear();
            script.line(1 + kind as u64, 10, &mut line);
            line.len()
        };
        let (text, tool, result) = (bare(0), bare(1), bare(2));
        let room =
            |share: f64, bare: usize| ((line_bytes as f64 * share) as usize).saturating_sub(bare);
        script.text = padding(PROSE, room(1.0, text));
        script.command = padding(
            "cargo test -p wrangle-engine --lib adapters && ",
            room(0.6, tool),
        );
        // The output is printed twice (the message and the CLI's copy).
        script.output = padding(LISTING, room(1.4, result) / 2);
        script
    }

    /// The mean size of a body line, its newline included.
    pub fn mean_line_bytes(&self) -> f64 {
        let mut line = String::new();
        for i in 1..=3 {
            self.line(i, 10, &mut line);
            line.push('\n');
        }
        line.len() as f64 / 3.0
    }

    /// Appends line `i` (of `lines` in all) to `out`, without its newline.
    pub fn line(&self, i: u64, lines: u64, out: &mut String) {
        let session = &self.session;
        // A fixed-width uuid per line, as the CLI gives every line one.
        let uuid = format!(
            "{:08x}-0000-4000-8000-{i:012x}",
            i.wrapping_mul(2_654_435_761) as u32
        );
        if i == 0 {
            let _ = write!(
                out,
                r#"{{"type":"system","subtype":"init","cwd":"/tmp","session_id":"{session}","tools":["Task","TaskOutput","Bash","Glob","Grep","Read","Edit","Write"],"mcp_servers":[],"model":"{MODEL}","permissionMode":"bypassPermissions","slash_commands":["compact","cost"],"apiKeySource":"none","claude_code_version":"2.1.4","output_style":"default","agents":["general-purpose","Explore","Plan"],"skills":[],"plugins":[],"uuid":"{uuid}"}}"#
            );
            return;
        }
        if i + 1 >= lines {
            let expected = Script::expected(lines);
            let _ = write!(
                out,
                r#"{{"type":"result","subtype":"success","is_error":false,"duration_ms":{ms},"duration_api_ms":{ms},"num_turns":{turns},"result":"Done: the totals match.","session_id":"{session}","total_cost_usd":{cost},"modelUsage":{{}},"permission_denials":[],"uuid":"{uuid}"}}"#,
                ms = i * 10,
                turns = expected.turns,
                cost = expected.cost_micro_usd as f64 / 1e6,
            );
            return;
        }
        let (kind, k) = kind_of(i);
        let usage = usage_of(k);
        let usage = format!(
            r#""usage":{{"input_tokens":{},"cache_creation_input_tokens":{},"cache_read_input_tokens":{},"cache_creation":{{"ephemeral_5m_input_tokens":{},"ephemeral_1h_input_tokens":0}},"output_tokens":{},"service_tier":"standard"}}"#,
            usage.input, usage.cache_write, usage.cache_read, usage.cache_write, usage.output
        );
        // Ids of the real width (`msg_01` + 22, `toolu_01` + 22).
        let message = format!("msg_01Bench{k:017}");
        let tool = format!("toolu_01Bench{k:017}");
        match kind {
            Kind::Text => {
                let _ = write!(
                    out,
                    r#"{{"type":"assistant","message":{{"model":"{MODEL}","id":"{message}","type":"message","role":"assistant","content":[{{"type":"text","text":"{text}"}}],"stop_reason":null,"stop_sequence":null,{usage},"context_management":null}},"parent_tool_use_id":null,"session_id":"{session}","uuid":"{uuid}"}}"#,
                    text = self.text,
                );
            }
            Kind::ToolUse => {
                let _ = write!(
                    out,
                    r#"{{"type":"assistant","message":{{"model":"{MODEL}","id":"{message}","type":"message","role":"assistant","content":[{{"type":"tool_use","id":"{tool}","name":"Bash","input":{{"command":"{command}true","description":"Run the adapter tests"}}}}],"stop_reason":null,"stop_sequence":null,{usage},"context_management":null}},"parent_tool_use_id":null,"session_id":"{session}","uuid":"{uuid}"}}"#,
                    command = self.command,
                );
            }
            Kind::ToolResult => {
                let _ = write!(
                    out,
                    r#"{{"type":"user","message":{{"role":"user","content":[{{"tool_use_id":"{tool}","type":"tool_result","content":"{output}","is_error":false}}]}},"parent_tool_use_id":null,"session_id":"{session}","uuid":"{uuid}","tool_use_result":{{"stdout":"{output}","stderr":"","interrupted":false,"isImage":false}}}}"#,
                    output = self.output,
                );
            }
        }
    }

    /// What a script of `lines` lines holds.
    pub fn expected(lines: u64) -> Expected {
        let mut expected = Expected {
            lines,
            ..Expected::default()
        };
        for i in 1..lines.saturating_sub(1) {
            match kind_of(i) {
                (Kind::Text, k) => {
                    expected.turns += 1;
                    expected.tokens.add(&usage_of(k));
                }
                (Kind::ToolUse, _) => expected.tool_calls += 1,
                (Kind::ToolResult, _) => {}
            }
        }
        // A round price: 1500 micro-USD a message.
        expected.cost_micro_usd = expected.turns * 1500;
        expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_one_json_object_of_about_the_size_asked() {
        let script = Script::new(1500, "s".repeat(36));
        let mean = script.mean_line_bytes();
        assert!((1400.0..1600.0).contains(&mean), "{mean}");
        let mut line = String::new();
        for i in 0..20 {
            line.clear();
            script.line(i, 20, &mut line);
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert!(value["type"].is_string(), "{line}");
            assert!(!line.contains('\n'));
        }
    }

    #[test]
    fn the_expected_totals_count_each_message_once() {
        // init, text 0, tool 0, result 0, text 1, result line.
        let expected = Script::expected(6);
        assert_eq!((expected.turns, expected.tool_calls), (2, 1));
        let mut tokens = usage_of(0);
        tokens.add(&usage_of(1));
        assert_eq!(expected.tokens, tokens);
    }
}
