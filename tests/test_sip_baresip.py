"""Interop with a real SIP phone: baresip (Debian package) calls 95598 and looks up a bill.

baresip runs as a subprocess with its own configuration folder: no sound card (a silent WAV
is its microphone, the ``sndfile`` module writes what it hears to a WAV), G.711 only, driven
over its ``ctrl_tcp`` control socket (``dial``, ``sndcode`` for RFC 4733 keys, ``hangup``).
The second test presses the keys in-band only: the engine runs with ``sip.rfc4733: false`` (its
SDP answer refuses telephone-event) and baresip's audio source is switched (``ausrc``) to a WAV
of the DTMF tones for each group of keys, so the engine's in-band detector must hear them.
A real phone keeps real time, so this test runs the engine on its production event loop
(uvloop), not the virtual clock; it takes as long as the prompts (about 20 s).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from drivers.channel import HangupCause
from drivers.clock import new_loop
from drivers.media.dtmf import detect_digits
from drivers.media.tones import dtmf_sequence
from drivers.sip.sdp import serialize_sdp
from hotline.store.models import CallRecord

BARESIP = shutil.which("baresip")
pytestmark = pytest.mark.skipif(
    BARESIP is None, reason="baresip is not installed (apt-get install baresip)"
)


def baresip_folder(folder: Path, control_port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    silent = folder / "silence.wav"
    with wave.open(str(silent), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(2 * 8000 * 120))
    (folder / "heard").mkdir(exist_ok=True)
    (folder / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen 127.0.0.1:{free_port()}",
                "net_interface 127.0.0.1",
                "sip_transports udp",
                f"audio_source aufile,{silent}",
                "audio_player aufile,/dev/null",
                "audio_srate 8000",
                "audio_channels 1",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aufile.so",
                "module sndfile.so",
                "module_app account.so",
                "module_app menu.so",
                "module_app ctrl_tcp.so",
                f"ctrl_tcp_listen 127.0.0.1:{control_port}",
                f"snd_path {folder / 'heard'}",
                "",
            ]
        )
    )
    (folder / "accounts").write_text("<sip:13912345678@127.0.0.1>;regint=0;audio_codecs=PCMU\n")
    (folder / "contacts").write_text("")
    return folder


class Baresip:
    """baresip driven over ctrl_tcp (netstring-framed JSON commands)."""

    def __init__(self, folder: Path, control_port: int) -> None:
        self.folder = folder
        self.control_port = control_port
        self.process: asyncio.subprocess.Process | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        assert BARESIP is not None
        self.process = await asyncio.create_subprocess_exec(
            BARESIP,
            "-f",
            str(self.folder),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=open(self.folder / "baresip.log", "wb"),  # noqa: SIM115
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(100):
            try:
                _, self.writer = await asyncio.open_connection("127.0.0.1", self.control_port)
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError("baresip control socket did not open:\n" + self.log())

    async def command(self, command: str, params: str = "") -> None:
        assert self.writer is not None
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.writer.write(f"{len(body)}:".encode() + body + b",")
        await self.writer.drain()

    def log(self) -> str:
        return (self.folder / "baresip.log").read_text(errors="replace")

    async def stop(self) -> None:
        if self.writer is not None:
            await self.command("quit")
            self.writer.close()
        if self.process is not None:
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for(condition: Any, timeout: float, what: str, phone: Baresip) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not seen in {timeout} s\n{phone.log()[-3000:]}")
        await asyncio.sleep(0.05)


Keys = Callable[[Baresip, str], Awaitable[None]]


async def rfc4733_keys(phone: Baresip, keys: str) -> None:
    """Keys as RFC 4733 events (baresip's ``sndcode``)."""
    for key in keys:
        await phone.command("sndcode", key)
        await asyncio.sleep(0.3)


def in_band_keys(folder: Path) -> Keys:
    """Keys as tones in baresip's audio: its source switched to a WAV of the tones.

    Each WAV is the DTMF sequence (8 kHz, 120 ms on / 120 ms off, -6 dBm0) then a minute of
    silence, so the source never runs dry while the flow answers; the source goes back to the
    silent WAV once the tones have been sent.
    """
    count = 0

    async def send(phone: Baresip, keys: str) -> None:
        nonlocal count
        count += 1
        tones = dtmf_sequence(keys, on_ms=120, off_ms=120, dbm0=-6.0)
        path = folder / f"keys-{count}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(tones.astype("<i2").tobytes() + bytes(2 * 8000 * 60))
        await phone.command("ausrc", f"aufile,{path}")
        await asyncio.sleep(len(tones) / 8000 + 0.5)
        await phone.command("ausrc", f"aufile,{folder / 'silence.wav'}")

    return send


@dataclass
class Call:
    """What one call from baresip left behind."""

    cause: HangupCause | None
    outcome: Any
    record: CallRecord
    digits: str  # the keys the engine's channel saw, in order
    in_band: bool  # the call's stream detected keys in its audio
    answer_sdp: str  # the engine's SDP answer
    folder: Path
    probe_digits: str = ""  # keys the engine saw after an RFC 4733 key sent as a probe

    def audio(self, suffix: str) -> np.ndarray:
        """sndfile's dump: ``dec`` what the phone decoded, ``enc`` what it encoded."""
        (path,) = (self.folder / "heard").glob(f"*-{suffix}.wav")
        with wave.open(str(path)) as w:
            return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def bill_lookup(
    engine_config: Any, folder: Path, keys: Keys | None = None, probe: bool = False
) -> Call:
    """baresip calls 95598, presses 1, the account 1234567890#, 1, and hangs up after the bill.

    ``keys`` sends each group of keys (default: RFC 4733 events). With ``probe``, baresip
    first sends an RFC 4733 ``*`` (replay the menu) at the main menu and the keys seen in the
    next 1.5 s are kept in ``Call.probe_digits``.
    """
    from hotline.engine import Engine

    control = free_port()
    phone = Baresip(baresip_folder(folder, control), control)
    send = keys or rfc4733_keys

    async def go() -> Call:
        engine = Engine(engine_config, watch_flows=False)
        await engine.start()
        plays: list[str] = []
        digits: list[str] = []
        channels: list[Any] = []
        incoming = engine.sip.on_incoming

        def on_event(e: Any) -> None:
            if e.kind == "play_start":
                plays.append(e.data.get("text") or "")
            elif e.kind == "digit":
                digits.append(e.data["digit"])

        def on_incoming(channel: Any) -> None:
            channels.append(channel)
            channel.subscribe(on_event)
            incoming(channel)

        engine.sip.on_incoming = on_incoming

        def said(text: str) -> bool:
            return any(text in p for p in plays)

        try:
            await phone.start()
            await phone.command("dial", f"sip:95598@127.0.0.1:{engine.sip.port}")
            await wait_for(lambda: said("电费查询请按一"), 30, "the main menu", phone)
            (channel,) = channels
            in_band = channel.stream.in_band_dtmf
            answer_sdp = channel.call.local_sdp
            probe_digits = ""
            if probe:
                await phone.command("sndcode", "*")
                await asyncio.sleep(1.5)  # an absence: nothing to wait for
                probe_digits = "".join(digits)
            await send(phone, "1")
            await wait_for(lambda: said("请输入您的十位户号"), 60, "the account prompt", phone)
            await send(phone, "1234567890#")
            await wait_for(lambda: said("确认请按一"), 60, "the confirmation", phone)
            await send(phone, "1")
            await wait_for(lambda: said("本月电费为一百二十三元四角五分"), 60, "the bill", phone)
            await phone.command("hangup")
            await asyncio.wait_for(engine.idle(), 30)
            async with engine.db.session() as session:
                (record,) = (await session.execute(select(CallRecord))).scalars()
            return Call(
                channel.hangup_cause,
                next(iter(engine.outcomes.values())),
                record,
                "".join(digits),
                in_band,
                serialize_sdp(answer_sdp).decode(),
                folder,
                probe_digits,
            )
        finally:
            await phone.stop()
            await engine.stop()

    loop = new_loop()  # the engine's production loop: uvloop where available
    try:
        return loop.run_until_complete(go())
    finally:
        loop.close()


def test_baresip_calls_95598_and_looks_up_a_bill(engine_config: Any, tmp_path: Path) -> None:
    engine_config.sip.answer_after = 0.2
    call = bill_lookup(engine_config, tmp_path / "baresip", probe=True)
    assert "telephone-event" in call.answer_sdp and not call.in_band
    assert call.probe_digits == "*"  # the probe counts when telephone-event is negotiated
    assert call.cause is HangupCause.REMOTE_BYE
    assert call.digits.startswith("*" + "1" + "1234567890#" + "1"), call.digits
    assert call.outcome.keys.startswith("*" + "1" + "1234567890" + "1"), call.outcome.keys
    assert call.record.called == "95598" and call.record.answered_at is not None
    # sndfile's dump of what the phone decoded: seconds of prompts, not silence
    audio = call.audio("dec")
    assert (np.abs(audio.astype(np.int32)) > 500).sum() > 8000 * 3


def test_baresip_keys_in_band_only(engine_config: Any, tmp_path: Path) -> None:
    """With ``sip.rfc4733: false`` the engine answers without telephone-event, so the only way
    baresip's keys reach it is as tones in the audio: its in-band detector must hear them."""
    engine_config.sip.answer_after = 0.2
    engine_config.sip.rfc4733 = False
    folder = tmp_path / "baresip"
    call = bill_lookup(engine_config, folder, in_band_keys(folder), probe=True)
    assert "telephone-event" not in call.answer_sdp and call.in_band
    assert call.probe_digits == ""  # baresip's RFC 4733 key did not count
    assert call.cause is HangupCause.REMOTE_BYE
    assert call.digits.startswith("1" + "1234567890#" + "1"), call.digits
    assert call.outcome.keys.startswith("1" + "1234567890" + "1"), call.outcome.keys
    assert call.record.called == "95598" and call.record.answered_at is not None
    assert call.record.keys.startswith("1" + "1234567890" + "1"), call.record.keys
    # the keys went out in baresip's own audio (sndfile's dump of what it encoded) ...
    assert detect_digits(call.audio("enc")) == "1" + "1234567890#" + "1"
    # ... and the prompts came back: seconds of speech, not silence
    audio = call.audio("dec")
    assert (np.abs(audio.astype(np.int32)) > 500).sum() > 8000 * 3
