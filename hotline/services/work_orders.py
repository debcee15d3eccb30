"""95598 work orders: drafted during a call, submitted at its end, then dispatched and closed.

Lifecycle: ``draft`` → ``submitted`` → ``dispatched`` → ``closed``. A draft is opened as soon
as the caller picks a business type (:func:`open_order`), filled in step by step
(:func:`update_order`) and submitted when the caller confirms (:func:`submit_order`), which
stamps ``submitted_at`` and the deadline ``due_at``:

- fault repair: crew on site within 45 min (urban) / 90 min (rural) / 2 h (remote), by the
  kind of the order's area (:class:`~hotline.store.models.Area`; an area the store does not
  know gets the strictest, urban deadline);
- complaint: reply within 7 working days (Monday–Friday, China time; holidays not modelled);
- other types: no deadline.

Known-outage rule (DESIGN §5): a fault repair of fault type ``area_outage`` submitted for an
area that already has a current :class:`~hotline.store.models.Outage` or an open (submitted or
dispatched) ``area_outage`` order is not opened again. The draft is closed with
``duplicate_of`` set, and the result is ``duplicate`` carrying the existing outage's or order's
``number`` (the outage wins when both exist, since it carries the notice callers hear).

Numbers are ``GZ`` + the China-time date + a 6-digit daily sequence (``GZ20261123000001``).

Statuses: ``ok`` (open, update, submit, transition) with ``number, digits, id, type, status,
account_no, area, fault_type, submitted_at, due_at`` (``digits``: the number's digits, for
reading it out); ``duplicate`` (submit) with ``number`` and ``digits`` of the existing outage or
order, ``kind`` (``outage``/``work_order``), ``draft_number``, ``area`` and, for an outage, its
``notice`` and ``expected_end``; ``found``/``none`` (:func:`open_orders_for_account`);
``error`` with a ``message`` for anything the caller of the service got wrong (unknown number,
bad field, a draft-only change on a submitted order).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hotline.services.outages import current_outage
from hotline.store.db import Database
from hotline.store.models import (
    LOCAL_TZ,
    OPEN_WORK_ORDER_STATUSES,
    Account,
    Area,
    AreaKind,
    FaultType,
    Outage,
    WorkOrder,
    WorkOrderStatus,
    WorkOrderType,
    local_date,
    normalize_account_no,
    normalize_phone,
    utc_now,
)
from ivr.ports import ServiceResult

log = structlog.get_logger(__name__)

NUMBER_PREFIX = "GZ"
ARRIVAL_DEADLINES = {
    AreaKind.URBAN: timedelta(minutes=45),
    AreaKind.RURAL: timedelta(minutes=90),
    AreaKind.REMOTE: timedelta(hours=2),
}
COMPLAINT_REPLY_WORKING_DAYS = 7

TYPE_NAMES: dict[str, WorkOrderType] = {
    "故障报修": WorkOrderType.FAULT_REPAIR,
    "服务申请": WorkOrderType.SERVICE_REQUEST,
    "建议": WorkOrderType.SUGGESTION,
    "意见": WorkOrderType.OPINION,
    "业务咨询": WorkOrderType.CONSULTATION,
    "投诉": WorkOrderType.COMPLAINT,
    "举报": WorkOrderType.REPORT,
    "表扬": WorkOrderType.PRAISE,
}
"""The Chinese business-type names, accepted wherever a type is."""

FIELDS = (
    "account_no",
    "contact_phone",
    "fault_type",
    "area",
    "description",
    "description_recording",
)
"""What a draft's caller may fill in (``call_id``/``caller`` come from the call)."""
FIELD_ALIASES = {"account": "account_no", "phone": "contact_phone"}

TRANSITIONS = {
    WorkOrderStatus.SUBMITTED: {WorkOrderStatus.DISPATCHED, WorkOrderStatus.CLOSED},
    WorkOrderStatus.DISPATCHED: {WorkOrderStatus.CLOSED},
}

_locks: weakref.WeakKeyDictionary[Database, asyncio.Lock] = weakref.WeakKeyDictionary()


class WorkOrderError(ValueError):
    """A request the work-order service refuses; the message says why."""


def _lock(db: Database) -> asyncio.Lock:
    """Serialises numbering and the duplicate check within this process."""
    return _locks.setdefault(db, asyncio.Lock())


def _error(message: str, **data: Any) -> ServiceResult:
    return ServiceResult("error", {"message": message, **data})


def parse_type(value: object) -> WorkOrderType:
    text = str(value or "").strip()
    if text in TYPE_NAMES:
        return TYPE_NAMES[text]
    try:
        return WorkOrderType(text)
    except ValueError:
        known = ", ".join(t.value for t in WorkOrderType)
        raise WorkOrderError(f"unknown work order type {value!r} (one of: {known})") from None


def clean_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` validated and normalised; raises :class:`WorkOrderError`.

    An unknown field, a malformed account number or an unknown fault type is refused; a
    contact phone that is not a phone number (``anonymous``) is dropped to None.
    """
    cleaned: dict[str, Any] = {}
    for key, value in fields.items():
        name = FIELD_ALIASES.get(key, key)
        if name not in FIELDS:
            raise WorkOrderError(f"unknown work order field {key!r} (one of: {', '.join(FIELDS)})")
        if value is None or value == "":
            cleaned[name] = None
        elif name == "account_no":
            cleaned[name] = normalize_account_no(value)
            if cleaned[name] is None:
                raise WorkOrderError(f"account must be 10 digits, got {value!r}")
        elif name == "contact_phone":
            # Lenient: a withheld or odd caller number must not stop the report.
            cleaned[name] = normalize_phone(value)
        elif name == "fault_type":
            try:
                cleaned[name] = FaultType(str(value)).value
            except ValueError:
                known = ", ".join(t.value for t in FaultType)
                raise WorkOrderError(f"unknown fault type {value!r} (one of: {known})") from None
        else:
            cleaned[name] = str(value).strip()
    return cleaned


def add_working_days(moment: datetime, days: int) -> datetime:
    """``moment`` plus ``days`` Monday–Friday days (China time), same time of day."""
    local = moment.astimezone(LOCAL_TZ)
    while days > 0:
        local += timedelta(days=1)
        if local.weekday() < 5:
            days -= 1
    return local.astimezone(moment.tzinfo)


async def deadline(
    session: AsyncSession, order: WorkOrder, submitted_at: datetime
) -> datetime | None:
    """When the order is due, counted from ``submitted_at`` (see the module docstring)."""
    if order.type == WorkOrderType.FAULT_REPAIR:
        kind = None
        if order.area:
            kind = await session.scalar(select(Area.kind).where(Area.name == order.area))
        return submitted_at + ARRIVAL_DEADLINES[AreaKind(kind or AreaKind.URBAN)]
    if order.type == WorkOrderType.COMPLAINT:
        return add_working_days(submitted_at, COMPLAINT_REPLY_WORKING_DAYS)
    return None


def number_digits(number: str | None) -> str:
    """The digits of an order or outage number, for reading it out (``GZ2026…`` → ``2026…``)."""
    return "".join(c for c in number or "" if c.isdigit())


def order_data(order: WorkOrder) -> dict[str, Any]:
    return {
        "number": order.number,
        "digits": number_digits(order.number),
        "id": order.id,
        "type": order.type,
        "status": order.status,
        "account_no": order.account_no,
        "area": order.area,
        "fault_type": order.fault_type,
        "submitted_at": order.submitted_at,
        "due_at": order.due_at,
    }


async def _area_of(accounts_db: Database, account_no: str | None) -> str | None:
    """The area of an account, from wherever accounts live (maybe a billing database)."""
    if account_no is None:
        return None
    async with accounts_db.session() as session:
        return await session.scalar(select(Account.area).where(Account.account_no == account_no))


async def _next_number(session: AsyncSession, now: datetime) -> str:
    prefix = f"{NUMBER_PREFIX}{local_date(now):%Y%m%d}"
    last = await session.scalar(
        select(func.max(WorkOrder.number)).where(WorkOrder.number.startswith(prefix))
    )
    return f"{prefix}{int(last[len(prefix) :]) + 1 if last else 1:06d}"


async def open_order(
    db: Database,
    order_type: object,
    fields: Mapping[str, Any] | None = None,
    *,
    call_id: str | None = None,
    caller: str | None = None,
    accounts_db: Database | None = None,
    now: datetime | None = None,
) -> ServiceResult:
    """Open a draft of ``order_type`` (English or Chinese type name) with any ``fields``.

    The area is taken from the account (read from ``accounts_db`` if given) unless set.
    """
    try:
        kind = parse_type(order_type)
        values = clean_fields(fields or {})
    except WorkOrderError as exc:
        return _error(str(exc))
    now = now or utc_now()
    if values.get("account_no") and not values.get("area"):
        values["area"] = await _area_of(accounts_db or db, values["account_no"])
    async with _lock(db):
        for attempt in range(5):
            async with db.session() as session:
                order = WorkOrder(
                    number=await _next_number(session, now),
                    type=kind.value,
                    status=WorkOrderStatus.DRAFT.value,
                    call_id=call_id,
                    caller=caller,
                    created_at=now,
                    updated_at=now,
                    **values,
                )
                session.add(order)
                try:
                    await session.commit()
                except IntegrityError:  # another process took the number: draw again
                    await session.rollback()
                    log.warning("work_orders.number_taken", call_id=call_id, attempt=attempt)
                    continue
            log.info("work_orders.opened", call_id=call_id, number=order.number, type=order.type)
            return ServiceResult("ok", order_data(order))
    return _error("could not allocate a work order number")


async def update_order(
    db: Database,
    number: object,
    fields: Mapping[str, Any],
    *,
    call_id: str | None = None,
    accounts_db: Database | None = None,
    now: datetime | None = None,
) -> ServiceResult:
    """Fill in fields of a draft (a new account brings its area unless ``area`` is given)."""
    try:
        values = clean_fields(fields)
    except WorkOrderError as exc:
        return _error(str(exc), number=number)
    if values.get("account_no") and "area" not in values:
        area = await _area_of(accounts_db or db, values["account_no"])
        if area is not None:
            values["area"] = area
    async with db.session() as session:
        order = await session.scalar(select(WorkOrder).where(WorkOrder.number == str(number)))
        if order is None:
            return _error(f"no work order {number!r}", number=number)
        if order.status != WorkOrderStatus.DRAFT:
            return _error(
                f"work order {number} is {order.status}; only drafts change", number=number
            )
        for name, value in values.items():
            setattr(order, name, value)
        order.updated_at = now or utc_now()
        await session.commit()
    log.info("work_orders.updated", call_id=call_id, number=order.number, fields=sorted(values))
    return ServiceResult("ok", order_data(order))


async def _known_outage_number(
    session: AsyncSession, order: WorkOrder, now: datetime
) -> tuple[str, str] | None:
    """(``"outage"``/``"work_order"``, number) already covering the order's area outage."""
    if order.fault_type != FaultType.AREA_OUTAGE or not order.area:
        return None
    outage = await current_outage(session, order.area, now)
    if outage is not None:
        return "outage", outage.number
    existing = await session.scalar(
        select(WorkOrder.number)
        .where(
            WorkOrder.type == WorkOrderType.FAULT_REPAIR,
            WorkOrder.fault_type == FaultType.AREA_OUTAGE,
            WorkOrder.area == order.area,
            WorkOrder.status.in_(OPEN_WORK_ORDER_STATUSES),
            WorkOrder.id != order.id,
        )
        .order_by(WorkOrder.submitted_at, WorkOrder.id)
        .limit(1)
    )
    return ("work_order", existing) if existing else None


async def _duplicate(session: AsyncSession, order: WorkOrder) -> ServiceResult:
    """The ``duplicate`` answer for a draft folded into ``order.duplicate_of``."""
    data: dict[str, Any] = {
        "number": order.duplicate_of,
        "digits": number_digits(order.duplicate_of),
        "kind": "work_order",
        "draft_number": order.number,
        "area": order.area,
    }
    outage = await session.scalar(select(Outage).where(Outage.number == order.duplicate_of))
    if outage is not None:
        data.update(kind="outage", notice=outage.notice, expected_end=outage.expected_end)
    return ServiceResult("duplicate", data)


async def submit_order(
    db: Database,
    number: object,
    *,
    call_id: str | None = None,
    accounts_db: Database | None = None,
    now: datetime | None = None,
) -> ServiceResult:
    """Submit a draft (idempotent: a submitted order answers ``ok`` again)."""
    now = now or utc_now()
    async with _lock(db), db.session() as session:
        order = await session.scalar(select(WorkOrder).where(WorkOrder.number == str(number)))
        if order is None:
            return _error(f"no work order {number!r}", number=number)
        if order.duplicate_of:
            return await _duplicate(session, order)
        if order.status != WorkOrderStatus.DRAFT:
            return ServiceResult("ok", order_data(order))
        if order.type == WorkOrderType.FAULT_REPAIR and not order.fault_type:
            return _error(
                f"work order {number} needs a fault_type before submitting", number=number
            )
        if not order.area:
            order.area = await _area_of(accounts_db or db, order.account_no)
        known = await _known_outage_number(session, order, now)
        order.updated_at = now
        if known is not None:
            order.status = WorkOrderStatus.CLOSED.value
            order.duplicate_of = known[1]
            await session.commit()
            log.info(
                "work_orders.duplicate",
                call_id=call_id,
                number=order.number,
                duplicate_of=known[1],
                kind=known[0],
                area=order.area,
            )
            return await _duplicate(session, order)
        order.status = WorkOrderStatus.SUBMITTED.value
        order.submitted_at = now
        order.due_at = await deadline(session, order, now)
        await session.commit()
    log.info("work_orders.submitted", call_id=call_id, number=order.number, due_at=order.due_at)
    return ServiceResult("ok", order_data(order))


async def transition(
    db: Database, number: str, status: str, *, now: datetime | None = None
) -> ServiceResult:
    """Move a submitted order on: ``dispatched`` (handed to a crew/branch) or ``closed``."""
    async with db.session() as session:
        order = await session.scalar(select(WorkOrder).where(WorkOrder.number == number))
        if order is None:
            return _error(f"no work order {number!r}", number=number)
        allowed = TRANSITIONS.get(WorkOrderStatus(order.status), set())
        if status not in allowed:
            return _error(
                f"work order {number} cannot go from {order.status} to {status}", number=number
            )
        order.status = status
        order.updated_at = now or utc_now()
        await session.commit()
    log.info("work_orders.transition", number=number, status=status)
    return ServiceResult("ok", order_data(order))


async def open_orders_for_account(db: Database, account: object) -> ServiceResult:
    """Submitted or dispatched orders of ``account``, newest first: ``found``/``none``."""
    account_no = normalize_account_no(account)
    if account_no is None:
        return ServiceResult(
            "not_found",
            {
                "account_no": account,
                "reason": "invalid",
                "message": f"not a 10-digit account: {account!r}",
            },
        )
    async with db.session() as session:
        orders = (
            await session.scalars(
                select(WorkOrder)
                .where(
                    WorkOrder.account_no == account_no,
                    WorkOrder.status.in_(OPEN_WORK_ORDER_STATUSES),
                )
                .order_by(WorkOrder.submitted_at.desc(), WorkOrder.id.desc())
            )
        ).all()
    if not orders:
        return ServiceResult("none", {"account_no": account_no, "orders": []})
    listed = [order_data(order) for order in orders]
    return ServiceResult(
        "found",
        {
            "account_no": account_no,
            "number": listed[0]["number"],
            "count": len(listed),
            "orders": listed,
        },
    )
