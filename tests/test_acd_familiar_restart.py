"""The familiar agent survives a restart: the memory is seeded from the stored queue log.

Agent 1003 serves a caller; the engine stops; a new engine starts on the same database. The
caller calls again and is offered to 1003 first although the queue's own strategy (longest
idle, everyone idle since login) would pick 1001. Then, with 1003 busy on another call but
ready, the caller waits for them alone for ``try_first`` seconds and falls back to 1001.
Real engine, real flows, simulated board, virtual clock.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_contact_center import seat_rings

from hotline.familiar import load_last_served
from ivr.speech.readout import say
from sim.caller import Caller, LocalLine
from support import REPO, make_config, with_engine

CALLER = "13912345678"
OTHER = "13800000001"
TRY_FIRST = 8


@pytest.fixture
def familiar_config(engine_template: Path, tmp_path: Path) -> Any:
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    queues = tmp_path / "queues"
    shutil.copytree(REPO / "queues", queues)
    general = queues / "general.yaml"
    general.write_text(
        general.read_text(encoding="utf-8")
        + f"familiar_agent: {{enabled: true, lookback_days: 7, try_first: {TRY_FIRST}}}\n",
        encoding="utf-8",
    )
    return make_config(tmp_path, cache=engine_template / "cache", acd={"queues_dir": str(queues)})


async def call_in(engine: Any, number: str, trunk: int) -> Caller:
    caller = Caller(LocalLine(engine.board.line(trunk)))
    await caller.dial(number)
    await caller.expect("人工服务请按零")
    await caller.press("0")
    await caller.expect("正在为您转接人工服务")
    return caller


async def until(engine: Any, condition: Any, timeout: float) -> None:
    """Wait until ``condition()`` holds, checked after each queue event."""
    if condition():
        return
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_event(event: Any) -> None:
        if not done.done() and condition():
            done.set_result(None)

    unsubscribe = engine.bus.subscribe("queue.", on_event)
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        unsubscribe()


def agent_idle(engine: Any, agent_id: str) -> Any:
    return lambda: engine.agent_status(agent_id)["state"] == "idle"


async def talk_and_hang_up(engine: Any, caller: Caller, seat: str, agent_id: str) -> None:
    far = await seat_rings(engine, seat)
    far.off_hook()
    await caller.expect(f"工号{say('digits', agent_id)}为您服务")
    far.hang_up("loop")
    await caller.expect("感谢您的来电")
    await caller.expect_hangup()


def test_the_familiar_agent_is_remembered_across_a_restart(familiar_config: Any) -> None:
    async def first_day(engine: Any) -> None:
        for agent_id in ("1001", "1002", "1004"):
            engine.set_agent_not_ready(agent_id, "busy")
        caller = await call_in(engine, CALLER, 1)
        await talk_and_hang_up(engine, caller, "s3", "1003")  # only 1003 was ready
        await engine.idle()

    with_engine(familiar_config, first_day)

    async def after_restart(engine: Any) -> dict[str, Any]:
        center = engine.contact_center
        seeded = center.acd.last_served(CALLER)
        # 1. everyone idle since login: longest idle would ring s1; the familiar 1003 rings
        caller = await call_in(engine, CALLER, 1)
        s1_rang = engine.board.line("s1").far_end.call is not None
        await talk_and_hang_up(engine, caller, "s3", "1003")
        first_enter = [e for e in center.recent_events if e.kind == "ENTER"][-1]
        # 2. 1003 busy (on a call) but ready: the caller waits for them alone, then falls back
        await until(engine, agent_idle(engine, "1003"), 60)  # 1003's wrap-up is over
        for agent_id in ("1001", "1002", "1004"):
            engine.set_agent_not_ready(agent_id, "busy")
        other = await call_in(engine, OTHER, 2)
        busy_seat = await seat_rings(engine, "s3")
        busy_seat.off_hook()
        await other.expect(f"工号{say('digits', '1003')}为您服务")
        for agent_id in ("1001", "1002", "1004"):
            engine.set_agent_ready(agent_id)
        entered = len(center.recent_events)
        caller = await call_in(engine, CALLER, 1)

        def offered() -> list[Any]:
            return [e for e in list(center.recent_events)[entered:] if e.kind == "OFFER"]

        await until(engine, lambda: bool(offered()), 60)
        offer = offered()[0]
        await talk_and_hang_up(engine, caller, "s1", offer.agent_id or "")
        busy_seat.hang_up("loop")
        await other.expect_hangup(60)
        await engine.idle()
        sessions = [e for e in center.recent_events if e.call_id == offer.call_id]
        return {
            "seeded": seeded,
            "s1_rang": s1_rang,
            "first_enter": first_enter,
            "enter": next(e for e in sessions if e.kind == "ENTER"),
            "offers": [e for e in sessions if e.kind == "OFFER"],
        }

    got = with_engine(familiar_config, after_restart)
    assert got["seeded"] is not None and got["seeded"][0] == "1003"
    assert got["first_enter"].data["familiar"] == "1003"
    assert not got["s1_rang"]
    # the fallback: offered to 1001 (longest idle) only after try_first seconds
    assert got["enter"].data["familiar"] == "1003"
    (offer,) = got["offers"]
    assert offer.agent_id == "1001"
    assert offer.time - got["enter"].time == pytest.approx(TRY_FIRST, abs=0.05)


def test_the_stored_services_are_read_back_bounded_and_within_the_lookback(
    familiar_config: Any,
) -> None:
    async def calls(engine: Any) -> dict[str, Any]:
        for agent_id in ("1002", "1003", "1004"):
            engine.set_agent_not_ready(agent_id, "busy")
        for number, trunk in ((CALLER, 1), (OTHER, 2)):
            caller = await call_in(engine, number, trunk)
            await talk_and_hang_up(engine, caller, "s1", "1001")
            await until(engine, agent_idle(engine, "1001"), 60)
        await engine.idle()
        day_ago = datetime.now(UTC) - timedelta(days=1)
        everything = await load_last_served(engine.db, since=day_ago, limit=10)
        after_last = datetime.fromtimestamp(everything[-1].time + 1, UTC)
        return {
            "all": everything,
            "newest": await load_last_served(engine.db, since=day_ago, limit=1),
            "later": await load_last_served(engine.db, since=after_last, limit=10),
        }

    got = with_engine(familiar_config, calls)
    assert [(s.caller, s.agent_id) for s in got["all"]] == [(CALLER, "1001"), (OTHER, "1001")]
    assert [s.caller for s in got["newest"]] == [OTHER]
    assert got["later"] == []
    with pytest.raises(ValueError, match="limit"):
        asyncio.run(load_last_served(None, since=datetime.now(UTC), limit=0))  # type: ignore[arg-type]


def test_the_core_memory_is_bounded_and_seeding_never_overrides_a_later_service() -> None:
    from acd.agents import Agent
    from acd.matcher import Acd
    from acd.queues import FamiliarAgent, QueueConfig

    acd = Acd(familiar_limit=3)
    acd.add_queue(QueueConfig("q", skills={"s": 1}, familiar_agent=FamiliarAgent(True, 7, 10)))
    for agent_id in ("1001", "1003"):
        acd.add_agent(Agent(agent_id, skills={"s": 5}))
        acd.login(agent_id, 0.0)
    for i, number in enumerate(("a", "b", "c", "d")):
        acd.remember_served(number, "1003", float(i))
    assert acd.last_served("a") is None  # the least recently served was forgotten
    assert acd.last_served("d") == ("1003", 3.0)
    acd.remember_served("d", "1001", 2.0)  # older than what the core knows: ignored
    assert acd.last_served("d") == ("1003", 3.0)
    actions = acd.enqueue("call-1", "q", 10.0, caller="d")
    assert [(a.agent_id) for a in actions if type(a).__name__ == "Offer"] == ["1003"]
    with pytest.raises(ValueError, match="familiar_limit"):
        Acd(familiar_limit=0)
