//! Property tests of `wrangle.toml` (issue 16): any text is read or
//! refused, never a panic; a refusal names the file and a line within it;
//! a mistake in a key is pinned to that key's line; and any declaration
//! written out as TOML reads back as the requests it declares.

use super::{parse, FileError};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use toml::{Table, Value};

const PATH: &str = "/srv/fleet/wrangle.toml";

const VALID: &str = r#"
[groups.builds]
max_running = 2
budget_usd = 20.0

[agents.web]
command = ["python3", "-m", "http.server"]
env = { PORT = "8000" }
restart = "always"
timeout = "1h"
group = "builds"
priority = 3

[agents.worker]
command = ["sleep", "60"]
cwd = "jobs"
budget_usd = 1.5
labels = { team = "a" }
"#;

/// What breaks TOML: quotes, brackets, escapes, numbers past every type,
/// NUL, a BOM, non-ASCII.
const ODD: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "=",
    "\n",
    "#",
    "\\",
    "{",
    "}",
    ",",
    ".",
    "\0",
    "é",
    "日",
    "\u{feff}",
    "\r",
    "-1",
    "99999999999999999999",
    "1e400",
    "nan",
    "inf",
    "true",
    "agents",
    "\"\"\"",
    "0x",
    "1979-05-27",
    " ",
];

/// The valid file mistyped: a piece added, a character changed or
/// dropped, cut short, or a line written twice.
fn near_valid() -> impl Strategy<Value = String> {
    (
        any::<prop::sample::Index>(),
        prop::sample::select(ODD),
        0..5u8,
    )
        .prop_map(|(at, odd, how)| {
            let bounds: Vec<usize> = VALID
                .char_indices()
                .map(|(i, _)| i)
                .chain([VALID.len()])
                .collect();
            let at = bounds[at.index(bounds.len())];
            let next = bounds.iter().copied().find(|i| *i > at).unwrap_or(at);
            match how {
                0 => format!("{}{odd}{}", &VALID[..at], &VALID[at..]),
                1 => format!("{}{odd}{}", &VALID[..at], &VALID[next..]),
                2 => format!("{}{}", &VALID[..at], &VALID[next..]),
                3 => VALID[..at].to_string(),
                _ => {
                    let line_start = VALID[..at].rfind('\n').map_or(0, |i| i + 1);
                    let line_end = VALID[at..].find('\n').map_or(VALID.len(), |i| at + i + 1);
                    format!("{}{}", &VALID[..line_end], &VALID[line_start..])
                }
            }
        })
}

/// Values nested deeper than any parser's stack should be asked to go.
fn deep() -> impl Strategy<Value = String> {
    (1..3000usize, any::<bool>()).prop_map(|(depth, arrays)| {
        let value = if arrays {
            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
        } else {
            format!("{}1{}", "{a=".repeat(depth), "}".repeat(depth))
        };
        format!("[agents.a]\ncommand = {value}\n")
    })
}

/// Checks a refusal: the file, then a line of it, then what is wrong.
fn refused_well(error: &FileError, text: &str) -> Result<(), TestCaseError> {
    let lines = text.matches('\n').count() + 1;
    prop_assert!(
        (1..=lines).contains(&error.line),
        "line {} of {lines}: {error}",
        error.line
    );
    let shown = error.to_string();
    prop_assert!(
        shown.starts_with(&format!("{PATH}:{}: ", error.line)),
        "{shown}"
    );
    prop_assert!(!error.message.trim().is_empty(), "{shown}");
    Ok(())
}

/// A name, as the rule has it.
fn name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,20}"
}

/// An agent's table, with some of the options of `wrangle run`.
fn agent() -> impl Strategy<Value = Table> {
    (
        prop::collection::vec("\\PC{0,12}", 1..4),
        prop::collection::btree_map("[A-Z_][A-Z0-9_]{0,8}", "\\PC{0,12}", 0..3),
        proptest::option::of(prop::sample::select(vec![
            "never",
            "on-failure",
            "always",
            "sometimes",
        ])),
        proptest::option::of(any::<i32>()),
        proptest::option::of(prop_oneof!["/[a-z]{1,8}", "[a-z]{1,8}(/[a-z]{1,8})?"]),
        proptest::option::of(name()),
    )
        .prop_map(|(command, env, restart, priority, cwd, group)| {
            let mut table = Table::new();
            table.insert(
                "command".into(),
                Value::Array(command.into_iter().map(Value::String).collect()),
            );
            if !env.is_empty() {
                let env = env
                    .into_iter()
                    .map(|(key, value)| (key, Value::String(value)))
                    .collect();
                table.insert("env".into(), Value::Table(env));
            }
            if let Some(restart) = restart {
                table.insert("restart".into(), Value::String(restart.into()));
            }
            if let Some(priority) = priority {
                table.insert("priority".into(), Value::Integer(priority.into()));
            }
            if let Some(cwd) = cwd {
                table.insert("cwd".into(), Value::String(cwd));
            }
            if let Some(group) = group {
                table.insert("group".into(), Value::String(group));
            }
            table
        })
}

/// A group's table: a limit, a budget or both.
fn group() -> impl Strategy<Value = Table> {
    (
        1..=i64::from(u32::MAX),
        proptest::option::of(0.01..1e9f64),
        any::<bool>(),
    )
        .prop_map(|(max, budget, limited)| {
            let mut table = Table::new();
            if limited || budget.is_none() {
                table.insert("max_running".into(), Value::Integer(max));
            }
            if let Some(budget) = budget {
                table.insert("budget_usd".into(), Value::Float(budget));
            }
            table
        })
}

/// A whole declaration as a TOML table.
fn declaration() -> impl Strategy<Value = Table> {
    (
        prop::collection::btree_map(name(), agent(), 0..4),
        prop::collection::btree_map(name(), group(), 0..3),
    )
        .prop_map(|(agents, groups)| {
            let mut file = Table::new();
            let as_table = |tables: BTreeMap<String, Table>| {
                Value::Table(
                    tables
                        .into_iter()
                        .map(|(name, table)| (name, Value::Table(table)))
                        .collect(),
                )
            };
            file.insert("agents".into(), as_table(agents));
            file.insert("groups".into(), as_table(groups));
            file
        })
}

proptest! {
    #![proptest_config(crate::proptest_config())]

    #[test]
    fn any_text_is_read_or_refused_at_a_line(text in prop_oneof![
        1 => any::<String>(),
        4 => near_valid(),
        1 => deep(),
    ]) {
        if let Err(error) = parse(Path::new(PATH), &text) {
            refused_well(&error, &text)?;
        }
    }

    #[test]
    fn a_declaration_written_out_reads_back(file in declaration()) {
        let text = toml::to_string(&file).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let declaration = parse(Path::new(PATH), &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let agents = file["agents"].as_table().cloned().unwrap_or_default();
        prop_assert_eq!(declaration.agents.len(), agents.len());
        for (declared, (name, table)) in declaration.agents.iter().zip(&agents) {
            prop_assert_eq!(&declared.name, name);
            let request = &declared.request;
            prop_assert_eq!(request.name.as_deref(), Some(name.as_str()));
            let command: Vec<&str> = table["command"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            prop_assert_eq!(&request.command, &command);
            let env = table.get("env").and_then(Value::as_table);
            prop_assert_eq!(request.env.len(), env.map_or(0, Table::len));
            prop_assert_eq!(request.options.restart.as_deref(), table.get("restart").and_then(Value::as_str));
            prop_assert_eq!(request.options.priority.map(i64::from), table.get("priority").and_then(Value::as_integer));
            let cwd = request.cwd.as_deref().unwrap_or_default();
            match table.get("cwd").and_then(Value::as_str) {
                Some(absolute) if absolute.starts_with('/') => prop_assert_eq!(cwd, absolute),
                Some(relative) => prop_assert_eq!(cwd, format!("/srv/fleet/{relative}")),
                None => prop_assert_eq!(cwd, "/srv/fleet"),
            }
        }
        let groups = file["groups"].as_table().cloned().unwrap_or_default();
        prop_assert_eq!(declaration.groups.len(), groups.len());
        for (declared, (name, table)) in declaration.groups.iter().zip(&groups) {
            prop_assert_eq!(&declared.name, name);
            prop_assert_eq!(declared.max_running.map(i64::from), table.get("max_running").and_then(Value::as_integer));
            prop_assert_eq!(declared.budget_usd, table.get("budget_usd").and_then(Value::as_float));
        }
    }

    /// A key given a value of no option's type is refused at its own
    /// line, named.
    #[test]
    fn a_bad_key_is_refused_at_its_line(file in declaration(), key in "[a-z_]{1,12}") {
        let text = toml::to_string(&file).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let text = format!("{text}\n[agents.zz-bad]\ncommand = [\"x\"]\n{key} = [1, \"x\"]\n");
        let error = parse(Path::new(PATH), &text).err();
        let error = error.ok_or_else(|| TestCaseError::fail(format!("{key} = [1, \"x\"] was taken")))?;
        refused_well(&error, &text)?;
        prop_assert_eq!(error.line, text.lines().count(), "{}", error);
        prop_assert!(error.message.contains(&key), "{}", error);
    }
}
