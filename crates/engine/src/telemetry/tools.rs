//! The tools in an agent's telemetry: which tool runs now, how many ran
//! and how long, and which were refused (AGENT-FORMATS.md §10). Claude
//! Code and Codex log a decision before a tool runs
//! (`claude_code.tool_decision`, `codex.tool_decision`) and its result
//! after (`…tool_result`, with `duration_ms`); Gemini CLI logs one
//! `gemini_cli.tool_call` after the tool, with its decision.
//!
//! A refusal by the agent's own settings (`source` config: a headless run
//! denies any tool it was not allowed) means the work needs a person to
//! grant it, as a final result's `permission_denials` does; one by a
//! person at the terminal does not.

use super::{AttributeValue, Record};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashSet, VecDeque};
use wrangle_wire::session::ToolView;

/// Most refusals kept per run (the first ones name the tools).
const DENIALS_KEPT: usize = 32;

/// Most tools kept as running at once: a decision whose result never
/// comes must not grow the set without end.
const RUNNING_KEPT: usize = 64;

/// Keys of the tool records taken lately, so that a body an exporter
/// sends again counts nothing twice; a retry comes within seconds, long
/// before this many more records.
const RECENT_KEPT: usize = 512;

/// What a record says of a tool.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolRecord {
    /// The agent decided whether the tool may run.
    Decided {
        /// The tool's name.
        tool: String,
        /// The call's id, where the CLI gives one.
        id: Option<String>,
        /// Whether it may.
        accepted: bool,
        /// Whether the agent's settings decided (not a person).
        by_settings: bool,
    },
    /// The tool ran.
    Finished {
        /// The tool's name.
        tool: String,
        /// The call's id, where the CLI gives one.
        id: Option<String>,
        /// Whether it succeeded.
        success: bool,
        /// How long it ran.
        duration_ms: Option<u64>,
    },
}

/// Whether a record of this name speaks of a tool: [`tool_record`] reads
/// it, and [`ToolActivity::take`] may change.
pub fn is_tool_record(name: &str) -> bool {
    matches!(
        name,
        "claude_code.tool_decision"
            | "tool_decision"
            | "codex.tool_decision"
            | "claude_code.tool_result"
            | "tool_result"
            | "codex.tool_result"
            | "gemini_cli.tool_call"
    )
}

/// What `record` says of a tool, if it is a tool record.
pub fn tool_record(record: &Record) -> Option<ToolRecord> {
    if !is_tool_record(&record.name) {
        return None;
    }
    let text = |key: &str| {
        record
            .attributes
            .get(key)
            .and_then(AttributeValue::as_text)
            .map(str::to_string)
    };
    let flag = |key: &str| match record.attributes.get(key) {
        Some(AttributeValue::Bool(value)) => Some(*value),
        Some(AttributeValue::Text(text)) => Some(text.eq_ignore_ascii_case("true")),
        _ => None,
    };
    let duration_ms = record
        .attributes
        .get("duration_ms")
        .and_then(AttributeValue::as_u64);
    match record.name.as_str() {
        "claude_code.tool_decision" | "tool_decision" | "codex.tool_decision" => {
            let decision = text("decision").unwrap_or_default().to_ascii_lowercase();
            Some(ToolRecord::Decided {
                tool: text("tool_name").unwrap_or_default(),
                id: text("tool_use_id").or_else(|| text("call_id")),
                // Claude: accept/reject; Codex: approved,
                // approved_for_session, denied, abort.
                accepted: decision.starts_with("accept") || decision.starts_with("approved"),
                by_settings: text("source")
                    .is_some_and(|source| source.eq_ignore_ascii_case("config")),
            })
        }
        "claude_code.tool_result" | "tool_result" | "codex.tool_result" => {
            Some(ToolRecord::Finished {
                tool: text("tool_name").unwrap_or_default(),
                id: text("tool_use_id").or_else(|| text("call_id")),
                success: flag("success").unwrap_or(true),
                duration_ms,
            })
        }
        "gemini_cli.tool_call" => {
            let tool = text("function_name").unwrap_or_default();
            if text("decision").is_some_and(|decision| decision.eq_ignore_ascii_case("reject")) {
                // Only a person at the terminal rejects in Gemini CLI.
                return Some(ToolRecord::Decided {
                    tool,
                    id: None,
                    accepted: false,
                    by_settings: false,
                });
            }
            Some(ToolRecord::Finished {
                tool,
                id: None,
                success: flag("success").unwrap_or(true),
                duration_ms,
            })
        }
        _ => None,
    }
}

/// A tool the agent was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// The tool.
    pub tool: String,
    /// Whether the agent's settings refused it (not a person).
    pub by_settings: bool,
    /// When.
    pub at: DateTime<Utc>,
}

/// What a run's telemetry said of its tools.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolActivity {
    /// Tools allowed to run whose result has not come, by call id (the
    /// tool's name where the CLI gives no id).
    running: BTreeMap<String, ToolView>,
    /// Tools that ran.
    pub finished: u64,
    /// Of them, those that failed.
    pub failed: u64,
    /// Their time together, in milliseconds.
    pub busy_ms: u64,
    /// Tools refused, the first [`DENIALS_KEPT`].
    pub denials: Vec<Denial>,
    /// Refusals in all.
    pub denied: u64,
    recent: VecDeque<u64>,
    recent_keys: HashSet<u64>,
}

impl ToolActivity {
    /// Takes `record` (a tool record, see [`tool_record`]), which came at
    /// `at`; whether it changed anything (one taken already does not).
    pub fn take(&mut self, record: &Record, at: DateTime<Utc>) -> bool {
        let Some(tool) = tool_record(record) else {
            return false;
        };
        let key = super::key_id(&record.key);
        if !self.recent_keys.insert(key) {
            return false;
        }
        self.recent.push_back(key);
        if self.recent.len() > RECENT_KEPT {
            if let Some(old) = self.recent.pop_front() {
                self.recent_keys.remove(&old);
            }
        }
        match tool {
            ToolRecord::Decided {
                tool,
                id,
                accepted: true,
                ..
            } => {
                if self.running.len() < RUNNING_KEPT {
                    let key = id.unwrap_or_else(|| tool.clone());
                    let since = record.at.min(at);
                    self.running.insert(
                        key,
                        ToolView {
                            name: tool,
                            detail: None,
                            since,
                        },
                    );
                }
            }
            ToolRecord::Decided {
                tool, by_settings, ..
            } => {
                self.denied += 1;
                if self.denials.len() < DENIALS_KEPT {
                    self.denials.push(Denial {
                        tool,
                        by_settings,
                        at: record.at,
                    });
                }
            }
            ToolRecord::Finished {
                tool,
                id,
                success,
                duration_ms,
            } => {
                let key = id.unwrap_or_else(|| tool.clone());
                if self.running.remove(&key).is_none() {
                    // Without ids, the oldest of that name.
                    let same = self
                        .running
                        .iter()
                        .find(|(_, running)| running.name == tool)
                        .map(|(key, _)| key.clone());
                    if let Some(key) = same {
                        self.running.remove(&key);
                    }
                }
                self.finished += 1;
                self.failed += u64::from(!success);
                self.busy_ms = self.busy_ms.saturating_add(duration_ms.unwrap_or(0));
            }
        }
        true
    }

    /// The tool running now: the one that started first.
    pub fn running(&self) -> Option<&ToolView> {
        self.running.values().min_by_key(|tool| tool.since)
    }

    /// What the agent waits for a person for: the tools its settings
    /// refused it, in the words of a final result's `permission_denials`.
    pub fn waiting(&self) -> Option<String> {
        let mut tools: Vec<&str> = Vec::new();
        for denial in self.denials.iter().filter(|denial| denial.by_settings) {
            if !tools.contains(&denial.tool.as_str()) {
                tools.push(&denial.tool);
            }
        }
        (!tools.is_empty()).then(|| format!("permission for {} was denied", tools.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttributeValue::{Int, Text};

    fn record(key: &str, name: &str, attributes: &[(&str, AttributeValue)]) -> Record {
        Record {
            key: key.into(),
            at: Utc::now(),
            name: name.into(),
            attributes: attributes
                .iter()
                .map(|(key, value)| (key.to_string(), value.clone()))
                .collect(),
        }
    }

    #[test]
    fn a_tool_runs_from_its_decision_to_its_result() {
        let mut tools = ToolActivity::default();
        let decided = record(
            "a",
            "claude_code.tool_decision",
            &[
                ("decision", Text("accept".into())),
                ("source", Text("config".into())),
                ("tool_name", Text("Bash".into())),
                ("tool_use_id", Text("toolu_1".into())),
            ],
        );
        assert!(tools.take(&decided, Utc::now()));
        assert_eq!(tools.running().map(|tool| tool.name.as_str()), Some("Bash"));
        let result = record(
            "b",
            "claude_code.tool_result",
            &[
                ("tool_name", Text("Bash".into())),
                ("tool_use_id", Text("toolu_1".into())),
                ("success", Text("false".into())),
                ("duration_ms", Int(4200)),
            ],
        );
        assert!(tools.take(&result, Utc::now()));
        // Sent again by the exporter: nothing counts twice.
        assert!(!tools.take(&result, Utc::now()));
        assert_eq!(tools.running(), None);
        assert_eq!((tools.finished, tools.failed, tools.busy_ms), (1, 1, 4200));
        assert_eq!(tools.waiting(), None);
    }

    #[test]
    fn a_refusal_by_the_settings_waits_for_a_person_and_one_by_a_person_does_not() {
        let mut tools = ToolActivity::default();
        let by_user = record(
            "a",
            "codex.tool_decision",
            &[
                ("decision", Text("denied".into())),
                ("source", Text("User".into())),
                ("tool_name", Text("exec_command".into())),
                ("call_id", Text("call_1".into())),
            ],
        );
        tools.take(&by_user, Utc::now());
        assert_eq!((tools.denied, tools.waiting()), (1, None));
        for (key, tool) in [("b", "Write"), ("c", "Bash"), ("d", "Write")] {
            let by_settings = record(
                key,
                "claude_code.tool_decision",
                &[
                    ("decision", Text("reject".into())),
                    ("source", Text("config".into())),
                    ("tool_name", Text(tool.into())),
                ],
            );
            tools.take(&by_settings, Utc::now());
        }
        assert_eq!(tools.denied, 4);
        assert_eq!(
            tools.waiting().as_deref(),
            Some("permission for Write, Bash was denied")
        );
        assert_eq!(tools.running(), None);
    }

    #[test]
    fn gemini_says_a_tool_once_it_has_run() {
        let call = record(
            "a",
            "gemini_cli.tool_call",
            &[
                ("function_name", Text("run_shell_command".into())),
                ("decision", Text("accept".into())),
                ("success", AttributeValue::Bool(true)),
                ("duration_ms", Int(15)),
            ],
        );
        assert_eq!(
            tool_record(&call),
            Some(ToolRecord::Finished {
                tool: "run_shell_command".into(),
                id: None,
                success: true,
                duration_ms: Some(15)
            })
        );
        assert_eq!(
            tool_record(&record("b", "gemini_cli.api_response", &[])),
            None
        );
    }
}
