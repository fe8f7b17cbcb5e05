//! Agent CLIs as the tests play them: a replayer of real transcripts
//! (tests/fixtures/agents/replay) installed under the CLI's own name, so
//! that the daemon's adapter choice sees `claude` or `codex`, and the
//! figures a session shows.

use super::Home;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The replayer (tests/fixtures/agents/replay) installed as `program` in a
/// directory of its own, so that the adapter choice sees that program.
pub struct FakeCli {
    _dir: tempfile::TempDir,
    /// The program's path.
    pub path: PathBuf,
}

pub fn fake(program: &str) -> FakeCli {
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join(program);
    let replay = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents/replay");
    std::fs::copy(&replay, &path).expect("copy the replayer");
    FakeCli { _dir: dir, path }
}

/// A fixture transcript's path.
pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agents")
        .join(name)
        .display()
        .to_string()
}

/// A transcript of `lines` written to a file in `home`.
pub fn transcript(home: &Home, name: &str, lines: &[&str]) -> String {
    let path = home.path().join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.display().to_string()
}

/// A home whose daemon samples (and so reads output) every 100 ms.
pub fn fast_home() -> Home {
    let home = Home::new();
    home.ok(&["daemon", "--sample-interval", "100ms"]);
    home
}

/// Runs `cli ARGS` as agent `name` replaying `file`, `delay` seconds
/// between lines, with `extra` options of `wrangle run`.
pub fn replay(
    home: &Home,
    name: &str,
    cli: &FakeCli,
    args: &[&str],
    file: &str,
    delay: &str,
    extra: &[&str],
) -> String {
    let mut full = vec![
        "--name".to_string(),
        name.to_string(),
        "--env".into(),
        format!("REPLAY_FILE={file}"),
        "--env".into(),
        format!("REPLAY_DELAY={delay}"),
    ];
    full.extend(extra.iter().map(|s| s.to_string()));
    full.push("--".into());
    full.push(cli.path.display().to_string());
    full.extend(args.iter().map(|s| s.to_string()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    home.run(&full)
}

/// `claude -p review` with its stream of JSON lines.
pub const CLAUDE_ARGS: [&str; 5] = [
    "-p",
    "review",
    "--output-format",
    "stream-json",
    "--verbose",
];

/// A session's tokens: input, output, cache read, cache write.
pub fn tokens(view: &Value) -> (u64, u64, u64, u64) {
    let t = &view["session"]["tokens"];
    let n = |key: &str| t[key].as_u64().unwrap_or_else(|| panic!("no {key} in {t}"));
    (n("input"), n("output"), n("cache_read"), n("cache_write"))
}
