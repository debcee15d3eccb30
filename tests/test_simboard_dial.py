"""Outbound calls on the simulated board: the first free trunk's far end rings with the number
dialled; off-hook answers the channel (recorded like any call); hanging up a ringing channel
stops the ringing; with every trunk busy, dialling fails clearly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from drivers.simboard.board import SimBoard
from support import run_virtual as run


def test_dial_rings_a_free_trunk_and_off_hook_answers(tmp_path: Path) -> None:
    async def go() -> dict[str, Any]:
        board = SimBoard(trunks=2, stations=1, recordings_dir=tmp_path)
        board.start()
        notices: list[tuple[str, dict[str, Any]]] = []
        board.line(1).far_end.listeners.append(lambda kind, data: notices.append((kind, data)))
        channel = board.dial("13900000002", caller="95598")
        far = board.line(1).far_end
        answered = asyncio.get_running_loop().create_future()
        channel.subscribe(lambda e: e.kind == "answer" and answered.set_result(True))
        assert far.call is not None and far.call.answered is None
        far.off_hook()
        await asyncio.wait_for(answered, 5)
        await asyncio.sleep(1)
        await channel.hangup()
        await asyncio.sleep(0.5)
        second = board.dial("13900000003")  # trunk 1 is free again
        line = second.line
        await second.hangup()  # stop ringing before an answer
        await asyncio.sleep(0.5)
        ended = board.line(1).far_end.call
        await board.stop()
        return {
            "notices": notices,
            "channel": (channel.line, channel.called, channel.caller),
            "second_line": line,
            "ended": ended,
            "recordings": sorted(p.name for p in tmp_path.rglob("*.wav")),
            "call_id": channel.call_id,
        }

    got = run(go)
    ringing = [data for kind, data in got["notices"] if kind == "ringing"]
    assert ringing[0] == {"caller": "95598", "number": "13900000002"}
    assert got["channel"] == ("t1", "13900000002", "95598")
    assert got["second_line"] == "t1"
    assert got["ended"].answered is None and got["ended"].end_reason == "engine_hangup"
    assert f"{got['call_id']}.wav" in got["recordings"]


def test_dial_with_every_trunk_busy_fails() -> None:
    async def go() -> None:
        board = SimBoard(trunks=1, stations=0)
        board.start()
        board.dial("13900000002")
        with pytest.raises(RuntimeError, match="every trunk is busy"):
            board.dial("13900000003")
        with pytest.raises(ValueError, match="no number"):
            board.dial("")
        await board.stop()

    run(go)
