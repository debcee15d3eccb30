"""What an agent does with a call: hold, resume, transfer and hang up, on the simulated board.

Real engine, real flows, virtual clock; the contact centre's Python API (the agent control
API builds on it). The caller presses 0 in the main menu and reaches agent 1001 at seat s1.
Asserted: what the caller heard (the hold music in the transcript, the agents' audio), what
the seat heard while the caller was on hold (silence), which agent got the transferred call,
the TRANSFER queue event and the agents' states.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from drivers.media.tones import sine
from drivers.simboard.line import FarEnd
from hotline.contact_center import MUSIC_PROMPT_ID, CallControlError
from ivr.speech.readout import say
from sim.caller import Caller, LocalLine
from support import dominant_hz, queue_events, with_engine


def ringing(far: FarEnd) -> bool:
    return far.call is not None and far.call.answered is None and far.call.ended is None


async def seat_rings(engine: Any, seat: str, timeout: float = 30) -> FarEnd:
    far = engine.board.line(seat).far_end
    assert await far.wait_for(lambda: ringing(far), timeout), f"seat {seat} did not ring"
    return far


async def connected_to(engine: Any, agent_id: str, seat: str, trunk: int = 1) -> Any:
    caller = Caller(LocalLine(engine.board.line(trunk)))
    await caller.dial("13912345678")
    await caller.expect("人工服务请按零")
    await caller.press("0")
    far = await seat_rings(engine, seat)
    far.off_hook()
    await caller.expect(f"工号{say('digits', agent_id)}为您服务")
    await caller.wait_quiet()
    return caller, far


async def exchange(caller_far: FarEnd, seat: FarEnd) -> tuple[np.ndarray, np.ndarray]:
    """1000 Hz from the caller, 600 Hz from the seat, for one second; what each heard."""
    caller_far.capture_audio = seat.capture_audio = True
    caller_far.call.captured.clear()  # type: ignore[union-attr]
    seat.call.captured.clear()  # type: ignore[union-attr]
    await asyncio.gather(caller_far.send(sine(1000, 1000, -10)), seat.send(sine(600, 1000, -10)))
    caller_far.capture_audio = seat.capture_audio = False
    return seat.heard_audio(), caller_far.heard_audio()


def test_hold_plays_music_to_the_caller_and_silence_to_the_seat_then_resume(
    acd_config: Any,
) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        center = engine.contact_center
        caller, seat = await connected_to(engine, "1001", "s1")
        far_caller = engine.board.line(1).far_end
        with pytest.raises(CallControlError):
            center.resume("1001")  # not on hold
        heard_before = len(caller.transcript)
        center.hold("1001")
        assert engine.agent_status("1001")["state"] == "on_hold"
        with pytest.raises(CallControlError):
            center.hold("1001")
        await caller.expect("（等待音乐）")
        seat_heard, _ = await exchange(far_caller, seat)
        center.resume("1001")
        await asyncio.sleep(0.1)
        assert engine.agent_status("1001")["state"] == "on_call"
        seat_after, caller_after = await exchange(far_caller, seat)
        music = [h for h in caller.transcript[heard_before:] if h["prompt_id"] == MUSIC_PROMPT_ID]
        await center.hangup("1001")
        await caller.expect("感谢您的来电")
        await caller.hang_up()
        await engine.idle()
        return {
            "seat_on_hold": seat_heard,
            "seat_after": seat_after,
            "caller_after": caller_after,
            "music": music,
            "after": engine.agent_status("1001"),
        }

    got = with_engine(acd_config, body)
    assert got["music"], "the caller did not hear the hold music"
    assert np.abs(got["seat_on_hold"]).max() < 50  # the caller's tone did not reach the seat
    assert dominant_hz(got["seat_after"]) == pytest.approx(1000, abs=5)
    assert dominant_hz(got["caller_after"]) == pytest.approx(600, abs=5)
    assert got["after"]["state"] == "wrap_up"


def test_transfer_to_another_agent_rings_that_seat_and_bridges_the_caller(
    acd_config: Any,
) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        events = queue_events(engine)
        center = engine.contact_center
        caller, first = await connected_to(engine, "1001", "s1")
        with pytest.raises(KeyError):
            center.transfer_call("1001", "nobody")
        engine.set_agent_not_ready("1003", "busy")
        with pytest.raises(CallControlError):
            center.transfer_call("1001", "1003")  # not free: the call goes on
        assert engine.agent_status("1001")["state"] == "on_call"
        center.transfer_call("1001", "1002")
        second = await seat_rings(engine, "s2")
        assert await first.wait_for(lambda: first.call.ended is not None, 5)
        states = {"1001": engine.agent_status("1001")["state"]}
        second.off_hook()
        await caller.expect(f"工号{say('digits', '1002')}为您服务")
        await caller.wait_quiet()
        far_caller = engine.board.line(1).far_end
        seat_heard, caller_heard = await exchange(far_caller, second)
        states["1002"] = engine.agent_status("1002")["state"]
        second.hang_up("loop")
        await caller.expect("感谢您的来电")
        await caller.hang_up()
        await engine.idle()
        return {"events": events, "states": states, "seat": seat_heard, "caller": caller_heard}

    got = with_engine(acd_config, body)
    assert got["states"] == {"1001": "wrap_up", "1002": "on_call"}
    assert dominant_hz(got["seat"]) == pytest.approx(1000, abs=5)
    assert dominant_hz(got["caller"]) == pytest.approx(600, abs=5)
    transfers = [(a, d) for k, a, d in got["events"] if k == "queue.transfer"]
    assert len(transfers) == 1 and transfers[0][0] == "1001"
    assert transfers[0][1]["target"] == "1002"
    connects = [a for k, a, _ in got["events"] if k == "queue.connect"]
    assert connects == ["1001", "1002"]
    finished = [d for k, _, d in got["events"] if k == "queue.call_finished"]
    assert [f["ended_by"] for f in finished] == ["transfer", "agent"]


def test_transfer_to_a_queue_queues_the_caller_there(acd_config: Any) -> None:
    async def body(engine: Any) -> list[tuple[str, str | None, dict[str, Any]]]:
        events = queue_events(engine)
        center = engine.contact_center
        caller, first = await connected_to(engine, "1001", "s1")
        center.hold("1001")
        await caller.expect("（等待音乐）")
        center.transfer_call("1001", "fault")  # from hold: fault's expert queue, 1004 first
        fourth = await seat_rings(engine, "s4")
        fourth.off_hook()
        await caller.expect(f"工号{say('digits', '1004')}为您服务")
        await center.hangup("1004")
        await caller.expect("感谢您的来电")
        await caller.hang_up()
        await engine.idle()
        return events

    events = with_engine(acd_config, body)
    transfers = [d for k, _, d in events if k == "queue.transfer"]
    assert len(transfers) == 1 and transfers[0]["target"] == "fault"
    assert transfers[0]["queue"] == "general"
    enters = [d["queue"] for k, _, d in events if k == "queue.enter"]
    assert enters == ["general", "fault"]
    completes = [(a, d["queue"]) for k, a, d in events if k == "queue.complete_agent"]
    assert completes == [("1004", "fault")]


async def consult_stage(events: list[Any], stage: str, count: int, timeout: float = 10) -> None:
    """Wait (virtual time, bounded) until ``stage`` has been published ``count`` times."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while sum(1 for k, _, d in events if k == "queue.consult" and d["stage"] == stage) < count:
        assert loop.time() < deadline, f"no consult stage {stage} x{count}: {events}"
        await asyncio.sleep(0.02)


def test_consultative_transfer_agents_talk_then_cancel_or_complete(acd_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        events = queue_events(engine)
        center = engine.contact_center
        caller, first = await connected_to(engine, "1001", "s1")
        far_caller = engine.board.line(1).far_end
        with pytest.raises(CallControlError):
            center.cancel_consult("1001")  # not consulting
        center.consult("1001", "1002")
        got: dict[str, Any] = {"consulted": dict(engine.agent_status("1002"))}
        await caller.expect("（等待音乐）")
        second = await seat_rings(engine, "s2")
        assert second.call.caller == "1001"  # the consulting agent's id as caller ID
        second.off_hook()
        await consult_stage(events, "talking", 1)
        got["second_heard"], got["first_heard"] = await exchange(first, second)
        center.cancel_consult("1001")  # back to the caller
        assert await second.wait_for(lambda: second.call.ended is not None, 5)
        got["after_cancel"] = dict(engine.agent_status("1002"))
        await asyncio.sleep(0.2)
        got["agent_heard"], got["caller_heard"] = await exchange(far_caller, first)

        center.consult("1001", "1002")
        second = await seat_rings(engine, "s2")
        second.off_hook()  # at once: the consultation must not miss the answer
        await consult_stage(events, "talking", 2)
        await center.complete_consult("1001")
        assert await first.wait_for(lambda: first.call.ended is not None, 5)
        second = await seat_rings(engine, "s2")  # rings again, now with the caller
        got["caller_id"] = second.call.caller
        second.off_hook()
        await caller.expect(f"工号{say('digits', '1002')}为您服务")
        got["states"] = {a: engine.agent_status(a)["state"] for a in ("1001", "1002")}
        await center.hangup("1002")
        await caller.expect("感谢您的来电")
        await caller.hang_up()
        await engine.idle()
        got["events"] = events
        return got

    got = with_engine(acd_config, body)
    assert (got["consulted"]["status"], got["consulted"]["reason"]) == ("not_ready", "consult")
    assert dominant_hz(got["second_heard"]) == pytest.approx(1000, abs=5)  # agent to agent
    assert dominant_hz(got["first_heard"]) == pytest.approx(600, abs=5)
    assert got["after_cancel"]["status"] == "ready"
    assert dominant_hz(got["agent_heard"]) == pytest.approx(1000, abs=5)  # caller and 1001 again
    assert dominant_hz(got["caller_heard"]) == pytest.approx(600, abs=5)
    assert got["caller_id"] == "13912345678"
    assert got["states"] == {"1001": "wrap_up", "1002": "on_call"}
    stages = [d["stage"] for k, _, d in got["events"] if k == "queue.consult"]
    assert stages == ["ringing", "talking", "cancelled", "ringing", "talking", "completed"]
    transfers = [(a, d["target"]) for k, a, d in got["events"] if k == "queue.transfer"]
    assert transfers == [("1001", "1002")]


def test_a_consulted_agent_whose_phone_goes_away_comes_back_ready(acd_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        events = queue_events(engine)
        center = engine.contact_center
        caller, first = await connected_to(engine, "1001", "s1")
        center.consult("1001", "1002")
        second = await seat_rings(engine, "s2")
        second.off_hook()
        await consult_stage(events, "talking", 1)
        engine.board.set_in_service("s2", False)  # the consulted agent's phone is unplugged
        await consult_stage(events, "hung_up", 1)
        gone = dict(engine.agent_status("1002"))
        held = dict(engine.agent_status("1001"))
        engine.board.set_in_service("s2", True)
        back = dict(engine.agent_status("1002"))
        center.resume("1001")
        await asyncio.sleep(0.2)
        heard = await exchange(engine.board.line(1).far_end, first)
        await center.hangup("1001")
        await caller.hang_up()
        await engine.idle()
        return {"gone": gone, "held": held, "back": back, "heard": heard}

    got = with_engine(acd_config, body)
    assert (got["gone"]["status"], got["gone"]["reason"]) == ("not_ready", "unregistered")
    assert got["held"]["state"] == "on_hold"  # the caller stays on hold with the first agent
    assert (got["back"]["status"], got["back"]["reason"]) == ("ready", None)
    agent_heard, caller_heard = got["heard"]
    assert dominant_hz(agent_heard) == pytest.approx(1000, abs=5)
    assert dominant_hz(caller_heard) == pytest.approx(600, abs=5)
