"""Bill lookup for the IVR: the current bill of an account, and accounts by phone number.

Statuses:

- :func:`current_bill` → ``found`` with ``account_no, customer_name, area, period, kwh,
  charge, paid, balance, arrears, due_date`` (money as :class:`~decimal.Decimal`, ``arrears``
  the positive amount owed or 0, ``due_date`` a :class:`~datetime.date`); ``not_found`` with
  ``account_no`` and ``reason`` (``invalid`` for something that is not a 10-digit number,
  ``unknown_account``, ``no_bill``) and an English ``message`` for the log.
- :func:`account_by_phone` → ``found`` with ``account_no, customer_name, area, accounts``
  (every account of the customers registered with that phone, first one also flattened);
  ``not_found`` with ``phone`` and ``reason``.
"""

from __future__ import annotations

from decimal import Decimal

import structlog
from sqlalchemy import bindparam, select

from hotline.store.db import Database
from hotline.store.models import Account, Bill, Customer, normalize_account_no, normalize_phone
from ivr.ports import ServiceResult

log = structlog.get_logger(__name__)

ZERO = Decimal("0.00")


_LATEST_BILL = (
    select(Bill.id)
    .where(Bill.account_id == Account.id)
    .order_by(Bill.period.desc())
    .limit(1)
    .scalar_subquery()
    .correlate(Account)
)
_CURRENT_BILL = (
    select(
        Account.area,
        Customer.name.label("customer_name"),
        Bill.period,
        Bill.kwh,
        Bill.charge,
        Bill.paid,
        Bill.balance,
        Bill.due_date,
    )
    .select_from(Account)
    .join(Customer, Account.customer_id == Customer.id)
    .outerjoin(Bill, Bill.id == _LATEST_BILL)
    .where(Account.account_no == bindparam("account_no"))
)


def _not_found(key: str, value: object, reason: str, message: str) -> ServiceResult:
    return ServiceResult("not_found", {key: value, "reason": reason, "message": message})


async def current_bill(
    db: Database, account: object, *, call_id: str | None = None
) -> ServiceResult:
    """The latest bill of ``account`` (a 10-digit account number)."""
    account_no = normalize_account_no(account)
    if account_no is None:
        return _not_found("account_no", account, "invalid", f"not a 10-digit account: {account!r}")
    # one statement on a plain connection (no ORM session, no objects): this runs for every
    # caller who asks for the bill, often hundreds within seconds of each other
    async with db.engine.connect() as connection:
        row = (await connection.execute(_CURRENT_BILL, {"account_no": account_no})).first()
    if row is None:
        return _not_found("account_no", account_no, "unknown_account", "no such account")
    if row.period is None:
        return _not_found("account_no", account_no, "no_bill", "the account has no bill yet")
    log.debug("billing.current_bill", call_id=call_id, account_no=account_no, period=row.period)
    return ServiceResult(
        "found",
        {
            "account_no": account_no,
            "customer_name": row.customer_name,
            "area": row.area,
            "period": row.period,
            "kwh": row.kwh,
            "charge": row.charge,
            "paid": row.paid,
            "balance": row.balance,
            "arrears": -row.balance if row.balance < 0 else ZERO,
            "due_date": row.due_date,
        },
    )


async def account_by_phone(
    db: Database, phone: object, *, call_id: str | None = None
) -> ServiceResult:
    """Accounts of the customer(s) registered with ``phone`` (e.g. the caller's number)."""
    digits = normalize_phone(phone)
    if digits is None:
        return _not_found("phone", phone, "invalid", f"not a phone number: {phone!r}")
    async with db.session() as session:
        rows = (
            await session.execute(
                select(Account.account_no, Customer.name, Account.area, Account.address)
                .join(Customer, Account.customer_id == Customer.id)
                .where(Customer.phone == digits)
                .order_by(Account.id)
            )
        ).all()
    if not rows:
        return _not_found("phone", digits, "unknown_phone", "no customer with that phone")
    accounts = [
        {"account_no": no, "customer_name": name, "area": area, "address": address}
        for no, name, area, address in rows
    ]
    log.debug("billing.account_by_phone", call_id=call_id, phone=digits, accounts=len(accounts))
    return ServiceResult("found", {**accounts[0], "phone": digits, "accounts": accounts})
