//! The Python client (`python/`, import `wrangle`): `mypy --strict` on the
//! package, its tests and its benchmark script, and its pytest suite run
//! against the binary cargo built (a real daemon on a real socket, real
//! processes checked in `/proc`; see `python/tests/conftest.py`).
//!
//! They run with the virtualenv `.cache/python` that `.ci/run` makes
//! (`pip install ./python` with pinned pytest and mypy), or
//! `$WRANGLE_PYTHON_VENV`; without one each test prints `SKIPPED: ...` on
//! stderr and returns. The package's source comes first on the path, so a
//! change to it is tested without installing it again.

mod common;

use common::{run_command, WRANGLE};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Upper bound for each Python run, so that a hang fails the test.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(600);

/// The client's directory in the repository.
fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// The virtualenv's python, or `None` after saying why the test is skipped.
fn venv_python() -> Option<PathBuf> {
    let venv = std::env::var_os("WRANGLE_PYTHON_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/python"));
    let python = venv.join("bin/python");
    if python.exists() {
        return Some(python);
    }
    let current = std::thread::current();
    let test = current.name().unwrap_or("a test of the Python client");
    // Straight to stderr: the harness shows what eprintln! writes only for
    // a failed test.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: no virtualenv at {} (bash .ci/run makes it: python3 -m venv .cache/python \
         && .cache/python/bin/pip install ./python pytest mypy; or set WRANGLE_PYTHON_VENV)",
        venv.display()
    );
    None
}

/// `python ARGS` in `python/`, with the package's source first on the path.
fn python(interpreter: &PathBuf, args: &[&str]) -> Command {
    let mut command = Command::new(interpreter);
    command
        .args(args)
        .current_dir(python_dir())
        .env("PYTHONPATH", python_dir().join("src"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("WRANGLE_BIN", WRANGLE)
        .env_remove("WRANGLE_HOME");
    command
}

/// Runs `mypy ARGS` and fails the test with what it found.
fn mypy(interpreter: &PathBuf, args: &[&str]) {
    let mut full = vec!["-m", "mypy", "--strict", "--no-incremental"];
    full.extend_from_slice(args);
    let output = run_command(python(interpreter, &full), PYTHON_TIMEOUT);
    assert!(
        output.status.success(),
        "mypy {args:?} found problems:\n{}\n{}",
        output.stdout,
        output.stderr
    );
}

#[test]
fn python_client_is_mypy_strict_clean() {
    let Some(interpreter) = venv_python() else {
        return;
    };
    // The package for the oldest Python it runs on (pyproject.toml: 3.9).
    mypy(&interpreter, &["src/wrangle"]);
    // Its tests and benchmark too, for the Python at hand (pytest's own
    // code needs a newer one than 3.9).
    let version = run_command(
        python(
            &interpreter,
            &["-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        ),
        PYTHON_TIMEOUT,
    );
    let version = version.stdout.trim();
    mypy(
        &interpreter,
        &["--python-version", version, "src/wrangle", "tests", "bench"],
    );
}

#[test]
fn python_client_tests_pass_against_the_real_daemon() {
    let Some(interpreter) = venv_python() else {
        return;
    };
    let output = run_command(
        python(
            &interpreter,
            &["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        ),
        PYTHON_TIMEOUT,
    );
    assert!(
        output.status.success(),
        "pytest failed:\n{}\n{}",
        output.stdout,
        output.stderr
    );
    assert!(
        output.stdout.contains(" passed"),
        "pytest ran no test:\n{}",
        output.stdout
    );
}
