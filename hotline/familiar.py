"""Familiar-agent memory across restarts: who last served each caller, from the stored log.

The ACD core remembers which agent last connected with each caller number (the 熟悉坐席
strategy offers the caller to that agent first), but only from its own events. At start-up
the engine reads the durable queue log (:mod:`hotline.services.queue_log`) back for the
longest ``familiar_agent.lookback_days`` of the queues that use it, and seeds the core with
:func:`seed_familiar`, so a restart does not forget.

One query: each ``CONNECT`` in the window joined with the ``ENTER`` of the same call (which
carries the caller's number), grouped by caller keeping the latest, newest first, at most
``limit`` rows — memory stays bounded however busy the window was. Times are converted from
wall-clock (the log) to the core's monotonic clock (``loop.time()``) with the offset between
the two clocks at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from hotline.store.db import Database
from hotline.store.models import QueueEventRecord

log = structlog.get_logger(__name__)

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Served:
    """The last time ``agent_id`` connected with ``caller`` (wall-clock seconds)."""

    caller: str
    agent_id: str
    time: float


def lookback_days(queue_configs: Any) -> float | None:
    """The longest lookback of the queues with familiar-agent routing on, or None."""
    days = [c.familiar_agent.lookback_days for c in queue_configs if c.familiar_agent.enabled]
    return max(days) if days else None


async def load_last_served(
    db: Database, *, since: datetime, limit: int, until: datetime | None = None
) -> list[Served]:
    """Per caller, the last agent connected with them in ``[since, until)``, oldest first;
    the ``limit`` most recent callers."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    connect = aliased(QueueEventRecord)
    enter = aliased(QueueEventRecord)
    caller = func.json_extract(enter.data, "$.caller").label("caller")
    last_id = func.max(connect.id).label("last_id")
    # SQLite: the bare columns of an aggregate query come from the row holding the max
    query = (
        select(caller, connect.agent_id, connect.time, last_id)
        .join(enter, (enter.call_id == connect.call_id) & (enter.kind == "ENTER"))
        .where(connect.kind == "CONNECT", connect.time >= since, connect.agent_id.is_not(None))
        .where(caller.is_not(None), caller != "")
        .group_by(caller)
        .order_by(last_id.desc())
        .limit(limit)
    )
    if until is not None:
        query = query.where(connect.time < until)
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    served = [Served(str(r.caller), str(r.agent_id), _timestamp(r.time)) for r in rows]
    served.reverse()
    return served


def seed_familiar(acd: Any, served: list[Served], *, loop_now: float, wall_now: float) -> int:
    """Give ``acd`` (an :class:`acd.matcher.Acd`) the stored services, oldest first, in its
    own clock; returns how many were seeded."""
    for s in served:
        acd.remember_served(s.caller, s.agent_id, loop_now - (wall_now - s.time))
    return len(served)


async def restore_familiar(
    db: Database, acd: Any, *, loop_now: float, wall_now: float | None = None
) -> int:
    """Seed ``acd`` from the stored queue log for the queues' longest familiar lookback."""
    days = lookback_days(q.config for q in acd.queues.values())
    if days is None:
        return 0
    wall = datetime.now(UTC) if wall_now is None else datetime.fromtimestamp(wall_now, UTC)
    served = await load_last_served(
        db, since=wall - timedelta(days=days), limit=acd.familiar_limit
    )
    count = seed_familiar(acd, served, loop_now=loop_now, wall_now=wall.timestamp())
    log.info("queue.familiar_restored", callers=count, lookback_days=days)
    return count


def _timestamp(value: datetime | str) -> float:
    if isinstance(value, str):  # a raw column value (the aggregate query keeps the type)
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
