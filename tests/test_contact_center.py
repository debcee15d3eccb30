"""Transfers to agents on the simulated board: real engine, real flows, virtual clock.

A caller presses 0 in the main menu; the general queue rings an agent's seat (a station
line), the tester answers it with ``FarEnd.off_hook()``; the caller hears 报工号 and the two
talk (audio asserted both ways and in the caller's recording). Also: no answer re-offers the
call and leaves the first agent not ready (missed), abandons stop the ringing, no agent logged
in sends the caller to leave a message, and longest idle picks the right seat.
"""

from __future__ import annotations

import asyncio
import shutil
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.media.tones import sine
from drivers.simboard.line import FarEnd
from ivr.speech.readout import say
from sim.caller import Caller, LocalLine
from support import REPO, dominant_hz, queue_events, with_engine

AGENT_IDS = ("1001", "1002", "1003", "1004")


def ringing(far: FarEnd) -> bool:
    return far.call is not None and far.call.answered is None and far.call.ended is None


async def ask_for_agent(engine: Any, trunk: int = 1) -> Caller:
    caller = Caller(LocalLine(engine.board.line(trunk)))
    await caller.dial("13912345678")
    await caller.expect("人工服务请按零")
    await caller.press("0")
    await caller.expect("正在为您转接人工服务")
    return caller


async def seat_rings(engine: Any, seat: str, timeout: float = 30) -> FarEnd:
    far = engine.board.line(seat).far_end
    assert await far.wait_for(lambda: ringing(far), timeout), f"seat {seat} did not ring"
    return far


def test_caller_reaches_an_agent_hears_the_agent_id_and_they_talk(acd_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        events = queue_events(engine)
        caller = await ask_for_agent(engine)
        seat = await seat_rings(engine, "s1")  # all idle since start: the first agent added
        assert engine.agent_status("1001")["state"] == "reserved"
        assert seat.call.caller == "13912345678"
        seat.off_hook()
        await caller.expect(f"工号{say('digits', '1001')}为您服务")
        await caller.wait_quiet()
        far_caller = engine.board.line(1).far_end
        far_caller.capture_audio = seat.capture_audio = True
        await asyncio.sleep(0.2)
        answered = far_caller.call.answered
        t_send = asyncio.get_running_loop().time()
        await asyncio.gather(
            far_caller.send(sine(1000, 1000, -10)), seat.send(sine(600, 1000, -10))
        )
        far_caller.capture_audio = seat.capture_audio = False
        status_on_call = engine.agent_status("1001")
        seat.hang_up("loop")  # the agent ends the call; the caller is back in the flow
        await caller.expect("感谢您的来电")
        await caller.expect_hangup()
        await engine.idle()
        return {
            "events": events,
            "agent_heard": seat.heard_audio(),
            "caller_heard": far_caller.heard_audio(),
            "on_call": status_on_call,
            "after": engine.agent_status("1001"),
            "offset": t_send - answered,
            "outcome": next(iter(engine.outcomes.values())),
        }

    got = with_engine(acd_config, body)
    assert got["on_call"]["state"] == "on_call"
    assert got["after"]["state"] == "wrap_up" and got["after"]["status"] == "ready"
    assert dominant_hz(got["agent_heard"]) == pytest.approx(1000, abs=5)
    assert dominant_hz(got["caller_heard"]) == pytest.approx(600, abs=5)
    assert np.abs(got["agent_heard"]).max() > 5000 and np.abs(got["caller_heard"]).max() > 5000
    kinds = [k for k, _, _ in got["events"]]
    (pop,) = [d for k, _, d in got["events"] if k == "queue.screen_pop"]
    assert (pop["agent_id"], pop["seat"], pop["caller"]) == ("1001", "s1", "13912345678")
    assert pop["keys"] == "0" and pop["path"][:2] == ["main:welcome", "main:menu"]
    for kind in ("queue.enter", "queue.offer", "queue.connect", "queue.complete_agent"):
        assert kind in kinds, kinds
    assert got["outcome"].result == "transferred"
    assert "to_agent:queue" in got["outcome"].path

    # the caller's whole-call recording: caller left, the agent's 600 Hz right
    recordings = sorted((acd_config.path(acd_config.recordings_dir)).rglob("*-t1-*.wav"))
    assert len(recordings) == 1
    with wave.open(str(recordings[0])) as w:
        stereo = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    start = int((got["offset"] + 0.2) * 8000)
    window = stereo[start : start + 4800]
    assert dominant_hz(window[:, 0]) == pytest.approx(1000, abs=5)
    assert dominant_hz(window[:, 1]) == pytest.approx(600, abs=5)


def test_no_answer_reoffers_to_another_agent_and_the_first_is_missed(acd_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        events = queue_events(engine)
        caller = await ask_for_agent(engine)
        first = await seat_rings(engine, "s1")
        await caller.expect("坐席正忙，请您耐心等待")  # the waiting prompt while the seat rings
        second = await seat_rings(engine, "s2", timeout=20)  # after the 15 s ring timeout
        assert first.call.ended is not None and first.call.end_reason == "engine_hangup"
        missed = engine.agent_status("1001")
        second.off_hook()
        await caller.expect(f"工号{say('digits', '1002')}为您服务")
        await caller.hang_up("polarity")
        await engine.idle()
        assert await second.wait_for(lambda: second.call.ended is not None, 5)
        return {"events": events, "missed": missed}

    got = with_engine(acd_config, body)
    assert (got["missed"]["status"], got["missed"]["reason"]) == ("not_ready", "missed")
    offers = [agent for kind, agent, _ in got["events"] if kind == "queue.offer"]
    assert offers == ["1001", "1002"]
    no_answer = [d for kind, _, d in got["events"] if kind == "queue.ring_no_answer"]
    assert len(no_answer) == 1 and no_answer[0]["cause"] == "timeout"
    assert "queue.complete_caller" in [k for k, _, _ in got["events"]]


def test_caller_hanging_up_while_ringing_or_waiting_abandons_and_the_seat_stops(
    acd_config: Any,
) -> None:
    async def body(engine: Any) -> list[tuple[str, str | None, dict[str, Any]]]:
        events = queue_events(engine)
        caller = await ask_for_agent(engine)
        seat = await seat_rings(engine, "s1")
        await caller.hang_up("loop")
        assert await seat.wait_for(lambda: seat.call.ended is not None, 5)
        assert seat.call.answered is None
        assert engine.board.line("s1").state == "idle"
        assert engine.agent_status("1001")["status"] == "ready"  # an abandon is not a miss
        for agent_id in AGENT_IDS:
            engine.set_agent_not_ready(agent_id, "rest")
        caller = await ask_for_agent(engine, trunk=2)
        await caller.expect("坐席正忙，请您耐心等待")
        await caller.expect("您是下一位", timeout=60)  # the position, every 30 s
        await caller.hang_up("busy")
        await caller.expect_hangup()
        await engine.idle()
        assert all(ringing(engine.board.line(s).far_end) is False for s in ("s1", "s2", "s3", "s4"))
        return events

    events = with_engine(acd_config, body)
    abandons = [d for kind, _, d in events if kind == "queue.abandon"]
    assert [a["stage"] for a in abandons] == ["ringing", "waiting"]


def test_no_agent_logged_in_sends_the_caller_to_leave_a_message(acd_config: Any) -> None:
    async def body(engine: Any) -> list[tuple[str, str | None, dict[str, Any]]]:
        events = queue_events(engine)
        for agent_id in AGENT_IDS:
            engine.logout_agent(agent_id)
        caller = await ask_for_agent(engine)
        await caller.expect("坐席暂时无法接听，请您留言")
        await caller.expect("请在提示音后留言")
        await caller.hang_up()
        await engine.idle()
        return events

    events = with_engine(acd_config, body)
    exits = [d for kind, _, d in events if kind == "queue.exit"]
    assert len(exits) == 1 and exits[0]["reason"] == "no_agent" and exits[0]["at_entry"]
    assert "queue.offer" not in [k for k, _, _ in events]


def test_longest_idle_rings_the_seat_of_the_agent_idle_longest(acd_config: Any) -> None:
    async def body(engine: Any) -> list[str]:
        for agent_id in AGENT_IDS:
            engine.logout_agent(agent_id)
        for agent_id in ("1004", "1002", "1003"):  # 1004 first: idle the longest
            engine.login_agent(agent_id)
            await asyncio.sleep(10)
        caller = await ask_for_agent(engine)
        seat = await seat_rings(engine, "s4")
        rung = [s for s in ("s1", "s2", "s3") if engine.board.line(s).far_end.call is not None]
        await caller.hang_up()
        await engine.idle()
        assert await seat.wait_for(lambda: seat.call.ended is not None, 5)
        return rung

    assert with_engine(acd_config, body) == []


def test_danger_fault_reports_go_to_the_best_fault_expert_then_widen(acd_config: Any) -> None:
    async def report_danger(engine: Any, trunk: int) -> Caller:
        caller = Caller(LocalLine(engine.board.line(trunk)))
        await caller.dial("13912345678")
        for prompt, key in [
            ("故障报修请按二", "2"),
            ("使用来电号码报修请按二", "2"),
            ("危险情况请按三", "3"),
        ]:
            await caller.expect(prompt)
            await caller.press(key)
        await caller.expect("正在为您紧急转接人工服务")
        return caller

    async def body(engine: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        events = queue_events(engine)
        entered: list[float] = []
        engine.bus.subscribe("queue.enter", lambda _e: entered.append(loop.time()))
        caller = await report_danger(engine, 1)
        best = await seat_rings(engine, "s4")  # 赵敏, fault level 9
        await caller.hang_up()
        assert await best.wait_for(lambda: best.call.ended is not None, 5)
        engine.set_agent_not_ready("1004", "busy")
        engine.set_agent_not_ready("1001", "busy")  # level 8
        caller = await report_danger(engine, 2)
        widened = await seat_rings(engine, "s3", timeout=60)  # 李娜, level 5
        waited = loop.time() - entered[-1]
        widened.off_hook()
        await caller.expect(f"工号{say('digits', '1003')}为您服务")
        await caller.hang_up()
        await engine.idle()
        return {"waited": waited, "events": events, "s2": engine.board.line("s2").far_end.call}

    got = with_engine(acd_config, body)
    # the threshold starts at level 8 and drops one level per 10 s: level 5 after 30 s
    assert got["waited"] == pytest.approx(30, abs=0.05)
    assert got["s2"] is None  # 王强 has no fault skill
    entered = [d for kind, _, d in got["events"] if kind == "queue.enter"]
    assert [e["priority"] for e in entered] == [9, 9]


def test_agents_whose_seat_is_not_on_the_board_are_left_out(acd_config: Any) -> None:
    acd_config.board.stations = 2

    async def body(engine: Any) -> list[str]:
        return sorted(engine.contact_center.acd.agents)

    assert with_engine(acd_config, body) == ["1001", "1002"]


def test_ring_all_rings_every_free_seat_and_the_first_answer_wins(
    acd_config: Any, tmp_path: Path
) -> None:
    queues = tmp_path / "queues"
    queues.mkdir()
    shutil.copy(REPO / "queues" / "agents.yaml", queues / "agents.yaml")
    general = (REPO / "queues" / "general.yaml").read_text(encoding="utf-8")
    (queues / "general.yaml").write_text(
        general.replace("strategy: longest_idle", "strategy: ring_all"), encoding="utf-8"
    )
    acd_config.acd.queues_dir = str(queues)

    async def body(engine: Any) -> dict[str, Any]:
        caller = await ask_for_agent(engine)
        seats = {s: await seat_rings(engine, s, timeout=5) for s in ("s1", "s2", "s3", "s4")}
        seats["s3"].off_hook()
        await caller.expect(f"工号{say('digits', '1003')}为您服务")
        others = {s: (f.call.answered, f.call.end_reason) for s, f in seats.items() if s != "s3"}
        statuses = {a: engine.agent_status(a)["status"] for a in ("1001", "1002", "1004")}
        await caller.hang_up()
        await engine.idle()
        return {"others": others, "statuses": statuses}

    got = with_engine(acd_config, body)
    assert got["others"] == {s: (None, "engine_hangup") for s in ("s1", "s2", "s4")}
    assert set(got["statuses"].values()) == {"ready"}
