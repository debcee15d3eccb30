"""Bus subscribers that keep call detail records and the recording index in the store.

:class:`CdrWriter` turns each call's events into one :class:`~hotline.store.models.CallRecord`:

=======================  ==========================================  ========================
event                    data                                        sets
=======================  ==========================================  ========================
``call.started``         ``channel, line, caller, called``           the row (committed now)
``call.answered``                                                    ``answered_at``
``flow.step``            ``flow, step``                              ``flow_path`` +=
                                                                     ``"flow:step"``,
                                                                     ``last_step``
``flow.digits``          ``digits``                                  ``keys`` +=
``workorder.opened``     ``number``                                  ``work_order_number``
``workorder.submitted``  ``number``                                  ``work_order_number``
``call.ended``           ``cause, result, last_step``                ``ended_at``,
                                                                     ``hangup_cause``,
                                                                     ``result`` (committed now)
=======================  ==========================================  ========================

Changes are written incrementally: the row is committed when the call starts, so a crash
mid-call leaves a record (without ``ended_at``/``result``; :meth:`CdrWriter.close_interrupted`
marks those at the next boot), again at least once a second while it runs (at the latest
every :data:`WRITE_EVERY` calls' worth of changes), and when the call ends (within 0.1 s).
Steps and digits are appended to what the row already holds, so events arriving after
``call.ended`` (a work order submitted while hanging up) still land on the same row.

:class:`RecordingIndex` turns ``recording.finished`` (``path, seconds, channels, bytes,
recovered``, optional ``purpose``) into :class:`~hotline.store.models.Recording` rows (one per
path, updated if the file is reported again) and points the call's record at its whole-call
recording (``purpose`` absent or ``"call"``).

Both run in their own task fed by a bus queue: ``start()``, ``await flush()`` (wait until
everything published so far is stored), ``await stop()`` (flush, then detach). A failing
write is logged with the ``call_id`` and retried with the next write (up to
:data:`MAX_ATTEMPTS` times); it never stops the subscriber. Database work is wrapped in
:func:`drivers.clock.real_work`, so on the virtual-clock loop time waits for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select, update

from drivers.clock import real_work
from hotline.bus import Bus, Event
from hotline.store.db import Database
from hotline.store.models import CallRecord, Recording

log = structlog.get_logger(__name__)

WRITE_EVERY = 64
MAX_ATTEMPTS = 3
CALL_RECORDING_PURPOSES = (None, "call")
INTERRUPTED_CAUSE = "engine_restart"


def event_time(event: Event) -> datetime:
    return datetime.fromtimestamp(event.time, UTC)


class BusWorker:
    """Consumes events of one kind prefix from the bus in its own task.

    Writes are batched: an event that matters (a call starting or ending) is written within
    ``urgent_delay`` seconds, anything else within ``interval`` seconds, so a busy engine
    commits a few times a second instead of once per event.
    """

    prefix = ""
    interval = 1.0
    urgent_delay = 0.1

    def __init__(self, db: Database, bus: Bus) -> None:
        self.db = db
        self.bus = bus
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._unsubscribe: Any = None
        self._task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    def start(self) -> None:
        if self._task is not None:
            return
        # Like Bus.queue(prefix), but keeping the handle so stop() can detach.
        self._unsubscribe = self.bus.subscribe(self.prefix, self._queue.put_nowait)
        self._task = asyncio.create_task(self._run(), name=type(self).__name__)

    async def flush(self) -> None:
        """Return once every event published so far has been handled and written."""
        await self._queue.join()
        await self._write_safely(None)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._unsubscribe()
        self._queue.put_nowait(None)
        try:
            await self._task
        finally:
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    event = await self._queue.get()
            except TimeoutError:
                deadline = None
                await self._write_safely(None)
                continue
            try:
                if event is None:
                    await self._write_safely(None)
                    return
                try:
                    urgent = await self.handle(event)
                except Exception:
                    log.exception("bus_worker.event_failed", call_id=event.call_id, kind=event.kind)
                    urgent = False
                due = loop.time() + (self.urgent_delay if urgent else self.interval)
                deadline = due if deadline is None else min(deadline, due)
            finally:
                self._queue.task_done()

    async def _write_safely(self, event: Event | None) -> None:
        try:
            async with self._write_lock, real_work():  # the virtual clock waits for the db thread
                await self.write_pending()
        except Exception:
            log.exception("bus_worker.write_failed", call_id=event.call_id if event else None)

    async def handle(self, event: Event) -> bool:
        """Take in one event; True asks for an immediate write."""
        raise NotImplementedError

    async def write_pending(self) -> None:
        """Write what :meth:`handle` gathered."""


@dataclass(slots=True)
class _PendingCall:
    """What is known about a call and not yet written to its row."""

    call_id: str
    first_seen: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    keys: str = ""
    attempts: int = 0


class CdrWriter(BusWorker):
    """One call detail record per call, kept current from the call's events."""

    prefix = ""

    def __init__(self, db: Database, bus: Bus) -> None:
        super().__init__(db, bus)
        self._pending: dict[str, _PendingCall] = {}

    def _pending_for(self, event: Event) -> _PendingCall:
        assert event.call_id is not None
        pending = self._pending.get(event.call_id)
        if pending is None:
            pending = self._pending[event.call_id] = _PendingCall(event.call_id, event_time(event))
        return pending

    async def handle(self, event: Event) -> bool:
        if event.call_id is None:
            return False
        kind, data = event.kind, event.data
        if kind == "call.started":
            pending = self._pending_for(event)
            pending.fields.update(
                started_at=event_time(event),
                channel=_text(data.get("channel")),
                line=_text(data.get("line")),
                caller=_text(data.get("caller")),
                called=_text(data.get("called")),
            )
            return True
        if kind == "call.answered":
            self._pending_for(event).fields["answered_at"] = event_time(event)
        elif kind == "flow.step":
            step = f"{data.get('flow', '')}:{data.get('step', '')}"
            pending = self._pending_for(event)
            pending.steps.append(step)
            pending.fields["last_step"] = step
        elif kind == "flow.digits":
            self._pending_for(event).keys += str(data.get("digits") or "")
        elif kind in ("workorder.opened", "workorder.submitted"):
            if data.get("number"):
                self._pending_for(event).fields["work_order_number"] = str(data["number"])
        elif kind == "call.ended":
            pending = self._pending_for(event)
            pending.fields.update(
                ended_at=event_time(event),
                hangup_cause=_text(data.get("cause")),
                result=_text(data.get("result")),
            )
            if data.get("last_step"):
                pending.fields["last_step"] = str(data["last_step"])
            return True
        else:
            return False
        return len(self._pending) >= WRITE_EVERY

    async def write_pending(self) -> None:
        if not self._pending:
            return
        batch = list(self._pending.values())
        self._pending = {}
        try:
            await self._write(batch)
        except Exception:
            # Retry one call at a time, so one bad record does not hold back the others.
            for pending in batch:
                try:
                    await self._write([pending])
                except Exception:
                    self._keep_for_retry(pending)

    def _keep_for_retry(self, pending: _PendingCall) -> None:
        pending.attempts += 1
        if pending.attempts >= MAX_ATTEMPTS:
            log.exception("cdr.write_dropped", call_id=pending.call_id, attempts=pending.attempts)
            return
        log.exception("cdr.write_failed", call_id=pending.call_id, attempts=pending.attempts)
        newer = self._pending.get(pending.call_id)
        if newer is not None:  # events that arrived meanwhile come after the failed ones
            pending.fields.update(newer.fields)
            pending.steps += newer.steps
            pending.keys += newer.keys
        self._pending[pending.call_id] = pending

    async def _write(self, batch: list[_PendingCall]) -> None:
        ids = [p.call_id for p in batch]
        async with self.db.session() as session:
            rows = {
                row.call_id: row
                for row in await session.scalars(
                    select(CallRecord).where(CallRecord.call_id.in_(ids))
                )
            }
            for pending in batch:
                row = rows.get(pending.call_id)
                if row is None:
                    row = CallRecord(
                        call_id=pending.call_id,
                        started_at=pending.first_seen,
                        flow_path=[],
                        keys="",
                        recording_path=await session.scalar(
                            select(Recording.path)
                            .where(
                                Recording.call_id == pending.call_id,
                                _is_call_recording(Recording.purpose),
                            )
                            .order_by(Recording.id.desc())
                            .limit(1)
                        ),
                    )
                    session.add(row)
                for name, value in pending.fields.items():
                    setattr(row, name, value)
                if pending.steps:
                    row.flow_path = [*(row.flow_path or []), *pending.steps]
                if pending.keys:
                    row.keys = (row.keys or "") + pending.keys
            await session.commit()

    async def close_interrupted(self) -> int:
        """Mark records of calls cut off by a crash (no end, no result); call at boot."""
        async with self.db.session() as session:
            result = await session.execute(
                update(CallRecord)
                .where(CallRecord.ended_at.is_(None), CallRecord.result.is_(None))
                .values(result="error", hangup_cause=INTERRUPTED_CAUSE)
            )
            await session.commit()
        count = result.rowcount or 0
        if count:
            log.warning("cdr.interrupted_calls", count=count)
        return count


class RecordingIndex(BusWorker):
    """Indexes finished recording files and links whole-call recordings to their CDR."""

    prefix = "recording.finished"

    async def handle(self, event: Event) -> bool:
        data = event.data
        path = data.get("path")
        if not path:
            log.warning("recordings.no_path", call_id=event.call_id)
            return False
        purpose = _text(data.get("purpose"))
        values = {
            "call_id": event.call_id,
            "purpose": purpose,
            "seconds": float(data.get("seconds") or 0.0),
            "channels": int(data.get("channels") or 1),
            "bytes": int(data.get("bytes") or 0),
            "recovered": bool(data.get("recovered", False)),
        }
        try:
            async with real_work(), self.db.session() as session:
                recording = await session.scalar(select(Recording).where(Recording.path == path))
                if recording is None:
                    session.add(Recording(path=str(path), created_at=event_time(event), **values))
                else:
                    for name, value in values.items():
                        setattr(recording, name, value)
                if event.call_id is not None and purpose in CALL_RECORDING_PURPOSES:
                    await session.execute(
                        update(CallRecord)
                        .where(CallRecord.call_id == event.call_id)
                        .values(recording_path=str(path))
                    )
                await session.commit()
        except Exception:
            log.exception("recordings.write_failed", call_id=event.call_id, path=path)
        return False


def _is_call_recording(column: Any) -> Any:
    return column.is_(None) | (column == "call")


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
