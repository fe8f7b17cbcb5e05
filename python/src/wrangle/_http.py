"""HTTP/1.1 to the daemon over its Unix socket (httpx's ``uds`` transport),
sync and async, with the CLI's way of coping with a daemon that is not
there (``crates/cli/src/client.rs``).

A request that could not be sent because nothing listens is sent again,
to a daemon started for it (unless the client was made without
autostart); so is a GET whose connection broke, since a GET changes
nothing. Other requests whose connection broke are not sent twice: the
daemon may have done them. No request has a timeout: a stop or a wait may
rightly take minutes.
"""

import asyncio
import contextlib
import errno
import json
import socket
import time
from typing import Any, AsyncIterator, Dict, Iterator, NamedTuple, Optional, Sequence, Tuple

import httpx

from . import _home
from .errors import DaemonError, DaemonUnreachable, from_answer

ATTEMPTS = 3
"""How many times a request is sent at most when the daemon goes away under it."""

KEYED_ATTEMPTS = 16
"""How many times a create with an idempotency key is sent at most: its
pauses add up to a few seconds, time for a killed daemon's successor to
take over."""

RETRY_PAUSE = 0.02
"""Pause before sending a request again, in seconds, times the attempt's number."""

NO_DAEMON = frozenset({errno.ENOENT, errno.ECONNREFUSED, errno.ECONNRESET})
"""Errors of connect(2) that mean nothing listens: no socket file, a stale
one, or one whose daemon is closing it."""

EVENT_ID_HEADER = "wrangle-event-id"
"""Header of the id of the last event an answer reflects."""


class Call(NamedTuple):
    """One request: method, path, query and JSON body."""

    method: str
    path: str
    params: Optional[Dict[str, str]] = None
    body: Any = None
    accept: Optional[str] = None
    idempotency_key: Optional[str] = None
    """A create's key: sent again after a lost answer, it makes nothing
    new, so such a call is retried like a GET."""


class Lost(Exception):
    """The connection broke before the whole answer came."""


def _errno_of(error: BaseException) -> Optional[int]:
    """The OS error behind an httpx error, if any."""
    seen: Optional[BaseException] = error
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return None


def listening(path: str) -> bool:
    """True when something accepts connections on the socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


class Daemon:
    """Where a client's daemon is and how to start one."""

    def __init__(
        self,
        home: str,
        binary: Optional[str],
        autostart: bool,
        options: Sequence[str],
    ) -> None:
        self.home = home
        self.socket = _home.socket_path(home)
        self.binary = binary
        self.autostart = autostart
        self.options = list(options)

    def start(self) -> None:
        """Starts a daemon unless one runs; DaemonUnreachable if it cannot."""
        binary = _home.require_binary(self.binary, self.home, "no daemon is running")
        _home.start_daemon(binary, self.home, self.options)

    def unreachable(self, error: BaseException) -> DaemonUnreachable:
        """The error for a socket nobody answers on."""
        return DaemonUnreachable(f"cannot connect to the daemon at {self.socket}: {error}")


BASE = "http://localhost"
"""Requests go to this URL's host: a Unix socket has no host name, and
HTTP/1.1 wants one."""


def _request(call: Call) -> httpx.Request:
    headers: Dict[str, str] = {}
    content = None
    if call.body is not None:
        content = json.dumps(call.body, separators=(",", ":")).encode()
        headers["content-type"] = "application/json"
    if call.accept is not None:
        headers["accept"] = call.accept
    if call.idempotency_key is not None:
        headers["idempotency-key"] = call.idempotency_key
    return httpx.Request(call.method, BASE + call.path, params=call.params, content=content, headers=headers)


def _classify(error: Exception, call: Call, daemon: Daemon) -> "Tuple[str, DaemonError]":
    """What a failed attempt means: ``no-daemon`` (not sent), ``lost``
    (sent, the answer cut short) or ``fatal``; and the error to raise."""
    if isinstance(error, httpx.ConnectError) or isinstance(error, httpx.ConnectTimeout):
        if _errno_of(error) in NO_DAEMON:
            return "no-daemon", daemon.unreachable(error)
        return "fatal", daemon.unreachable(error)
    return "lost", DaemonUnreachable(
        f"lost the connection to the daemon during {call.method} {call.path}: {error}"
    )


def decode_json(response: httpx.Response, call: Call) -> Any:
    """The JSON of a successful answer."""
    try:
        return json.loads(response.content)
    except ValueError as error:
        raise DaemonError(f"cannot read the daemon's answer to {call.method} {call.path}: {error}") from None


class SyncHttp:
    """Requests to one daemon from threads, over a pool of keep-alive connections."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        # The transport alone (its pool of keep-alive connections): what
        # httpx.Client adds (redirects, cookies, auth) has no use here and
        # would double the client's CPU per request.
        self.transport = httpx.HTTPTransport(uds=daemon.socket)

    def close(self) -> None:
        """Closes the connections."""
        self.transport.close()

    def _send(self, call: Call, stream: bool, autostart: Optional[bool]) -> httpx.Response:
        restart = self.daemon.autostart if autostart is None else autostart
        attempt = 1
        while True:
            try:
                request = _request(call)
                response = self.transport.handle_request(request)
                response.request = request
                if not stream:
                    try:
                        response.read()
                    finally:
                        response.close()
            except (httpx.TransportError, httpx.StreamError) as error:
                kind, failure = _classify(error, call, self.daemon)
                retried = call.method == "GET" or call.idempotency_key is not None
                again = kind == "no-daemon" or (kind == "lost" and retried)
                attempts = ATTEMPTS if call.idempotency_key is None else KEYED_ATTEMPTS
                if not (restart and again) or attempt >= attempts:
                    raise failure from error
                if kind == "lost":
                    time.sleep(RETRY_PAUSE * attempt)
                attempt += 1
                if not listening(self.daemon.socket):
                    self.daemon.start()
                continue
            if response.status_code >= 400:
                try:
                    body = response.read() if stream else response.content
                except httpx.HTTPError as error:
                    raise _classify(error, call, self.daemon)[1] from error
                finally:
                    response.close()
                raise from_answer(response.status_code, body)
            return response

    def json(self, call: Call, autostart: Optional[bool] = None) -> Any:
        """The JSON answer to ``call``."""
        return decode_json(self._send(call, False, autostart), call)

    def json_with_event_id(self, call: Call) -> "Tuple[Any, int]":
        """The JSON answer and the id of the last event it reflects."""
        response = self._send(call, False, None)
        return decode_json(response, call), _event_id(response, call)

    def no_content(self, call: Call, autostart: Optional[bool] = None) -> None:
        """Sends ``call``; its success is all there is to know."""
        self._send(call, False, autostart)

    @contextlib.contextmanager
    def lines(
        self, call: Call, autostart: Optional[bool] = None
    ) -> Iterator[Tuple[httpx.Response, Iterator[bytes]]]:
        """The answer to ``call`` and its body's lines as they arrive; a
        broken connection raises :class:`Lost` from the lines."""
        response = self._send(call, True, autostart)
        try:
            yield response, _split_lines(response.iter_raw(), call)
        finally:
            response.close()


class AsyncHttp:
    """Requests to one daemon from asyncio, over a pool of keep-alive connections."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.transport = httpx.AsyncHTTPTransport(uds=daemon.socket)

    async def close(self) -> None:
        """Closes the connections."""
        await self.transport.aclose()

    async def _send(self, call: Call, stream: bool, autostart: Optional[bool]) -> httpx.Response:
        restart = self.daemon.autostart if autostart is None else autostart
        attempt = 1
        while True:
            try:
                request = _request(call)
                response = await self.transport.handle_async_request(request)
                response.request = request
                if not stream:
                    try:
                        await response.aread()
                    finally:
                        await response.aclose()
            except (httpx.TransportError, httpx.StreamError) as error:
                kind, failure = _classify(error, call, self.daemon)
                retried = call.method == "GET" or call.idempotency_key is not None
                again = kind == "no-daemon" or (kind == "lost" and retried)
                attempts = ATTEMPTS if call.idempotency_key is None else KEYED_ATTEMPTS
                if not (restart and again) or attempt >= attempts:
                    raise failure from error
                if kind == "lost":
                    await asyncio.sleep(RETRY_PAUSE * attempt)
                attempt += 1
                if not listening(self.daemon.socket):
                    await asyncio.get_running_loop().run_in_executor(None, self.daemon.start)
                continue
            if response.status_code >= 400:
                try:
                    body = await response.aread()
                except httpx.HTTPError as error:
                    raise _classify(error, call, self.daemon)[1] from error
                finally:
                    await response.aclose()
                raise from_answer(response.status_code, body)
            return response

    async def json(self, call: Call, autostart: Optional[bool] = None) -> Any:
        """The JSON answer to ``call``."""
        return decode_json(await self._send(call, False, autostart), call)

    async def json_with_event_id(self, call: Call) -> "Tuple[Any, int]":
        """The JSON answer and the id of the last event it reflects."""
        response = await self._send(call, False, None)
        return decode_json(response, call), _event_id(response, call)

    async def no_content(self, call: Call, autostart: Optional[bool] = None) -> None:
        """Sends ``call``; its success is all there is to know."""
        await self._send(call, False, autostart)

    @contextlib.asynccontextmanager
    async def lines(
        self, call: Call, autostart: Optional[bool] = None
    ) -> AsyncIterator[Tuple[httpx.Response, AsyncIterator[bytes]]]:
        """The answer to ``call`` and its body's lines as they arrive; a
        broken connection raises :class:`Lost` from the lines."""
        response = await self._send(call, True, autostart)
        try:
            yield response, _split_lines_async(response.aiter_raw(), call)
        finally:
            await response.aclose()


def _event_id(response: httpx.Response, call: Call) -> int:
    value = response.headers.get(EVENT_ID_HEADER)
    try:
        return int(value or "")
    except (TypeError, ValueError):
        raise DaemonError(
            f"the daemon's answer to {call.method} {call.path} has no event id: is it an older wrangle?"
        ) from None


def _split_lines(chunks: Iterator[bytes], call: Call) -> Iterator[bytes]:
    """Whole lines of a body, without their newline; the last one too if
    the body ends cleanly without one."""
    rest = b""
    try:
        for chunk in chunks:
            rest += chunk
            if b"\n" in rest:
                *whole, rest = rest.split(b"\n")
                yield from whole
    except httpx.HTTPError as error:
        raise Lost(f"lost the connection to the daemon during {call.method} {call.path}: {error}") from error
    if rest:
        yield rest


async def _split_lines_async(chunks: AsyncIterator[bytes], call: Call) -> AsyncIterator[bytes]:
    """As :func:`_split_lines`, for an async body."""
    rest = b""
    try:
        async for chunk in chunks:
            rest += chunk
            if b"\n" in rest:
                *whole, rest = rest.split(b"\n")
                for line in whole:
                    yield line
    except httpx.HTTPError as error:
        raise Lost(f"lost the connection to the daemon during {call.method} {call.path}: {error}") from error
    if rest:
        yield rest
