"""The durable queue event log: every ``queue.*`` event of the ACD stored, and read back.

:class:`QueueLogWriter` is a bus subscriber (a :class:`~hotline.services.cdr.BusWorker`) that
stores each queue event the contact centre publishes (``queue.enter``, ``queue.offer``,
``queue.connect``, ``queue.abandon``, ``queue.timeout``, ``queue.exit``, ``queue.callback``,
``queue.complete_caller``, ``queue.complete_agent``, ``queue.transfer``,
``queue.agent_status``, ``queue.agent_state``, and the engine's ``queue.callback_result``)
as one
:class:`~hotline.store.models.QueueEventRecord`: the time it was published, the kind in upper
case (``ENTER``…, as :class:`acd.events.EventKind`), queue, call id, agent id and the rest of
the event's data as JSON. Engine notices on the same prefix that are not log lines
(``queue.screen_pop``, ``queue.transfer_requested``, ``queue.call_finished``…) are skipped.
Rows are committed in batches: within 0.1 s of a call's session ending, else within a second.

Reading back: :func:`load_queue_events` returns :class:`acd.events.QueueEvent` objects in log
order (``time`` as wall-clock seconds; the engine's own ``SURVEY`` and ``CALLBACK_RESULT``
lines left out), filtered by interval, queue, agent or call;
:func:`stored_queue_stats` and :func:`stored_agent_stats` compute the statistics of
:mod:`acd.stats` from the stored log, so figures survive restarts and can be recomputed for
any interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import or_, select

from acd.events import EventKind, QueueEvent
from acd.stats import AgentStats, QueueStats, Thresholds, agent_stats, queue_stats
from hotline.bus import Bus, Event
from hotline.services.cdr import MAX_ATTEMPTS, BusWorker, event_time
from hotline.store.db import Database
from hotline.store.models import QueueEventRecord

log = structlog.get_logger(__name__)

PREFIX = "queue."
SURVEY = "SURVEY"  # a post-call survey score, logged by the engine next to the core's kinds
CALLBACK_RESULT = "CALLBACK_RESULT"  # a callback dialled: answered / no_answer / failed
ENGINE_KINDS = frozenset({SURVEY, CALLBACK_RESULT})
LOGGED_KINDS = frozenset(k.value for k in EventKind) | ENGINE_KINDS
SESSION_ENDS = frozenset(
    {"ABANDON", "TIMEOUT", "EXIT", "COMPLETE_CALLER", "COMPLETE_AGENT", "TRANSFER"} | ENGINE_KINDS
)
_ROW_KEYS = ("queue", "agent_id")


class QueueLogError(ValueError):
    """A stored row cannot be read back as a queue event."""


class QueueLogWriter(BusWorker):
    """Stores every queue event published on the bus, in publish order."""

    prefix = PREFIX

    def __init__(self, db: Database, bus: Bus) -> None:
        super().__init__(db, bus)
        self._pending: list[QueueEventRecord] = []
        self._attempts = 0

    async def handle(self, event: Event) -> bool:
        kind = event.kind[len(PREFIX) :].upper()
        if kind not in LOGGED_KINDS:
            return False
        data = {k: v for k, v in event.data.items() if k not in _ROW_KEYS}
        self._pending.append(
            QueueEventRecord(
                time=event_time(event),
                kind=kind,
                queue=_text(event.data.get("queue")),
                call_id=event.call_id,
                agent_id=_text(event.data.get("agent_id")),
                data=data,
            )
        )
        return kind in SESSION_ENDS

    async def write_pending(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            async with self.db.session() as session:
                session.add_all(batch)
                await session.commit()
            self._attempts = 0
        except Exception:
            self._attempts += 1
            if self._attempts >= MAX_ATTEMPTS:
                log.exception("queue_log.write_dropped", events=len(batch))
                self._attempts = 0
                return
            log.exception("queue_log.write_failed", events=len(batch), attempts=self._attempts)
            # fresh objects: the failed session may have left these attached or expired
            self._pending = [_copy(row) for row in batch] + self._pending


def _copy(row: QueueEventRecord) -> QueueEventRecord:
    return QueueEventRecord(
        time=row.time,
        kind=row.kind,
        queue=row.queue,
        call_id=row.call_id,
        agent_id=row.agent_id,
        data=dict(row.data or {}),
    )


def to_queue_event(row: QueueEventRecord) -> QueueEvent:
    """A stored row as the core's :class:`QueueEvent` (engine kinds are not core events)."""
    try:
        kind = EventKind(row.kind)
    except ValueError:
        raise QueueLogError(
            f"queue_events row {row.id}: {row.kind!r} is not a core event kind"
        ) from None
    return QueueEvent(
        row.time.timestamp(), kind, row.queue, row.call_id, row.agent_id, dict(row.data or {})
    )


async def load_rows(
    db: Database,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    queue: str | None = None,
    agent_id: str | None = None,
    call_id: str | None = None,
    kinds: frozenset[str] | None = None,
) -> list[QueueEventRecord]:
    """Stored rows in log order, ``since <= time < until``, optionally of one queue, agent,
    call, or of some kinds."""
    query = select(QueueEventRecord).order_by(QueueEventRecord.id)
    if since is not None:
        query = query.where(QueueEventRecord.time >= since)
    if until is not None:
        query = query.where(QueueEventRecord.time < until)
    if queue is not None:
        query = query.where(QueueEventRecord.queue == queue)
    if agent_id is not None:
        query = query.where(QueueEventRecord.agent_id == agent_id)
    if call_id is not None:
        query = query.where(QueueEventRecord.call_id == call_id)
    if kinds is not None:
        query = query.where(QueueEventRecord.kind.in_(sorted(kinds)))
    async with db.session() as session:
        return list(await session.scalars(query))


async def load_queue_events(db: Database, **filters: Any) -> list[QueueEvent]:
    """The stored log as :class:`QueueEvent` objects (engine kinds left out); the filters
    of :func:`load_rows`."""
    rows = await load_rows(db, **filters)
    return [to_queue_event(row) for row in rows if row.kind not in ENGINE_KINDS]


async def stored_queue_stats(
    db: Database,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    queue: str | None = None,
    thresholds: Mapping[str, Thresholds] | None = None,
) -> dict[str, QueueStats]:
    """Per-queue statistics of the calls that *entered* in ``[since, until)``.

    A call counts in the interval it entered (as :func:`acd.stats.interval_stats`): its
    whole session is read, including an answer or abandon after ``until``. Rejected calls
    (turned away at entry) count where they were turned away.
    """
    async with db.session() as session:
        entered = select(QueueEventRecord.call_id).where(
            or_(QueueEventRecord.kind == EventKind.ENTER.value, QueueEventRecord.kind == "EXIT")
        )
        if since is not None:
            entered = entered.where(QueueEventRecord.time >= since)
        if until is not None:
            entered = entered.where(QueueEventRecord.time < until)
        if queue is not None:
            entered = entered.where(QueueEventRecord.queue == queue)
        query = (
            select(QueueEventRecord)
            .where(QueueEventRecord.call_id.in_(entered.scalar_subquery()))
            .order_by(QueueEventRecord.id)
        )
        if since is not None:
            query = query.where(QueueEventRecord.time >= since)
        if queue is not None:
            query = query.where(QueueEventRecord.queue == queue)
        rows = list(await session.scalars(query))
    events = [to_queue_event(row) for row in rows if row.kind not in ENGINE_KINDS]
    if until is not None:
        # sessions that entered before `until`; a later session of the same call is dropped
        cut = until.timestamp()
        entered_at: dict[str, float] = {}
        kept = []
        for e in events:
            if e.kind is EventKind.ENTER:
                entered_at[e.call_id or ""] = e.time
            start = entered_at.get(e.call_id or "", e.time)
            if start < cut:
                kept.append(e)
        events = kept
    return queue_stats(events, thresholds)


async def stored_agent_stats(
    db: Database,
    agent_id: str | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, AgentStats]:
    """Per-agent statistics from the stored log, times counted up to ``until`` (default: the
    last event). Time in a status or state is counted from the agent's first event at or
    after ``since``: start the interval where the agent logged in (the start of a shift)."""
    events = await load_queue_events(db, since=since, until=until, agent_id=agent_id)
    return agent_stats(events, until.timestamp() if until is not None else None)


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
