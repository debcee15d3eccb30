"""The flow-facing services through ServiceRegistry, on a real SQLite store with demo data."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from hotline.bus import Bus, Event
from hotline.services import work_orders
from hotline.services.registry import SERVICE_NAMES, ServiceRegistry
from hotline.store.db import Database
from hotline.store.demo import ensure_demo_data
from hotline.store.models import LOCAL_TZ, Account, Bill, Customer, VoiceMessage, WorkOrder
from ivr.ports import CallContext, ServiceResult

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in China
CTX = CallContext(call_id="call-1", caller="13912345678", called="95598", line="L01")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(tmp_path: Path):
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}")
    await database.upgrade()
    await ensure_demo_data(database, customers=40, now=NOW)
    yield database
    await database.close()


@pytest.fixture
def bus() -> Bus:
    return Bus()


@pytest.fixture
def events(bus: Bus) -> list[Event]:
    seen: list[Event] = []
    bus.subscribe("workorder.", seen.append)
    return seen


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def services(db: Database, bus: Bus, clock: Clock) -> ServiceRegistry:
    return ServiceRegistry(db, bus=bus, clock=clock)


async def call(
    services: ServiceRegistry, name: str, ctx: CallContext = CTX, **args
) -> ServiceResult:
    return await services.call(name, args, ctx)


async def order(db: Database, number: str) -> WorkOrder:
    async with db.session() as session:
        return await session.scalar(select(WorkOrder).where(WorkOrder.number == number))


async def account_in(db: Database, area: str) -> str:
    async with db.session() as session:
        return await session.scalar(
            select(Account.account_no).where(Account.area == area).order_by(Account.id).limit(1)
        )


def test_registry_names(services: ServiceRegistry) -> None:
    assert services.names == SERVICE_NAMES
    assert {
        "billing.current_bill",
        "billing.account_by_phone",
        "outages.for_account",
        "work_orders.open",
        "work_orders.update",
        "work_orders.submit",
        "voice_messages.store",
    } <= services.names
    assert isinstance(services.names, frozenset)


# -- billing ----------------------------------------------------------------------------------


async def test_current_bill_of_a_paid_account(services: ServiceRegistry) -> None:
    result = await call(services, "billing.current_bill", account="1234567890")
    assert result.status == "found"
    assert result.data == {
        "account_no": "1234567890",
        "customer_name": "张伟",
        "area": "城东区",
        "period": "2026-11",
        "kwh": Decimal("229"),
        "charge": Decimal("123.45"),
        "paid": Decimal("123.45"),
        "balance": Decimal("0.00"),
        "arrears": Decimal("0.00"),
        "due_date": date(2026, 11, 25),
    }


async def test_current_bill_in_arrears_and_in_credit(services: ServiceRegistry) -> None:
    owing = await call(services, "billing.current_bill", account="2345678901")
    assert (owing.data["charge"], owing.data["balance"], owing.data["arrears"]) == (
        Decimal("88.00"),
        Decimal("-35.20"),
        Decimal("35.20"),
    )
    credit = await call(services, "billing.current_bill", account=1111111111)  # YAML integer
    assert (credit.data["charge"], credit.data["balance"], credit.data["arrears"]) == (
        Decimal("230.00"),
        Decimal("12.05"),
        Decimal("0.00"),
    )


async def test_current_bill_not_found(services: ServiceRegistry) -> None:
    unknown = await call(services, "billing.current_bill", account="0000000001")
    assert (unknown.status, unknown.data["reason"]) == ("not_found", "unknown_account")
    typo = await call(services, "billing.current_bill", account="12345")
    assert (typo.status, typo.data["reason"]) == ("not_found", "invalid")
    missing = await call(services, "billing.current_bill")
    assert missing.status == "error" and "missing argument 'account'" in missing.data["message"]


async def test_current_bill_is_the_latest_one_and_an_account_may_have_none(
    services: ServiceRegistry, db: Database
) -> None:
    async with db.session() as session:
        owner = await session.scalar(select(Account).where(Account.account_no == "1234567890"))
        assert owner is not None
        session.add_all(
            [
                Bill(
                    account_id=owner.id,
                    period=period,
                    kwh=Decimal("1"),
                    charge=Decimal(charge),
                    paid=Decimal("0"),
                    balance=Decimal("0"),
                    due_date=date(2027, 1, 25),
                )
                for period, charge in (("2026-12", "77.70"), ("2019-01", "1.00"))
            ]
        )
        session.add(
            Account(
                account_no="9999999999",
                customer_id=owner.customer_id,
                address="和平路18号",
                area=owner.area,
                meter_type="single_phase_smart",
            )
        )
        await session.commit()
    latest = await call(services, "billing.current_bill", account="1234567890")
    assert (latest.data["period"], latest.data["charge"]) == ("2026-12", Decimal("77.70"))
    assert latest.data["customer_name"] == "张伟"
    new = await call(services, "billing.current_bill", account="9999999999")
    assert (new.status, new.data["reason"]) == ("not_found", "no_bill")


async def test_account_by_phone(services: ServiceRegistry) -> None:
    by_caller = await call(services, "billing.account_by_phone")  # the caller's own number
    assert (by_caller.status, by_caller.data["account_no"]) == ("found", "1234567890")
    spelled = await call(services, "billing.account_by_phone", phone="+86 139-1234-5678")
    assert spelled.data["accounts"] == by_caller.data["accounts"]
    stranger = await call(services, "billing.account_by_phone", phone="13000000000")
    assert stranger.status == "not_found"


# -- outages ----------------------------------------------------------------------------------


async def test_current_unplanned_outage_is_announced(services: ServiceRegistry) -> None:
    result = await call(services, "outages.for_account", account="3456789012")
    assert result.status == "outage"
    assert result.data["area"] == "城西区"
    assert result.data["reason"] == "线路故障"
    assert result.data["planned"] is False
    assert "恢复供电" in result.data["notice"]
    assert result.data["start"] < NOW < result.data["expected_end"]

    quiet = await call(services, "outages.for_account", account="1234567890")
    assert (quiet.status, quiet.data["area"]) == ("none", "城东区")
    unknown = await call(services, "outages.for_account", account="0000000001")
    assert unknown.status == "not_found"


async def test_planned_outage_is_current_only_during_its_window(
    db: Database, services: ServiceRegistry, clock: Clock
) -> None:
    account = await account_in(db, "柳河县")
    day = (NOW + timedelta(days=3)).astimezone(LOCAL_TZ).date()
    answers = []
    for hour in (7, 12, 19):
        clock.now = datetime.combine(day, time(hour), LOCAL_TZ)
        answers.append((await call(services, "outages.for_account", account=account)).status)
    assert answers == ["none", "outage", "none"]


# -- work orders ------------------------------------------------------------------------------


async def test_draft_update_submit_lifecycle(
    db: Database, services: ServiceRegistry, events: list[Event]
) -> None:
    opened = await call(
        services,
        "work_orders.open",
        type="fault_repair",
        account="1234567890",
        fault_type="own_house",
    )
    assert opened.status == "ok"
    number = opened.data["number"]
    assert number == "GZ20261123000001" and re.fullmatch(r"GZ\d{14}", number)
    draft = await order(db, number)
    assert (draft.status, draft.area, draft.call_id, draft.caller) == (
        "draft",
        "城东区",
        "call-1",
        "13912345678",
    )

    updated = await call(
        services,
        "work_orders.update",
        number=number,
        description="家里没电，邻居有电",
        description_recording="recordings/call-1/description.wav",
        phone="139 1234 5678",  # the flows' name for contact_phone
    )
    assert updated.status == "ok"

    submitted = await call(services, "work_orders.submit", number=number)
    assert submitted.status == "ok" and submitted.data["number"] == number
    assert submitted.data["digits"] == "20261123000001"
    stored = await order(db, number)
    assert stored.status == "submitted"
    assert stored.submitted_at == NOW
    assert stored.due_at == NOW + timedelta(minutes=45)  # urban arrival deadline
    assert (stored.description, stored.contact_phone) == ("家里没电，邻居有电", "13912345678")
    assert stored.description_recording == "recordings/call-1/description.wav"

    again = await call(services, "work_orders.submit", number=number)
    assert again.status == "ok" and (await order(db, number)).submitted_at == NOW
    late = await call(services, "work_orders.update", number=number, description="x")
    assert late.status == "error" and "only drafts" in late.data["message"]

    assert [(e.kind, e.call_id, e.data["number"]) for e in events] == [
        ("workorder.opened", "call-1", number),
        ("workorder.submitted", "call-1", number),
        ("workorder.submitted", "call-1", number),
    ]

    mine = await call(services, "work_orders.for_account", account="1234567890")
    assert (mine.status, mine.data["number"], mine.data["count"]) == ("found", number, 1)


async def test_numbers_count_up_per_day(services: ServiceRegistry, clock: Clock) -> None:
    numbers = [
        (await call(services, "work_orders.open", type=kind)).data["number"]
        for kind in ("consultation", "praise")
    ]
    clock.now = NOW + timedelta(days=1)
    numbers.append((await call(services, "work_orders.open", type="建议")).data["number"])
    assert numbers == ["GZ20261123000001", "GZ20261123000002", "GZ20261124000001"]


@pytest.mark.parametrize(
    ("where", "deadline"),
    [
        ({"account": "1111111111"}, timedelta(minutes=90)),  # 青山县, rural
        ({"area": "云岭县"}, timedelta(hours=2)),  # remote
        ({"area": "不存在区"}, timedelta(minutes=45)),  # unknown area: the strictest
        ({}, timedelta(minutes=45)),
    ],
)
async def test_fault_repair_arrival_deadline_by_area(
    db: Database, services: ServiceRegistry, where: dict, deadline: timedelta
) -> None:
    number = (
        await call(
            services, "work_orders.open", type="fault_repair", fault_type="own_house", **where
        )
    ).data["number"]
    assert (await call(services, "work_orders.submit", number=number)).status == "ok"
    assert (await order(db, number)).due_at == NOW + deadline


async def test_complaint_reply_due_in_seven_working_days(
    db: Database, services: ServiceRegistry
) -> None:
    number = (await call(services, "work_orders.open", type="投诉", description="态度差")).data[
        "number"
    ]
    await call(services, "work_orders.submit", number=number)
    stored = await order(db, number)
    assert stored.type == "complaint"
    assert stored.due_at == datetime(2026, 12, 2, 10, 0, tzinfo=LOCAL_TZ)  # Mon → Wed+1 week


async def test_work_order_errors(services: ServiceRegistry) -> None:
    bad_type = await call(services, "work_orders.open", type="repair")
    assert bad_type.status == "error" and "unknown work order type" in bad_type.data["message"]
    bad_field = await call(services, "work_orders.open", type="report", colour="red")
    assert bad_field.status == "error" and "colour" in bad_field.data["message"]
    bad_account = await call(services, "work_orders.open", type="report", account="123")
    assert bad_account.status == "error" and "10 digits" in bad_account.data["message"]
    withheld = await call(services, "work_orders.open", type="report", contact_phone="anonymous")
    assert withheld.status == "ok"  # a withheld caller number does not stop the report
    unknown = await call(services, "work_orders.submit", number="GZ20990101000001")
    assert unknown.status == "error"
    no_fault_type = (await call(services, "work_orders.open", type="fault_repair")).data["number"]
    refused = await call(services, "work_orders.submit", number=no_fault_type)
    assert refused.status == "error" and "fault_type" in refused.data["message"]


async def test_area_outage_report_in_a_known_outage_is_a_duplicate(
    db: Database, services: ServiceRegistry, events: list[Event]
) -> None:
    draft = (
        await call(
            services,
            "work_orders.open",
            type="fault_repair",
            account="3456789012",
            fault_type="area_outage",
        )
    ).data["number"]
    result = await call(services, "work_orders.submit", number=draft)
    assert result.status == "duplicate"
    assert result.data["number"] == "TD20261123000001"
    assert result.data["digits"] == "20261123000001"  # what the flow reads out
    assert result.data["kind"] == "outage"
    assert "线路故障" in result.data["notice"]
    stored = await order(db, draft)
    assert (stored.status, stored.duplicate_of, stored.submitted_at) == (
        "closed",
        "TD20261123000001",
        None,
    )
    assert events[-1].kind == "workorder.duplicate"
    assert (await call(services, "work_orders.submit", number=draft)).status == "duplicate"

    danger = (
        await call(
            services,
            "work_orders.open",
            type="fault_repair",
            account="3456789012",
            fault_type="danger",
        )
    ).data["number"]
    assert (await call(services, "work_orders.submit", number=danger)).status == "ok"


async def test_second_area_outage_report_joins_the_open_order(
    db: Database, services: ServiceRegistry
) -> None:
    async def report(fault_type: str = "area_outage") -> ServiceResult:
        number = (
            await call(
                services,
                "work_orders.open",
                type="fault_repair",
                area="城北区",
                fault_type=fault_type,
            )
        ).data["number"]
        return await call(services, "work_orders.submit", number=number)

    first = await report()
    assert first.status == "ok"
    second = await report()
    assert (second.status, second.data["number"], second.data["kind"]) == (
        "duplicate",
        first.data["number"],
        "work_order",
    )
    assert (await report("own_house")).status == "ok"  # one house is not the area

    await work_orders.transition(services.db, first.data["number"], "dispatched")
    assert (await report()).status == "duplicate"  # still open while the crew is on the way
    await work_orders.transition(services.db, first.data["number"], "closed")
    assert (await report()).status == "ok"  # a new outage after the last one was closed


async def test_simultaneous_area_outage_reports_open_one_order(services: ServiceRegistry) -> None:
    drafts = [
        (
            await call(
                services,
                "work_orders.open",
                type="fault_repair",
                area="城南区",
                fault_type="area_outage",
            )
        ).data["number"]
        for _ in range(4)
    ]
    results = await asyncio.gather(
        *(call(services, "work_orders.submit", number=number) for number in drafts)
    )
    assert sorted(r.status for r in results) == ["duplicate", "duplicate", "duplicate", "ok"]


# -- voice messages ---------------------------------------------------------------------------


async def test_voice_message_is_stored(db: Database, services: ServiceRegistry) -> None:
    result = await call(
        services,
        "voice_messages.store",
        path="recordings/call-1/message.wav",
        seconds=12.5,
        account="1234567890",
    )
    assert result.status == "ok"
    async with db.session() as session:
        message = await session.get(VoiceMessage, result.data["id"])
    assert (message.path, message.seconds, message.caller, message.call_id) == (
        "recordings/call-1/message.wav",
        12.5,
        "13912345678",
        "call-1",
    )
    assert (message.account_no, message.status, message.created_at) == ("1234567890", "new", NOW)

    assert (await call(services, "voice_messages.store", seconds=3)).status == "error"
    negative = await call(services, "voice_messages.store", path="x.wav", seconds=-1)
    assert negative.status == "error"


# -- failures never reach the flow ------------------------------------------------------------


async def test_unknown_service_and_unexpected_args_are_errors_logged_with_call_id(
    services: ServiceRegistry,
) -> None:
    with structlog.testing.capture_logs() as logs:
        unknown = await call(services, "billing.pay_now", account="1234567890")
        extra = await call(services, "billing.current_bill", account="1234567890", month="2026-10")
    assert unknown.status == "error" and "unknown service" in unknown.data["message"]
    assert extra.status == "error" and "month" in extra.data["message"]
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["call_id"] for e in warnings] == ["call-1", "call-1"]


async def test_a_broken_store_answers_error(tmp_path: Path) -> None:
    empty = Database(f"sqlite+aiosqlite:///{tmp_path / 'never-migrated.db'}")
    try:
        with structlog.testing.capture_logs() as logs:
            result = await ServiceRegistry(empty).call(
                "billing.current_bill", {"account": "1234567890"}, CTX
            )
        assert result.status == "error" and "failed" in result.data["message"]
        assert logs[-1]["call_id"] == "call-1"
    finally:
        await empty.close()


async def test_billing_from_a_read_only_utility_database(tmp_path: Path) -> None:
    utility_url = f"sqlite+aiosqlite:///{tmp_path / 'utility-billing.db'}"
    utility = Database(utility_url)
    await utility.upgrade()
    await ensure_demo_data(utility, customers=10, now=NOW)
    await utility.close()
    engine_db = Database(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}")  # no customers at all
    await engine_db.upgrade()
    billing = Database(utility_url, read_only=True)
    try:
        services = ServiceRegistry(engine_db, billing_db=billing, clock=Clock(NOW))
        bill = await call(services, "billing.current_bill", account="1234567890")
        assert (bill.status, bill.data["charge"]) == ("found", Decimal("123.45"))
        opened = await call(
            services,
            "work_orders.open",
            type="fault_repair",
            account="1111111111",
            fault_type="danger",
        )
        assert opened.data["area"] == "青山县"  # placed through the billing database
        assert (
            await call(services, "work_orders.submit", number=opened.data["number"])
        ).status == "ok"
        assert (await order(engine_db, opened.data["number"])).status == "submitted"

        async with billing.session() as session:
            session.add(Customer(name="不该写入", phone="13000000009", address="x", area="城东区"))
            with pytest.raises(OperationalError, match="readonly"):
                await session.commit()
        with pytest.raises(RuntimeError, match="read-only"):
            await billing.upgrade()
    finally:
        await billing.close()
        await engine_db.close()
