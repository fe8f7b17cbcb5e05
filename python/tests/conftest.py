"""The harness: a fresh wrangle home per test, with the real ``wrangle``
binary (``$WRANGLE_BIN``, as ``tests/python_client.rs`` passes the one
cargo built, else ``wrangle`` on PATH), a real daemon on a real Unix
socket, real processes. At the end of each test its daemon is stopped with
its agents and anything of the home still alive is SIGKILLed, as
``tests/common/mod.rs``'s ``Home`` does, so no test leaks a process."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Iterable, Iterator, List, Union

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import procfs  # noqa: E402

import wrangle  # noqa: E402

SAMPLE_INTERVAL = ["--sample-interval", "200ms"]


def events_of(items: Iterable[Union[wrangle.Event, wrangle.Gap]]) -> List[wrangle.Event]:
    """The events of a stream, which must hold no gap (a fresh home keeps
    every event)."""
    events = []
    for item in items:
        assert isinstance(item, wrangle.Event), f"a gap in a fresh home: {item}"
        events.append(item)
    return events


"""A faster sampler than the default 2 s, so that resource use shows soon."""


@pytest.fixture(scope="session")
def wrangle_bin() -> str:
    """The wrangle executable under test."""
    binary = os.environ.get("WRANGLE_BIN") or shutil.which("wrangle")
    if not binary:
        pytest.fail("set WRANGLE_BIN to the wrangle executable (cargo build puts it in target/debug/wrangle)")
    return os.path.abspath(binary)


class Home:
    """A private wrangle home in a short directory under /tmp (a socket
    path holds at most 107 bytes)."""

    def __init__(self, binary: str) -> None:
        self.path = tempfile.mkdtemp(prefix="wp", dir="/tmp")
        self.binary = binary

    def wrangle(self, *args: str) -> "subprocess.CompletedProcess[str]":
        """Runs the CLI against this home."""
        env = dict(os.environ, WRANGLE_HOME=self.path)
        return subprocess.run(
            [self.binary, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def daemon_pid(self) -> int:
        """The pid of the home's daemon (from its pid file), which must run."""
        with open(os.path.join(self.path, "daemon.pid")) as file:
            pid = int(file.read().strip())
        assert procfs.alive(pid), f"the daemon {pid} does not run"
        return pid

    def kill_daemon(self) -> int:
        """SIGKILLs the daemon, as ``tests/common/crash.rs`` does, and waits
        until it is dead with all its threads; returns its pid."""
        pid = self.daemon_pid()
        procfs.kill(pid)
        procfs.wait_until("the SIGKILLed daemon is dead", lambda: procfs.exited_entirely(pid))
        return pid

    def processes(self) -> List[int]:
        return procfs.of_home(self.path)

    def clean_up(self) -> None:
        if os.path.exists(os.path.join(self.path, "wrangle.sock")):
            try:
                self.wrangle("daemon", "stop", "--stop-agents")
            except subprocess.TimeoutExpired:
                pass
        for _ in range(200):
            left = self.processes()
            if not left:
                break
            for pid in left:
                procfs.kill(pid)
            time.sleep(0.01)
        shutil.rmtree(self.path, ignore_errors=True)


@pytest.fixture
def home(wrangle_bin: str) -> Iterator[Home]:
    """A fresh home, cleaned up after the test whatever it asserted."""
    made = Home(wrangle_bin)
    try:
        yield made
    finally:
        made.clean_up()


@pytest.fixture
def client(home: Home) -> Iterator[wrangle.Client]:
    """A client of a fresh home; its daemon starts with the first request."""
    with wrangle.Client(home.path, wrangle_bin=home.binary, daemon_options=SAMPLE_INTERVAL) as made:
        yield made
