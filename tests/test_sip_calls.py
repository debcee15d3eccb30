"""Whole calls over SIP on loopback: a raw-socket caller in the test against a running engine.

The caller is a small script on two UDP sockets (SIP and RTP) in the engine's virtual-clock
loop: it sends INVITE with an SDP offer, reads the responses, ACKs, streams 20 ms G.711
frames, presses keys as RFC 4733 events or as in-band DTMF tones, keeps every RTP payload it
receives and ends with BYE (or CANCEL). What the caller heard is checked on the audio it got;
what the engine did, on its outcome, its call record and the stereo recording.
"""

from __future__ import annotations

import asyncio
import secrets
import wave
from collections import deque
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from drivers.channel import HangupCause
from drivers.media.g711 import ulaw_decode, ulaw_encode
from drivers.media.tones import dtmf_sequence, sine
from drivers.sip.message import ParseError, Response, parse
from drivers.sip.rtp import RtpPacket, RtpSender
from hotline.store.models import CallRecord
from support import FLOWS, with_engine

HOST = "127.0.0.1"


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, addr))


class SipCaller:
    """A phone written for the test: one call, PCMU, RFC 4733 or in-band keys."""

    def __init__(self, engine_port: int, *, rfc4733: bool = True, called: str = "95598") -> None:
        self.engine = (HOST, engine_port)
        self.rfc4733 = rfc4733
        self.called = called
        self.call_id = secrets.token_hex(8) + "@test"
        self.tag = secrets.token_hex(4)
        self.branch = "z9hG4bK" + secrets.token_hex(6)
        self.responses: list[Response] = []
        self.statuses: list[int] = []  # every status line, parseable or not
        self.received = bytearray()  # every PCMU payload the engine sent
        self.rtp_from: set[Any] = set()
        self.requests: list[Any] = []
        self._tones: deque[np.ndarray] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.to_header = ""

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.sip, self.sip_proto = await loop.create_datagram_endpoint(_Udp, local_addr=(HOST, 0))
        self.rtp, self.rtp_proto = await loop.create_datagram_endpoint(_Udp, local_addr=(HOST, 0))
        self.sip_port = self.sip.get_extra_info("sockname")[1]
        self.rtp_port = self.rtp.get_extra_info("sockname")[1]
        self.sender = RtpSender(
            ssrc=1234, payload_type=0, event_payload_type=101 if self.rfc4733 else None
        )
        self.rtp_proto.datagram_received = self._rtp_in  # type: ignore[method-assign]
        self.sip_proto.datagram_received = self._sip_in  # type: ignore[method-assign]
        self._response_waiters: list[tuple[int, asyncio.Future[Response]]] = []

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.sip.close()
        self.rtp.close()

    # --- SIP ----------------------------------------------------------------------------
    def headers(self, method: str, cseq: int, branch: str | None = None, to: str = "") -> str:
        return (
            f"Via: SIP/2.0/UDP {HOST}:{self.sip_port};branch={branch or self.branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f'From: "Caller" <sip:13912345678@{HOST}>;tag={self.tag}\r\n'
            f"To: {to or f'<sip:{self.called}@{HOST}>'}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:13912345678@{HOST}:{self.sip_port}>\r\n"
        )

    def offer(self) -> str:
        formats = "0 101" if self.rfc4733 else "0"
        sdp = (
            f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP {formats}\r\na=rtpmap:0 PCMU/8000\r\n"
        )
        if self.rfc4733:
            sdp += "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
        return sdp + "a=ptime:20\r\n"

    def invite_bytes(self) -> bytes:
        body = self.offer()
        return (
            f"INVITE sip:{self.called}@{HOST}:{self.engine[1]} SIP/2.0\r\n"
            + self.headers("INVITE", 1)
            + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    def send(self, data: bytes) -> None:
        self.sip.sendto(data, self.engine)

    def _sip_in(self, data: bytes, addr: Any) -> None:
        if data.startswith(b"SIP/2.0 "):
            self.statuses.append(int(data.split(b" ", 2)[1]))
        try:
            message = parse(data)
        except ParseError:
            return  # a 400 echoes the malformed headers as they were sent
        if isinstance(message, Response):
            self.responses.append(message)
            for status, future in list(self._response_waiters):
                if message.status == status and not future.done():
                    future.set_result(message)
        else:
            self.requests.append(message)
            if message.method == "BYE":  # the engine hung up
                ok = "SIP/2.0 200 OK\r\n" + "".join(
                    f"{n}: {v}\r\n" for n, v in message.headers if n.lower() != "content-length"
                )
                self.send((ok + "Content-Length: 0\r\n\r\n").encode())

    async def response(self, status: int) -> Response:
        for message in self.responses:
            if message.status == status:
                return message
        future = self.loop.create_future()
        self._response_waiters.append((status, future))
        return await asyncio.wait_for(future, 30)

    async def call(self) -> None:
        self.send(self.invite_bytes())
        ok = await self.response(200)
        self.to_header = ok.headers.get("to") or ""
        self.send(
            (
                f"ACK sip:95598@{HOST}:{self.engine[1]} SIP/2.0\r\n"
                + self.headers("ACK", 1, branch="z9hG4bK" + secrets.token_hex(6), to=self.to_header)
                + "Content-Length: 0\r\n\r\n"
            ).encode()
        )
        self._tick()

    def bye(self) -> None:
        self.send(
            (
                f"BYE sip:95598@{HOST}:{self.engine[1]} SIP/2.0\r\n"
                + self.headers("BYE", 2, branch="z9hG4bK" + secrets.token_hex(6), to=self.to_header)
                + "Content-Length: 0\r\n\r\n"
            ).encode()
        )

    def reinvite(self, direction: str, cseq: int) -> None:
        """A new offer in the dialog: ``sendonly`` holds the engine, ``sendrecv`` resumes."""
        body = self.offer() + f"a={direction}\r\n"
        self.send(
            (
                f"INVITE sip:95598@{HOST}:{self.engine[1]} SIP/2.0\r\n"
                + self.headers(
                    "INVITE", cseq, branch="z9hG4bK" + secrets.token_hex(6), to=self.to_header
                )
                + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
            ).encode()
        )

    async def answered(self, cseq: int) -> Response:
        """The 200 for the in-dialog INVITE ``cseq``, ACKed."""
        await wait_for(lambda: any(self._ok(r, cseq) for r in self.responses), 30)
        ok = next(r for r in self.responses if self._ok(r, cseq))
        self.send(
            (
                f"ACK sip:95598@{HOST}:{self.engine[1]} SIP/2.0\r\n"
                + self.headers(
                    "ACK", cseq, branch="z9hG4bK" + secrets.token_hex(6), to=self.to_header
                )
                + "Content-Length: 0\r\n\r\n"
            ).encode()
        )
        return ok

    @staticmethod
    def _ok(response: Response, cseq: int) -> bool:
        return (
            response.status == 200
            and response.cseq.seq == cseq
            and response.cseq.method == "INVITE"
        )

    def cancel(self) -> None:
        self.send(
            (
                f"CANCEL sip:{self.called}@{HOST}:{self.engine[1]} SIP/2.0\r\n"
                + self.headers("CANCEL", 1)
                + "Content-Length: 0\r\n\r\n"
            ).encode()
        )

    # --- RTP ----------------------------------------------------------------------------
    def press(self, keys: str) -> None:
        if self.rfc4733:
            for key in keys:
                self.sender.send_digit(key, 100)
        else:
            tones = dtmf_sequence(keys, on_ms=100, off_ms=100)
            self._tones.extend(np.split(tones, len(tones) // 160))

    def say(self, samples: np.ndarray) -> None:
        """Queue audio toward the engine (whole 20 ms frames)."""
        samples = samples[: len(samples) // 160 * 160]
        self._tones.extend(np.split(samples, len(samples) // 160))

    def _tick(self) -> None:
        pcm = self._tones.popleft() if self._tones else np.zeros(160, np.int16)
        for packet in self.sender.tick(ulaw_encode(pcm).tobytes()):
            for address in self.rtp_from or {self.engine_rtp}:
                self.rtp.sendto(packet, address)
        self._timer = self.loop.call_later(0.02, self._tick)

    @property
    def engine_rtp(self) -> Any:
        ok = next(r for r in self.responses if r.status == 200)
        port = int(ok.body.decode().split("m=audio ")[1].split()[0])
        return (HOST, port)

    def _rtp_in(self, data: bytes, addr: Any) -> None:
        packet = RtpPacket.parse(data)
        self.rtp_from = {addr}
        if packet.payload_type == 0:
            self.received += packet.payload


async def wait_for(condition: Any, timeout: float = 120.0) -> None:
    """Poll ``condition`` every 20 ms of (virtual) time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def listen(engine: Any) -> list[dict[str, Any]]:
    """Every prompt the engine starts playing on any SIP call (its transcript)."""
    plays: list[dict[str, Any]] = []
    incoming = engine.sip.on_incoming

    def on_incoming(channel: Any) -> None:
        channel.subscribe(
            lambda e: (
                plays.append(dict(e.data, call_id=channel.call_id))
                if e.kind == "play_start"
                else None
            )
        )
        incoming(channel)

    engine.sip.on_incoming = on_incoming
    return plays


def said(plays: list[dict[str, Any]], text: str) -> bool:
    return any(text in (p.get("text") or "") for p in plays)


async def bill_lookup(engine: Any, *, rfc4733: bool) -> dict[str, Any]:
    plays = listen(engine)
    caller = SipCaller(engine.sip.port, rfc4733=rfc4733)
    await caller.open()
    try:
        await caller.call()
        await wait_for(lambda: said(plays, "电费查询请按一"))
        caller.press("1")
        await wait_for(lambda: said(plays, "请输入您的十位户号"))
        caller.press("1234567890#")
        await wait_for(lambda: said(plays, "确认请按一"))
        caller.press("1")
        await wait_for(lambda: said(plays, "本月电费为一百二十三元四角五分"))
        await wait_for(lambda: said(plays, "重听请按一"))
        caller.bye()
        await wait_for(
            lambda: any(r.status == 200 and r.cseq.method == "BYE" for r in caller.responses)
        )
        await engine.idle()
        welcome = next(p for p in plays if p.get("kind") == "prompt")
        prompt = await engine.speech.prompt(welcome["prompt_id"], welcome["text"])
        return {
            "caller": caller,
            "plays": plays,
            "prompt": prompt,
            "outcome": next(iter(engine.outcomes.values())),
            "records": await records(engine),
        }
    finally:
        caller.close()


async def records(engine: Any) -> list[Any]:
    async with engine.db.session() as session:
        return list((await session.execute(select(CallRecord))).scalars())


def check_bill_lookup(result: dict[str, Any]) -> None:
    outcome = result["outcome"]
    # menu 1, the account number (the trailing # after ten digits is swallowed), confirm 1
    assert outcome.keys.startswith("1" + "1234567890" + "1"), outcome.keys
    assert outcome.variables.get("account_no", "1234567890") == "1234567890"
    assert any("bill" in step for step in outcome.path)
    (record,) = result["records"]
    assert record.answered_at is not None and record.called == "95598"
    assert record.caller == "13912345678" and record.line == "sip"
    # the caller really heard the prompts: the first one arrived as its G.711 bytes
    caller, prompt = result["caller"], result["prompt"]
    encoded = prompt.encoded.get("pcmu") or ulaw_encode(prompt.samples).tobytes()
    assert encoded[:1600] in bytes(caller.received)
    loud = np.abs(ulaw_decode(bytes(caller.received)).astype(np.int32)) > 500
    assert loud.sum() > 8000 * 3  # seconds of speech, not silence
    # the stereo recording has the caller's keys left and the engine's prompts right
    with wave.open(record.recording_path) as w:
        assert w.getnchannels() == 2
        stereo = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert np.abs(stereo[:, 1]).max() > 1000


def test_bill_lookup_with_rfc4733_digits(engine_config: Any) -> None:
    result = with_engine(engine_config, lambda engine: bill_lookup(engine, rfc4733=True))
    check_bill_lookup(result)
    assert said(result["plays"], "您的账户余额为")


def test_bill_lookup_with_in_band_dtmf(engine_config: Any) -> None:
    result = with_engine(engine_config, lambda engine: bill_lookup(engine, rfc4733=False))
    check_bill_lookup(result)
    with wave.open(result["records"][0].recording_path) as w:
        stereo = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert np.abs(stereo[:, 0]).max() > 1000  # the caller's tones are on the left


def test_bye_from_caller_hangs_up_with_remote_bye(engine_config: Any) -> None:
    async def body(engine: Any) -> Any:
        causes: list[Any] = []
        incoming = engine.sip.on_incoming
        engine.sip.on_incoming = lambda ch: (causes.append(ch), incoming(ch))
        caller = SipCaller(engine.sip.port)
        await caller.open()
        try:
            await caller.call()
            await wait_for(lambda: len(caller.received) > 160 * 50)
            caller.bye()
            await engine.idle()
            return causes[0].hangup_cause, engine.sip.channels, engine.sip.media.streams
        finally:
            caller.close()

    cause, channels, streams = with_engine(engine_config, body)
    assert cause is HangupCause.REMOTE_BYE and not channels and not streams


def test_cancel_before_answer_is_487_and_never_answered(engine_config: Any) -> None:
    async def body(engine: Any) -> Any:
        caller = SipCaller(engine.sip.port)
        await caller.open()
        try:
            caller.send(caller.invite_bytes())
            await caller.response(180)
            caller.cancel()
            final = await caller.response(487)
            await engine.idle()
            return final, caller.responses, await records(engine), engine.outcomes
        finally:
            caller.close()

    final, responses, rows, outcomes = with_engine(engine_config, body)
    assert final.cseq.method == "INVITE"
    assert any(r.status == 200 and r.cseq.method == "CANCEL" for r in responses)
    assert not any(r.status == 200 and r.cseq.method == "INVITE" for r in responses)
    (record,) = rows
    assert record.answered_at is None and not outcomes


def test_malformed_invite_gets_400_while_another_call_keeps_its_media(engine_config: Any) -> None:
    async def body(engine: Any) -> Any:
        good = SipCaller(engine.sip.port)
        bad = SipCaller(engine.sip.port)
        await good.open()
        await bad.open()
        try:
            await good.call()
            await wait_for(lambda: len(good.received) > 160 * 25)
            before = len(good.received)
            broken = bad.invite_bytes().replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE")
            bad.send(broken)
            bad.send(b"\x16\x03\x01 not sip at all\r\n\r\n")
            rng = np.random.default_rng(4475)
            for _ in range(500):  # a burst of damaged copies of the INVITE
                data = bytearray(bad.invite_bytes().replace(b"Call-ID: ", b"Call-ID: x"))
                for pos in rng.integers(0, len(data), 3):
                    data[pos] = int(rng.integers(0, 256))
                bad.send(bytes(data))
            await wait_for(lambda: bool(bad.statuses))
            # a stranger sprays RTP at the good call's port: dropped, the stream stays put
            (stream,) = [s for s in engine.sip.media.streams if s.latched == (HOST, good.rtp_port)]
            loop = asyncio.get_running_loop()
            intruder, intruder_proto = await loop.create_datagram_endpoint(
                _Udp, local_addr=(HOST, 0)
            )
            for seq in range(50):
                packet = RtpPacket(0, seq, seq * 160, 99, bytes(160))
                intruder.sendto(bytes(packet), (HOST, stream.port))
            await wait_for(lambda: len(good.received) > before + 160 * 50)
            intruder_heard, latched = intruder_proto.queue.qsize(), stream.latched
            connected = stream.connected  # the kernel drops other sources' packets
            intruder.close()
            good.bye()
            await engine.idle()
            assert not engine.sip.channels and not engine.sip.uas.calls  # nothing leaked
            assert intruder_heard == 0 and latched == (HOST, good.rtp_port) and connected
            return bad.statuses, engine.sip.media.streams
        finally:
            good.close()
            bad.close()

    statuses, streams = with_engine(engine_config, body)
    assert statuses[0] == 400 and not streams


def test_options_is_answered(engine_config: Any) -> None:
    async def body(engine: Any) -> Any:
        caller = SipCaller(engine.sip.port)
        await caller.open()
        try:
            caller.send(
                (
                    f"OPTIONS sip:95598@{HOST} SIP/2.0\r\n"
                    + caller.headers("OPTIONS", 1)
                    + "Content-Length: 0\r\n\r\n"
                ).encode()
            )
            return await caller.response(200)
        finally:
            caller.close()

    ok = with_engine(engine_config, body)
    assert "INVITE" in (ok.headers.get("allow") or "")


def test_engine_hangs_up_with_bye_after_the_goodbye(engine_config: Any) -> None:
    async def body(engine: Any) -> Any:
        plays = listen(engine)
        channels: list[Any] = []
        incoming = engine.sip.on_incoming
        engine.sip.on_incoming = lambda ch: (channels.append(ch), incoming(ch))
        caller = SipCaller(engine.sip.port)
        await caller.open()
        try:
            await caller.call()
            await wait_for(lambda: said(plays, "电费查询请按一"))
            caller.press("1")
            await wait_for(lambda: said(plays, "请输入您的十位户号"))
            caller.press("1234567890")
            await wait_for(lambda: said(plays, "确认请按一"))
            caller.press("1")
            await wait_for(lambda: said(plays, "重听请按一"))
            caller.press("9")
            await wait_for(lambda: said(plays, "还需要其他服务吗"))
            caller.press("#")
            await wait_for(lambda: any(r.method == "BYE" for r in caller.requests))
            await engine.idle()
            return caller.requests, channels[0].hangup_cause, engine.sip.media.streams
        finally:
            caller.close()

    requests, cause, streams = with_engine(engine_config, body)
    (bye,) = [r for r in requests if r.method == "BYE"]
    assert bye.call_id and bye.to.tag and bye.from_.tag
    assert cause is HangupCause.NORMAL and not streams


def tone_level(audio: np.ndarray, freq: float) -> float:
    """Share of ``audio``'s energy within 20 Hz of ``freq``."""
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / 8000)
    return float(spectrum[np.abs(freqs - freq) < 20].sum() / max(spectrum.sum(), 1e-9))


def test_transfer_to_an_agent_seat_bridges_both_ways(engine_config: Any) -> None:
    engine_config.acd.queues_dir = str(FLOWS.parent / "queues")

    async def body(engine: Any) -> Any:
        plays = listen(engine)
        seats = [engine.board.line(f"s{n}").far_end for n in range(1, 5)]
        for seat in seats:
            seat.capture_audio = True
        caller = SipCaller(engine.sip.port)
        await caller.open()
        try:
            await caller.call()
            await wait_for(lambda: said(plays, "人工服务请按零"))
            caller.press("0")

            def ringing() -> list[Any]:
                return [s for s in seats if s.call is not None and s.call.answered is None]

            await wait_for(lambda: bool(ringing()), 120)
            seat = ringing()[0]
            seat.off_hook()
            await wait_for(lambda: said(plays, "为您服务"))  # 报工号, then the bridge

            def bridged() -> bool:
                return any(
                    type(ch.operation).__name__ == "_Bridge" for ch in engine.sip.channels.values()
                )

            await wait_for(bridged, 30)
            mark = len(caller.received)
            seat.send(sine(1000, 1000, -10.0))
            caller.say(sine(600, 1000, -10.0))
            await asyncio.sleep(1.5)
            to_caller = ulaw_decode(bytes(caller.received[mark:]))
            to_seat = seat.heard_audio()[-8000 * 2 :]
            seat.hang_up(None)
            await wait_for(lambda: any(r.method == "BYE" for r in caller.requests), 60)
            await engine.idle()
            return to_caller, to_seat
        finally:
            caller.close()

    to_caller, to_seat = with_engine(engine_config, body)
    assert tone_level(to_caller, 1000) > 0.5  # the caller hears the agent's tone
    assert tone_level(to_seat, 600) > 0.3  # the agent hears the caller's tone


def test_a_busy_sip_port_stops_the_engine_but_not_a_virtual_clock_scenario(
    engine_config: Any,
) -> None:
    import socket

    from hotline.engine import Engine, EngineError

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind((HOST, 0))
        engine_config.sip.port = busy.getsockname()[1]

        async def body(engine: Any) -> int:
            return engine.sip.port

        assert with_engine(engine_config, body) not in (0, engine_config.sip.port)

        async def real() -> None:
            engine = Engine(engine_config, watch_flows=False)
            try:
                await engine.start()
            finally:
                await engine.stop()

        loop = asyncio.new_event_loop()
        try:
            with pytest.raises(EngineError, match=f"udp {HOST}:{engine_config.sip.port}"):
                loop.run_until_complete(real())
        finally:
            loop.close()


def test_hold_stops_the_engine_s_rtp_and_resume_brings_the_prompts_back(
    engine_config: Any,
) -> None:
    async def body(engine: Any) -> Any:
        plays = listen(engine)
        caller = SipCaller(engine.sip.port)
        await caller.open()
        try:
            await caller.call()
            await wait_for(lambda: said(plays, "电费查询请按一"))
            await wait_for(lambda: len(caller.received) > 160 * 25)
            caller.reinvite("sendonly", 2)
            held = await caller.answered(2)
            await asyncio.sleep(0.1)  # a frame already on its way may still land
            during_hold = len(caller.received)
            await asyncio.sleep(2.0)
            after_hold = len(caller.received)
            caller.reinvite("sendrecv", 3)
            resumed = await caller.answered(3)
            mark = len(caller.received)
            caller.press("1")
            await wait_for(lambda: said(plays, "请输入您的十位户号"))
            await wait_for(lambda: len(caller.received) > mark + 8000 * 2)
            heard = ulaw_decode(bytes(caller.received[mark:]))
            caller.bye()
            await engine.idle()
            return held, resumed, during_hold, after_hold, heard
        finally:
            caller.close()

    held, resumed, during_hold, after_hold, heard = with_engine(engine_config, body)
    assert b"a=recvonly" in held.body and b"a=sendrecv" in resumed.body
    versions = [int(r.body.decode().split("o=")[1].split()[2]) for r in (held, resumed)]
    assert versions[1] == versions[0] + 1
    assert after_hold == during_hold  # no RTP reached the caller while held
    assert (np.abs(heard.astype(np.int32)) > 500).sum() > 8000 // 2  # prompt audio again


def test_invite_flood_from_one_source_gets_503_while_another_source_calls(
    engine_config: Any,
) -> None:
    from structlog.testing import capture_logs

    from drivers.sip.ratelimit import SourceLimiter

    async def body(engine: Any) -> Any:
        engine.sip.uas.limits["INVITE"] = SourceLimiter(2.0, 5, log_window=60.0)
        loop = asyncio.get_running_loop()
        flood, flood_proto = await loop.create_datagram_endpoint(_Udp, local_addr=("127.0.0.2", 0))
        template = SipCaller(engine.sip.port)
        await template.open()
        caller = SipCaller(engine.sip.port)
        await caller.open()
        try:
            with capture_logs() as logs:
                for n in range(300):
                    data = template.invite_bytes().replace(
                        template.call_id.encode(), f"flood{n}".encode()
                    )
                    flood.sendto(data, (HOST, engine.sip.port))
                    if n % 10 == 9:  # within socket buffers; 300 INVITEs in 30 ms
                        await asyncio.sleep(0.001)
                await caller.call()  # another source is served during the flood
                await wait_for(lambda: flood_proto.queue.qsize() >= 300 + 5)
                await wait_for(lambda: len(caller.received) > 160 * 50)
            statuses, retry_after = [], set()
            while not flood_proto.queue.empty():
                data, _ = flood_proto.queue.get_nowait()
                message = parse(data)
                statuses.append(message.status)
                if message.status == 503:
                    retry_after.add(message.headers.get("retry-after"))
            for channel in list(engine.sip.channels.values()):
                await channel.hangup()
            await engine.idle()
            limited = [e for e in logs if e["event"] == "sip.rate_limited"]
            return statuses, retry_after, limited, engine.sip.uas.calls
        finally:
            flood.close()
            template.close()
            caller.close()

    statuses, retry_after, limited, calls = with_engine(engine_config, body)
    assert statuses.count(503) == 295 and statuses.count(100) == 5
    assert retry_after == {"1"}
    (entry,) = limited  # logged once for the window, not once per INVITE
    assert entry["source"].startswith("127.0.0.2:") and entry["method"] == "INVITE"
    assert not calls


def test_without_rfc4733_a_caller_offering_it_is_answered_without_it_and_keys_come_in_band(
    engine_config: Any,
) -> None:
    from hotline.engine import Engine, EngineError
    from support import run_virtual

    engine_config.sip.rfc4733 = False

    async def body(engine: Any) -> Any:
        plays = listen(engine)
        caller = SipCaller(engine.sip.port, rfc4733=True)  # offers telephone-event 101
        await caller.open()
        try:
            await caller.call()
            caller.rfc4733 = False  # its keys now go as tones in the audio
            await wait_for(lambda: said(plays, "电费查询请按一"))
            caller.press("1")
            await wait_for(lambda: said(plays, "请输入您的十位户号"))
            caller.bye()
            await engine.idle()
            ok = next(r for r in caller.responses if r.status == 200)
            return ok.body, next(iter(engine.outcomes.values()))
        finally:
            caller.close()

    answer, outcome = with_engine(engine_config, body)
    assert b"m=audio" in answer and b"telephone-event" not in answer
    assert outcome.keys.startswith("1"), outcome.keys

    async def bad_setting() -> None:
        engine_config.sip.rfc4733 = "no"
        engine = Engine(engine_config, watch_flows=False)
        try:
            with pytest.raises(EngineError, match="sip.rfc4733 must be true or false"):
                await engine.start()
        finally:
            await engine.stop()

    run_virtual(bad_setting)
