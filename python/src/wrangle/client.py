"""``Client``: wrangle's API from Python, blocking (see ``aio`` for asyncio)."""

import os
import time
from typing import Any, Dict, Generator, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

from . import _api, _home, coordinator
from ._events import OPENED, RECONNECT_FIRST, RECONNECT_MAX, Cursor, Opened, Reconnect
from ._http import Call, Daemon, Lost, SyncHttp
from ._types import (
    Agent,
    AgentExited,
    AgentRemoved,
    DaemonInfo,
    Event,
    Gap,
    LogLine,
    LogStream,
    Run,
    StopResult,
    Summary,
    UpResult,
)
from .errors import DaemonUnreachable, FailedPrecondition, InvalidArgument, NotFound, UpFailed, WaitTimeout

PathLike = Union[str, "os.PathLike[str]"]


class Client:
    """A connection to the wrangle daemon of one home, over its Unix socket.

    ``home`` is found as the CLI finds it (``$WRANGLE_HOME``, else the XDG
    state directory). When no daemon runs, the first request starts one
    the way the CLI does, with the ``wrangle`` executable (``wrangle_bin``,
    ``$WRANGLE_BIN`` or PATH) and ``daemon_options`` (``["--sample-interval",
    "500ms"]``); ``autostart=False`` raises :class:`DaemonUnreachable`
    instead. Requests from several threads at once are fine. Close it (or
    use it in a ``with``) to close its connections.
    """

    def __init__(
        self,
        home: Optional[PathLike] = None,
        *,
        wrangle_bin: Optional[PathLike] = None,
        autostart: bool = True,
        daemon_options: Sequence[str] = (),
    ) -> None:
        self._wrangle_bin = wrangle_bin
        self._daemon = Daemon(
            _home.resolve_home(home),
            None if wrangle_bin is None else os.fspath(wrangle_bin),
            autostart,
            daemon_options,
        )
        self._http = SyncHttp(self._daemon)

    @property
    def home(self) -> str:
        """The wrangle home (absolute)."""
        return self._daemon.home

    @property
    def socket(self) -> str:
        """The daemon's socket."""
        return self._daemon.socket

    def close(self) -> None:
        """Closes the connections to the daemon (the daemon and agents go on)."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"wrangle.Client(home={self.home!r})"

    # The typed API.

    def daemon(self) -> DaemonInfo:
        """Who answers: the daemon's pid, version, home, containment."""
        return _api.read(DaemonInfo, self._http.json(Call("GET", "/v1/daemon")))

    def openapi(self) -> Dict[str, Any]:
        """The daemon's OpenAPI document (``/openapi.json``)."""
        document: Dict[str, Any] = self._http.json(Call("GET", "/openapi.json"))
        return document

    def run(
        self,
        command: Sequence[str],
        *,
        name: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[PathLike] = None,
        labels: Optional[Mapping[str, str]] = None,
        inherit_env: Union[bool, None, Mapping[str, str]] = True,
        check: bool = True,
        **options: Any,
    ) -> Agent:
        """Creates an agent running ``command`` (an argv) and starts it, as
        ``wrangle run`` does; returns once its exec is confirmed.

        ``env`` is set on top of the base environment: the caller's own
        (``inherit_env=True``), none (``False``), the daemon's (``None``)
        or the mapping given. ``cwd`` defaults to the current directory.
        ``options`` are those of ``wrangle run`` in snake_case
        (``restart="on-failure"``, ``timeout="30m"`` or ``timeout=1800``,
        ``memory_max="2G"``, ``health_cmd=...``, ``group=...``).

        Raises :class:`StartFailed` with the OS's reason when the exec
        failed (``check=False`` returns the failed agent instead),
        :class:`InvalidArgument` for a bad option, :class:`AlreadyExists`
        for a name that is taken; nothing is created then.
        """
        call = _api.create(
            command, name=name, env=env, cwd=cwd, labels=labels, inherit_env=inherit_env, options=options
        )
        value = self._http.json(call)
        return _api.started(value) if check else _api.agent_from(value)

    def ps(
        self,
        all: bool = False,
        *,
        state: _api.StateFilter = None,
        group: Optional[str] = None,
        label: _api.LabelFilter = None,
        limit: Optional[int] = None,
    ) -> List[Agent]:
        """The agents that have not ended, oldest first; ``all=True`` adds
        those that have. The daemon filters by ``state`` (one or more; an
        ended state needs no ``all``), ``group``, ``label`` and takes at
        most ``limit``."""
        return _api.read_list(Agent, self._http.json(_api.listing(all, state, group, label, limit)))

    def inspect(self, agent: str) -> Agent:
        """One agent by id, name or unique id prefix."""
        return _api.agent_from(self._http.json(Call("GET", _api.agent_path(agent))))

    def runs(self, agent: str) -> List[Run]:
        """Every run of one agent, oldest first (each restart is a new run)."""
        return _api.read_list(Run, self._http.json(Call("GET", _api.agent_path(agent, "/runs"))))

    def log_lines(
        self,
        agent: str,
        *,
        follow: bool = False,
        stream: Union[None, str, LogStream] = None,
        tail: Optional[int] = None,
        run: Optional[int] = None,
        since: _api.TimeBound = None,
        until: _api.TimeBound = None,
    ) -> Iterator[LogLine]:
        """The agent's output line by line, stdout and stderr interleaved in
        the order they were captured (or only ``stream``), the last
        ``tail`` lines, of the current run (or ``run``), only those captured
        from ``since`` to ``until``; with ``follow``, new lines as they come
        until the run ends."""
        call = _api.logs(agent, follow, stream, tail, run, since, until)
        with self._http.lines(call) as (_, lines):
            try:
                for line in lines:
                    if line.strip():
                        yield _api.read(LogLine, _json(line))
            except Lost as error:
                raise DaemonUnreachable(str(error)) from error

    def logs(
        self,
        agent: str,
        *,
        follow: bool = False,
        stream: Union[None, str, LogStream] = None,
        tail: Optional[int] = None,
        run: Optional[int] = None,
        since: _api.TimeBound = None,
        until: _api.TimeBound = None,
    ) -> Iterator[str]:
        """As :meth:`log_lines`, each line's text (without its newline)."""
        for line in self.log_lines(
            agent, follow=follow, stream=stream, tail=tail, run=run, since=since, until=until
        ):
            yield line.text

    def events(
        self,
        since: _api.Since = None,
        *,
        agent: Optional[str] = None,
        group: Optional[str] = None,
        type: Union[None, str, Iterable[str]] = None,
        follow: bool = True,
    ) -> "EventStream":
        """Every change as it happens: each an :class:`Event` subclass
        (``AgentExited``, ``AgentHealth``...), in the order of their ids.

        ``since``: start after an event id, at a time or a while ago
        (``"10m"``); by default with the next event. ``agent``, ``group``
        and ``type`` (prefixes: ``"agent.exited"``, ``["agent.", "daemon."]``)
        filter. With ``follow=False`` it ends after the events recorded so
        far.

        It goes on across reconnects: when the daemon is killed, stopped or
        restarted, it waits for it to come back (starting none itself, as
        ``wrangle events`` does) and resumes after the last event it
        yielded, so none is missed and none comes twice. Events the daemon
        no longer keeps are announced by a :class:`Gap`.

        The stream is opened by this call, so its start is pinned here:
        open it, then start agents, then read their events. A bad filter
        raises :class:`InvalidArgument` here too. Close it (``with
        client.events() as events:``, or ``events.close()``) to end it early.
        """
        return EventStream(self._follow(Cursor(since, agent, group, type, follow), restart=False))

    def _follow(
        self, cursor: Cursor, restart: bool, keepalives: bool = False
    ) -> Generator[Union[Event, Gap, None, Opened], None, None]:
        """The stream of ``cursor``, across reconnects; the first attempt may
        start a daemon (and its failure is raised), the next ones only if
        ``restart``. It yields OPENED once the stream is first open, and
        with ``keepalives`` None now and then while nothing comes."""
        pause = RECONNECT_FIRST
        autostart: Optional[bool] = None
        opened = False
        while True:
            try:
                with self._http.lines(cursor.call(), autostart=autostart) as (response, lines):
                    cursor.opened(response.headers)
                    pause = RECONNECT_FIRST
                    if not opened:
                        opened = True
                        yield OPENED
                    for line in lines:
                        item = cursor.take(line)
                        if item is not None or keepalives:
                            yield item
                if not cursor.follow:
                    return
                # The daemon ended the stream: it is shutting down.
            except Reconnect:
                continue
            except (Lost, DaemonUnreachable) as error:
                if not cursor.follow or not opened:
                    raise DaemonUnreachable(str(error)) from error
                if keepalives:
                    yield None
                time.sleep(pause)
                pause = min(pause * 2, RECONNECT_MAX)
            autostart = None if restart else False

    def wait(self, agent: str, timeout: Optional[float] = None) -> Agent:
        """Waits until the agent has ended for good (a restart to come is no
        end) and returns it; across daemon restarts (a daemon that went
        away is started again, as ``wrangle wait`` does). Raises
        :class:`WaitTimeout` after ``timeout`` seconds, :class:`NotFound`
        if it is removed meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        value, event_id = self._http.json_with_event_id(Call("GET", _api.agent_path(agent)))
        view = _api.agent_from(value)
        if view.state.is_ended:
            return view
        cursor = Cursor(
            event_id,
            agent=view.id,
            kind="agent.exited,agent.removed",
            heartbeat=None if timeout is None else 0.5,
        )
        stream = self._follow(cursor, restart=True, keepalives=deadline is not None)
        try:
            for item in stream:
                if isinstance(item, AgentExited):
                    return self.inspect(view.id)
                if isinstance(item, AgentRemoved):
                    raise NotFound(f"agent {agent} was removed while waiting for it")
                if isinstance(item, Gap):
                    now = self.inspect(view.id)
                    if now.state.is_ended:
                        return now
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(f"agent {view.name} has not ended after {timeout}s")
        finally:
            stream.close()
        raise DaemonUnreachable(f"the daemon ended the event stream while waiting for agent {agent}")

    def stop(
        self, *agents: str, all: bool = False, timeout: Optional[_api.Duration] = None
    ) -> List[StopResult]:
        """The staged stop of the agents' whole trees (their stop signal,
        the grace period, again, then SIGKILL), or of all that have not
        ended; returns once each has ended, with how. ``timeout`` replaces
        each agent's grace period (``"5s"``, ``5``)."""
        return _api.read_list(StopResult, self._http.json(_api.stop(agents, all, timeout)))

    def kill(self, agent: str, signal: Optional[_api.Signal] = None) -> Agent:
        """Sends a signal: SIGKILL (the default) to the whole tree, another
        (``"HUP"``, ``signal.SIGUSR1``) to the main process only."""
        return _api.agent_from(self._http.json(_api.kill(agent, signal)))

    def restart(self, agent: str) -> Agent:
        """Stops the agent if it runs and starts a new run of it; returns once
        the exec is confirmed (StartFailed if it failed)."""
        return _api.started(self._http.json(Call("POST", _api.agent_path(agent, "/restart"), body={})))

    def remove(self, agent: str, force: bool = False) -> Agent:
        """Forgets an ended agent and deletes its logs (``wrangle rm``);
        ``force`` stops it first if it runs."""
        params = {"force": "true"} if force else None
        return _api.agent_from(self._http.json(Call("DELETE", _api.agent_path(agent), params=params)))

    def summary(self) -> Summary:
        """The fleet at a glance: counts by state and health, what the
        running trees use together, the top users."""
        return _api.read(Summary, self._http.json(Call("GET", "/v1/summary")))

    def up(self, path: PathLike = "wrangle.toml") -> List[UpResult]:
        """Starts what a ``wrangle.toml`` declares that is missing, changed
        or ended, and leaves the rest alone (``wrangle up``, run by the
        ``wrangle`` executable, so both read the file alike).

        Raises :class:`InvalidArgument` with the file, line and key of a
        mistake (then nothing started), :class:`UpFailed` when some agents
        could not be started (its ``results`` has what was done)."""
        done = self._cli(["up", "--file", os.path.abspath(os.fspath(path))])
        results = [
            _api.up_result(name, action, self.inspect(name)) for name, action in _api.up_results(done.stdout)
        ]
        if done.returncode != 0:
            message = _cli_error(done.stderr, done.returncode)
            if not results:
                raise InvalidArgument(message)
            raise UpFailed(message, list(results))
        return results

    def down(self, path: PathLike = "wrangle.toml") -> None:
        """Stops every agent a ``wrangle.toml`` declares that runs (``wrangle down``)."""
        done = self._cli(["down", "--file", os.path.abspath(os.fspath(path))])
        if done.returncode != 0:
            raise InvalidArgument(_cli_error(done.stderr, done.returncode))

    def stop_daemon(self, stop_agents: bool = False) -> None:
        """Stops the daemon and waits until it is gone; its agents keep
        running (a new daemon re-attaches them) unless ``stop_agents``."""
        try:
            info = self.daemon() if _listening(self.socket) else None
        except DaemonUnreachable:
            info = None
        if info is None:
            return
        self._http.no_content(_api.stop_daemon(stop_agents), autostart=False)
        self.close()
        self._http = SyncHttp(self._daemon)
        deadline = time.monotonic() + 60
        while _alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _cli(self, args: List[str]) -> Any:
        binary = _home.require_binary(self._wrangle_bin, self.home, f"`wrangle {args[0]}` must be run")
        # A daemon for the CLI to talk to, started as this client would.
        self.daemon()
        return _home.cli(binary, self.home, args)

    # The coordinator's API (see wrangle.coordinator).

    def spawn_agent(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[PathLike] = None,
        **options: Any,
    ) -> Agent:
        """Starts an agent and returns once its exec is confirmed; raises
        :class:`StartFailed` with the OS error if it failed. ``options`` as
        for :meth:`run`."""
        return self.run(command, name=name, env=env, cwd=cwd, **options)

    def get_agent_status(self, agent: str) -> Optional[Dict[str, Any]]:
        """The coordinator's status dict of an agent (see
        :func:`wrangle.coordinator.status`); None when no agent matches."""
        try:
            return coordinator.status(self.inspect(agent))
        except NotFound:
            return None

    def check_process_health(self, agent: str) -> bool:
        """True when the agent runs and is healthy (not a zombie, hung or
        failing its probe); False otherwise, or when no agent matches."""
        try:
            return coordinator.is_healthy(self.inspect(agent))
        except NotFound:
            return False

    def monitor_all_agents(self) -> Dict[str, Dict[str, Any]]:
        """The status dict of every agent the daemon knows, by id."""
        return {agent.id: coordinator.status(agent) for agent in self.ps(all=True)}

    def get_process_summary(self) -> Dict[str, Any]:
        """The coordinator's summary (see :func:`wrangle.coordinator.process_summary`)."""
        return coordinator.process_summary(self.ps(all=True), self.summary())

    def cleanup(
        self,
        agent: Optional[str] = None,
        *,
        force: bool = False,
        timeout: Optional[_api.Duration] = None,
    ) -> List[StopResult]:
        """Stops one agent, or all that have not ended, with their whole
        trees, and returns once they have ended: the staged stop (SIGTERM,
        grace period ``timeout`` or the agent's own, SIGTERM again, SIGKILL),
        or with ``force`` SIGKILL to the tree at once."""
        if not force:
            return (
                self.stop(agent, timeout=timeout)
                if agent is not None
                else self.stop(all=True, timeout=timeout)
            )
        targets = [agent] if agent is not None else [a.id for a in self.ps()]
        results = []
        for target in targets:
            try:
                self.kill(target)
                already = False
            except FailedPrecondition:
                already = True
            ended = self.wait(target)
            results.append(
                StopResult(agent=ended, already_ended=already, outcome=ended.reason or ended.state.value)
            )
        return results

    def kill_agent(self, agent: str, force: bool = False) -> bool:
        """Ends an agent with its tree (the staged stop, or SIGKILL with
        ``force``); True once it has ended, False when no agent matches."""
        try:
            self.cleanup(agent, force=force)
        except NotFound:
            return False
        return True

    def reap_zombies(self) -> List[str]:
        """The ids of agents whose main process the daemon saw as a zombie
        (see :func:`wrangle.coordinator.zombies`): wrangle's shims reap, so
        there is nothing left to do here."""
        return coordinator.zombies(self.ps())


class EventStream(Iterator[Union[Event, Gap]]):
    """The events of :meth:`Client.events`: an iterator of :class:`Event`
    (and :class:`Gap`) whose stream is already open; close it to end it."""

    def __init__(self, source: Generator[Union[Event, Gap, None, Opened], None, None]) -> None:
        self._source = source
        next(source)

    def __iter__(self) -> "EventStream":
        return self

    def __next__(self) -> Union[Event, Gap]:
        while True:
            item = next(self._source)
            if item is not None and not isinstance(item, Opened):
                return item

    def close(self) -> None:
        """Closes the stream's connection."""
        self._source.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json(line: bytes) -> Any:
    import json

    try:
        return json.loads(line)
    except ValueError as error:
        raise DaemonUnreachable(f"the daemon sent a line this client cannot read: {error}") from None


def _cli_error(stderr: str, code: int) -> str:
    lines = [line.removeprefix("wrangle: ") for line in stderr.strip().splitlines()]
    return "\n".join(lines) if lines else f"wrangle exited with status {code}"


def _listening(path: str) -> bool:
    from ._http import listening

    return listening(path)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process; a zombie counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return False
    state = text[text.rfind(")") + 1 :].split()
    return bool(state) and state[0] not in ("Z", "X")
