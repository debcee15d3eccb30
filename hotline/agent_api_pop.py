"""The CTI screen-pop: what an agent's desktop shows while a call rings their seat.

:func:`screen_pop` turns the contact centre's ``queue.screen_pop`` bus event (the seat, the
queue, the caller's number and what the flow handed over: IVR path, keys, variables) into
one JSON-ready message with the caller's account and customer record, the latest bill, the
open work orders of that account or caller number, and the caller's last contacts (their
recent call records). The account is the one the flow collected (``account``, or
``account_no`` inside ``found``/``bill``/``work_order``); without one, the first account
registered with the caller's number.

Every lookup reads the store; on a virtual clock the database work is marked with
:func:`drivers.clock.real_work` so virtual time waits for it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select

from drivers.clock import real_work
from hotline.services.billing import account_by_phone, current_bill
from hotline.services.work_orders import order_data
from hotline.store.db import Database
from hotline.store.models import (
    OPEN_WORK_ORDER_STATUSES,
    Account,
    CallRecord,
    Customer,
    WorkOrder,
    normalize_account_no,
    normalize_phone,
)

LAST_CONTACTS = 5
MAX_ORDERS = 20


def account_of(variables: dict[str, Any]) -> str | None:
    """The account number the flow collected, if any."""
    candidates: list[Any] = [variables.get("account")]
    for name in ("found", "bill", "work_order"):
        value = variables.get(name)
        if isinstance(value, dict):
            candidates.append(value.get("account_no"))
    for value in candidates:
        account = normalize_account_no(value)
        if account is not None:
            return account
    return None


async def screen_pop(db: Database, call_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """The screen-pop message for one ``queue.screen_pop`` event (see the module docstring)."""
    variables = data.get("variables") or {}
    caller = str(data.get("caller") or "")
    async with real_work():
        account = account_of(variables)
        if account is None and normalize_phone(caller):
            by_phone = await account_by_phone(db, caller)
            if by_phone.status == "found":
                account = by_phone.data["account_no"]
        customer = await _customer(db, account) if account else None
        bill = await current_bill(db, account) if account else None
        orders = await _open_orders(db, account, caller)
        contacts = await _last_contacts(db, caller, call_id)
    return jsonable(
        {
            "type": "screen_pop",
            "call_id": call_id,
            "agent_id": data.get("agent_id"),
            "seat": data.get("seat"),
            "queue": data.get("queue"),
            "caller": caller,
            "callback": bool(data.get("callback")),
            "account": account,
            "customer": customer,
            "bill": bill.data if bill is not None and bill.status == "found" else None,
            "ivr": {"path": list(data.get("path") or []), "keys": data.get("keys") or ""},
            "variables": variables,
            "work_orders": orders,
            "last_contacts": contacts,
        }
    )


async def _customer(db: Database, account: str) -> dict[str, Any] | None:
    async with db.session() as session:
        row = (
            await session.execute(
                select(Account, Customer)
                .join(Customer, Account.customer_id == Customer.id)
                .where(Account.account_no == account)
            )
        ).first()
    if row is None:
        return None
    acc, customer = row
    return {
        "name": customer.name,
        "phone": customer.phone,
        "vip": customer.vip,
        "address": acc.address,
        "area": acc.area,
        "meter_type": acc.meter_type,
    }


async def _open_orders(db: Database, account: str | None, caller: str) -> list[dict[str, Any]]:
    phone = normalize_phone(caller)
    matches = []
    if account:
        matches.append(WorkOrder.account_no == account)
    if phone:
        matches += [WorkOrder.caller == phone, WorkOrder.contact_phone == phone]
    if not matches:
        return []
    async with db.session() as session:
        orders = (
            await session.scalars(
                select(WorkOrder)
                .where(WorkOrder.status.in_(OPEN_WORK_ORDER_STATUSES), or_(*matches))
                .order_by(WorkOrder.id.desc())
                .limit(MAX_ORDERS)
            )
        ).all()
    return [{**order_data(o), "description": o.description} for o in orders]


async def _last_contacts(db: Database, caller: str, call_id: str) -> list[dict[str, Any]]:
    if not caller:
        return []
    async with db.session() as session:
        records = (
            await session.scalars(
                select(CallRecord)
                .where(CallRecord.caller == caller, CallRecord.call_id != call_id)
                .order_by(CallRecord.started_at.desc(), CallRecord.id.desc())
                .limit(LAST_CONTACTS)
            )
        ).all()
    return [
        {
            "call_id": r.call_id,
            "started_at": r.started_at,
            "result": r.result,
            "last_step": r.last_step,
            "keys": r.keys,
            "work_order": r.work_order_number,
        }
        for r in records
    ]


def jsonable(value: Any) -> Any:
    """``value`` with Decimals, dates and sets made JSON types (money as strings)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
