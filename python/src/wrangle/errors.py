"""Exceptions: the daemon's errors with its code and message, and the few
the client raises itself.

Every error answer of the daemon is ``{"error": {"code": ..., "message":
...}}``; its code picks the class (``not_found`` -> :class:`NotFound`), and
``str(error)`` is the daemon's message, written for people.
"""

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Type

if TYPE_CHECKING:
    from ._types import Agent, UpResult


class DaemonError(Exception):
    """Base of every error of this client: the daemon refused a request,
    could not do it, or could not be reached."""

    code: str = "internal"
    """The daemon's error code (``crates/wire/src/error.rs``: ``not_found``,
    ``invalid_argument``...), or the client's own for errors it found itself."""

    def __init__(self, message: str, *, code: Optional[str] = None, status: Optional[int] = None):
        super().__init__(message)
        self.message = message
        """What went wrong and, where it helps, what to do."""
        if code is not None:
            self.code = code
        self.status = status
        """The HTTP status of the answer, when there was one."""
        self.items: List[Dict[str, Any]] = []
        """Of a batch refused, each bad item: ``index``, ``name``, ``code``, ``message``."""

    def __str__(self) -> str:
        return self.message


class InvalidArgument(DaemonError):
    """The request is malformed or a value is invalid (400); nothing changed."""

    code = "invalid_argument"


class NotFound(DaemonError):
    """No agent (or other object) by that reference (404)."""

    code = "not_found"


class Ambiguous(DaemonError):
    """The reference matches more than one agent (409)."""

    code = "ambiguous"


class AlreadyExists(DaemonError):
    """The name is taken (409)."""

    code = "already_exists"


class FailedPrecondition(DaemonError):
    """The agent is in a state that does not allow the request (409)."""

    code = "failed_precondition"


class Internal(DaemonError):
    """The daemon could not do it: disk, store, OS (500)."""

    code = "internal"


class Unavailable(DaemonError):
    """The daemon is shutting down, or has no room for another stream (503)."""

    code = "unavailable"


class Unauthenticated(DaemonError):
    """The request carries no credentials, or wrong ones (401)."""

    code = "unauthenticated"


class PermissionDenied(DaemonError):
    """The daemon runs as another user and takes no requests of this one
    (403): each user runs a daemon of their own."""

    code = "permission_denied"


class InsufficientStorage(DaemonError):
    """The disk of the daemon's home is full (507): the change was not
    recorded and nothing was changed; reads still work, and the same call
    works again once space is freed."""

    code = "insufficient_storage"


class MethodNotAllowed(DaemonError):
    """The route exists, but not with this HTTP method (405)."""

    code = "method_not_allowed"


class PayloadTooLarge(DaemonError):
    """The request's body is over the daemon's limit for its route (413):
    2 MiB for one agent, 64 MiB for a batch."""

    code = "payload_too_large"


class DaemonUnreachable(Unavailable):
    """No daemon answers on the socket and none could be started (no
    ``wrangle`` executable, or it failed: the message says why)."""


class StartFailed(DaemonError):
    """The agent was created but its exec failed: ``agent`` is ``failed``
    and ``reason`` is the OS's word for it, e.g. ``No such file or
    directory: claud``. ``errno`` is its number where it is a known one."""

    code = "spawn_error"

    def __init__(self, agent: "Agent", reason: str, errno: Optional[int]):
        argv0 = agent.command[0] if agent.command else ""
        super().__init__(f"cannot start {argv0!r}: {reason}")
        self.agent = agent
        """The agent, failed."""
        self.reason = reason
        """The OS error, as the daemon reported it."""
        self.errno = errno
        """Its errno (``errno.ENOENT``...), or None when the reason names none."""


class WaitTimeout(DaemonError, TimeoutError):
    """An agent did not end within the time given to ``wait``."""

    code = "timeout"


class UpFailed(DaemonError):
    """``up`` started or kept some agents but failed for others; ``results``
    holds what it did, the message what went wrong."""

    code = "up_failed"

    def __init__(self, message: str, results: "List[UpResult]"):
        super().__init__(message)
        self.results = results


ERRORS: Dict[str, Type[DaemonError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        Ambiguous,
        AlreadyExists,
        FailedPrecondition,
        Internal,
        Unavailable,
        Unauthenticated,
        PermissionDenied,
        InsufficientStorage,
        MethodNotAllowed,
        PayloadTooLarge,
    )
}
"""The exception of each code the daemon sends."""


def from_answer(status: int, body: bytes) -> DaemonError:
    """The exception an error answer stands for: the daemon's own code and
    message when the body is wrangle's error JSON, else the status and the
    start of the body."""
    import json

    try:
        detail = json.loads(body)["error"]
        code, message = detail["code"], detail["message"]
        if isinstance(code, str) and isinstance(message, str):
            error = ERRORS.get(code, DaemonError)(message, code=code, status=status)
            items = detail.get("items")
            if isinstance(items, list):
                error.items = [item for item in items if isinstance(item, dict)]
            return error
    except (ValueError, KeyError, TypeError):
        pass
    text = body.decode("utf-8", "replace").strip()[:300]
    message = f"the daemon answered {status}" + (f": {text}" if text else "")
    cls: Type[DaemonError] = DaemonError
    if status == 404:
        cls = NotFound
    elif status == 400:
        cls = InvalidArgument
    return cls(message, status=status)
