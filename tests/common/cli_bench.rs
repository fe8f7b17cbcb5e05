//! The bench of the real-CLI tests: a wrangle home and the scripted model
//! server its agents call, and what the tests read of a run (the CLI's
//! own lines, the session as `inspect` shows it).

use super::model_server::{ModelServer, Reply, Request, Usage};
use super::{procfs, Home};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// The model every Claude run asks for (one Claude Code prices itself).
pub const CLAUDE_MODEL: &str = "claude-sonnet-4-5";

/// The model every Codex run asks for: one wrangle's price table knows.
pub const CODEX_MODEL: &str = "gpt-5";

/// A wrangle home whose daemon samples every 100 ms, and the model
/// server its agents call. The home comes first so that it is dropped
/// first: its agents are stopped before the server goes away.
pub struct Bench {
    /// The home, its daemon started.
    pub home: Home,
    /// The model server its agents call.
    pub server: ModelServer,
}

impl Bench {
    /// A daemon and a server answering with `script`.
    pub fn new(script: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Bench {
        let server = ModelServer::start(script);
        let home = Home::new();
        home.ok(&["daemon", "--sample-interval", "100ms"]);
        for dir in ["agent-home", "work"] {
            std::fs::create_dir_all(home.path().join(dir)).expect("a scratch directory");
        }
        Bench { home, server }
    }

    /// The agents' scratch `HOME`: nothing of the user's configuration
    /// (nor credentials) reaches the CLIs.
    pub fn agent_home(&self) -> PathBuf {
        self.home.path().join("agent-home")
    }

    /// The agents' working directory.
    pub fn work(&self) -> PathBuf {
        self.home.path().join("work")
    }

    /// `wrangle run --name NAME OPTIONS -- claude -p PROMPT
    /// --output-format stream-json --verbose --model ... CLAUDE_ARGS`, the
    /// CLI pointed at the server; returns the agent's id.
    pub fn claude(
        &self,
        claude: &Path,
        name: &str,
        prompt: &str,
        options: &[&str],
        claude_args: &[&str],
    ) -> String {
        let mut command = vec![
            claude.display().to_string(),
            "-p".into(),
            prompt.into(),
            "--output-format".into(),
            "stream-json".into(),
            "--verbose".into(),
            "--model".into(),
            CLAUDE_MODEL.into(),
        ];
        command.extend(claude_args.iter().map(|s| s.to_string()));
        self.run(name, &self.claude_env(), options, &command)
    }

    /// The environment that points claude at the server.
    pub fn claude_env(&self) -> Vec<String> {
        vec![
            format!("HOME={}", self.agent_home().display()),
            format!("ANTHROPIC_BASE_URL={}", self.server.url()),
            "ANTHROPIC_API_KEY=sk-ant-test-not-a-key".to_string(),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1".to_string(),
        ]
    }

    /// `wrangle run --name NAME -- codex exec --json --skip-git-repo-check
    /// -m gpt-5 PROMPT`, with a `CODEX_HOME` whose provider is the server;
    /// returns the agent's id.
    pub fn codex(&self, codex: &Path, name: &str, prompt: &str) -> String {
        self.codex_with(codex, name, prompt, &[])
    }

    /// [`Bench::codex`] with `options` of `wrangle run`.
    pub fn codex_with(&self, codex: &Path, name: &str, prompt: &str, options: &[&str]) -> String {
        self.codex_exec(codex, name, &[prompt], options)
    }

    /// `wrangle run --name NAME OPTIONS -- codex exec --json
    /// --skip-git-repo-check -m gpt-5 ARGS` (`ARGS`: a prompt, or
    /// `resume THREAD PROMPT`), with the `CODEX_HOME` of
    /// [`Bench::codex`].
    pub fn codex_exec(&self, codex: &Path, name: &str, args: &[&str], options: &[&str]) -> String {
        let codex_home = self.home.path().join("codex-home");
        std::fs::create_dir_all(&codex_home).expect("CODEX_HOME");
        let config = format!(
            "model = \"{CODEX_MODEL}\"\n\
             model_provider = \"scripted\"\n\n\
             [model_providers.scripted]\n\
             name = \"scripted\"\n\
             base_url = \"{}/v1\"\n\
             wire_api = \"responses\"\n\
             env_key = \"SCRIPTED_MODEL_KEY\"\n",
            self.server.url()
        );
        std::fs::write(codex_home.join("config.toml"), config).expect("config.toml");
        let env = [
            format!("HOME={}", self.agent_home().display()),
            format!("CODEX_HOME={}", codex_home.display()),
            "SCRIPTED_MODEL_KEY=not-a-key".to_string(),
        ];
        let mut command = vec![
            codex.display().to_string(),
            "exec".into(),
            "--json".into(),
            "--skip-git-repo-check".into(),
            "-m".into(),
            CODEX_MODEL.into(),
        ];
        command.extend(args.iter().map(|arg| arg.to_string()));
        self.run(name, &env, options, &command)
    }

    /// `wrangle run --name NAME --cwd WORK --env ... OPTIONS -- COMMAND`.
    pub fn run(&self, name: &str, env: &[String], options: &[&str], command: &[String]) -> String {
        let mut args = vec![
            "--name".to_string(),
            name.into(),
            "--cwd".into(),
            self.work().display().to_string(),
        ];
        for pair in env {
            args.push("--env".into());
            args.push(pair.clone());
        }
        args.extend(options.iter().map(|s| s.to_string()));
        args.push("--".into());
        args.extend(command.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.home.run(&args)
    }

    /// What a person reads when a test fails: the agent as `inspect`
    /// shows it and what it printed.
    pub fn describe(&self, name: &str) -> String {
        let logs = self.home.wrangle(&["logs", name]);
        format!(
            "{:#}\n--- its output:\n{}{}",
            self.home.inspect(name),
            logs.stdout,
            logs.stderr
        )
    }

    /// The lines of the agent's stdout, as `wrangle logs` prints them.
    pub fn stdout(&self, name: &str) -> Vec<String> {
        let text = self.home.ok(&["logs", "--stdout", name]);
        text.lines().map(str::to_string).collect()
    }

    /// The first (or with `last`, the last) line of the agent's stdout
    /// whose `type` is `kind`: the CLI's own word, e.g. Claude's `result`
    /// or Codex's `turn.completed`.
    pub fn line_of(&self, name: &str, kind: &str, last: bool) -> Value {
        let mut lines: Vec<Value> = self
            .stdout(name)
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["type"] == kind)
            .collect();
        if last {
            lines.reverse();
        }
        lines
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {kind} line:\n{}", self.describe(name)))
    }

    /// The CLI's final line of `kind`.
    pub fn final_line(&self, name: &str, kind: &str) -> Value {
        self.line_of(name, kind, true)
    }

    /// Polls `inspect` until the agent is no longer running; returns each
    /// `(health, health_reason)` seen on the way.
    pub fn watch(&self, name: &str) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let view = self.home.inspect(name);
            if view["state"] != "running" {
                return seen;
            }
            let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
            seen.push((text(&view["health"]), text(&view["health_reason"])));
            assert!(
                Instant::now() < deadline,
                "{} still runs",
                self.describe(name)
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A session's tokens as `inspect` shows them: (input, output,
/// cache_read, cache_write).
pub fn tokens(view: &Value) -> (u64, u64, u64, u64) {
    let t = &view["session"]["tokens"];
    let n = |key: &str| t[key].as_u64().unwrap_or_else(|| panic!("no {key} in {t}"));
    (n("input"), n("output"), n("cache_read"), n("cache_write"))
}

/// The totals of a Claude `result` line, every model of its `modelUsage`
/// together (its `usage` alone may be the main model's or the last
/// call's: AGENT-FORMATS.md §1).
pub fn claude_totals(result: &Value) -> (u64, u64, u64, u64) {
    let mut sum = (0, 0, 0, 0);
    let models = result["modelUsage"]
        .as_object()
        .unwrap_or_else(|| panic!("no modelUsage in {result}"));
    for usage in models.values() {
        let n = |key: &str| usage[key].as_u64().unwrap_or(0);
        sum.0 += n("inputTokens");
        sum.1 += n("outputTokens");
        sum.2 += n("cacheReadInputTokens");
        sum.3 += n("cacheCreationInputTokens");
    }
    sum
}

/// What the server billed, in the order of [`tokens`].
pub fn as_tuple(usage: Usage) -> (u64, u64, u64, u64) {
    (
        usage.input,
        usage.output,
        usage.cache_read,
        usage.cache_write,
    )
}

/// The tokens of one model call, in the order of [`tokens`].
pub fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Usage {
    Usage {
        input,
        output,
        cache_read,
        cache_write,
    }
}

/// The Claude script of a task with one shell command: the first call of
/// a conversation asks for `Bash(command)`, the call after its result
/// answers with text.
pub fn one_command(command: &'static str) -> impl Fn(&Request, usize) -> Reply + Send + Sync {
    move |request, _| {
        if request.tool_results() == 0 {
            Reply::Bash {
                command: command.into(),
                usage: usage(1200, 40, 5000, 3000),
            }
        } else {
            Reply::Text {
                text: "Done.".into(),
                usage: usage(300, 25, 8000, 200),
            }
        }
    }
}

/// The live processes of `home`'s agents and their descendants: those
/// whose environment carries the `WRANGLE_STATUS_FILE` wrangle gives each
/// run (its daemon and shims have none).
pub fn agent_tree(home: &Home) -> Vec<i32> {
    let mark = format!("WRANGLE_STATUS_FILE={}/", home.path().display());
    procfs::all()
        .into_iter()
        .filter(|p| !p.is_zombie())
        .filter(|p| {
            procfs::environ(p.pid).is_some_and(|env| env.iter().any(|e| e.starts_with(&mark)))
        })
        .map(|p| p.pid)
        .collect()
}
