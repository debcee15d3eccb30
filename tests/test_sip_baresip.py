"""Interop with a real SIP phone: baresip (Debian package) calls 95598 and looks up a bill.

baresip runs as a subprocess with its own configuration folder: no sound card (a silent WAV
is its microphone, the ``sndfile`` module writes what it hears to a WAV), G.711 only, driven
over its ``ctrl_tcp`` control socket (``dial``, ``sndcode`` for RFC 4733 keys, ``hangup``).
A real phone keeps real time, so this test runs the engine on its production event loop
(uvloop), not the virtual clock; it takes as long as the prompts (about 20 s).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from drivers.channel import HangupCause
from drivers.clock import new_loop
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


def test_baresip_calls_95598_and_looks_up_a_bill(engine_config: Any, tmp_path: Path) -> None:
    from hotline.engine import Engine

    engine_config.sip.answer_after = 0.2
    control = free_port()
    phone = Baresip(baresip_folder(tmp_path / "baresip", control), control)

    async def go() -> Any:
        engine = Engine(engine_config, watch_flows=False)
        await engine.start()
        plays: list[str] = []
        channels: list[Any] = []
        incoming = engine.sip.on_incoming

        def on_incoming(channel: Any) -> None:
            channels.append(channel)
            channel.subscribe(
                lambda e: plays.append(e.data.get("text") or "") if e.kind == "play_start" else None
            )
            incoming(channel)

        engine.sip.on_incoming = on_incoming

        def said(text: str) -> bool:
            return any(text in p for p in plays)

        try:
            await phone.start()
            await phone.command("dial", f"sip:95598@127.0.0.1:{engine.sip.port}")
            await wait_for(lambda: said("电费查询请按一"), 30, "the main menu", phone)
            await phone.command("sndcode", "1")
            await wait_for(lambda: said("请输入您的十位户号"), 60, "the account prompt", phone)
            for key in "1234567890#":
                await phone.command("sndcode", key)
                await asyncio.sleep(0.3)
            await wait_for(lambda: said("确认请按一"), 60, "the confirmation", phone)
            await phone.command("sndcode", "1")
            await wait_for(lambda: said("本月电费为一百二十三元四角五分"), 60, "the bill", phone)
            await phone.command("hangup")
            await asyncio.wait_for(engine.idle(), 30)
            async with engine.db.session() as session:
                (record,) = (await session.execute(select(CallRecord))).scalars()
            return channels[0].hangup_cause, next(iter(engine.outcomes.values())), record
        finally:
            await phone.stop()
            await engine.stop()

    loop = new_loop()  # the engine's production loop: uvloop where available
    try:
        cause, outcome, record = loop.run_until_complete(go())
    finally:
        loop.close()
    assert cause is HangupCause.REMOTE_BYE
    assert outcome.keys.startswith("1" + "1234567890" + "1"), outcome.keys
    assert record.called == "95598" and record.answered_at is not None
    # sndfile's dump of what the phone decoded: seconds of prompts, not silence
    (heard,) = (tmp_path / "baresip" / "heard").glob("*-dec.wav")
    with wave.open(str(heard)) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert (np.abs(audio.astype(np.int32)) > 500).sum() > 8000 * 3
