"""Post-call satisfaction surveys (满意度): the caller's score, stored with the call.

When an agent hangs up first and the queue has a ``survey`` flow, the caller is moved to it
(:mod:`hotline.contact_center`); the flow's lookup step calls ``surveys.store`` with the key
pressed. :func:`store` keeps one :class:`~hotline.store.models.CallSurvey` row (the queue and
agent come from the call's last ``CONNECT`` in the stored queue event log) and, in the same
transaction, a ``SURVEY`` line of the queue event log (``data``: ``score``, ``label``).

:func:`store` → ``ok`` with ``score``, ``label``, ``queue``, ``agent_id``; ``invalid`` for a
score other than 1, 2 or 3 (the flow may ask again).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select

from hotline.store.db import Database
from hotline.store.models import CallSurvey, QueueEventRecord, utc_now
from ivr.ports import ServiceResult

log = structlog.get_logger(__name__)

SCORES = {1: "满意", 2: "基本满意", 3: "不满意"}
SURVEY_KIND = "SURVEY"


def parse_score(value: object) -> int | None:
    """1, 2 or 3 from a key (``"1"``) or a number; None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        score = int(str(value).strip())
    except ValueError:
        return None
    return score if score in SCORES else None


async def store(
    db: Database, *, call_id: str, score: object, now: datetime | None = None
) -> ServiceResult:
    """Keep the caller's score for the agent who served ``call_id``."""
    value = parse_score(score)
    if value is None:
        return ServiceResult(
            "invalid", {"message": f"survey score must be 1, 2 or 3, got {score!r}"}
        )
    at = now or utc_now()
    async with db.session() as session:
        connect = await session.scalar(
            select(QueueEventRecord)
            .where(QueueEventRecord.call_id == call_id, QueueEventRecord.kind == "CONNECT")
            .order_by(QueueEventRecord.id.desc())
            .limit(1)
        )
        queue = connect.queue if connect is not None else None
        agent_id = connect.agent_id if connect is not None else None
        if connect is None:
            log.warning("survey.no_agent_found", call_id=call_id)
        session.add(
            CallSurvey(call_id=call_id, queue=queue, agent_id=agent_id, score=value, created_at=at)
        )
        session.add(
            QueueEventRecord(
                time=at,
                kind=SURVEY_KIND,
                queue=queue,
                call_id=call_id,
                agent_id=agent_id,
                data={"score": value, "label": SCORES[value]},
            )
        )
        await session.commit()
    log.info("survey.stored", call_id=call_id, score=value, queue=queue, agent_id=agent_id)
    return ServiceResult(
        "ok", {"score": value, "label": SCORES[value], "queue": queue, "agent_id": agent_id}
    )


async def for_call(db: Database, call_id: str) -> list[dict[str, Any]]:
    """The scores given on one call, oldest first."""
    async with db.session() as session:
        rows = await session.scalars(
            select(CallSurvey).where(CallSurvey.call_id == call_id).order_by(CallSurvey.id)
        )
        return [
            {
                "score": r.score,
                "label": SCORES[r.score],
                "queue": r.queue,
                "agent_id": r.agent_id,
                "created_at": r.created_at,
            }
            for r in rows
        ]
