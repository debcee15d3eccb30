"""The durable queue event log on the board: calls answered, abandoned and timed out, the log
stored in SQLite by the engine, read back and recounted with acd.stats.

Scenario (one agent, 1001 at s1, logged in; the general queue with max_wait 30 s, no wrap-up,
T = 20 s, S = 5 s):

- A enters; s1 rings; the agent answers 2 s after A entered → answered, wait 2 s (≤ T);
- B enters while A talks and hangs up 8 s later → abandoned, wait ~8 s (> S: counts in SL);
- C enters and waits 30 s → timeout (neither answered nor abandoned);
- D enters; 25 s later the agent ends A's call, s1 rings for D and is answered 1 s later →
  answered, wait 26 s (> T).

By hand: offered 4, answered 2 (1 within T), abandoned 1 (0 short), timeouts 1;
SL(20) = 1 / (2 + 1 − 0) = 1/3; Asterisk SL = 1/2; ASA = (2 + 26) / 2 = 14 s;
abandonment = 1/4; 接通率 = 2/4. Calls that entered before D: offered 3, answered 1,
SL = 1/2, ASA = 2 s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect

from acd.stats import queue_stats, thresholds_of
from drivers.simboard.line import FarEnd
from hotline.services.queue_log import (
    load_queue_events,
    load_rows,
    stored_agent_stats,
    stored_queue_stats,
)
from hotline.store.db import Database, alembic_config
from sim.caller import Caller, LocalLine
from support import REPO, make_config, with_engine

QUEUE = """\
queue: general
strategy: longest_idle
skills: {general: 1}
max_wait: 30
ring_timeout: 15
wrap_up: 0
service_level_threshold: 20
short_abandon: 5
on_timeout: leave_message
on_no_agent: leave_message
on_full: leave_message
waiting_prompt: 坐席正忙，请您耐心等待，我们将尽快为您服务。
"""


@pytest.fixture
def log_config(engine_template: Path, tmp_path: Path) -> Any:
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    queues = tmp_path / "queues"
    queues.mkdir()
    shutil.copy(REPO / "queues" / "agents.yaml", queues / "agents.yaml")
    shutil.copy(REPO / "queues" / "fault.yaml", queues / "fault.yaml")
    (queues / "general.yaml").write_text(QUEUE, encoding="utf-8")
    return make_config(tmp_path, cache=engine_template / "cache", acd={"queues_dir": str(queues)})


def ringing(far: FarEnd) -> bool:
    return far.call is not None and far.call.answered is None and far.call.ended is None


class Entries:
    """Loop time and wall time of each ``queue.enter``, in order."""

    def __init__(self, engine: Any) -> None:
        self.loop_times: list[float] = []
        self.wall_times: list[dt.datetime] = []
        self.changed = asyncio.Event()
        engine.bus.subscribe("queue.enter", self._on_enter)

    def _on_enter(self, event: Any) -> None:
        self.loop_times.append(asyncio.get_running_loop().time())
        self.wall_times.append(dt.datetime.fromtimestamp(event.time, dt.UTC))
        self.changed.set()

    async def nth(self, n: int) -> float:
        while len(self.loop_times) < n:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 60)
        return self.loop_times[n - 1]


async def sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - asyncio.get_running_loop().time()))


async def ask_for_agent(engine: Any, trunk: int) -> Caller:
    caller = Caller(LocalLine(engine.board.line(trunk)))
    await caller.dial(f"1391234567{trunk}")
    await caller.expect("人工服务请按零")
    await caller.press("0")
    return caller


def test_stored_log_recounts_to_the_live_statistics(log_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        for agent_id in ("1002", "1003", "1004"):
            engine.logout_agent(agent_id)
        entries = Entries(engine)
        seat = engine.board.line("s1").far_end

        a = await ask_for_agent(engine, 1)
        await sleep_until(await entries.nth(1) + 2)
        assert ringing(seat)
        seat.off_hook()
        await a.expect("为您服务")

        b = await ask_for_agent(engine, 2)
        await sleep_until(await entries.nth(2) + 8)
        await b.hang_up("polarity")
        await b.expect_hangup()

        c = await ask_for_agent(engine, 3)
        await c.expect("坐席暂时无法接听，请您留言", timeout=60)  # max_wait 30 s
        await c.hang_up()

        d = await ask_for_agent(engine, 4)
        await sleep_until(await entries.nth(4) + 25)
        seat.hang_up("loop")  # the agent ends A's call
        await a.expect("感谢您的来电")
        await a.hang_up()
        assert await seat.wait_for(lambda: ringing(seat), 10)  # now D's call
        await asyncio.sleep(1)
        seat.off_hook()
        await d.expect("为您服务")
        await asyncio.sleep(5)
        seat.hang_up("loop")
        await d.expect("感谢您的来电")
        await d.hang_up()
        await engine.idle()

        center = engine.contact_center
        live = queue_stats(list(center.recent_events), thresholds_of(center.acd))
        thresholds = thresholds_of(center.acd)
        return {
            "live": live,
            "stored": await stored_queue_stats(engine.db, thresholds=thresholds),
            "before_d": await stored_queue_stats(
                engine.db, until=entries.wall_times[3], thresholds=thresholds
            ),
            "events": await load_queue_events(engine.db),
            "live_events": list(center.recent_events),
            "rows": await load_rows(engine.db, kinds=frozenset({"ABANDON"})),
            "agent": await stored_agent_stats(engine.db, "1001"),
        }

    got = with_engine(log_config, body)

    # the stored log is the live log, event for event
    stored, live_events = got["events"], got["live_events"]
    assert [(e.kind, e.queue, e.call_id, e.agent_id) for e in stored] == [
        (e.kind, e.queue, e.call_id, e.agent_id) for e in live_events
    ]
    assert [e.data for e in stored] == [e.data for e in live_events]

    live, recount = got["live"]["general"], got["stored"]["general"]
    for name, value in live.as_dict().items():
        assert recount.as_dict()[name] == pytest.approx(value, abs=1e-3), name

    # the figures the scenario implies
    assert (recount.offered, recount.answered, recount.answered_within_t) == (4, 2, 1)
    assert (recount.abandoned, recount.short_abandoned, recount.timeouts) == (1, 0, 1)
    assert recount.service_level == pytest.approx(1 / 3)
    assert recount.service_level_asterisk == pytest.approx(1 / 2)
    assert recount.asa == pytest.approx(14, abs=0.5)
    assert recount.abandonment_rate == pytest.approx(1 / 4)
    assert recount.connection_rate == pytest.approx(2 / 4)
    (abandon,) = got["rows"]
    assert abandon.data["wait"] == pytest.approx(8, abs=0.5)
    assert abandon.data["stage"] == "waiting"

    before_d = got["before_d"]["general"]
    assert (before_d.offered, before_d.answered, before_d.abandoned, before_d.timeouts) == (
        3,
        1,
        1,
        1,
    )
    assert before_d.service_level == pytest.approx(1 / 2)
    assert before_d.asa == pytest.approx(2, abs=0.5)

    agent = got["agent"]["1001"]
    assert (agent.offers, agent.answered, agent.handled) == (2, 2, 2)


async def test_revision_0002_adds_and_removes_the_queue_event_table(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}")

    async def tables() -> set[str]:
        async with db.engine.connect() as connection:
            return await connection.run_sync(lambda c: set(inspect(c).get_table_names()))

    try:
        await db.upgrade("0001")
        assert "queue_events" not in await tables()
        await db.upgrade("0002")
        assert "queue_events" in await tables()
        async with db.engine.begin() as connection:
            await connection.run_sync(
                lambda c: command.downgrade(alembic_config(connection=c), "0001")
            )
        assert "queue_events" not in await tables()
        assert "call_records" in await tables()
    finally:
        await db.close()
