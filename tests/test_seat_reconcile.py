"""State reconciliation on the engine: seats whose phone goes away, legs that vanish.

Unplugging a ringing seat's phone (``SimBoard.set_in_service``) makes the contact centre
reconcile the agent: the caller is re-offered to another agent keeping their place and the
first agent is set not ready (``unregistered``), restored when the phone is back. A seat leg
that vanishes without a word to the contact centre is found by the periodic audit and the
agent is freed.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_contact_center import ask_for_agent, ringing, seat_rings

from hotline.contact_center import RECONCILE_SECONDS
from ivr.speech.readout import say
from support import REPO, make_config, queue_events, with_engine


@pytest.fixture
def acd_config(engine_template: Path, tmp_path: Path) -> Any:
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    queues = tmp_path / "queues"
    queues.mkdir()
    for name in ("agents.yaml", "fault.yaml"):
        shutil.copy(REPO / "queues" / name, queues / name)
    general = (REPO / "queues" / "general.yaml").read_text(encoding="utf-8")
    # a long ring timeout: the ring timeout must not be what frees the agent here
    general = general.replace("ring_timeout: 15", "ring_timeout: 90")
    (queues / "general.yaml").write_text(general, encoding="utf-8")
    return make_config(tmp_path, cache=engine_template / "cache", acd={"queues_dir": str(queues)})


def test_unplugging_a_ringing_seat_reoffers_the_caller_and_unregisters_the_agent(
    acd_config: Any,
) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        events = queue_events(engine)
        caller = await ask_for_agent(engine)
        first = await seat_rings(engine, "s1")
        engine.board.set_in_service("s1", False)  # the agent's phone is pulled out
        assert first.call.ended is not None and first.call.answered is None
        unplugged = engine.agent_status("1001")
        second = await seat_rings(engine, "s2", timeout=5)
        with pytest.raises(RuntimeError, match="out of service"):
            engine.board.ring_station("s1")
        second.off_hook()
        await caller.expect(f"工号{say('digits', '1002')}为您服务")
        engine.board.set_in_service("s1", True)
        plugged = engine.agent_status("1001")
        await caller.hang_up()
        await engine.idle()
        return {"events": events, "unplugged": unplugged, "plugged": plugged}

    got = with_engine(acd_config, body)
    assert (got["unplugged"]["status"], got["unplugged"]["reason"]) == ("not_ready", "unregistered")
    assert got["unplugged"]["state"] == "idle"
    assert got["plugged"]["status"] == "ready"
    kinds = [k for k, _, _ in got["events"]]
    assert [a for k, a, _ in got["events"] if k == "queue.offer"] == ["1001", "1002"]
    assert "queue.ring_no_answer" not in kinds  # not a miss
    fixes = [d["fix"] for k, _, d in got["events"] if k == "queue.reconciled"]
    # not ready withdraws the offer at once; the caller keeps their place
    assert fixes == ["seat not registered: set not ready", "seat registered again: back to ready"]
    assert kinds.count("queue.abandon") == 0


def test_a_vanished_seat_leg_is_found_by_the_audit_and_the_agent_freed(acd_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        events = queue_events(engine)
        center = engine.contact_center
        caller = await ask_for_agent(engine)
        first = await seat_rings(engine, "s1")
        assert engine.agent_status("1001")["state"] == "reserved"
        # the leg is lost without a notice reaching the contact centre
        (key,) = [k for k in center._legs if k[1] == "1001"]
        leg = center._legs.pop(key)
        await leg.hangup()
        assert not ringing(first)
        lost_at = loop.time()
        assert engine.agent_status("1001")["state"] == "reserved"  # nobody told the core
        fixed = asyncio.Event()
        engine.bus.subscribe("queue.reconciled", lambda _e: fixed.set())
        await asyncio.wait_for(fixed.wait(), RECONCILE_SECONDS + 1)
        found_after = loop.time() - lost_at
        freed = engine.agent_status("1001")
        other = next(
            s
            for s in ("s2", "s3", "s4", "s1")
            if engine.board.line(s).far_end.call is not None
            and ringing(engine.board.line(s).far_end)
        )
        engine.board.line(other).far_end.off_hook()
        await caller.expect("工号")
        await caller.hang_up()
        await engine.idle()
        return {"events": events, "freed": freed, "after": found_after}

    got = with_engine(acd_config, body)
    assert got["after"] <= RECONCILE_SECONDS
    assert got["freed"]["status"] == "ready"  # freed, not missed: the caller is offered again
    offers = [a for k, a, _ in got["events"] if k == "queue.offer"]
    assert len(offers) == 2 and offers[0] == "1001"
    fixes = [(a, d["fix"]) for k, a, d in got["events"] if k == "queue.reconciled"]
    assert fixes == [("1001", "ringing without a seat leg: offer withdrawn")]
    assert "queue.connect" in [k for k, _, _ in got["events"]]


def test_unplugging_a_seat_in_a_call_ends_the_call_and_frees_the_agent(acd_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        events = queue_events(engine)
        caller = await ask_for_agent(engine)
        seat = await seat_rings(engine, "s1")
        seat.off_hook()
        await caller.expect(f"工号{say('digits', '1001')}为您服务")
        assert engine.agent_status("1001")["state"] == "on_call"
        engine.board.set_in_service("s1", False)
        await caller.expect("感谢您的来电")  # back in the flow, as after the agent's hangup
        await caller.expect_hangup()
        await engine.idle()
        return {"events": events, "after": engine.agent_status("1001")}

    got = with_engine(acd_config, body)
    assert (got["after"]["status"], got["after"]["reason"]) == ("not_ready", "unregistered")
    assert got["after"]["state"] in ("wrap_up", "idle")
    assert "queue.complete_agent" in [k for k, _, _ in got["events"]]
