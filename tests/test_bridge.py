"""Bridging two lines of the simulated board: audio both ways, recordings, how a bridge ends."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from drivers.channel import HangupCause, Reason
from drivers.media.tones import sine
from drivers.simboard.board import SimBoard
from drivers.simboard.channel import SimChannel
from support import dominant_hz
from support import run_virtual as run


async def _caller_and_agent(tmp_path: Path) -> tuple[SimBoard, SimChannel, SimChannel]:
    incoming: asyncio.Queue[SimChannel] = asyncio.Queue()
    board = SimBoard(
        trunks=1, stations=1, recordings_dir=tmp_path / "rec", on_incoming=incoming.put_nowait
    )
    board.start()
    board.line("t1").far_end.ring("13912345678")
    caller = await asyncio.wait_for(incoming.get(), 10)
    await caller.answer()
    agent = board.ring_station("s1", caller="13912345678")
    answered = asyncio.get_running_loop().create_future()
    agent.subscribe(
        lambda e: e.kind == "answer" and not answered.done() and answered.set_result(None)
    )
    board.line("s1").far_end.off_hook()
    await answered
    return board, caller, agent


def test_audio_flows_both_ways_and_each_leg_is_recorded(tmp_path: Path) -> None:
    async def go() -> tuple[Reason, dict, np.ndarray, np.ndarray, list[str]]:
        board, caller, agent = await _caller_and_agent(tmp_path)
        far_caller, far_agent = board.line("t1").far_end, board.line("s1").far_end
        far_caller.capture_audio = far_agent.capture_audio = True
        finished: list[str] = []
        board.on_event = lambda kind, call_id, **data: (
            finished.append(data["path"]) if kind == "recording.finished" else None
        )
        bridged = asyncio.create_task(caller.bridge(agent))
        await asyncio.sleep(0.1)
        await asyncio.gather(
            far_caller.send(sine(1000, 1000, -10)), far_agent.send(sine(600, 1000, -10))
        )
        await asyncio.sleep(0.1)
        far_agent.hang_up("loop")
        result = await bridged
        await caller.hangup()
        await board.stop()
        return (
            result.reason,
            result.detail,
            far_agent.heard_audio(),
            far_caller.heard_audio(),
            finished,
        )

    reason, detail, agent_heard, caller_heard, finished = run(go)
    assert reason is Reason.HANGUP
    assert detail == {"cause": str(HangupCause.LOOP_CURRENT_DROP), "hung_up": "sim:s1"}
    loud = lambda a: a[np.abs(a) > 100]  # noqa: E731
    assert len(loud(agent_heard)) > 5500 and dominant_hz(agent_heard) == pytest.approx(1000, abs=5)
    assert len(loud(caller_heard)) > 5500 and dominant_hz(caller_heard) == pytest.approx(600, abs=5)
    assert len(finished) == 2
    for path in finished:
        with wave.open(path) as w:
            assert w.getnchannels() == 2
            stereo = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
        left, right = stereo[:, 0], stereo[:, 1]
        far_hz, near_hz = (1000, 600) if "-t1-" in path else (600, 1000)
        assert dominant_hz(left) == pytest.approx(far_hz, abs=5)
        assert dominant_hz(right) == pytest.approx(near_hz, abs=5)


def test_bridge_ends_for_both_legs_on_stop_and_on_a_caller_hangup(tmp_path: Path) -> None:
    async def go() -> None:
        board, caller, agent = await _caller_and_agent(tmp_path)
        task = asyncio.create_task(caller.bridge(agent))
        await asyncio.sleep(1)
        await agent.stop()
        assert (await task).reason is Reason.STOPPED
        assert not caller.hung_up and not agent.hung_up
        task = asyncio.create_task(caller.bridge(agent, max_time=2))
        assert (await task).reason is Reason.MAX_TIME
        task = asyncio.create_task(agent.bridge(caller))
        await asyncio.sleep(1)
        board.line("t1").far_end.hang_up("polarity")
        result = await task
        assert (result.reason, result.detail["hung_up"]) == (Reason.HANGUP, "sim:t1")
        assert (await agent.bridge(caller)).reason is Reason.HANGUP  # already gone
        assert not agent.hung_up
        with pytest.raises(ValueError):
            await agent.bridge(agent)
        await board.stop()

    run(go)
