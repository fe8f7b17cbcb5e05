//! What wrangle adds to a run so that its CLI exports telemetry to the
//! daemon (AGENT-FORMATS.md §10): Claude Code and Gemini CLI take it from
//! their environment, Codex from a `-c` override on its command line.
//! Each is told the daemon's loopback endpoint, the run's token as the
//! `authorization` header, and resource attributes naming the agent and
//! the run; texts (prompts, responses) are left out where the CLI would
//! send them.

use crate::adapters;
use std::collections::BTreeMap;
use wrangle_wire::TelemetryMode;

/// Most milliseconds between two exports of Claude Code's logs: its
/// default (5 s) would make a budget act late.
const EXPORT_INTERVAL_MS: u64 = 500;

/// The user's own collector, which every body is forwarded to unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// Its base URL (`http://HOST:PORT[/PATH]`): a signal's path is added.
    pub endpoint: String,
    /// Its URL for logs, where the user named one apart.
    pub logs_endpoint: Option<String>,
    /// The user's own headers, sent with each body.
    pub headers: Vec<(String, String)>,
}

impl Forward {
    /// Where a body received at `path` (`/v1/logs`, ...) goes.
    pub fn url(&self, path: &str) -> String {
        match (&self.logs_endpoint, path) {
            (Some(logs), "/v1/logs") => logs.clone(),
            _ => format!("{}{path}", self.endpoint.trim_end_matches('/')),
        }
    }
}

/// What wrangle sets for one run's telemetry.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The daemon's endpoint the CLI exports to.
    pub endpoint: String,
    /// The user's own collector, when the agent exported to one.
    pub forward: Option<Forward>,
    /// Variables set in the agent's environment (over its own).
    pub env: Vec<(String, String)>,
    /// Arguments put after the program, in front of its own.
    pub args: Vec<String>,
    /// The token, to hide where the above are shown.
    token: String,
}

impl Plan {
    /// What was added, as `inspect` shows it: `KEY=VALUE` and arguments,
    /// the run's token hidden.
    pub fn shown(&self) -> Vec<String> {
        let hide = |text: &str| text.replace(&self.token, "<run token>");
        self.env
            .iter()
            .map(|(key, value)| format!("{key}={}", hide(value)))
            .chain(self.args.iter().map(|arg| hide(arg)))
            .collect()
    }
}

/// The plan for a run of `argv` (whose environment will be `env`) under
/// `mode`, exporting to `port` with `token`; `Err` says why there is none
/// (for `--telemetry on`, a refusal; else only a note).
pub fn plan(
    mode: TelemetryMode,
    argv: &[String],
    env: &BTreeMap<String, String>,
    port: Option<u16>,
    token: &str,
    agent: (&str, u32),
) -> Result<Plan, String> {
    if mode == TelemetryMode::Off {
        return Err("--telemetry off".into());
    }
    let port = port.ok_or("the daemon receives no telemetry (its port could not be bound)")?;
    let Some((program, _)) = adapters::program_of(argv) else {
        return Err("no command".into());
    };
    let forward = if program == "claude" {
        users_collector(env)?
    } else if let Some(own) = env
        .get("GEMINI_TELEMETRY_OTLP_ENDPOINT")
        .filter(|_| program == "gemini")
    {
        return Err(format!(
            "the agent exports to its own collector ({own}); wrangle forwards only Claude Code's"
        ));
    } else {
        None
    };
    // The user's protocol is kept, so that what is forwarded is what the
    // collector expects.
    let protocol = match env.get("OTEL_EXPORTER_OTLP_PROTOCOL").map(String::as_str) {
        Some("http/protobuf") if forward.is_some() => "http/protobuf",
        _ => "http/json",
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let header = format!("authorization=Bearer {token}");
    let (agent_id, run) = agent;
    let mut resource = format!("wrangle.agent={agent_id},wrangle.run={run}");
    if let Some(own) = env
        .get("OTEL_RESOURCE_ATTRIBUTES")
        .filter(|own| !own.is_empty())
    {
        resource = format!("{own},{resource}");
    }
    let pairs = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.clone()))
            .collect()
    };
    let (env, args) = match program.as_str() {
        "claude" => {
            let interval = env
                .get("OTEL_LOGS_EXPORT_INTERVAL")
                .and_then(|ms| ms.parse::<u64>().ok())
                .map_or(EXPORT_INTERVAL_MS, |ms| ms.min(EXPORT_INTERVAL_MS));
            let set = pairs(&[
                ("CLAUDE_CODE_ENABLE_TELEMETRY", "1".into()),
                ("OTEL_LOGS_EXPORTER", "otlp".into()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.into()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
                ("OTEL_LOGS_EXPORT_INTERVAL", interval.to_string()),
                ("OTEL_EXPORTER_OTLP_HEADERS", header),
                ("OTEL_RESOURCE_ATTRIBUTES", resource),
            ]);
            (set, Vec::new())
        }
        "gemini" => {
            let set = pairs(&[
                ("GEMINI_TELEMETRY_ENABLED", "true".into()),
                ("GEMINI_TELEMETRY_TARGET", "local".into()),
                ("GEMINI_TELEMETRY_OTLP_ENDPOINT", endpoint.clone()),
                ("GEMINI_TELEMETRY_OTLP_PROTOCOL", "http".into()),
                // Else it exports the prompt and the texts of requests and
                // responses; wrangle keeps none of them.
                ("GEMINI_TELEMETRY_LOG_PROMPTS", "false".into()),
                ("OTEL_EXPORTER_OTLP_HEADERS", header),
                ("OTEL_RESOURCE_ATTRIBUTES", resource),
            ]);
            (set, Vec::new())
        }
        "codex" => {
            let exporter = format!(
                "otel.exporter={{otlp-http={{endpoint=\"{endpoint}/v1/logs\",protocol=\"json\",headers={{authorization=\"Bearer {token}\"}}}}}}"
            );
            let set = pairs(&[("OTEL_RESOURCE_ATTRIBUTES", resource)]);
            (set, vec!["-c".to_string(), exporter])
        }
        other => {
            return Err(format!(
                "{other} is not a CLI wrangle knows to export telemetry (Claude Code, Codex, Gemini CLI)"
            ))
        }
    };
    let mut env = env;
    if forward.is_some() {
        // The user's per-signal settings would bypass the daemon.
        env.extend(pairs(&[
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", String::new()),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", String::new()),
        ]));
    }
    Ok(Plan {
        endpoint,
        forward,
        env,
        args,
        token: token.to_string(),
    })
}

/// The collector the agent's own environment exports to, if any: over
/// OTLP/HTTP only (a gRPC or https one is left as it is, with why).
fn users_collector(env: &BTreeMap<String, String>) -> Result<Option<Forward>, String> {
    let set = |key: &str| env.get(key).filter(|value| !value.trim().is_empty());
    let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT");
    let logs_endpoint = set("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT");
    let Some(own) = endpoint.or(logs_endpoint) else {
        return Ok(None);
    };
    let protocol = set("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL")
        .or(set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .map_or("grpc", String::as_str);
    if !protocol.starts_with("http/") {
        return Err(format!(
            "the agent exports to its own collector ({own}) over {protocol}; wrangle forwards OTLP/HTTP only, so it is left as it is"
        ));
    }
    for url in [endpoint, logs_endpoint].into_iter().flatten() {
        if !url.starts_with("http://") {
            return Err(format!(
                "the agent exports to its own collector ({url}); wrangle forwards to http:// only, so it is left as it is"
            ));
        }
    }
    let headers = set("OTEL_EXPORTER_OTLP_LOGS_HEADERS")
        .or(set("OTEL_EXPORTER_OTLP_HEADERS"))
        .map(|headers| parse_headers(headers))
        .unwrap_or_default();
    Ok(Some(Forward {
        endpoint: endpoint.cloned().unwrap_or_default(),
        logs_endpoint: logs_endpoint.cloned(),
        headers,
    }))
}

/// OTel's `key1=value1,key2=value2` header list (values URL-encoded).
fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), percent_decoded(value.trim())))
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

/// `value` with its `%XX` escapes decoded (as bytes, then UTF-8).
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escape = (bytes[at] == b'%')
            .then(|| value.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Plan {
    /// `argv` with the plan's arguments after the program, in front of
    /// its own.
    pub fn command(&self, argv: &[String]) -> Vec<String> {
        if self.args.is_empty() {
            return argv.to_vec();
        }
        let at = adapters::program_of(argv).map_or(argv.len(), |(_, args)| argv.len() - args.len());
        let mut command = argv[..at].to_vec();
        command.extend(self.args.iter().cloned());
        command.extend(argv[at..].iter().cloned());
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| word.to_string()).collect()
    }

    #[test]
    fn each_cli_is_told_the_endpoint_the_token_and_the_run() {
        let env = BTreeMap::from([(
            "OTEL_RESOURCE_ATTRIBUTES".to_string(),
            "team=core".to_string(),
        )]);
        let claude = argv(&["/usr/bin/claude", "-p", "hi"]);
        let made = plan(
            TelemetryMode::Auto,
            &claude,
            &env,
            Some(4318),
            "ag1.2.ff",
            ("ag1", 2),
        )
        .unwrap();
        let set: BTreeMap<_, _> = made.env.iter().cloned().collect();
        assert_eq!(set["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://127.0.0.1:4318");
        assert_eq!(
            set["OTEL_EXPORTER_OTLP_HEADERS"],
            "authorization=Bearer ag1.2.ff"
        );
        assert_eq!(
            set["OTEL_RESOURCE_ATTRIBUTES"],
            "team=core,wrangle.agent=ag1,wrangle.run=2"
        );
        assert_eq!(set["OTEL_LOGS_EXPORT_INTERVAL"], "500");
        assert_eq!(made.command(&claude), claude);
        assert!(made
            .shown()
            .contains(&"OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer <run token>".to_string()));

        let codex = argv(&["npx", "@openai/codex", "exec", "--json", "go"]);
        let made = plan(
            TelemetryMode::Auto,
            &codex,
            &BTreeMap::new(),
            Some(9),
            "t.1.aa",
            ("t", 1),
        )
        .unwrap();
        let command = made.command(&codex);
        assert_eq!(&command[..3], &["npx", "@openai/codex", "-c"]);
        assert!(command[3].contains("endpoint=\"http://127.0.0.1:9/v1/logs\""));
        assert!(command[3].contains("authorization=\"Bearer t.1.aa\""));
        assert_eq!(&command[4..], &["exec", "--json", "go"]);
        assert!(made.shown().iter().all(|shown| !shown.contains("t.1.aa")));

        let gemini = plan(
            TelemetryMode::On,
            &argv(&["gemini", "-p", "x"]),
            &BTreeMap::new(),
            Some(9),
            "t",
            ("t", 1),
        )
        .unwrap();
        assert!(gemini
            .env
            .contains(&("GEMINI_TELEMETRY_LOG_PROMPTS".into(), "false".into())));
    }

    #[test]
    fn no_plan_says_why() {
        let none = BTreeMap::new();
        let claude = argv(&["claude", "-p", "x"]);
        assert!(plan(TelemetryMode::Off, &claude, &none, Some(1), "t", ("a", 1)).is_err());
        assert!(
            plan(TelemetryMode::Auto, &claude, &none, None, "t", ("a", 1))
                .unwrap_err()
                .contains("port")
        );
        let why = plan(
            TelemetryMode::Auto,
            &argv(&["sleep", "1"]),
            &none,
            Some(1),
            "t",
            ("a", 1),
        )
        .unwrap_err();
        assert!(why.contains("sleep is not a CLI"), "{why}");
        let own = BTreeMap::from([(
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
            "http://collector:4318".to_string(),
        )]);
        assert!(
            plan(TelemetryMode::Auto, &claude, &own, Some(1), "t", ("a", 1))
                .unwrap_err()
                .contains("its own collector")
        );
    }
}
