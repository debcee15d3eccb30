"""Queued callback on the board: a waiting caller presses 1 to be called back and keeps their
place; a caller who entered later is not served first; when the agent takes the callback the
engine dials the caller on a free trunk, and the result is stored in the queue log.

One agent (1001 at s1) is logged in and busy with a first call. A enters the general queue,
after 20 s hears 如需回电请按一, presses 1 and hangs up; B enters after A and waits on the
line. The agent finishes the first call: the seat rings for A's callback (B is still
waiting), the agent answers, A's phone rings on a trunk, A answers and hears 报工号; only then
is B offered.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from acd.stats import queue_stats, thresholds_of
from drivers.simboard.line import FarEnd
from hotline.services.queue_log import load_rows, stored_queue_stats
from ivr.speech.readout import say
from sim.caller import Caller, LocalLine
from support import REPO, make_config, with_engine

QUEUE = """\
queue: general
strategy: longest_idle
skills: {general: 1}
max_wait: 600
ring_timeout: 15
wrap_up: 0
callback: {offer_after: 20, key: "1"}
on_timeout: leave_message
on_no_agent: leave_message
on_full: leave_message
waiting_prompt: 坐席正忙，请您耐心等待，我们将尽快为您服务。
"""
NUMBER_A = "13900000002"
NUMBER_B = "13900000003"


@pytest.fixture
def callback_config(engine_template: Path, tmp_path: Path) -> Any:
    (tmp_path / "var").mkdir()
    shutil.copy(engine_template / "var" / "hotline.db", tmp_path / "var" / "hotline.db")
    queues = tmp_path / "queues"
    queues.mkdir()
    for name in ("agents.yaml", "fault.yaml"):
        shutil.copy(REPO / "queues" / name, queues / name)
    (queues / "general.yaml").write_text(QUEUE, encoding="utf-8")
    return make_config(tmp_path, cache=engine_template / "cache", acd={"queues_dir": str(queues)})


def ringing(far: FarEnd) -> bool:
    return far.call is not None and far.call.answered is None and far.call.ended is None


async def ask_for_agent(engine: Any, trunk: int, number: str) -> Caller:
    caller = Caller(LocalLine(engine.board.line(trunk)))
    await caller.dial(number)
    await caller.expect("人工服务请按零")
    await caller.press("0")
    await caller.expect("正在为您转接人工服务")
    return caller


def heard(far: FarEnd, text: str) -> bool:
    return far.call is not None and any(text in (h.text or "") for h in far.call.heard)


def test_a_callback_keeps_its_place_and_the_caller_is_called_back(callback_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        for agent_id in ("1002", "1003", "1004"):
            engine.logout_agent(agent_id)
        seat = engine.board.line("s1").far_end
        first = await ask_for_agent(engine, 1, "13900000001")
        assert await seat.wait_for(lambda: ringing(seat), 30)
        seat.off_hook()
        await first.expect("为您服务")

        a = await ask_for_agent(engine, 2, NUMBER_A)
        b = await ask_for_agent(engine, 3, NUMBER_B)  # enters after A
        await a.expect("如需回电请按一", timeout=60)
        await a.press("1")
        await a.expect("已为您登记回电")
        await a.expect_hangup(timeout=30)

        seat.hang_up("loop")  # the agent finishes the first call
        assert await seat.wait_for(lambda: ringing(seat), 10)
        rang_for = seat.call.caller  # A's callback, while B still waits on the line
        b_waiting = b.line.status().get("ended") is None
        dialled = watch_trunks(engine, NUMBER_A)
        seat.off_hook()
        trunk = await asyncio.wait_for(dialled, 30)
        trunk.off_hook()  # A picks up the callback
        assert await trunk.wait_for(
            lambda: heard(trunk, f"工号{say('digits', '1001')}为您服务"), 30
        )
        seat.hang_up("loop")  # the agent ends the callback
        assert await trunk.wait_for(lambda: trunk.call.ended is not None, 10)

        assert await seat.wait_for(lambda: ringing(seat), 10)  # now B
        rang_next = seat.call.caller
        seat.off_hook()
        await b.expect("为您服务")
        seat.hang_up("loop")
        await b.expect("感谢您的来电")
        await b.hang_up()
        await first.hang_up()
        await engine.idle()
        center = engine.contact_center
        thresholds = thresholds_of(center.acd)
        return {
            "live": queue_stats(list(center.recent_events), thresholds),
            "stored": await stored_queue_stats(engine.db, thresholds=thresholds),
            "rang_for": rang_for,
            "b_waiting": b_waiting,
            "rang_next": rang_next,
            "trunk_caller": trunk.call.caller,
            "log": await load_rows(engine.db),
        }

    got = with_engine(callback_config, body)
    assert got["rang_for"] == NUMBER_A and got["b_waiting"]
    assert got["rang_next"] == NUMBER_B
    rows = got["log"]
    (callback,) = [r for r in rows if r.kind == "CALLBACK"]
    assert callback.data["position"] == 1  # A keeps the first place, ahead of B
    (result,) = [r for r in rows if r.kind == "CALLBACK_RESULT"]
    assert result.call_id == callback.call_id
    assert (result.data["result"], result.data["number"], result.agent_id) == (
        "answered",
        NUMBER_A,
        "1001",
    )
    connects = [r for r in rows if r.kind == "CONNECT"]
    assert [r.call_id for r in connects][1] == callback.call_id  # A before B
    assert connects[1].data.get("callback") is True
    assert [r.kind for r in rows if r.call_id == callback.call_id].count("ABANDON") == 0
    # the called-back call is recorded by the board like any other
    recordings = callback_config.path(callback_config.recordings_dir)
    assert list(recordings.rglob(f"{result.data['callback_call_id']}.wav"))
    # statistics: the stored log recounts to the live figures; A's callback is counted apart
    live, stored = got["live"]["general"], got["stored"]["general"]
    for name, value in live.as_dict().items():
        assert stored.as_dict()[name] == pytest.approx(value, abs=1e-3), name
    assert (stored.offered, stored.callbacks_requested, stored.callbacks_answered) == (3, 1, 1)
    assert stored.abandoned == 0 and stored.connection_rate == pytest.approx(1.0)


def test_a_callback_nobody_answers_is_recorded_as_no_answer(callback_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        for agent_id in ("1002", "1003", "1004"):
            engine.logout_agent(agent_id)
        engine.set_agent_not_ready("1001", "busy")
        a = await ask_for_agent(engine, 2, NUMBER_A)
        await a.expect("如需回电请按一", timeout=60)
        await a.press("1")
        await a.expect_hangup(timeout=30)
        seat = engine.board.line("s1").far_end
        engine.set_agent_ready("1001")
        assert await seat.wait_for(lambda: ringing(seat), 10)
        dialled = watch_trunks(engine, NUMBER_A)
        seat.off_hook()
        trunk = await asyncio.wait_for(dialled, 30)
        assert await trunk.wait_for(lambda: trunk.call.ended is not None, 40)  # nobody answers
        assert await seat.wait_for(lambda: seat.call.ended is not None, 5)
        await engine.idle()
        return {"log": await load_rows(engine.db), "agent": engine.agent_status("1001")}

    got = with_engine(callback_config, body)
    (result,) = [r for r in got["log"] if r.kind == "CALLBACK_RESULT"]
    assert (result.data["result"], result.agent_id) == ("no_answer", "1001")
    assert got["agent"]["status"] == "ready" and got["agent"]["state"] in ("idle", "wrap_up")


def watch_trunks(engine: Any, number: str) -> asyncio.Future[FarEnd]:
    """Resolves with the trunk's far end that rings for ``number`` (an outbound call)."""
    found: asyncio.Future[FarEnd] = asyncio.get_running_loop().create_future()
    for line in engine.board.trunks:
        far = line.far_end

        def on_notify(kind: str, data: dict[str, Any], far: FarEnd = far) -> None:
            if kind == "ringing" and data.get("number") == number and not found.done():
                found.set_result(far)

        far.listeners.append(on_notify)
    return found


def test_no_callback_is_offered_to_a_caller_whose_number_nobody_vouches_for(
    callback_config: Any,
) -> None:
    async def body(engine: Any) -> list[str]:
        for agent_id in ("1002", "1003", "1004"):
            engine.logout_agent(agent_id)
        seat = engine.board.line("s1").far_end
        busy = await ask_for_agent(engine, 1, "13900000001")  # keeps the only agent busy
        assert await seat.wait_for(lambda: ringing(seat), 30)
        seat.off_hook()
        caller = Caller(LocalLine(engine.board.line(2)))
        await caller.dial(NUMBER_A)
        # as an unauthenticated SIP From header would be: anyone could have written it
        engine.board.channel_on(engine.board.line(2)).caller_verified = False
        await caller.expect("人工服务请按零")
        await caller.press("0")
        await caller.expect("正在为您转接人工服务")
        await asyncio.sleep(60)  # three times the offer_after of the queue
        heard_texts = caller.transcript_text()
        await caller.hang_up()
        await busy.hang_up()
        return heard_texts

    texts = with_engine(callback_config, body)
    assert any("坐席正忙" in t for t in texts)
    assert not any("如需回电" in t for t in texts)
