"""What the tests check on the machine itself, in /proc, instead of taking
wrangle's word for it."""

import itertools
import os
import signal
import time
from typing import Callable, Dict, List, Optional

_COUNTER = itertools.count()

SOON = 20.0
"""Seconds within which something that should happen soon must have."""


def marker() -> str:
    """A number of seconds for ``sleep`` that no other process on the machine
    has in its command line (as ``tests/common/mod.rs`` makes them)."""
    noise = time.time_ns() % 1000
    return f"1000.{os.getpid():07d}{next(_COUNTER):04d}{noise:03d}"


def read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return None


def state(pid: int) -> Optional[str]:
    """The process's state letter (R, S, Z...), None when it does not exist."""
    stat = read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[0].decode() if fields else None


def alive(pid: int) -> bool:
    """True while ``pid`` runs: it exists and is not a zombie."""
    return state(pid) not in (None, "Z", "X")


def cmdline(pid: int) -> Optional[List[str]]:
    """The argv of ``pid``."""
    raw = read(f"/proc/{pid}/cmdline")
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def environ(pid: int) -> Dict[str, str]:
    """The environment ``pid`` started with."""
    raw = read(f"/proc/{pid}/environ") or b""
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


def pids() -> List[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def with_marker(mark: str) -> List[int]:
    """Live processes whose command line holds ``mark`` (not wrangle's own:
    a shim names its run directory, not the agent's argv)."""
    found = []
    for pid in pids():
        argv = cmdline(pid)
        if argv and any(mark in arg for arg in argv) and not argv[0].endswith("wrangle") and alive(pid):
            found.append(pid)
    return found


def of_home(home: str) -> List[int]:
    """Every live process of a wrangle home: its daemon, shims, agents and
    their descendants (``WRANGLE_STATUS_FILE`` is in the home)."""
    needles = (f"WRANGLE_HOME={home}", f"WRANGLE_STATUS_FILE={home}/")
    shim = f"{home}/runs/"
    me = os.getpid()
    found = []
    for pid in pids():
        if pid == me or not alive(pid):
            continue
        argv = cmdline(pid) or []
        if "__shim" in argv and any(arg.startswith(shim) for arg in argv):
            found.append(pid)
            continue
        raw = read(f"/proc/{pid}/environ") or b""
        if any(needle.encode() in raw for needle in needles):
            found.append(pid)
    return found


def wait_until(what: str, condition: Callable[[], bool], timeout: float = SOON) -> None:
    """Waits until ``condition()`` holds; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.01)


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def exited_entirely(pid: int) -> bool:
    """True once ``pid`` and all its threads have exited (a zombie at
    most): a killed daemon's socket and lock are released then."""
    if state(pid) is None:
        return True
    try:
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        threads = 0
    return not alive(pid) and threads <= 1
