"""The requests of the API and what their answers mean, with no I/O:
``Client`` and ``AsyncClient`` send these calls and read the answers with
these functions, so that the two agree by construction.
"""

import enum
import errno
import os
import signal as signals
import uuid
from datetime import datetime, timedelta
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union
from urllib.parse import quote

from . import _convert
from ._http import Call
from ._types import Agent, Event, Gap, LogStream, State, UpResult
from .errors import DaemonError, InvalidArgument, StartFailed

T = TypeVar("T")

Duration = Union[str, int, float, timedelta]
"""A duration as the daemon takes it: ``"500ms"``, ``"10s"``, ``"1h30m"``,
plain seconds (``30``, ``1.5``), or a ``timedelta``."""

Since = Union[int, str, datetime, timedelta, None]
"""Where an event stream starts: after an event id (``1234``), at a time
(a ``datetime``, or RFC 3339 text), or a while ago (``"10m"``, a
``timedelta``); None for the next event."""

TimeBound = Union[str, datetime, timedelta, None]
"""A bound of a log's capture times: a time (a ``datetime``, or RFC 3339
text), or a while ago (``"10m"``, a ``timedelta``)."""

Signal = Union[str, int, signals.Signals]
"""A signal: ``"TERM"``, ``"SIGINT"``, ``9`` or ``signal.SIGHUP``."""

NDJSON = "application/x-ndjson"

RUN_OPTIONS: Dict[str, type] = {
    "stop_signal": str,
    "stop_timeout": str,
    "memory_max": str,
    "cpu_max": str,
    "pids_max": int,
    "nofile": int,
    "log_max_size": str,
    "log_max_files": int,
    "idle_timeout": str,
    "on_hang": str,
    "adapter": str,
    "linger": str,
    "telemetry": str,
    "budget_usd": float,
    "budget_tokens": int,
    "restart": str,
    "max_restarts": int,
    "restart_window": str,
    "backoff_initial": str,
    "backoff_max": str,
    "min_uptime": str,
    "timeout": str,
    "health_cmd": str,
    "health_http": str,
    "health_tcp": str,
    "health_interval": str,
    "health_timeout": str,
    "health_retries": int,
    "group": str,
    "priority": int,
}
"""The options of a run (``RunOptions`` in the schema: the flags of
``wrangle run`` in snake_case) and the JSON type each is sent as. Text
options are kept as written: the daemon parses them, so it refuses a bad
one with the same message as the CLI's."""

_ERRNOS = {os.strerror(number): number for number in errno.errorcode}


def segment(reference: str) -> str:
    """An agent reference (id, name or id prefix) as one path segment."""
    return quote(reference, safe="-._~")


def agent_path(reference: str, tail: str = "") -> str:
    """``/v1/agents/{reference}{tail}``."""
    if not isinstance(reference, str):
        raise TypeError(f"an agent is named by its id, name or id prefix (a str), not {reference!r}")
    return f"/v1/agents/{segment(reference)}{tail}"


def duration(value: Duration) -> str:
    """A duration as the daemon's text."""
    if isinstance(value, timedelta):
        milliseconds = round(value.total_seconds() * 1000)
        return f"{milliseconds}ms"
    if isinstance(value, bool):
        raise TypeError(f"a duration is text like '10s' or a number of seconds, not {value!r}")
    return str(value)


def signal_name(value: Signal) -> str:
    """A signal as the daemon takes it: ``SIGHUP``, ``TERM``, ``9``."""
    if isinstance(value, signals.Signals):
        return value.name
    return str(value)


def option_value(name: str, value: Any) -> Any:
    """One run option as JSON: numbers and durations of text options become
    text (``timeout=30`` is ``"30"``, seconds), enums their value."""
    if isinstance(value, enum.Enum):
        value = value.value
    kind = RUN_OPTIONS.get(name)
    if kind is str:
        if isinstance(value, timedelta) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return duration(value)
        if isinstance(value, signals.Signals):
            return value.name
    return value


def command_list(command: Union[str, Sequence[str]]) -> List[str]:
    """The argv of an agent; a plain string is refused, as the daemon never
    runs a shell line unless asked for with ``["sh", "-c", LINE]``."""
    if isinstance(command, (str, bytes)):
        example = [command] if " " not in str(command) else ["sh", "-c", command]
        raise TypeError(f"give the command as a list of arguments, e.g. {example!r}")
    argv = [os.fspath(part) for part in command]
    for part in argv:
        if not isinstance(part, str):
            raise TypeError(f"every argument of the command must be a str, not {part!r}")
    return argv


def create(
    command: Union[str, Sequence[str]],
    *,
    name: Optional[str],
    env: Optional[Mapping[str, str]],
    cwd: Optional[Union[str, "os.PathLike[str]"]],
    labels: Optional[Mapping[str, str]],
    inherit_env: Union[bool, None, Mapping[str, str]],
    options: Mapping[str, Any],
) -> Call:
    """``POST /v1/agents``: the request ``wrangle run`` would send, with the
    caller's environment as the base and its directory as the default."""
    body: Dict[str, Any] = {"command": command_list(command)}
    if name is not None:
        body["name"] = name
    if env:
        body["env"] = {str(key): str(value) for key, value in env.items()}
    if inherit_env is True:
        body["inherit_env"] = dict(os.environ)
    elif inherit_env is False:
        body["inherit_env"] = {}
    elif inherit_env is not None:
        body["inherit_env"] = dict(inherit_env)
    body["cwd"] = os.path.abspath(os.fspath(cwd)) if cwd is not None else os.getcwd()
    if labels:
        body["labels"] = dict(labels)
    for key, value in options.items():
        if value is not None:
            body[key] = option_value(key, value)
    # A key of its own: if the daemon dies before answering, the create
    # is sent again to the next one and makes its agent once.
    return Call("POST", "/v1/agents", body=body, idempotency_key=uuid.uuid4().hex)


def started(value: Any) -> Agent:
    """The agent a create (or restart) answered with; StartFailed when its
    exec failed, with the OS's reason."""
    agent = agent_from(value)
    if agent.never_started:
        reason = agent.reason or "the exec failed"
        return_errno = _ERRNOS.get(reason.split(": ", 1)[0])
        raise StartFailed(agent, reason, return_errno)
    return agent


def agent_from(value: Any) -> Agent:
    """An agent from the daemon's JSON."""
    return read(Agent, value)


def read(cls: Type[T], value: Any) -> T:
    """``value`` as a ``cls``; a DaemonError when the daemon's JSON does not fit."""
    try:
        return _convert.decode(cls, value)
    except _convert.DecodeError as error:
        raise DaemonError(f"cannot read the daemon's answer: {error}") from None


def read_list(cls: Type[T], value: Any) -> List[T]:
    """``value`` as a list of ``cls``."""
    try:
        return _convert.decode_list(cls, value)
    except _convert.DecodeError as error:
        raise DaemonError(f"cannot read the daemon's answer: {error}") from None


StateFilter = Union[None, str, State, Iterable[Union[str, State]]]
"""States to list: ``"running"``, ``State.FAILED``, ``["running", "backoff"]``."""

LabelFilter = Union[None, str, Mapping[str, Optional[str]]]
"""Labels to list: ``"team=py"``, or ``{"team": "py", "urgent": None}`` (any value)."""


def listing(
    all: bool,
    state: StateFilter = None,
    group: Optional[str] = None,
    label: LabelFilter = None,
    limit: Optional[int] = None,
) -> Call:
    """``GET /v1/agents``, filtered by the daemon."""
    params: Dict[str, str] = {}
    if all:
        params["all"] = "true"
    if state is not None:
        states = [state] if isinstance(state, (str, State)) else list(state)
        params["state"] = ",".join(s.value if isinstance(s, State) else str(s) for s in states)
    if group is not None:
        params["group"] = group
    if label is not None:
        if isinstance(label, str):
            params["label"] = label
        else:
            params["label"] = ",".join(
                key if value is None else f"{key}={value}" for key, value in label.items()
            )
    if limit is not None:
        params["limit"] = str(limit)
    return Call("GET", "/v1/agents", params=params or None)


def stop(agents: Iterable[str], all: bool, timeout: Optional[Duration]) -> Call:
    """``POST /v1/stop``: the staged stop, answered once every agent ended."""
    body: Dict[str, Any] = {"agents": list(agents), "all": bool(all)}
    for agent in body["agents"]:
        if not isinstance(agent, str):
            raise TypeError(f"an agent is named by its id, name or id prefix (a str), not {agent!r}")
    if not body["agents"] and not all:
        raise InvalidArgument("name the agents to stop, or pass all=True")
    if timeout is not None:
        body["timeout"] = duration(timeout)
    return Call("POST", "/v1/stop", body=body)


def kill(agent: str, signal: Optional[Signal]) -> Call:
    """``POST /v1/agents/{agent}/kill``: SIGKILL to the tree by default."""
    body = {} if signal is None else {"signal": signal_name(signal)}
    return Call("POST", agent_path(agent, "/kill"), body=body)


def logs(
    agent: str,
    follow: bool,
    stream: Union[None, str, LogStream],
    tail: Optional[int],
    run: Optional[int],
    since: TimeBound = None,
    until: TimeBound = None,
) -> Call:
    """``GET /v1/agents/{agent}/logs`` as JSON lines."""
    params: Dict[str, str] = {}
    if follow:
        params["follow"] = "true"
    if stream is not None:
        params["stream"] = stream.value if isinstance(stream, LogStream) else str(stream)
    if tail is not None:
        params["tail"] = str(tail)
    if run is not None:
        params["run"] = str(run)
    for name, bound in (("since", since), ("until", until)):
        if bound is not None:
            if isinstance(bound, (bool, int)):
                raise TypeError(f"{name} is a time or a duration, not {bound!r}")
            params[name] = str(since_text(bound))
    return Call("GET", agent_path(agent, "/logs"), params=params or None, accept=NDJSON)


def since_text(since: Since) -> Optional[str]:
    """``since`` as the daemon's query takes it."""
    if since is None:
        return None
    if isinstance(since, bool):
        raise TypeError(f"since is an event id, a time or a duration, not {since!r}")
    if isinstance(since, int):
        return str(since)
    if isinstance(since, datetime):
        if since.tzinfo is None:
            since = since.astimezone()
        return since.isoformat()
    if isinstance(since, timedelta):
        return duration(since)
    return str(since)


def type_filter(kind: Union[None, str, Iterable[str]]) -> Optional[str]:
    """The ``type`` filter: prefixes of event types, comma-separated."""
    if kind is None:
        return None
    if isinstance(kind, str):
        return kind
    return ",".join(kind)


def stop_daemon(stop_agents: bool) -> Call:
    """``POST /v1/daemon/stop``."""
    return Call("POST", "/v1/daemon/stop", body={"stop_agents": bool(stop_agents)})


def up_results(stdout: str) -> List[Tuple[str, str]]:
    """(name, action) of each line ``wrangle up`` printed: ``NAME: created
    (ID)``, ``NAME: unchanged (STATE)``, ``NAME: recreated (ID), as ...``."""
    results = []
    for line in stdout.splitlines():
        name, _, rest = line.partition(": ")
        action = rest.split(" ", 1)[0]
        if name and action in ("created", "recreated", "unchanged"):
            results.append((name, action))
    return results


def up_result(name: str, action: str, agent: Agent) -> UpResult:
    """One agent's line of ``up``."""
    return UpResult(name=name, action=action, agent=agent)


def stream_item(line: bytes) -> Union[Event, Gap, Dict[str, Any], None]:
    """One line of the event stream: an event, a ``gap`` notice, another
    notice as its JSON (``lagged``), or None for a keep-alive."""
    import json

    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except ValueError as error:
        raise DaemonError(f"the daemon sent an event this client cannot read: {error}") from None
    if isinstance(value, dict) and "id" not in value:
        if value.get("type") == "gap":
            return read(Gap, value)
        return value
    try:
        return _convert.decode_event(value)
    except _convert.DecodeError as error:
        raise DaemonError(f"the daemon sent an event this client cannot read: {error}") from None
