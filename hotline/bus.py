"""The engine's one in-process event bus.

Every call, line, flow, queue and agent change is an :class:`Event`. Subscribers (the CDR
writer, the recording index, statistics, the MQTT bridge, the web console) register a handler
for a kind prefix (``"call."``) or for everything (``""``). Handlers run synchronously in
publish order and must be quick; a handler that needs I/O hands the event to its own task
through a queue (see :meth:`Bus.queue`). A failing handler is logged and never breaks the
publisher or the other subscribers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger(__name__)


@dataclass(slots=True, frozen=True)
class Event:
    kind: str  # dotted: "call.started", "flow.step", "recording.finished"…
    call_id: str | None
    time: float  # wall-clock seconds (time.time()) when published
    data: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Event], None]


class Bus:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._subs: list[tuple[str, Handler]] = []
        self._clock = clock

    def subscribe(self, prefix: str, handler: Handler) -> Callable[[], None]:
        entry = (prefix, handler)
        self._subs.append(entry)
        return lambda: self._subs.remove(entry) if entry in self._subs else None

    def queue(self, prefix: str = "", maxsize: int = 0) -> asyncio.Queue[Event]:
        """Subscribe an asyncio queue (for subscribers that do I/O in their own task)."""
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.subscribe(prefix, q.put_nowait)
        return q

    def publish(self, kind: str, call_id: str | None = None, **data: Any) -> Event:
        event = Event(kind, call_id, self._clock(), data)
        for prefix, handler in list(self._subs):
            if kind.startswith(prefix):
                try:
                    handler(event)
                except Exception:  # a subscriber's bug must not break the call
                    log.exception("bus.handler_failed", kind=kind, call_id=call_id)
        return event
