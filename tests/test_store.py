"""The store on real SQLite files: migrations, connection settings, crash safety, demo data."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, func, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from hotline.store.db import Database, alembic_config
from hotline.store.demo import AREAS, FIXED_ACCOUNTS, ensure_demo_data
from hotline.store.models import LOCAL_TZ, Account, Base, Bill, CallRecord, Customer, Outage

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in China
REPO = Path(__file__).resolve().parent.parent


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def db(tmp_path: Path):
    database = Database(sqlite_url(tmp_path / "hotline.db"))
    await database.upgrade()
    yield database
    await database.close()


async def test_migrations_create_every_table_matching_the_models(db: Database) -> None:
    def tables_and_diff(connection: Connection) -> tuple[set[str], list]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        names = set(inspect(connection).get_table_names())
        return names, compare_metadata(context, Base.metadata)

    await db.upgrade()  # a second upgrade is a no-op
    async with db.engine.connect() as connection:
        tables, diff = await connection.run_sync(tables_and_diff)
        revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    assert diff == []
    assert revision == "0005"


async def test_migrations_also_run_by_url_as_the_alembic_command_does(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "by-url.db")
    await asyncio.to_thread(command.upgrade, alembic_config(url=url), "head")
    db = Database(url)
    try:
        async with db.engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await db.close()
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


async def test_every_connection_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "nested" / "dir" / "hotline.db"))
    await db.upgrade()
    try:
        async with db.session() as session:
            pragmas = {
                name: await session.scalar(text(f"PRAGMA {name}"))
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
            session.add(Customer(name="赵六", phone="13500000000", address="望川市", area="城北区"))
            await session.commit()
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 1,  # NORMAL
            "foreign_keys": 1,
            "busy_timeout": 5000,
        }
        assert (tmp_path / "nested" / "dir" / "hotline.db-wal").exists()
        async with db.session() as session:
            session.add(
                Account(
                    account_no="5555555555",
                    customer_id=999,
                    address="x",
                    area="城北区",
                    meter_type="single_phase_smart",
                )
            )
            with pytest.raises(IntegrityError):
                await session.commit()
    finally:
        await db.close()


async def test_timestamps_come_back_timezone_aware_utc(db: Database) -> None:
    shanghai_evening = datetime(2026, 11, 23, 21, 30, tzinfo=LOCAL_TZ)
    async with db.session() as session:
        session.add(CallRecord(call_id="c-tz", started_at=shanghai_evening))
        await session.commit()
    async with db.session() as session:
        stored = await session.scalar(select(CallRecord.started_at))
    assert stored == shanghai_evening
    assert (stored.tzinfo, stored.hour) == (UTC, 13)

    async with db.session() as session:
        session.add(CallRecord(call_id="c-naive", started_at=datetime(2026, 11, 23, 21, 30)))
        with pytest.raises(StatementError, match="naive datetime"):
            await session.commit()


CRASHING_WRITER = """
import asyncio, os, sys
from datetime import UTC, datetime
from hotline.store.db import Database, alembic_config
from hotline.store.models import CallRecord

async def main():
    db = Database(sys.argv[1])
    await db.upgrade()
    async with db.session() as session:
        session.add(CallRecord(call_id="before-crash", started_at=datetime.now(UTC)))
        await session.commit()
    os._exit(9)  # die without closing anything: no checkpoint, no clean shutdown

asyncio.run(main())
"""


async def test_a_commit_survives_the_process_dying(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "hotline.db")
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, url], cwd=REPO, capture_output=True, timeout=60
    )
    assert crashed.returncode == 9, crashed.stderr.decode()
    db = Database(url)
    try:
        async with db.session() as session:
            assert await session.scalar(select(CallRecord.call_id)) == "before-crash"
    finally:
        await db.close()


async def dump(db: Database) -> dict[str, list[tuple]]:
    async with db.engine.connect() as connection:
        return {
            table: [tuple(row) for row in await connection.execute(text(f"SELECT * FROM {table}"))]
            for table in ("areas", "customers", "accounts", "bills", "outages")
        }


async def test_demo_data_is_deterministic(tmp_path: Path) -> None:
    dumps = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        db = Database(sqlite_url(tmp_path / f"{name}.db"))
        await db.upgrade()
        assert await ensure_demo_data(db, seed=seed, customers=60, now=NOW)
        dumps.append(await dump(db))
        await db.close()
    assert dumps[0] == dumps[1]
    assert dumps[0]["customers"] != dumps[2]["customers"]
    assert len(dumps[0]["customers"]) == 60


async def test_demo_data_is_created_on_first_run_only(db: Database) -> None:
    assert await ensure_demo_data(db, customers=20, now=NOW) is True
    before = await dump(db)
    assert await ensure_demo_data(db, customers=20, now=NOW + timedelta(days=40)) is False
    assert await dump(db) == before


async def current_bill(db: Database, account_no: str) -> Bill:
    async with db.session() as session:
        return await session.scalar(
            select(Bill)
            .join(Account)
            .where(Account.account_no == account_no)
            .order_by(Bill.period.desc())
            .limit(1)
        )


async def test_demo_fixed_records(db: Database) -> None:
    await ensure_demo_data(db, customers=10, now=NOW)
    async with db.session() as session:
        zhang = (
            await session.execute(
                select(Customer, Account).join(Account).where(Account.account_no == "1234567890")
            )
        ).one()
        outages = (await session.scalars(select(Outage).order_by(Outage.id))).all()
    customer, account = zhang
    assert (customer.name, customer.phone, account.area) == ("张伟", "13912345678", "城东区")

    bill = await current_bill(db, "1234567890")
    assert (bill.period, bill.charge, bill.balance) == ("2026-11", Decimal("123.45"), Decimal("0"))
    assert bill.due_date == date(2026, 11, 25)
    arrears = await current_bill(db, "2345678901")
    assert (arrears.charge, arrears.balance) == (Decimal("88.00"), Decimal("-35.20"))
    credit = await current_bill(db, "1111111111")
    assert (credit.charge, credit.balance) == (Decimal("230.00"), Decimal("12.05"))

    unplanned, planned = outages
    assert (unplanned.area, unplanned.reason, unplanned.planned) == ("城西区", "线路故障", False)
    assert unplanned.start <= NOW and unplanned.end is None and unplanned.expected_end > NOW
    assert "预计11月23日13:20恢复供电" in unplanned.notice
    assert planned.planned and planned.start > NOW and planned.end > planned.start


async def test_demo_city_looks_real(db: Database) -> None:
    assert await ensure_demo_data(db, now=NOW)  # the default size, as the engine creates it
    async with db.session() as session:
        customers = (await session.scalars(select(Customer))).all()
        account_nos = (await session.scalars(select(Account.account_no))).all()
        bills_per_account = set(
            (await session.scalars(select(func.count(Bill.id)).group_by(Bill.account_id))).all()
        )
        periods = (
            await session.scalars(select(Bill.period).distinct().order_by(Bill.period))
        ).all()
        in_arrears = await session.scalar(
            select(func.count(Bill.id)).where(Bill.period == "2026-11", Bill.balance < 0)
        )
    assert len(customers) == 2000
    assert len(set(account_nos)) == len(account_nos) >= 2000
    assert all(re.fullmatch(r"[1-9]\d{9}", no) for no in account_nos)
    assert all(re.fullmatch(r"1[3-9]\d{9}", c.phone) for c in customers)
    assert len({c.phone for c in customers}) == len(customers)
    assert all(re.fullmatch(r"[\u4e00-\u9fff]{2,3}", c.name) for c in customers)
    assert {c.area for c in customers} == {name for _code, name, _kind in AREAS}
    assert all(c.address.startswith("望川市" + c.area) for c in customers)
    assert bills_per_account == {12}
    assert periods[0] == "2025-12" and periods[-1] == "2026-11" and len(periods) == 12
    assert 0.03 < in_arrears / len(account_nos) < 0.3
    assert {f.account_no for f in FIXED_ACCOUNTS} <= set(account_nos)


async def test_seat_password_is_stored_as_ha1_only(db: Database) -> None:
    from drivers.sip.digest import compute_ha1
    from hotline.services.sip_seats import (
        DEMO_PASSWORD,
        DEMO_SEATS,
        REALM,
        SeatError,
        ensure_demo_seats,
        load_credentials,
        set_seat_password,
    )

    assert await ensure_demo_seats(db) is True
    assert await ensure_demo_seats(db) is False  # existing seats are left alone
    await set_seat_password(db, "1001", "another-secret")
    with pytest.raises(SeatError):
        await set_seat_password(db, "1002", "short")
    credentials = await load_credentials(db)
    assert sorted(credentials) == sorted(DEMO_SEATS)
    assert credentials["1001"].ha1 == {
        "MD5": compute_ha1("1001", REALM, "another-secret", "MD5"),
        "SHA-256": compute_ha1("1001", REALM, "another-secret", "SHA-256"),
    }
    assert credentials["1002"].ha1["MD5"] == compute_ha1("1002", REALM, DEMO_PASSWORD)
    async with db.session() as session:
        rows = (await session.execute(text("SELECT * FROM sip_seats"))).all()
    assert not any("another-secret" in str(v) or DEMO_PASSWORD in str(v) for r in rows for v in r)
