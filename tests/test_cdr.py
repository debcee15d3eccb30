"""Call detail records and the recording index, fed by events on a real Bus into SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from sqlalchemy import select, text

from hotline.bus import Bus
from hotline.services.cdr import MAX_ATTEMPTS, CdrWriter, RecordingIndex
from hotline.store.db import Database
from hotline.store.models import CallRecord, Recording

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


class Clock:
    """The bus's wall clock, moved by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def db(tmp_path: Path):
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}")
    await database.upgrade()
    yield database
    await database.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def bus(clock: Clock) -> Bus:
    return Bus(clock=clock)


@pytest.fixture
async def writers(bus: Bus, db: Database):
    cdr, recordings = CdrWriter(db, bus), RecordingIndex(db, bus)
    cdr.start()
    recordings.start()
    yield cdr, recordings
    await cdr.stop()
    await recordings.stop()


async def flushed(writers: tuple[CdrWriter, RecordingIndex]) -> None:
    for writer in writers:
        await writer.flush()


async def record(db: Database, call_id: str) -> CallRecord | None:
    async with db.session() as session:
        return await session.scalar(select(CallRecord).where(CallRecord.call_id == call_id))


def start_call(bus: Bus, call_id: str, caller: str = "13912345678") -> None:
    bus.publish("call.started", call_id, channel="sim/3", line="L03", caller=caller, called="95598")


async def test_a_whole_call_becomes_one_record(
    bus: Bus, db: Database, clock: Clock, writers
) -> None:
    start_call(bus, "call-1")
    await flushed(writers)
    mid_call = await record(db, "call-1")
    assert mid_call is not None  # the row exists while the call runs
    assert (mid_call.caller, mid_call.line, mid_call.ended_at, mid_call.result) == (
        "13912345678",
        "L03",
        None,
        None,
    )

    clock.advance(1)
    bus.publish("call.answered", "call-1")
    for step in ("welcome", "menu", "bill_account"):
        bus.publish("flow.step", "call-1", flow="main", step=step)
        clock.advance(3)
    bus.publish("flow.digits", "call-1", digits="1")
    bus.publish("flow.digits", "call-1", digits="1234567890#")
    bus.publish("workorder.opened", "call-1", number="GZ20261123000001")
    bus.publish("workorder.submitted", "call-1", number="GZ20261123000001")
    clock.advance(20)
    bus.publish(
        "call.ended", "call-1", cause="remote_bye", result="completed", last_step="main:bye"
    )
    bus.publish(
        "recording.finished",
        "call-1",
        path="recordings/call-1.wav",
        seconds=30.0,
        channels=2,
        bytes=960_044,
        recovered=False,
    )
    await flushed(writers)

    row = await record(db, "call-1")
    assert (row.channel, row.called) == ("sim/3", "95598")
    assert row.started_at == T0
    assert row.answered_at == T0 + timedelta(seconds=1)
    assert row.ended_at == T0 + timedelta(seconds=30)
    assert row.flow_path == ["main:welcome", "main:menu", "main:bill_account"]
    assert row.keys == "11234567890#"
    assert (row.hangup_cause, row.result, row.last_step) == ("remote_bye", "completed", "main:bye")
    assert row.work_order_number == "GZ20261123000001"
    assert row.recording_path == "recordings/call-1.wav"
    async with db.session() as session:
        recording = await session.scalar(select(Recording))
    assert (recording.call_id, recording.seconds, recording.channels, recording.bytes) == (
        "call-1",
        30.0,
        2,
        960_044,
    )
    assert recording.recovered is False


async def test_interleaved_calls_keep_their_own_records(bus: Bus, db: Database, writers) -> None:
    start_call(bus, "a", caller="13900000001")
    start_call(bus, "b", caller="13900000002")
    bus.publish("flow.step", "a", flow="main", step="welcome")
    bus.publish("flow.step", "b", flow="main", step="welcome")
    bus.publish("flow.digits", "b", digits="3")
    bus.publish("flow.step", "b", flow="fault", step="type")
    bus.publish("call.ended", "a", cause="loop_current_drop", result="abandoned")
    await flushed(writers)
    a, b = await record(db, "a"), await record(db, "b")
    assert (a.caller, a.flow_path, a.keys, a.result) == (
        "13900000001",
        ["main:welcome"],
        "",
        "abandoned",
    )
    assert (b.caller, b.flow_path, b.keys, b.result) == (
        "13900000002",
        ["main:welcome", "fault:type"],
        "3",
        None,
    )
    assert b.last_step == "fault:type"


async def test_events_after_hangup_land_on_the_same_record(bus: Bus, db: Database, writers) -> None:
    start_call(bus, "c")
    bus.publish("flow.step", "c", flow="fault", step="describe")
    bus.publish("call.ended", "c", cause="remote_bye", result="completed")
    await flushed(writers)
    bus.publish("flow.step", "c", flow="fault", step="on_hangup")
    bus.publish("workorder.submitted", "c", number="GZ20261123000007")
    await flushed(writers)
    row = await record(db, "c")
    assert row.flow_path == ["fault:describe", "fault:on_hangup"]
    assert (row.work_order_number, row.result, row.caller) == (
        "GZ20261123000007",
        "completed",
        "13912345678",
    )


async def test_recording_reported_before_the_record_exists(bus: Bus, db: Database, writers) -> None:
    bus.publish(
        "recording.finished",
        "d",
        path="recordings/d.wav",
        seconds=5,
        channels=1,
        bytes=80_044,
        recovered=True,
    )
    bus.publish(
        "recording.finished",
        "d",
        path="recordings/d-msg.wav",
        seconds=2,
        channels=1,
        bytes=32_044,
        recovered=False,
        purpose="voice_message",
    )
    await flushed(writers)
    start_call(bus, "d")
    await flushed(writers)
    assert (await record(db, "d")).recording_path == "recordings/d.wav"
    async with db.session() as session:
        recovered = await session.scalar(
            select(Recording).where(Recording.path == "recordings/d.wav")
        )
    assert recovered.recovered is True


async def test_stop_writes_what_was_published(bus: Bus, db: Database) -> None:
    cdr = CdrWriter(db, bus)
    cdr.start()
    start_call(bus, "e")
    bus.publish("call.ended", "e", cause="normal", result="completed")
    await cdr.stop()
    bus.publish("call.started", "f")  # after stop: no longer subscribed
    assert (await record(db, "e")).result == "completed"
    assert await record(db, "f") is None


async def test_a_failing_write_is_logged_and_the_others_go_on(
    bus: Bus, db: Database, writers
) -> None:
    async with db.engine.begin() as connection:  # the database itself refuses one call's row
        await connection.execute(
            text(
                "CREATE TRIGGER refuse_bad BEFORE INSERT ON call_records WHEN NEW.call_id = 'bad' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        )
    with structlog.testing.capture_logs() as logs:
        bus.publish("call.started", "bad")
        bus.publish("call.started", "good")
        bus.publish("call.ended", "good", cause="normal", result="completed")
        await flushed(writers)
        for _ in range(MAX_ATTEMPTS):
            bus.publish("flow.step", "bad", flow="main", step="menu")
            await flushed(writers)
        start_call(bus, "later")
        await flushed(writers)
    assert (await record(db, "good")).result == "completed"
    assert await record(db, "later") is not None
    assert await record(db, "bad") is None
    failures = [e for e in logs if e["event"].startswith("cdr.write_")]
    assert {e["call_id"] for e in failures} == {"bad"}
    assert "cdr.write_dropped" in [e["event"] for e in failures]
    assert max(e["attempts"] for e in failures) == MAX_ATTEMPTS


async def test_calls_cut_off_by_a_crash_are_marked_at_boot(bus: Bus, db: Database) -> None:
    first_run = CdrWriter(db, bus)
    first_run.start()
    start_call(bus, "cut")
    start_call(bus, "done")
    bus.publish("call.ended", "done", cause="normal", result="completed")
    await first_run.flush()
    # The process dies here; the next boot finds "cut" without an end.
    assert await CdrWriter(db, Bus()).close_interrupted() == 1
    cut = await record(db, "cut")
    assert (cut.result, cut.hangup_cause, cut.ended_at) == ("error", "engine_restart", None)
    assert (await record(db, "done")).result == "completed"
    await first_run.stop()
