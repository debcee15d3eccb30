"""A raw-socket SIP agent phone for the seat tests: registers with digest, rings, answers.

:class:`SeatPhone` is written for the tests on two UDP sockets (SIP and RTP) in the engine's
loop. It REGISTERs (computing the RFC 2617 MD5 digest itself), answers every INVITE with
100 and 180 and keeps it ringing until the test calls :meth:`SeatPhone.answer` (200 with a
PCMU + telephone-event answer), answers a re-INVITE (hold/resume) with the reversed
direction, answers CANCEL (200, then 487 for the INVITE), BYE (200) and
OPTIONS (200, unless :attr:`SeatPhone.alive` is False), sends :meth:`SeatPhone.bye` itself,
streams queued audio (:meth:`SeatPhone.say`) every 20 ms and keeps every PCMU payload it gets.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections import deque
from typing import Any

import numpy as np

from drivers.media.g711 import ulaw_decode, ulaw_encode
from drivers.sip.message import ParseError, Request, Response, parse, response_to
from drivers.sip.rtp import RtpPacket, RtpSender
from drivers.sip.sdp import parse_sdp

HOST = "127.0.0.1"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.handler(data, addr)


class SeatPhone:
    """One agent seat's softphone (see the module doc)."""

    def __init__(
        self, engine_port: int, user: str, password: str, *, contact_host: str = HOST
    ) -> None:
        self.engine = (HOST, engine_port)
        self.contact_host = contact_host  # a private address: the phone is behind NAT
        self.user = user
        self.password = password
        self.reg_call_id = secrets.token_hex(8) + "@seat"
        self.reg_cseq = 0
        self.nc = 0
        self.alive = True  # answers OPTIONS
        self.requests: list[Request] = []  # every request the engine sent
        self.invite: Request | None = None  # the current incoming call
        self.tag = secrets.token_hex(4)
        self.cseq = 100
        self.received = bytearray()  # PCMU payloads from the engine
        self._audio: deque[np.ndarray] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._waiters: list[asyncio.Future[Response]] = []
        self.remote_rtp: tuple[str, int] | None = None

    async def open(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.sip, _ = await self.loop.create_datagram_endpoint(
            lambda: _Udp(self._sip_in), local_addr=(HOST, 0)
        )
        self.rtp, _ = await self.loop.create_datagram_endpoint(
            lambda: _Udp(self._rtp_in), local_addr=(HOST, 0)
        )
        self.port = self.sip.get_extra_info("sockname")[1]
        self.rtp_port = self.rtp.get_extra_info("sockname")[1]
        self.sender = RtpSender(ssrc=4321, payload_type=0, event_payload_type=101)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.sip.close()
        self.rtp.close()

    # --- registration ------------------------------------------------------------------
    async def register(self, expires: int = 600) -> Response:
        """REGISTER, answer the digest challenge, return the final response."""
        challenge = await self._register(expires, None)
        if challenge.status != 401:
            return challenge
        return await self._register(expires, challenge)

    async def _register(self, expires: int, challenge: Response | None) -> Response:
        self.reg_cseq += 1
        uri = f"sip:{HOST}"
        lines = [
            f"REGISTER {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{HOST}>;tag=reg{self.user}",
            f"To: <sip:{self.user}@{HOST}>",
            f"Call-ID: {self.reg_call_id}",
            f"CSeq: {self.reg_cseq} REGISTER",
            f"Contact: <sip:{self.user}@{self.contact_host}:{self.port}>",
            f"Expires: {expires}",
        ]
        if challenge is not None:
            lines.append(f"Authorization: {self._authorization(challenge, uri)}")
        future = self.loop.create_future()
        self._waiters.append(future)
        self._send(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(), self.engine)
        return await asyncio.wait_for(future, 30)

    def _authorization(self, challenge: Response, uri: str) -> str:
        (md5_challenge,) = [
            v for v in challenge.headers.lines("www-authenticate") if "algorithm=MD5" in v
        ]
        realm = re.search(r'realm="([^"]*)"', md5_challenge)[1]  # type: ignore[index]
        nonce = re.search(r'nonce="([^"]*)"', md5_challenge)[1]  # type: ignore[index]
        self.nc += 1
        nc, cnonce = f"{self.nc:08x}", secrets.token_hex(4)
        ha1 = _md5(f"{self.user}:{realm}:{self.password}")
        response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{_md5(f'REGISTER:{uri}')}")
        return (
            f'Digest username="{self.user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
        )

    # --- calls -------------------------------------------------------------------------
    def methods(self) -> list[str]:
        return [r.method for r in self.requests]

    def answer(self) -> None:
        """200 OK with PCMU + telephone-event; start streaming audio."""
        assert self.invite is not None
        offer = parse_sdp(self.invite.body)
        media = offer.media[0]
        self.remote_rtp = (offer.media_connection(media), media.port)
        body = (
            f"v=0\r\no=seat 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
        ).encode()
        ok = response_to(self.invite, 200, "OK", self.tag)
        ok.headers.add("Contact", f"<sip:{self.user}@{HOST}:{self.port}>")
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = body
        self._send(bytes(ok), self._via_address(self.invite))
        self._tick()

    def bye(self) -> None:
        """The agent hangs up."""
        assert self.invite is not None
        invite = self.invite
        self.cseq += 1
        contact = invite.contacts[0].uri
        data = (
            f"BYE {contact} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: {invite.headers.get('to')};tag={self.tag}\r\n"
            f"To: {invite.headers.get('from')}\r\n"
            f"Call-ID: {invite.call_id}\r\nCSeq: {self.cseq} BYE\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        self._send(data, self.engine)
        self._stop_media()

    def say(self, samples: np.ndarray) -> None:
        samples = samples[: len(samples) // 160 * 160]
        self._audio.extend(np.split(samples, len(samples) // 160))

    def heard(self) -> np.ndarray:
        return ulaw_decode(bytes(self.received))

    # --- input -------------------------------------------------------------------------
    def _sip_in(self, data: bytes, addr: Any) -> None:
        try:
            message = parse(data)
        except ParseError:
            return
        if isinstance(message, Response):
            if message.cseq.method == "REGISTER":
                for future in self._waiters:
                    if not future.done():
                        future.set_result(message)
                        break
            return
        self.requests.append(message)
        method = message.method
        if method == "INVITE" and message.to.tag is not None:  # hold / resume by the engine
            self._answer_reinvite(message)
        elif method == "INVITE":
            if self.invite is not None and self.invite.call_id == message.call_id:
                return  # a retransmission
            self.invite = message
            self._reply(message, 100, "Trying", tag=False)
            self._reply(message, 180, "Ringing")
        elif method == "CANCEL":
            self._reply(message, 200, "OK")
            if self.invite is not None and self.invite.call_id == message.call_id:
                self._reply(self.invite, 487, "Request Terminated")
        elif method == "BYE":
            self._reply(message, 200, "OK")
            self._stop_media()
        elif method == "OPTIONS" and self.alive:
            self._reply(message, 200, "OK")

    def _answer_reinvite(self, request: Request) -> None:
        offered = parse_sdp(request.body).media[0].direction or "sendrecv"
        reverse = {"sendonly": "recvonly", "recvonly": "sendonly"}.get(str(offered), str(offered))
        body = (
            f"v=0\r\no=seat 1 2 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na={reverse}\r\n"
        ).encode()
        ok = response_to(request, 200, "OK")
        ok.headers.add("Contact", f"<sip:{self.user}@{HOST}:{self.port}>")
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = body
        self._send(bytes(ok), self._via_address(request))

    def _reply(self, request: Request, status: int, reason: str, *, tag: bool = True) -> None:
        response = response_to(request, status, reason, self.tag if tag else None)
        self._send(bytes(response), self._via_address(request))

    @staticmethod
    def _via_address(request: Request) -> tuple[str, int]:
        via = request.top_via
        return via.host, via.port or 5060

    def _send(self, data: bytes, address: tuple[str, int]) -> None:
        self.sip.sendto(data, address)

    def _rtp_in(self, data: bytes, addr: Any) -> None:
        packet = RtpPacket.parse(data)
        if packet.payload_type == 0:
            self.received += packet.payload

    def _tick(self) -> None:
        pcm = self._audio.popleft() if self._audio else np.zeros(160, np.int16)
        if self.remote_rtp is not None:
            for packet in self.sender.tick(ulaw_encode(pcm).tobytes()):
                self.rtp.sendto(packet, self.remote_rtp)
        self._timer = self.loop.call_later(0.02, self._tick)

    def _stop_media(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
