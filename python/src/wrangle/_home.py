"""Where the daemon is, and starting it when none runs, as the CLI does.

The home is ``home=`` when given, else ``$WRANGLE_HOME``, else
``$XDG_STATE_HOME/wrangle``, else ``~/.local/state/wrangle``
(``crates/cli/src/home.rs``); the socket is ``<home>/wrangle.sock``.

A daemon is started by the ``wrangle`` executable itself (``wrangle
daemon``: the CLI's own autostart, which detaches the daemon, logs to
``<home>/daemon.log``, copes with two starts at once and waits until the
socket answers), found as ``wrangle_bin=``, ``$WRANGLE_BIN`` or on PATH.
"""

import os
import shutil
import subprocess
import time
from typing import Mapping, Optional, Sequence, Union

from .errors import DaemonUnreachable

PathLike = Union[str, "os.PathLike[str]"]

SOCKET = "wrangle.sock"
"""File name of the daemon's socket in the home."""

START_TIMEOUT = 60.0
"""Seconds ``wrangle daemon`` may take to start one and see it answer."""


def resolve_home(home: Optional[PathLike] = None, environ: Optional[Mapping[str, str]] = None) -> str:
    """The home to use, absolute, chosen as the CLI chooses it."""
    env = os.environ if environ is None else environ
    chosen: Optional[str] = os.fspath(home) if home is not None and os.fspath(home) else None
    if chosen is None and env.get("WRANGLE_HOME"):
        chosen = env["WRANGLE_HOME"]
    if chosen is None:
        xdg = env.get("XDG_STATE_HOME", "")
        # The XDG spec says to ignore a relative XDG_STATE_HOME.
        if xdg and os.path.isabs(xdg):
            chosen = os.path.join(xdg, "wrangle")
        elif env.get("HOME"):
            chosen = os.path.join(env["HOME"], ".local", "state", "wrangle")
    if chosen is None:
        raise DaemonUnreachable(
            "cannot choose a wrangle home: set WRANGLE_HOME, XDG_STATE_HOME or HOME, or pass home="
        )
    return os.path.abspath(chosen)


def socket_path(home: str) -> str:
    """The daemon's socket in ``home``."""
    return os.path.join(home, SOCKET)


def find_binary(explicit: Optional[PathLike] = None) -> Optional[str]:
    """The ``wrangle`` executable: ``explicit``, ``$WRANGLE_BIN``, or the
    one on PATH; None when there is none."""
    if explicit is not None:
        return os.path.abspath(os.fspath(explicit))
    from_env = os.environ.get("WRANGLE_BIN")
    if from_env:
        return os.path.abspath(from_env)
    return shutil.which("wrangle")


def require_binary(explicit: Optional[PathLike], home: str, why: str) -> str:
    """The ``wrangle`` executable, or DaemonUnreachable saying how to give one."""
    binary = find_binary(explicit)
    if binary is None:
        raise DaemonUnreachable(
            f"{why} for {home} and there is no `wrangle` executable to do it: "
            "install wrangle (see its README), put it on PATH, set WRANGLE_BIN "
            "or pass wrangle_bin="
        )
    return binary


def cli(
    binary: str, home: str, args: Sequence[str], timeout: Optional[float] = None
) -> "subprocess.CompletedProcess[str]":
    """Runs ``wrangle ARGS`` for ``home`` to its end, output captured."""
    env = dict(os.environ)
    env["WRANGLE_HOME"] = home
    try:
        return subprocess.run(
            [binary, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise DaemonUnreachable(f"cannot run {binary}: {error}") from error


START_ATTEMPTS = 5
"""How many times ``wrangle daemon`` is run to start a daemon at most."""


def start_daemon(binary: str, home: str, options: Sequence[str] = ()) -> None:
    """Starts a daemon for ``home`` unless one runs (``wrangle daemon
    OPTIONS``) and returns once it answers on its socket."""
    # A daemon that dies while `wrangle daemon` starts it or asks after it
    # (killed, or stopping) makes that command fail; the next try starts
    # a new one. What fails every time is said as it was.
    for attempt in range(1, START_ATTEMPTS + 1):
        done = cli(binary, home, ["daemon", *options], timeout=START_TIMEOUT)
        if done.returncode == 0:
            return
        said = done.stderr.strip().removeprefix("wrangle: ")
        if attempt == START_ATTEMPTS:
            raise DaemonUnreachable(
                f"cannot start the daemon for {home} with {binary}: {said or f'exit status {done.returncode}'}"
            )
        time.sleep(0.05 * attempt)
