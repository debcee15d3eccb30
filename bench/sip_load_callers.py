"""The load generator's callers: many SIP calls from one process, two UDP sockets in all.

Used by ``bench/sip_load.py``. One SIP socket carries every call's signalling (calls are told
apart by Call-ID) and one RTP socket every call's media: each call offers that socket's port,
the engine's symmetric RTP answers to it, and arriving packets are told apart by the engine's
RTP port (from the 200 OK's SDP). Every 20 ms one timer sends each active call's next packet —
low-level G.711 noise, or the RFC 4733 packets of the keys being pressed
(:class:`drivers.sip.rtp.RtpSender`).

A caller goes through the bill lookup the way a person would: it waits until the engine has
spoken and then stayed silent for ``QUIET_FRAMES`` frames (a prompt ended and the flow waits
for keys), presses the next keys, and so on; at the end the engine says goodbye and sends
BYE, which the caller answers. Any other ending (a final status other than 200, no answer,
no BYE in time) is a failed call. With ``think`` > 0 each caller also waits 0 to ``think``
seconds (uniformly at random) before pressing keys, as people do, so calls placed together
drift apart; with 0 (the default) they stay in lock step, the harder load.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import socket
import time
from dataclasses import dataclass, field

import numpy as np

from drivers.media.g711 import ulaw_encode
from drivers.sip.rtp import RtpSender

HOST = "127.0.0.1"
QUIET_FRAMES = 25  # 0.5 s of the engine's silence after speech: it waits for keys
SILENCE = bytes([0xFF]) * 160  # μ-law silence, what the engine sends with nothing to play
KEYS = ("1", "{account}#", "1", "9", "#")  # menu, account, confirm, back to menu, goodbye
STEP_TIMEOUT = 60.0  # s for any one step (an answer, a prompt, the BYE)

_CALL_ID = re.compile(rb"\r\nCall-ID: *([^\r\n]+)", re.IGNORECASE)
_CSEQ = re.compile(rb"\r\nCSeq: *(\d+) +([A-Z]+)", re.IGNORECASE)
_TO = re.compile(rb"\r\nTo: *([^\r\n]+)", re.IGNORECASE)
_M_AUDIO = re.compile(rb"\r\nm=audio (\d+) ")


def noise_frame(seed: int) -> bytes:
    """One 20 ms μ-law frame of quiet noise (about −60 dBov), what a caller's line carries."""
    rng = np.random.default_rng(seed)
    return ulaw_encode((rng.standard_normal(160) * 30).astype(np.int16)).tobytes()


@dataclass(slots=True, eq=False)
class Call:
    n: int
    account: str
    call_id: str
    tag: str
    invite_at: float = 0.0
    ringing_at: float = 0.0
    answered_at: float = 0.0
    ended_at: float = 0.0
    status: int = 0
    to: str = ""
    engine_rtp: int = 0
    sender: RtpSender | None = None
    frame: bytes = b""
    rx: int = 0  # RTP packets received
    speech: int = 0  # non-silent frames since the last key press
    quiet: int = 0  # silent frames in a row
    last_rx: float = 0.0
    gaps: list[float] = field(default_factory=list)  # arrival spacing samples (s)
    bye: bool = False
    failure: str = ""
    final: asyncio.Future | None = None
    event: asyncio.Event = field(default_factory=asyncio.Event)


class Generator:
    """Places calls at the engine and keeps their media going (see the module docstring)."""

    def __init__(self, engine_port: int, *, called: str = "95598", think: float = 0.0) -> None:
        self.engine = (HOST, engine_port)
        self.called = called
        self.think = think  # s: each caller waits 0…think (uniform) after a prompt's pause
        self.random = random.Random(95598)
        self.calls: dict[str, Call] = {}
        self.by_rtp: dict[int, Call] = {}
        self.active: list[Call] = []
        self.stray = 0
        self.gap_sample_every = 7  # keep every 7th arrival spacing (bounded memory)
        self._gaps_seen = 0
        self._timer: asyncio.TimerHandle | None = None

    async def open(self) -> None:
        loop = self.loop = asyncio.get_running_loop()
        sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sip.bind((HOST, 0))
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (sip, rtp):
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    s.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
                except OSError:
                    pass
        rtp.bind((HOST, 0))
        self.sip_port = sip.getsockname()[1]
        self.rtp_port = rtp.getsockname()[1]
        self.sip, _ = await loop.create_datagram_endpoint(lambda: _Proto(self._sip_in), sock=sip)
        self.rtp, _ = await loop.create_datagram_endpoint(lambda: _Proto(self._rtp_in), sock=rtp)
        self._start = loop.time()
        self._ticks = 0
        self._schedule()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.sip.close()
        self.rtp.close()

    # --- SIP ----------------------------------------------------------------------------
    def _headers(self, call: Call, method: str, cseq: int, branch: str, to: str) -> str:
        return (
            f"Via: SIP/2.0/UDP {HOST}:{self.sip_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:139{call.n:08d}@{HOST}>;tag={call.tag}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {call.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:139{call.n:08d}@{HOST}:{self.sip_port}>\r\n"
        )

    def _invite(self, call: Call) -> bytes:
        body = (
            f"v=0\r\no=- {call.n} 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
        )
        to = f"<sip:{self.called}@{HOST}>"
        branch = "z9hG4bK" + secrets.token_hex(6)
        return (
            f"INVITE sip:{self.called}@{HOST}:{self.engine[1]} SIP/2.0\r\n"
            + self._headers(call, "INVITE", 1, branch, to)
            + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    def _in_dialog(self, call: Call, method: str, cseq: int) -> bytes:
        branch = "z9hG4bK" + secrets.token_hex(6)
        return (
            f"{method} sip:{self.called}@{HOST}:{self.engine[1]} SIP/2.0\r\n"
            + self._headers(call, method, cseq, branch, call.to)
            + "Content-Length: 0\r\n\r\n"
        ).encode()

    def _sip_in(self, data: bytes, addr: tuple[str, int]) -> None:
        found = _CALL_ID.search(data)
        call = self.calls.get(found.group(1).decode().strip()) if found else None
        if call is None:
            self.stray += 1
            return
        if data.startswith(b"SIP/2.0 "):
            status = int(data[8:11])
            cseq = _CSEQ.search(data)
            if cseq is None or cseq.group(2) != b"INVITE":
                return  # the 200 for a BYE of ours
            now = time.monotonic()
            if status == 180 and not call.ringing_at:
                call.ringing_at = now
            elif status >= 200 and not call.status:
                call.status = status
                if status == 200:
                    call.answered_at = now
                    to = _TO.search(data)
                    port = _M_AUDIO.search(data)
                    call.to = to.group(1).decode() if to else ""
                    call.engine_rtp = int(port.group(1)) if port else 0
                    self.sip.sendto(self._in_dialog(call, "ACK", 1), self.engine)
                    self.by_rtp[call.engine_rtp] = call
                    self.active.append(call)
                call.event.set()
        elif data.startswith(b"BYE "):
            head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
            keep = (b"via:", b"from:", b"to:", b"call-id:", b"cseq:")
            lines = [h for h in head if h.lower().startswith(keep)]
            ok = b"SIP/2.0 200 OK\r\n" + b"\r\n".join(lines) + b"\r\nContent-Length: 0\r\n\r\n"
            self.sip.sendto(ok, addr)
            if not call.bye:
                call.bye = True
                call.ended_at = time.monotonic()
                self._stop_media(call)
                call.event.set()

    def _stop_media(self, call: Call) -> None:
        if call in self.active:
            self.active.remove(call)
        self.by_rtp.pop(call.engine_rtp, None)

    # --- RTP ----------------------------------------------------------------------------
    def _schedule(self) -> None:
        self._ticks += 1
        deadline = self._start + self._ticks * 0.02
        now = self.loop.time()
        if now - deadline > 0.2:  # re-anchor after a stall instead of bursting
            self._start = now - self._ticks * 0.02
            deadline = now
        self._timer = self.loop.call_at(deadline, self._tick)

    def _tick(self) -> None:
        sendto = self.rtp.sendto
        for call in self.active:
            sender = call.sender
            assert sender is not None
            for packet in sender.tick(call.frame):
                sendto(packet, (HOST, call.engine_rtp))
        self._schedule()

    def _rtp_in(self, data: bytes, addr: tuple[str, int]) -> None:
        call = self.by_rtp.get(addr[1])
        if call is None:
            return
        call.rx += 1
        now = time.monotonic()
        self._gaps_seen += 1
        if call.last_rx and self._gaps_seen % self.gap_sample_every == 0:
            call.gaps.append(now - call.last_rx)
        call.last_rx = now
        if data[12:] == SILENCE:
            call.quiet += 1
            if call.quiet == QUIET_FRAMES and call.speech:
                call.event.set()
        else:
            call.quiet = 0
            call.speech += 1

    # --- a whole call -------------------------------------------------------------------
    async def run_call(self, n: int, account: str) -> Call:
        call = Call(n, account, f"{secrets.token_hex(8)}@load", secrets.token_hex(4))
        call.sender = RtpSender(ssrc=secrets.randbits(32), payload_type=0, event_payload_type=101)
        call.frame = noise_frame(n)
        self.calls[call.call_id] = call
        try:
            await self._script(call)
        except TimeoutError:
            call.failure = call.failure or "timed out"
        finally:
            self._stop_media(call)
            if not call.ended_at:
                call.ended_at = time.monotonic()
            if not call.bye and call.status == 200:
                self.sip.sendto(self._in_dialog(call, "BYE", 2), self.engine)
        return call

    async def _wait(self, call: Call, condition, what: str) -> None:  # noqa: ANN001
        deadline = self.loop.time() + STEP_TIMEOUT
        while not condition():
            call.event.clear()
            left = deadline - self.loop.time()
            if left <= 0:
                call.failure = f"no {what} within {STEP_TIMEOUT:.0f} s"
                raise TimeoutError
            try:
                await asyncio.wait_for(call.event.wait(), left)
            except TimeoutError:
                pass

    async def _script(self, call: Call) -> None:
        call.invite_at = time.monotonic()
        self.sip.sendto(self._invite(call), self.engine)
        await self._wait(call, lambda: call.status != 0, "final response")
        if call.status != 200:
            call.failure = f"INVITE answered {call.status}"
            return
        for keys in KEYS:
            await self._wait(
                call,
                lambda: call.bye or (call.speech > 0 and call.quiet >= QUIET_FRAMES),
                "prompt and pause",
            )
            if call.bye:
                call.failure = f"engine hung up before keys {keys!r}"
                return
            if self.think > 0:  # a person takes a moment to answer; robots answer in step
                await asyncio.sleep(self.random.uniform(0.0, self.think))
            assert call.sender is not None
            for key in keys.format(account=call.account):
                call.sender.send_digit(key, 100)
            call.speech = call.quiet = 0
        await self._wait(call, lambda: call.bye, "BYE")


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, handler) -> None:  # noqa: ANN001
        self.datagram_received = handler  # type: ignore[method-assign]

    def error_received(self, exc: Exception) -> None:
        pass
