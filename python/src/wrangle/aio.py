"""``AsyncClient``: the same API as ``Client``, for asyncio.

Every method of ``Client`` is a coroutine here, and those that return an
iterator (``logs``, ``log_lines``, ``events``) return an async iterator.
The requests and what their answers mean are shared with ``Client``
(``_api``, ``_events``), so the two behave alike.
"""

import asyncio
import os
import time
from typing import (
    Any,
    AsyncGenerator,
    AsyncIterator,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
)

from . import _api, _home, coordinator
from ._events import OPENED, RECONNECT_FIRST, RECONNECT_MAX, Cursor, Opened, Reconnect
from ._http import AsyncHttp, Call, Daemon, Lost, listening
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
from .client import _alive, _cli_error, _json
from .errors import DaemonUnreachable, FailedPrecondition, InvalidArgument, NotFound, UpFailed, WaitTimeout

PathLike = Union[str, "os.PathLike[str]"]


class AsyncClient:
    """A connection to the wrangle daemon of one home, for asyncio: see
    :class:`wrangle.Client`, whose methods this has as coroutines. Close it
    with ``await client.aclose()`` or use ``async with``."""

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
        self._http = AsyncHttp(self._daemon)

    @property
    def home(self) -> str:
        """The wrangle home (absolute)."""
        return self._daemon.home

    @property
    def socket(self) -> str:
        """The daemon's socket."""
        return self._daemon.socket

    async def aclose(self) -> None:
        """Closes the connections to the daemon (the daemon and agents go on)."""
        await self._http.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"wrangle.AsyncClient(home={self.home!r})"

    async def daemon(self) -> DaemonInfo:
        """See :meth:`Client.daemon`."""
        return _api.read(DaemonInfo, await self._http.json(Call("GET", "/v1/daemon")))

    async def openapi(self) -> Dict[str, Any]:
        """See :meth:`Client.openapi`."""
        document: Dict[str, Any] = await self._http.json(Call("GET", "/openapi.json"))
        return document

    async def run(
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
        """See :meth:`Client.run`."""
        call = _api.create(
            command, name=name, env=env, cwd=cwd, labels=labels, inherit_env=inherit_env, options=options
        )
        value = await self._http.json(call)
        return _api.started(value) if check else _api.agent_from(value)

    async def ps(
        self,
        all: bool = False,
        *,
        state: _api.StateFilter = None,
        group: Optional[str] = None,
        label: _api.LabelFilter = None,
        limit: Optional[int] = None,
    ) -> List[Agent]:
        """See :meth:`Client.ps`."""
        return _api.read_list(Agent, await self._http.json(_api.listing(all, state, group, label, limit)))

    async def inspect(self, agent: str) -> Agent:
        """See :meth:`Client.inspect`."""
        return _api.agent_from(await self._http.json(Call("GET", _api.agent_path(agent))))

    async def runs(self, agent: str) -> List[Run]:
        """See :meth:`Client.runs`."""
        return _api.read_list(Run, await self._http.json(Call("GET", _api.agent_path(agent, "/runs"))))

    async def log_lines(
        self,
        agent: str,
        *,
        follow: bool = False,
        stream: Union[None, str, LogStream] = None,
        tail: Optional[int] = None,
        run: Optional[int] = None,
        since: _api.TimeBound = None,
        until: _api.TimeBound = None,
    ) -> AsyncIterator[LogLine]:
        """See :meth:`Client.log_lines`."""
        call = _api.logs(agent, follow, stream, tail, run, since, until)
        async with self._http.lines(call) as (_, lines):
            try:
                async for line in lines:
                    if line.strip():
                        yield _api.read(LogLine, _json(line))
            except Lost as error:
                raise DaemonUnreachable(str(error)) from error

    async def logs(
        self,
        agent: str,
        *,
        follow: bool = False,
        stream: Union[None, str, LogStream] = None,
        tail: Optional[int] = None,
        run: Optional[int] = None,
        since: _api.TimeBound = None,
        until: _api.TimeBound = None,
    ) -> AsyncIterator[str]:
        """See :meth:`Client.logs`."""
        async for line in self.log_lines(
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
    ) -> "AsyncEventStream":
        """See :meth:`Client.events`. The stream opens with ``async with
        client.events() as events:``, which pins its start; iterated
        without it, it opens at the first ``async for``."""
        return AsyncEventStream(self._follow(Cursor(since, agent, group, type, follow), restart=False))

    async def _follow(
        self, cursor: Cursor, restart: bool, keepalives: bool = False
    ) -> AsyncGenerator[Union[Event, Gap, None, Opened], None]:
        """See :meth:`Client._follow`."""
        pause = RECONNECT_FIRST
        autostart: Optional[bool] = None
        opened = False
        while True:
            try:
                async with self._http.lines(cursor.call(), autostart=autostart) as (response, lines):
                    cursor.opened(response.headers)
                    pause = RECONNECT_FIRST
                    if not opened:
                        opened = True
                        yield OPENED
                    async for line in lines:
                        item = cursor.take(line)
                        if item is not None or keepalives:
                            yield item
                if not cursor.follow:
                    return
            except Reconnect:
                continue
            except (Lost, DaemonUnreachable) as error:
                if not cursor.follow or not opened:
                    raise DaemonUnreachable(str(error)) from error
                if keepalives:
                    yield None
                await asyncio.sleep(pause)
                pause = min(pause * 2, RECONNECT_MAX)
            autostart = None if restart else False

    async def wait(self, agent: str, timeout: Optional[float] = None) -> Agent:
        """See :meth:`Client.wait`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        value, event_id = await self._http.json_with_event_id(Call("GET", _api.agent_path(agent)))
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
            async for item in stream:
                if isinstance(item, AgentExited):
                    return await self.inspect(view.id)
                if isinstance(item, AgentRemoved):
                    raise NotFound(f"agent {agent} was removed while waiting for it")
                if isinstance(item, Gap):
                    now = await self.inspect(view.id)
                    if now.state.is_ended:
                        return now
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(f"agent {view.name} has not ended after {timeout}s")
        finally:
            await stream.aclose()
        raise DaemonUnreachable(f"the daemon ended the event stream while waiting for agent {agent}")

    async def stop(
        self, *agents: str, all: bool = False, timeout: Optional[_api.Duration] = None
    ) -> List[StopResult]:
        """See :meth:`Client.stop`."""
        return _api.read_list(StopResult, await self._http.json(_api.stop(agents, all, timeout)))

    async def kill(self, agent: str, signal: Optional[_api.Signal] = None) -> Agent:
        """See :meth:`Client.kill`."""
        return _api.agent_from(await self._http.json(_api.kill(agent, signal)))

    async def restart(self, agent: str) -> Agent:
        """See :meth:`Client.restart`."""
        return _api.started(await self._http.json(Call("POST", _api.agent_path(agent, "/restart"), body={})))

    async def remove(self, agent: str, force: bool = False) -> Agent:
        """See :meth:`Client.remove`."""
        params = {"force": "true"} if force else None
        return _api.agent_from(await self._http.json(Call("DELETE", _api.agent_path(agent), params=params)))

    async def summary(self) -> Summary:
        """See :meth:`Client.summary`."""
        return _api.read(Summary, await self._http.json(Call("GET", "/v1/summary")))

    async def up(self, path: PathLike = "wrangle.toml") -> List[UpResult]:
        """See :meth:`Client.up`."""
        done = await self._cli(["up", "--file", os.path.abspath(os.fspath(path))])
        results = [
            _api.up_result(name, action, await self.inspect(name))
            for name, action in _api.up_results(done.stdout)
        ]
        if done.returncode != 0:
            message = _cli_error(done.stderr, done.returncode)
            if not results:
                raise InvalidArgument(message)
            raise UpFailed(message, list(results))
        return results

    async def down(self, path: PathLike = "wrangle.toml") -> None:
        """See :meth:`Client.down`."""
        done = await self._cli(["down", "--file", os.path.abspath(os.fspath(path))])
        if done.returncode != 0:
            raise InvalidArgument(_cli_error(done.stderr, done.returncode))

    async def stop_daemon(self, stop_agents: bool = False) -> None:
        """See :meth:`Client.stop_daemon`."""
        if not listening(self.socket):
            return
        try:
            info = await self.daemon()
        except DaemonUnreachable:
            return
        await self._http.no_content(_api.stop_daemon(stop_agents), autostart=False)
        await self._http.close()
        self._http = AsyncHttp(self._daemon)
        deadline = time.monotonic() + 60
        while _alive(info.pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def _cli(self, args: List[str]) -> Any:
        binary = _home.require_binary(self._wrangle_bin, self.home, f"`wrangle {args[0]}` must be run")
        await self.daemon()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, _home.cli, binary, self.home, args)

    # The coordinator's API (see wrangle.coordinator).

    async def spawn_agent(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[PathLike] = None,
        **options: Any,
    ) -> Agent:
        """See :meth:`Client.spawn_agent`."""
        return await self.run(command, name=name, env=env, cwd=cwd, **options)

    async def get_agent_status(self, agent: str) -> Optional[Dict[str, Any]]:
        """See :meth:`Client.get_agent_status`."""
        try:
            return coordinator.status(await self.inspect(agent))
        except NotFound:
            return None

    async def check_process_health(self, agent: str) -> bool:
        """See :meth:`Client.check_process_health`."""
        try:
            return coordinator.is_healthy(await self.inspect(agent))
        except NotFound:
            return False

    async def monitor_all_agents(self) -> Dict[str, Dict[str, Any]]:
        """See :meth:`Client.monitor_all_agents`."""
        return {agent.id: coordinator.status(agent) for agent in await self.ps(all=True)}

    async def get_process_summary(self) -> Dict[str, Any]:
        """See :meth:`Client.get_process_summary`."""
        return coordinator.process_summary(await self.ps(all=True), await self.summary())

    async def cleanup(
        self,
        agent: Optional[str] = None,
        *,
        force: bool = False,
        timeout: Optional[_api.Duration] = None,
    ) -> List[StopResult]:
        """See :meth:`Client.cleanup`."""
        if not force:
            if agent is not None:
                return await self.stop(agent, timeout=timeout)
            return await self.stop(all=True, timeout=timeout)
        targets = [agent] if agent is not None else [a.id for a in await self.ps()]
        results = []
        for target in targets:
            try:
                await self.kill(target)
                already = False
            except FailedPrecondition:
                already = True
            ended = await self.wait(target)
            results.append(
                StopResult(agent=ended, already_ended=already, outcome=ended.reason or ended.state.value)
            )
        return results

    async def kill_agent(self, agent: str, force: bool = False) -> bool:
        """See :meth:`Client.kill_agent`."""
        try:
            await self.cleanup(agent, force=force)
        except NotFound:
            return False
        return True

    async def reap_zombies(self) -> List[str]:
        """See :meth:`Client.reap_zombies`."""
        return coordinator.zombies(await self.ps())


class AsyncEventStream(AsyncIterator[Union[Event, Gap]]):
    """The events of :meth:`AsyncClient.events`: an async iterator of
    :class:`Event` (and :class:`Gap`); ``async with`` opens it (pinning its
    start) and closes it."""

    def __init__(self, source: AsyncGenerator[Union[Event, Gap, None, Opened], None]) -> None:
        self._source = source
        self._opened = False

    async def open(self) -> None:
        """Opens the stream, if it is not open yet."""
        if not self._opened:
            self._opened = True
            await self._source.__anext__()

    def __aiter__(self) -> "AsyncEventStream":
        return self

    async def __anext__(self) -> Union[Event, Gap]:
        await self.open()
        while True:
            item = await self._source.__anext__()
            if item is not None and not isinstance(item, Opened):
                return item

    async def aclose(self) -> None:
        """Closes the stream's connection."""
        await self._source.aclose()

    async def __aenter__(self) -> "AsyncEventStream":
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
