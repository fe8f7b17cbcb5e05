//! The declarative file of `wrangle up` and `down` (`wrangle.toml`): a
//! table `[agents.NAME]` per agent whose keys are the options of `wrangle
//! run` in snake_case (`command = ["argv", ...]`, `cwd`, `env`, `restart`,
//! `timeout`, `group`, ...), and `[groups.NAME]` with `max_running` and
//! `budget_usd`.
//!
//! Mistakes are reported with the file, the line and the key. Each agent
//! becomes exactly the request `wrangle run` would send, so the daemon
//! checks both the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;
use wrangle_wire::{parse, CreateAgent};

/// Label that names the file an agent was declared in.
pub const FILE_LABEL: &str = "wrangle.up.file";
/// Label that holds a hash of the agent's declaration: a change means the
/// agent is recreated.
pub const HASH_LABEL: &str = "wrangle.up.hash";

/// A mistake in the file, at a line.
#[derive(Debug, Clone, PartialEq)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// Line number, from 1.
    pub line: usize,
    /// What is wrong, naming the key.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

impl std::error::Error for FileError {}

/// One declared agent.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredAgent {
    /// Its name (the table's key).
    pub name: String,
    /// The request that creates it, labelled with the file and the hash.
    pub request: CreateAgent,
    /// Line of its table header.
    pub line: usize,
    /// Each key of its table with its line, to point at a key the daemon
    /// refuses.
    pub keys: Vec<(String, usize)>,
    /// The table as written.
    table: toml::Table,
}

impl DeclaredAgent {
    /// The declaration's hash, as its label holds it.
    pub fn hash(&self) -> &str {
        self.request
            .labels
            .get(HASH_LABEL)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The request with only `command` and `key` of the declaration, to
    /// tell which key the daemon refuses.
    pub fn with_only(&self, key: &str) -> Option<CreateAgent> {
        let mut table = self.table.clone();
        table.retain(|name, _| name == key || name == "command");
        to_request(table).ok()
    }
}

/// One declared group.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredGroup {
    /// Its name.
    pub name: String,
    /// Most of its agents that run at once.
    pub max_running: Option<u32>,
    /// Most US dollars its agents may spend together.
    pub budget_usd: Option<f64>,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    /// The file, absolute.
    pub path: PathBuf,
    /// Agents in the order of their names.
    pub agents: Vec<DeclaredAgent>,
    /// Groups in the order of their names.
    pub groups: Vec<DeclaredGroup>,
}

type SpannedTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    agents: BTreeMap<Spanned<String>, SpannedTable>,
    #[serde(default)]
    groups: BTreeMap<Spanned<String>, SpannedTable>,
}

/// Keys of an agent's table that wrangle sets itself.
const RESERVED_KEYS: [&str; 2] = ["name", "inherit_env"];

/// Reads a declaration from the text of the file at `path` (absolute);
/// relative `cwd`s are taken from the file's directory, which is also the
/// default.
pub fn parse(path: &Path, text: &str) -> Result<Declaration, FileError> {
    // Where each line ends, found once: counting the newlines before each
    // key made a file of 10,000 agents take seconds to read.
    let newlines: Vec<usize> = text
        .bytes()
        .enumerate()
        .filter(|(_, byte)| *byte == b'\n')
        .map(|(offset, _)| offset)
        .collect();
    let line_of = |offset: usize| newlines.partition_point(|&newline| newline < offset) + 1;
    let error = |offset: usize, message: String| FileError {
        path: path.to_path_buf(),
        line: line_of(offset),
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |span| span.start);
        error(offset, e.message().trim().to_string())
    })?;
    let dir = path.parent().unwrap_or(Path::new("/"));

    let mut groups = Vec::new();
    for (name, table) in raw.groups {
        let at = name.span().start;
        let name = name.into_inner();
        parse::validate_name(&name).map_err(|e| {
            error(
                at,
                format!("groups.{name}: {}", e.replace("name", "group name")),
            )
        })?;
        let mut max_running = None;
        let mut budget_usd = None;
        for (key, value) in table {
            let key_at = key.span().start;
            match key.get_ref().as_str() {
                "max_running" => match value.get_ref().as_integer() {
                    Some(max) if (1..=i64::from(u32::MAX)).contains(&max) => {
                        max_running = Some(max as u32)
                    }
                    _ => {
                        return Err(error(
                            key_at,
                            format!(
                            "groups.{name}.max_running: give a whole number of agents, at least 1"
                        ),
                        ))
                    }
                },
                "budget_usd" => {
                    let usd = value
                        .get_ref()
                        .as_float()
                        .or_else(|| value.get_ref().as_integer().map(|usd| usd as f64));
                    match usd.map(parse::check_budget_usd) {
                        Some(Ok(usd)) => budget_usd = Some(usd),
                        _ => {
                            return Err(error(
                                key_at,
                                format!("groups.{name}.budget_usd: give a number of US dollars above 0, e.g. 20.0"),
                            ))
                        }
                    }
                }
                other => {
                    return Err(error(
                        key_at,
                        format!("groups.{name}.{other}: unknown key (a group has max_running and budget_usd)"),
                    ))
                }
            }
        }
        if max_running.is_none() && budget_usd.is_none() {
            return Err(error(
                at,
                format!("groups.{name}: give max_running, budget_usd or both"),
            ));
        }
        groups.push(DeclaredGroup {
            name,
            max_running,
            budget_usd,
        });
    }

    let mut agents = Vec::new();
    for (name, table) in raw.agents {
        let at = name.span().start;
        let name = name.into_inner();
        parse::validate_name(&name).map_err(|e| error(at, format!("agents.{name}: {e}")))?;
        let mut plain = toml::Table::new();
        let mut keys = Vec::new();
        for (key, value) in table {
            let key_at = key.span().start;
            let key = key.into_inner();
            if RESERVED_KEYS.contains(&key.as_str()) {
                return Err(error(
                    key_at,
                    format!("agents.{name}.{key}: wrangle sets this itself; leave it out"),
                ));
            }
            // Each key alone must make sense, so that a mistake is pinned
            // to its line.
            let mut alone = toml::Table::new();
            alone.insert("command".into(), toml::Value::Array(Vec::new()));
            alone.insert(key.clone(), value.get_ref().clone());
            if let Err(message) = to_request(alone) {
                return Err(error(key_at, format!("agents.{name}.{key}: {message}")));
            }
            keys.push((key.clone(), line_of(key_at)));
            plain.insert(key, value.into_inner());
        }
        if !plain.contains_key("command") {
            return Err(error(
                at,
                format!("agents.{name}: command is missing, e.g. command = [\"sleep\", \"60\"]"),
            ));
        }
        let mut request =
            to_request(plain.clone()).map_err(|e| error(at, format!("agents.{name}: {e}")))?;
        if request.command.is_empty() {
            return Err(error(
                at,
                format!("agents.{name}: command is missing, e.g. command = [\"sleep\", \"60\"]"),
            ));
        }
        request.cwd = Some(match request.cwd.take() {
            Some(cwd) if Path::new(&cwd).is_absolute() => cwd,
            Some(cwd) => dir.join(cwd).display().to_string(),
            None => dir.display().to_string(),
        });
        request.name = Some(name.clone());
        let hash = declaration_hash(&request);
        request
            .labels
            .insert(FILE_LABEL.into(), path.display().to_string());
        request.labels.insert(HASH_LABEL.into(), hash);
        agents.push(DeclaredAgent {
            name,
            request,
            line: line_of(at),
            keys,
            table: plain,
        });
    }
    Ok(Declaration {
        path: path.to_path_buf(),
        agents,
        groups,
    })
}

/// A request from an agent's table; the message of serde's complaint.
fn to_request(table: toml::Table) -> Result<CreateAgent, String> {
    toml::Value::Table(table)
        .try_into::<CreateAgent>()
        .map_err(|e| e.message().trim().to_string())
}

/// FNV-1a over the request as JSON (without the caller's environment,
/// which changes with every shell): stable across wrangle versions and
/// machines, unlike std's hasher.
fn declaration_hash(request: &CreateAgent) -> String {
    let json = serde_json::to_vec(request).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in json {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/srv/fleet/wrangle.toml";

    fn parsed(text: &str) -> Declaration {
        parse(Path::new(FILE), text).unwrap()
    }

    fn failed(text: &str) -> FileError {
        parse(Path::new(FILE), text).unwrap_err()
    }

    #[test]
    fn agents_become_run_requests_with_cwd_from_the_file() {
        let declaration = parsed(
            r#"
[groups.builds]
max_running = 2

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
adapter = "jsonl"
budget_usd = 1.5
budget_tokens = 100000
linger = "never"
"#,
        );
        assert_eq!(
            declaration.groups,
            vec![DeclaredGroup {
                name: "builds".into(),
                max_running: Some(2),
                budget_usd: None,
            }]
        );
        let [web, worker] = &declaration.agents[..] else {
            panic!("two agents")
        };
        assert_eq!(web.name, "web");
        assert_eq!(web.line, 5);
        assert_eq!(web.request.name.as_deref(), Some("web"));
        assert_eq!(web.request.command, ["python3", "-m", "http.server"]);
        assert_eq!(web.request.env["PORT"], "8000");
        assert_eq!(web.request.options.restart.as_deref(), Some("always"));
        assert_eq!(web.request.options.priority, Some(3));
        assert_eq!(web.request.cwd.as_deref(), Some("/srv/fleet"));
        assert_eq!(web.request.labels[FILE_LABEL], FILE);
        assert_eq!(web.hash().len(), 16);
        assert_eq!(worker.request.cwd.as_deref(), Some("/srv/fleet/jobs"));
        let session = &worker.request.options;
        assert_eq!(session.adapter.as_deref(), Some("jsonl"));
        assert_eq!(session.budget_usd, Some(1.5));
        assert_eq!(session.budget_tokens, Some(100_000));
        assert_eq!(session.linger.as_deref(), Some("never"));
        assert_ne!(web.hash(), worker.hash());
        assert_eq!(
            web.keys.iter().find(|(key, _)| key == "timeout"),
            Some(&("timeout".to_string(), 9))
        );
    }

    #[test]
    fn the_hash_follows_the_declaration_only() {
        let one = parsed("[agents.a]\ncommand = [\"sleep\", \"1\"]\n");
        let same = parsed("\n\n[agents.a]\ncommand = [ \"sleep\" , \"1\" ]\n");
        let other = parsed("[agents.a]\ncommand = [\"sleep\", \"2\"]\n");
        assert_eq!(one.agents[0].hash(), same.agents[0].hash());
        assert_ne!(one.agents[0].hash(), other.agents[0].hash());
    }

    #[test]
    fn mistakes_name_the_file_the_line_and_the_key() {
        let unknown = failed("[agents.a]\ncommand = [\"x\"]\ncolour = \"red\"\n");
        assert_eq!(unknown.line, 3);
        assert!(
            unknown
                .to_string()
                .starts_with("/srv/fleet/wrangle.toml:3: agents.a.colour: unknown field `colour`"),
            "{unknown}"
        );

        let wrong_type = failed("[agents.a]\ncommand = \"sleep 1\"\n");
        assert_eq!(wrong_type.line, 2);
        assert!(
            wrong_type.message.starts_with("agents.a.command:"),
            "{wrong_type}"
        );

        let missing = failed("[agents.a]\ncwd = \"/\"\n");
        assert_eq!(missing.line, 1);
        assert!(missing.message.contains("command is missing"), "{missing}");

        let reserved = failed("[agents.a]\ncommand = [\"x\"]\nname = \"b\"\n");
        assert_eq!(reserved.line, 3);

        let bad_name = failed("[agents.Bad]\ncommand = [\"x\"]\n");
        assert!(bad_name.message.starts_with("agents.Bad:"), "{bad_name}");

        let top = failed("[agent.a]\ncommand = [\"x\"]\n");
        assert_eq!(top.line, 1);
        assert!(top.message.contains("unknown field `agent`"), "{top}");

        let group = failed("[groups.g]\nmax_running = 0\n");
        assert_eq!(group.line, 2);
        assert!(group.message.contains("at least 1"), "{group}");

        let syntax = failed("[agents.a]\ncommand = [\"x\"\n");
        assert!(syntax.line >= 2, "{syntax}");
    }
}
