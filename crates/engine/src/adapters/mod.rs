//! Adapters: what a coding agent's own output says about its work. An
//! adapter reads a run's stdout line by line (JSON lines, each CLI its
//! own shape, see AGENT-FORMATS.md) and builds up the run's [`Session`]:
//! its id and models, turns and tools, tokens and cost, whether it waits
//! for a person, a rate limit or a retry, and its final result.
//!
//! A [`Reader`] is plain data (serde): stored with the read offset, it lets
//! a daemon that restarts go on where the last one stopped, with the same
//! totals. Any line is safe to give it: one that is not its JSON (a
//! banner, a warning, a line cut short, invalid UTF-8) is counted and
//! otherwise passed over.

mod claude;
mod codex;
mod gemini;
mod jsonl;
mod opencode;
pub mod prices;
mod session;
mod tail;

pub use prices::Prices;
pub use session::{CallFigures, Figures, Session};
pub use tail::Tail;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;
use wrangle_wire::{AdapterKind, SessionView};

/// What a line changed, for the events it makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    /// Its id, models, turns, tools or text.
    pub session: bool,
    /// Its tokens or cost.
    pub usage: bool,
    /// What holds it: a person, a rate limit, a retry, a running tool.
    pub attention: bool,
    /// Its final result.
    pub result: bool,
}

impl Changed {
    /// Whether anything changed.
    pub fn any(self) -> bool {
        self.session || self.usage || self.attention || self.result
    }

    /// Adds what `other` changed.
    pub fn merge(&mut self, other: Changed) {
        self.session |= other.session;
        self.usage |= other.usage;
        self.attention |= other.attention;
        self.result |= other.result;
    }
}

/// The adapter's own memory between lines, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Parser {
    Claude(claude::State),
    Codex(codex::State),
    Gemini(gemini::State),
    Opencode(opencode::State),
    Jsonl(jsonl::State),
    None,
}

/// An adapter reading one run's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reader {
    kind: AdapterKind,
    /// Why this adapter (for `inspect`).
    reason: String,
    parser: Parser,
    session: Session,
}

impl Reader {
    /// A reader of `kind`, chosen for `reason`, for a run whose arguments
    /// name `model` (Codex's output never does).
    pub fn new(kind: AdapterKind, reason: String, model: Option<String>) -> Reader {
        let parser = match kind {
            AdapterKind::Claude => Parser::Claude(claude::State::default()),
            AdapterKind::Codex => Parser::Codex(codex::State::with_model(model.clone())),
            AdapterKind::Gemini => Parser::Gemini(gemini::State::default()),
            AdapterKind::Opencode => Parser::Opencode(opencode::State::default()),
            AdapterKind::Jsonl => Parser::Jsonl(jsonl::State::default()),
            AdapterKind::None => Parser::None,
        };
        let mut session = Session::default();
        // A model the arguments name is the one Gemini and opencode start
        // with, and Codex's only one; Claude says its own.
        if let (Some(model), false) = (&model, kind == AdapterKind::Claude) {
            session.note_model(model);
        }
        Reader {
            kind,
            reason,
            parser,
            session,
        }
    }

    /// The adapter.
    pub fn kind(&self) -> AdapterKind {
        self.kind
    }

    /// What it has read so far.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Reads one line of stdout (without its newline), written at `at`.
    pub fn line(&mut self, line: &[u8], at: DateTime<Utc>) -> Changed {
        let mut changed = Changed::default();
        let session = &mut self.session;
        session.lines += 1;
        let line = line.trim_ascii();
        let understood = !line.is_empty()
            && line[0] == b'{'
            && match &mut self.parser {
                Parser::Claude(state) => claude::read(state, session, line, at, &mut changed),
                Parser::Codex(state) => codex::read(state, session, line, at, &mut changed),
                Parser::Gemini(state) => gemini::read(state, session, line, at, &mut changed),
                Parser::Opencode(state) => opencode::read(state, session, line, at, &mut changed),
                Parser::Jsonl(state) => jsonl::read(state, session, line, at, &mut changed),
                Parser::None => false,
            };
        if !understood {
            session.other_lines += 1;
        }
        if changed.result {
            session.result_at = Some(at);
        }
        changed
    }

    /// Reads one line of stderr: only Gemini says anything there (its
    /// retries of the API).
    pub fn stderr_line(&mut self, line: &[u8], at: DateTime<Utc>) -> Changed {
        let retry = matches!(self.parser, Parser::Gemini(_))
            && gemini::read_stderr(&mut self.session, line, at);
        Changed {
            attention: retry,
            ..Changed::default()
        }
    }

    /// The session as the API shows it, with the calls the agent
    /// reported over telemetry, if any.
    pub fn view(&self, prices: &Prices, calls: Option<&CallFigures>) -> SessionView {
        self.session.view(self.kind, &self.reason, prices, calls)
    }
}

/// The adapter for an agent: `requested` (`None` for auto) or the one its
/// command calls for, with why and the model its arguments name.
pub fn choose(
    requested: Option<AdapterKind>,
    argv: &[String],
) -> (AdapterKind, String, Option<String>) {
    let model = model_of(argv);
    if let Some(kind) = requested {
        return (kind, format!("--adapter {kind}"), model);
    }
    let Some((program, args)) = program_of(argv) else {
        return (AdapterKind::None, "auto: no command".into(), model);
    };
    let value = |names: &[&str]| option_value(args, names);
    let has = |word: &str| args.iter().any(|arg| arg == word);
    let (kind, why) = match program.as_str() {
        "claude" => match value(&["--output-format"]).as_deref() {
            Some(format @ ("stream-json" | "json")) => (
                AdapterKind::Claude,
                format!("the program is claude with --output-format {format}"),
            ),
            _ => (
                AdapterKind::None,
                "claude without --output-format stream-json or json prints plain text".to_string(),
            ),
        },
        "codex" => {
            if has("exec") && (has("--json") || has("--experimental-json")) {
                (AdapterKind::Codex, "the program is codex exec --json".to_string())
            } else {
                (
                    AdapterKind::None,
                    "codex without exec --json prints plain text".to_string(),
                )
            }
        }
        "gemini" => match value(&["--output-format", "-o"]).as_deref() {
            Some(format @ ("stream-json" | "json")) => (
                AdapterKind::Gemini,
                format!("the program is gemini with --output-format {format}"),
            ),
            _ => (
                AdapterKind::None,
                "gemini without --output-format stream-json or json prints plain text".to_string(),
            ),
        },
        "opencode" => {
            if has("run") && value(&["--format"]).as_deref() == Some("json") {
                (AdapterKind::Opencode, "the program is opencode run --format json".to_string())
            } else {
                (
                    AdapterKind::None,
                    "opencode without run --format json prints plain text".to_string(),
                )
            }
        }
        other => (
            AdapterKind::None,
            format!("{other} is not an agent CLI wrangle knows (--adapter jsonl reads JSON lines of one's own)"),
        ),
    };
    (kind, format!("auto: {why}"), model)
}

/// Whether an agent whose session gave its final result is expected to
/// exit: not one that takes its prompts on stdin (`claude
/// --input-format stream-json` answers turn after turn, a result each),
/// nor one whose generic JSON lines say nothing of an end.
pub fn ends_after_result(kind: AdapterKind, argv: &[String]) -> bool {
    match kind {
        AdapterKind::Claude => {
            let args = program_of(argv).map_or(&[][..], |(_, args)| args);
            option_value(args, &["--input-format"]).as_deref() != Some("stream-json")
        }
        AdapterKind::Codex | AdapterKind::Gemini | AdapterKind::Opencode => true,
        AdapterKind::Jsonl | AdapterKind::None => false,
    }
}

/// The agent CLI a command runs, by name, and its arguments: the program
/// itself, or the one `npx`, `node` or `bunx` is given.
pub(crate) fn program_of(argv: &[String]) -> Option<(String, &[String])> {
    let name = |path: &str| {
        Path::new(path)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let first = name(argv.first()?);
    if !matches!(first.as_str(), "npx" | "node" | "bunx" | "pnpx") {
        return Some((first, &argv[1..]));
    }
    let at = argv.iter().skip(1).position(|arg| !arg.starts_with('-'))? + 1;
    let package = name(&argv[at]);
    let program = match package.as_str() {
        "@anthropic-ai/claude-code" | "claude-code" | "cli.js" => "claude".to_string(),
        "@openai/codex" => "codex".to_string(),
        "@google/gemini-cli" => "gemini".to_string(),
        "opencode-ai" => "opencode".to_string(),
        other => other.split('@').next().unwrap_or(other).to_string(),
    };
    Some((program, &argv[at + 1..]))
}

/// The value of the first of `names` in `args`: `--name value` or
/// `--name=value`.
fn option_value(args: &[String], names: &[&str]) -> Option<String> {
    for (index, arg) in args.iter().enumerate() {
        for name in names {
            if arg == name {
                return args.get(index + 1).cloned();
            }
            if let Some(value) = arg
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
            {
                return Some(value.to_string());
            }
        }
    }
    None
}

/// The model a command's arguments name: `--model X`, `-m X`, or Codex's
/// `-c model=X`.
fn model_of(argv: &[String]) -> Option<String> {
    let args = program_of(argv).map_or(argv, |(_, args)| args);
    if let Some(model) = option_value(args, &["--model", "-m"]) {
        return Some(model);
    }
    args.windows(2).find_map(|pair| {
        let config = (pair[0] == "-c" || pair[0] == "--config").then_some(&pair[1])?;
        let value = config.strip_prefix("model=")?;
        Some(value.trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
