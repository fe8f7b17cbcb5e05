"""The README's "From Python" example, run as a user would run it."""

import os
import re
import subprocess
import sys

import procfs
from conftest import Home

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def example() -> str:
    with open(README) as file:
        text = file.read()
    section = text.split("## From Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's From Python section has a Python example"
    return match.group(1)


def test_the_readme_example_runs(home: Home) -> None:
    env = dict(os.environ, WRANGLE_HOME=home.path, WRANGLE_BIN=home.binary)
    done = subprocess.run(
        [sys.executable, "-c", example()], env=env, capture_output=True, text=True, timeout=60, cwd=home.path
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    running = [line for line in lines if ": running as pid " in line]
    assert len(running) == 5
    for line in running:
        assert int(line.rsplit(" ", 1)[1]) > 0
    outcomes = sorted(line for line in lines if "(exited with code" in line)
    assert outcomes == [
        "job-0: completed (exited with code 0)",
        "job-1: failed (exited with code 1)",
        "job-2: failed (exited with code 2)",
        "job-3: completed (exited with code 0)",
        "job-4: failed (exited with code 1)",
    ]
    assert [line for line in lines if " said: " in line] == [
        f"job-{n} said: working on {n}" for n in range(5)
    ]
    # The daemon it started runs on; nothing of the agents is left.
    assert home.processes() == [home.daemon_pid()]
    assert all(procfs.alive(pid) for pid in home.processes())
