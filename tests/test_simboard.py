"""The simulated board driven through its far end: rings, in-band keys, play, record, hangups."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.channel import HangupCause, Playable, Reason
from drivers.media.tones import dtmf_sequence, sine
from drivers.simboard.board import SimBoard
from drivers.simboard.channel import SimChannel
from drivers.simboard.line import HangupSignal, LineConfig
from support import run_virtual as run


async def _answered_call(tmp_path: Path, **board_kw: Any) -> tuple[SimBoard, SimChannel, Any]:
    incoming: asyncio.Queue[SimChannel] = asyncio.Queue()
    board = SimBoard(
        trunks=2, recordings_dir=tmp_path / "rec", on_incoming=incoming.put_nowait, **board_kw
    )
    board.start()
    far = board.line(1).far_end
    far.ring("13912345678")
    channel = await asyncio.wait_for(incoming.get(), 10)
    await channel.answer()
    return board, channel, far


def test_ring_cadence_caller_id_and_answer(tmp_path: Path) -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        events: list[tuple[str, float]] = []
        seen: asyncio.Future[SimChannel] = loop.create_future()
        board = SimBoard(trunks=1, on_incoming=seen.set_result)
        board.start()
        t0 = loop.time()
        board.line(1).far_end.ring("13912345678", "95598")
        channel = await seen
        assert channel.caller == "13912345678" and channel.called == "95598"
        assert loop.time() - t0 == pytest.approx(1.0, abs=0.05)  # caller ID after the first ring
        channel.subscribe(lambda e: events.append((e.kind, e.time - t0)))
        await asyncio.sleep(8.9)  # the next ring comes 5 s after the first
        rings = [t for kind, t in events if kind == "ring"]
        assert rings == pytest.approx([5.0], abs=0.05)
        await channel.answer()
        await asyncio.sleep(10)
        assert [k for k, _ in events].count("ring") == 1  # answering stops the ringing
        await board.stop()

    run(go)


def test_inband_keys_are_collected_with_terminator(tmp_path: Path) -> None:
    async def go() -> None:
        board, channel, far = await _answered_call(tmp_path)
        far.send(dtmf_sequence("1234567890#"))
        result = await channel.collect(max_digits=10, terminators="#", first_timeout=5)
        # ten digits reach max_digits before the # arrives
        assert (result.reason, result.digits) == (Reason.MAX_DIGITS, "1234567890")
        # the "#" right after the tenth digit is swallowed, not left for the next collect
        result = await channel.collect(max_digits=10, terminators="#", first_timeout=2)
        assert (result.reason, result.digits) == (Reason.FIRST_DIGIT_TIMEOUT, "")
        far.send(dtmf_sequence("42#"))
        result = await channel.collect(max_digits=10, terminators="#")
        assert (result.reason, result.digits, result.detail["terminator"]) == (
            Reason.DIGIT,
            "42",
            "#",
        )
        await board.stop()

    run(go)


def test_collect_timeouts(tmp_path: Path) -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        board, channel, far = await _answered_call(tmp_path)
        t = loop.time()
        result = await channel.collect(max_digits=4, first_timeout=3, inter_timeout=2)
        assert result.reason is Reason.FIRST_DIGIT_TIMEOUT and result.digits == ""
        assert loop.time() - t == pytest.approx(3.0, abs=0.05)
        far.send(dtmf_sequence("7"))
        result = await channel.collect(max_digits=4, first_timeout=3, inter_timeout=2)
        assert (result.reason, result.digits) == (Reason.INTERDIGIT_TIMEOUT, "7")
        await board.stop()

    run(go)


def test_play_with_barge_in_keeps_digit_for_collect(tmp_path: Path) -> None:
    async def go() -> None:
        board, channel, far = await _answered_call(tmp_path)
        prompt = Playable(sine(440, 3000, -12), text="请输入户号", prompt_id="ask")
        far.send(np.concatenate([np.zeros(4000, np.int16), dtmf_sequence("5")]))
        result = await channel.play([prompt], barge_in="any")
        assert result.reason is Reason.DIGIT and result.digits == "5"
        assert 0.5 < result.duration < 1.0
        heard = far.call.heard
        assert heard[0].text == "请输入户号" and heard[0].interrupted
        collected = await channel.collect(max_digits=1)
        assert collected.digits == "5"
        await board.stop()

    run(go)


def test_play_to_the_end_without_barge_in_buffers_digits(tmp_path: Path) -> None:
    async def go() -> None:
        board, channel, far = await _answered_call(tmp_path)
        far.capture_audio = True
        prompt = Playable(sine(440, 1000, -12), text="欢迎", prompt_id="welcome")
        far.send(dtmf_sequence("9"))
        result = await channel.play([prompt])
        assert result.reason is Reason.DONE
        assert result.duration == pytest.approx(1.0, abs=0.05)
        assert not far.call.heard[0].interrupted
        heard = far.heard_audio()
        assert np.abs(heard).max() > 5000  # the far end really received the tone
        assert (await channel.collect(max_digits=1)).digits == "9"  # type-ahead
        await board.stop()

    run(go)


def test_record_ends_on_silence_and_trims_it(tmp_path: Path) -> None:
    async def go() -> None:
        board, channel, far = await _answered_call(tmp_path)
        voice = sine(300, 2000, -15)
        far.send(np.concatenate([np.zeros(2400, np.int16), voice]))  # after the 250 ms beep
        result = await channel.record(str(tmp_path / "msg.wav"), max_time=30, max_silence=2)
        assert result.reason is Reason.SILENCE
        # 50 ms of lead-in + 2 s of voice + the detector's 200 ms hangover; the rest is trimmed
        assert result.duration == pytest.approx(2.25, abs=0.05)
        with wave.open(str(tmp_path / "msg.wav")) as w:
            assert (w.getframerate(), w.getnchannels()) == (8000, 1)
            assert w.getnframes() / 8000 == pytest.approx(result.duration, abs=0.01)
        await board.stop()

    run(go)


def test_record_ends_on_terminator_and_max_time(tmp_path: Path) -> None:
    async def go() -> None:
        board, channel, far = await _answered_call(tmp_path)
        far.send(np.concatenate([sine(300, 1500, -15), dtmf_sequence("#")]))
        result = await channel.record(
            str(tmp_path / "a.wav"), max_time=30, max_silence=None, beep=False
        )
        assert result.reason is Reason.DIGIT and result.digits == "#"
        assert 1.4 < result.duration < 1.6
        far.send(sine(300, 5000, -15))
        result = await channel.record(
            str(tmp_path / "b.wav"), max_time=2, max_silence=None, beep=False
        )
        assert result.reason is Reason.MAX_TIME
        assert result.duration == pytest.approx(2.0, abs=0.05)
        await board.stop()

    run(go)


@pytest.mark.parametrize(
    ("signal", "cause", "notice"),
    [
        (HangupSignal.LOOP, HangupCause.LOOP_CURRENT_DROP, 0.3),
        (HangupSignal.POLARITY, HangupCause.POLARITY_REVERSAL, 0.0),
        (HangupSignal.BUSY, HangupCause.BUSY_TONE, 3 * 0.7),
    ],
)
def test_each_hangup_signal_ends_the_call_and_finishes_the_recording(
    tmp_path: Path, signal: HangupSignal, cause: HangupCause, notice: float
) -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        events: list[tuple[str, dict[str, Any]]] = []
        board, channel, far = await _answered_call(
            tmp_path, on_event=lambda kind, call_id, **data: events.append((kind, data))
        )
        play = asyncio.create_task(channel.play([Playable(sine(440, 20_000, -12), text="长提示")]))
        await asyncio.sleep(2)
        t = loop.time()
        far.hang_up(signal)
        result = await play
        assert result.reason is Reason.HANGUP
        assert channel.hangup_cause is cause
        assert loop.time() - t == pytest.approx(notice, abs=0.25)
        finished = [d for k, d in events if k == "recording.finished"]
        assert len(finished) == 1
        path = Path(finished[0]["path"])
        assert path.exists() and not Path(str(path) + ".part").exists()
        with wave.open(str(path)) as w:
            assert w.getnchannels() == 2 and w.getframerate() == 8000
            assert w.getnframes() / 8000 == pytest.approx(2 + notice, abs=0.1)
        await board.stop()

    run(go)


def test_busy_cycles_are_configurable_per_line(tmp_path: Path) -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        board, channel, far = await _answered_call(
            tmp_path,
            line_configs={"t1": LineConfig(hangup_signal=HangupSignal.BUSY, busy_cycles=5)},
        )
        t = loop.time()
        far.hang_up()  # the line's own signal: busy
        await channel.wait_ended()
        assert channel.hangup_cause is HangupCause.BUSY_TONE
        assert loop.time() - t == pytest.approx(5 * 0.7, abs=0.3)
        await board.stop()

    run(go)


def test_caller_abandons_while_ringing(tmp_path: Path) -> None:
    async def go() -> None:
        seen: list[SimChannel] = []
        board = SimBoard(trunks=1, on_incoming=seen.append)
        board.start()
        far = board.line(1).far_end
        far.ring("13800000000")
        await asyncio.sleep(1.5)
        far.hang_up()
        await seen[0].wait_ended()
        assert seen[0].hangup_cause is HangupCause.CANCELLED
        with pytest.raises(Exception, match="hung up"):
            await seen[0].answer()
        await board.stop()

    run(go)


def test_lines_are_independent(tmp_path: Path) -> None:
    async def go() -> None:
        incoming: asyncio.Queue[SimChannel] = asyncio.Queue()
        board = SimBoard(trunks=4, on_incoming=incoming.put_nowait)
        board.start()
        keys = {1: "1357", 2: "2468", 3: "9#*0", 4: "5555"}
        for n in keys:
            board.line(n).far_end.ring(f"1390000000{n}")
        channels = {}
        for _ in keys:
            ch = await incoming.get()
            await ch.answer()
            channels[int(ch.line[1:])] = ch
        for n, k in keys.items():
            board.line(n).far_end.send(dtmf_sequence(k, on_ms=60, off_ms=60))
        results = await asyncio.gather(
            *(channels[n].collect(max_digits=4, terminators="") for n in keys)
        )
        assert [r.digits for r in results] == list(keys.values())
        await board.stop()

    run(go)


def test_recording_has_the_caller_left_and_the_engine_right(tmp_path: Path) -> None:
    async def go() -> str:
        events: list[tuple[str, dict[str, Any]]] = []
        board, channel, far = await _answered_call(
            tmp_path, on_event=lambda kind, call_id, **data: events.append((kind, data))
        )
        t0 = channel.loop.time()
        far.send(np.concatenate([np.zeros(8000, np.int16), sine(1000, 1500, -10)]))
        await channel.play([Playable(sine(440, 3300, -10), text="提示")])
        await channel.hangup()
        await board.stop()
        assert channel.loop.time() - t0 == pytest.approx(3.3, abs=0.05)
        return next(d["path"] for k, d in events if k == "recording.finished")

    path = run(go)
    with wave.open(path) as w:
        stereo = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    caller, engine = stereo[:, 0].astype(float), stereo[:, 1].astype(float)

    def level_at(signal: np.ndarray, freq: float, start: float, stop: float) -> float:
        part = signal[int(start * 8000) : int(stop * 8000)]
        spectrum = np.abs(np.fft.rfft(part)) / len(part)
        return float(spectrum[int(freq * len(part) / 8000)])

    assert len(stereo) / 8000 == pytest.approx(3.3, abs=0.05)
    assert level_at(caller, 1000, 1.1, 2.4) > 1000 and level_at(caller, 1000, 0.1, 0.9) < 10
    assert level_at(caller, 440, 0.1, 3.2) < 10  # no engine audio leaks into the caller side
    assert level_at(engine, 440, 0.1, 3.2) > 1000 and level_at(engine, 1000, 1.1, 2.4) < 10
