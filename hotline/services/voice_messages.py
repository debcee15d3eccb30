"""Callers' voice messages (留言): stored from the IVR, then heard and handled by operators.

:func:`store` → ``ok`` with ``id`` (and the stored fields), or ``error`` with a ``message``
for a missing path or a negative/unreadable length. :func:`set_status` moves a message to
``heard`` or ``handled``; :func:`list_messages` lists them for the operators' screen.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select

from hotline.store.db import Database
from hotline.store.models import (
    VoiceMessage,
    VoiceMessageStatus,
    normalize_account_no,
    utc_now,
)
from ivr.ports import ServiceResult

log = structlog.get_logger(__name__)


def _data(message: VoiceMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "call_id": message.call_id,
        "caller": message.caller,
        "account_no": message.account_no,
        "path": message.path,
        "seconds": message.seconds,
        "status": message.status,
        "created_at": message.created_at,
    }


async def store(
    db: Database,
    *,
    path: object,
    seconds: object,
    account: object = None,
    call_id: str | None = None,
    caller: str | None = None,
    now: datetime | None = None,
) -> ServiceResult:
    """Keep a recorded message (``path`` of the audio file, its length in ``seconds``)."""
    if not isinstance(path, str) or not path.strip():
        return ServiceResult("error", {"message": f"voice message needs a file path, got {path!r}"})
    try:
        length = float(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        length = -1.0
    if not (math.isfinite(length) and length >= 0):
        return ServiceResult("error", {"message": f"bad voice message length {seconds!r}"})
    # An unusable account number does not lose the message: it is kept without one.
    account_no = normalize_account_no(account) if account not in (None, "") else None
    message = VoiceMessage(
        call_id=call_id,
        caller=caller,
        account_no=account_no,
        path=path.strip(),
        seconds=length,
        status=VoiceMessageStatus.NEW.value,
        created_at=now or utc_now(),
    )
    async with db.session() as session:
        session.add(message)
        await session.commit()
    log.info("voice_messages.stored", call_id=call_id, id=message.id, seconds=length)
    return ServiceResult("ok", _data(message))


async def set_status(db: Database, message_id: int, status: str) -> ServiceResult:
    """Mark a message ``heard`` or ``handled`` (or back to ``new``)."""
    try:
        new_status = VoiceMessageStatus(status)
    except ValueError:
        return ServiceResult("error", {"message": f"unknown voice message status {status!r}"})
    async with db.session() as session:
        message = await session.get(VoiceMessage, message_id)
        if message is None:
            return ServiceResult("error", {"message": f"no voice message {message_id}"})
        message.status = new_status.value
        await session.commit()
    return ServiceResult("ok", _data(message))


async def list_messages(
    db: Database, *, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Messages, newest first, optionally only those with ``status``."""
    query = select(VoiceMessage).order_by(VoiceMessage.created_at.desc(), VoiceMessage.id.desc())
    if status is not None:
        query = query.where(VoiceMessage.status == status)
    async with db.session() as session:
        return [_data(m) for m in (await session.scalars(query.limit(limit))).all()]
