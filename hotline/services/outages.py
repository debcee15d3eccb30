"""Known outages, so the IVR can announce them before a caller queues or reports a fault.

An outage is *current* at ``now`` when it has started and power is not yet restored:
``start <= now`` and (``end`` is empty or ``end > now``). Planned and unplanned outages count
alike; when several are current in an area, the most recently started one is announced.

:func:`for_account` → ``outage`` with ``number, area, reason, planned, notice, start,
expected_end`` (aware UTC datetimes; ``expected_end`` may be None), ``none`` with
``account_no, area``, or ``not_found`` (``reason`` ``invalid``/``unknown_account``) when the
account cannot be placed in an area.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hotline.store.db import Database
from hotline.store.models import Account, Outage, normalize_account_no, utc_now
from ivr.ports import ServiceResult

log = structlog.get_logger(__name__)


async def current_outage(session: AsyncSession, area: str, now: datetime) -> Outage | None:
    """The outage in ``area`` at ``now``, if any (the latest started)."""
    return await session.scalar(
        select(Outage)
        .where(
            Outage.area == area, Outage.start <= now, or_(Outage.end.is_(None), Outage.end > now)
        )
        .order_by(Outage.start.desc(), Outage.id.desc())
        .limit(1)
    )


def outage_data(outage: Outage) -> dict[str, object]:
    return {
        "number": outage.number,
        "area": outage.area,
        "reason": outage.reason,
        "planned": outage.planned,
        "notice": outage.notice,
        "start": outage.start,
        "expected_end": outage.expected_end or outage.end,
    }


async def for_account(
    db: Database,
    account: object,
    *,
    accounts_db: Database | None = None,
    now: datetime | None = None,
    call_id: str | None = None,
) -> ServiceResult:
    """Whether the area of ``account`` is without power right now.

    The account's area is read from ``accounts_db`` (a utility's billing database) when
    given, the outage from ``db``.
    """
    account_no = normalize_account_no(account)
    if account_no is None:
        return _not_found(account, "invalid", f"not a 10-digit account: {account!r}")
    async with (accounts_db or db).session() as session:
        area = await session.scalar(select(Account.area).where(Account.account_no == account_no))
    if area is None:
        return _not_found(account_no, "unknown_account", "no such account")
    async with db.session() as session:
        outage = await current_outage(session, area, now or utc_now())
    if outage is None:
        return ServiceResult("none", {"account_no": account_no, "area": area})
    log.info("outages.announced", call_id=call_id, account_no=account_no, outage=outage.number)
    return ServiceResult("outage", {"account_no": account_no, **outage_data(outage)})


def _not_found(account: object, reason: str, message: str) -> ServiceResult:
    return ServiceResult("not_found", {"account_no": account, "reason": reason, "message": message})
