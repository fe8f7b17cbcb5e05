"""Following the event stream as a client should (``crates/cli/src/follow.rs``):
JSON lines read as they come, and after a lost connection (the daemon was
killed or restarted), an end of the stream (it shut down) or a ``lagged``
notice, the stream opened again after the last event seen, so nothing is
missed and nothing comes twice however often that happens.

``Cursor`` is the state, with no I/O; ``Client`` and ``AsyncClient`` run
the loop around it.
"""

from typing import Any, Dict, Iterable, Optional, Union

from . import _api
from ._http import EVENT_ID_HEADER, Call
from ._types import Event, Gap

RECONNECT_FIRST = 0.05
"""First pause before the stream is opened again, in seconds; it doubles."""

RECONNECT_MAX = 2.0
"""Longest pause between two attempts at opening the stream."""


class Opened:
    """What the follow loop yields once, when the stream is first open: its
    starting point is pinned from then on."""


OPENED = Opened()


class Reconnect(Exception):
    """The daemon cut the stream off (``lagged``): open it again."""


class Cursor:
    """Where a followed stream is: its filters and the last event seen."""

    def __init__(
        self,
        since: _api.Since,
        agent: Optional[str] = None,
        group: Optional[str] = None,
        kind: Union[None, str, Iterable[str]] = None,
        follow: bool = True,
        heartbeat: Optional[float] = None,
    ) -> None:
        self.since = _api.since_text(since)
        self.seen_any = False
        self.follow = follow
        self.params: Dict[str, str] = {}
        if agent is not None:
            self.params["agent"] = agent
        if group is not None:
            self.params["group"] = group
        types = _api.type_filter(kind)
        if types is not None:
            self.params["type"] = types
        if not follow:
            self.params["follow"] = "false"
        if heartbeat is not None:
            self.params["heartbeat"] = str(heartbeat)

    def call(self) -> Call:
        """The request that opens the stream after the last event seen."""
        params = dict(self.params)
        if self.since is not None:
            params["since"] = self.since
        return Call("GET", "/v1/events", params=params, accept=_api.NDJSON)

    def opened(self, headers: Any) -> None:
        """Notes where a newly opened stream starts: resuming from there
        misses nothing even if no event comes before the next reconnect."""
        after = headers.get(EVENT_ID_HEADER)
        if not self.seen_any and after is not None:
            self.since = str(after)

    def take(self, line: bytes) -> Union[Event, Gap, None]:
        """What one line of the stream is: an event or a ``gap`` notice, or
        None for a keep-alive; Reconnect for a ``lagged`` notice."""
        item = _api.stream_item(line)
        if isinstance(item, Event):
            self.since = str(item.id)
            self.seen_any = True
            return item
        if isinstance(item, Gap):
            # The next event is `oldest` or later: resume before it.
            self.since = str(max(item.oldest - 1, 0))
            self.seen_any = True
            return item
        if isinstance(item, dict):
            if item.get("type") == "lagged":
                last = item.get("last_id")
                if isinstance(last, int):
                    self.since = str(last)
                    self.seen_any = True
                raise Reconnect()
            return None
        return None
