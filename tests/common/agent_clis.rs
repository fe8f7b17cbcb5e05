//! Where the real agent CLIs are: `tests/agent-clis/install.sh` installs
//! the pinned `claude` and `codex` with npm into `.cache/agent-clis/`
//! (or `$WRANGLE_AGENT_CLIS`), and the tests that drive them look there.
//!
//! A machine without them (no npm, no install yet) cannot run those
//! tests; they then say so on stderr, `SKIPPED: ...` with the reason, and
//! return. Better a visible skip than a test that fails for want of a
//! program, or one that quietly passes.

use std::io::Write;
use std::path::PathBuf;

/// The install directory: `$WRANGLE_AGENT_CLIS`, else the repository's
/// `.cache/agent-clis`.
pub fn install_dir() -> PathBuf {
    std::env::var_os("WRANGLE_AGENT_CLIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/agent-clis"))
}

/// The path of `program` (`claude`, `codex`) as npm installed it, or
/// `None` after printing why the calling test is skipped (named by its
/// thread, which the test harness names after the test).
pub fn find(program: &str) -> Option<PathBuf> {
    let path = install_dir().join("node_modules/.bin").join(program);
    if path.exists() {
        return Some(path);
    }
    let current = std::thread::current();
    let test = current.name().unwrap_or("a test of the real agent CLIs");
    // Straight to stderr, not `eprintln!`: the test harness captures
    // what the print macros write and shows it only for a failed test, so
    // a skip would be silent.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: the real `{program}` is not installed at {} \
         (run tests/agent-clis/install.sh, which needs npm, or set WRANGLE_AGENT_CLIS)",
        path.display()
    );
    None
}
