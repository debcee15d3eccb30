"""Interop: baresip as an agent's softphone seat, registered with digest auth, takes a call.

baresip (Debian package, no sound card) registers as seat ``1001`` with the demo password
and answers automatically (``answermode=auto``); its microphone is a WAV of a 1400 Hz tone
and its ``sndfile`` module writes what it decoded. A caller on the simulated board asks for an
agent, agent 1001 (at ``sip:1001``) is offered the call, the engine places the outbound leg to
baresip's registered contact, and once answered the caller hears 报工号 and is bridged: the
caller's 600 Hz must reach baresip, baresip's 1400 Hz the caller, and the caller's stereo
recording must carry each side on its own channel. Real phone, real time (about 20 s).
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_contact_center import ask_for_agent
from test_sip_baresip import BARESIP, Baresip, baresip_folder, free_port
from test_sip_seats import OTHERS, seat_config  # noqa: F401  (the fixture)

from drivers.clock import new_loop
from drivers.media.tones import sine
from hotline.services.sip_seats import DEMO_PASSWORD
from ivr.speech.readout import say
from support import dominant_hz

pytestmark = pytest.mark.skipif(
    BARESIP is None, reason="baresip is not installed (apt-get install baresip)"
)


def seat_folder(folder: Path, control_port: int, engine_port: int) -> Path:
    baresip_folder(folder, control_port)
    tone = folder / "tone1400.wav"
    with wave.open(str(tone), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.tile(sine(1400, 1000, -10), 120).astype("<i2").tobytes())
    config = (folder / "config").read_text()
    (folder / "config").write_text(config.replace(str(folder / "silence.wav"), str(tone)))
    (folder / "accounts").write_text(
        f"<sip:1001@127.0.0.1:{engine_port};transport=udp>;auth_pass={DEMO_PASSWORD};"
        "answermode=auto;audio_codecs=PCMU;regint=600\n"
    )
    return folder


async def until(condition: Any, timeout: float, what: str, phone: Baresip) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not seen in {timeout} s\n{phone.log()[-3000:]}")
        await asyncio.sleep(0.05)


def test_baresip_seat_registers_answers_a_queued_caller_and_both_sides_hear_each_other(
    seat_config: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    from hotline.engine import Engine

    seat_config.sip.digest_algorithms = ["MD5"]  # baresip 1.0 gives up on a SHA-256 challenge
    control = free_port()

    async def go() -> dict[str, Any]:
        engine = Engine(seat_config, watch_flows=False)
        await engine.start()
        folder = seat_folder(tmp_path / "baresip", control, engine.sip.port)
        phone = Baresip(folder, control)
        try:
            await phone.start()
            await until(
                lambda: engine.agent_status("1001")["status"] == "ready", 15, "registered", phone
            )
            for agent_id in OTHERS:
                engine.set_agent_not_ready(agent_id, "busy")
            caller = await ask_for_agent(engine)
            await until(
                lambda: engine.agent_status("1001")["state"] == "on_call", 30, "answered", phone
            )
            await caller.expect(f"工号{say('digits', '1001')}为您服务", timeout=30)
            await caller.wait_quiet()
            far_caller = engine.board.line(1).far_end
            far_caller.capture_audio = True
            answered = far_caller.call.answered
            t_send = asyncio.get_running_loop().time()
            await far_caller.send(sine(600, 2000, -10))
            far_caller.capture_audio = False
            await caller.hang_up()
            await asyncio.wait_for(engine.idle(), 30)
            await until(lambda: not engine.sip.channels, 10, "legs gone", phone)
            return {
                "caller_heard": far_caller.heard_audio(),
                "offset": t_send - answered,
                "after": engine.agent_status("1001"),
            }
        finally:
            await phone.stop()
            await engine.stop()

    loop = new_loop()  # a real phone keeps real time: the production loop
    try:
        got = loop.run_until_complete(go())
    finally:
        loop.close()
    assert dominant_hz(got["caller_heard"][-8000:]) == pytest.approx(1400, abs=5)
    assert np.abs(got["caller_heard"]).max() > 3000
    assert got["after"]["state"] == "wrap_up"
    # what baresip decoded: the caller's 600 Hz
    (heard,) = (tmp_path / "baresip" / "heard").glob("*-dec.wav")
    with wave.open(str(heard)) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    loud = np.abs(audio.astype(np.int32)) > 3000
    assert loud.sum() > 8000  # more than a second of the caller's tone
    start = int(np.argmax(loud)) + 800
    assert dominant_hz(audio[start : start + 4000]) == pytest.approx(600, abs=5)
    # the caller's recording: caller left (600 Hz), the baresip agent right (1400 Hz)
    (recording,) = sorted(seat_config.path(seat_config.recordings_dir).rglob("*-t1-*.wav"))
    with wave.open(str(recording)) as w:
        stereo = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    start = int((got["offset"] + 0.3) * 8000)
    window = stereo[start : start + 4800]
    assert dominant_hz(window[:, 0]) == pytest.approx(600, abs=5)
    assert dominant_hz(window[:, 1]) == pytest.approx(1400, abs=5)
