"""Agent softphones registering with the running engine over loopback (RFC 3261 §10, RFC 2617).

A raw-socket phone sends REGISTER, reads the 401 challenge, answers it with a digest it
computes itself (MD5, qop=auth) and checks the engine's answer: 200 with its Contact and
expiry and the binding on the engine's registrar; a wrong password challenged again until the
source is locked out (403, logged); an unregister with Expires: 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from typing import Any

from test_sip_calls import HOST, _Udp

from drivers.sip.message import Response, parse
from hotline.services.sip_seats import DEMO_PASSWORD, REALM
from support import with_engine


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class Phone:
    """A seat's softphone: REGISTER and nothing else."""

    def __init__(self, engine_port: int, user: str = "1001") -> None:
        self.engine = (HOST, engine_port)
        self.user = user
        self.call_id = secrets.token_hex(8) + "@phone"
        self.cseq = 0
        self.nc = 0

    async def open(self, host: str = HOST) -> None:
        loop = asyncio.get_running_loop()
        self.sock, self.proto = await loop.create_datagram_endpoint(_Udp, local_addr=(host, 0))
        self.host, self.port = self.sock.get_extra_info("sockname")[:2]

    def close(self) -> None:
        self.sock.close()

    async def register(
        self, *, expires: int = 600, challenge: Response | None = None, password: str = ""
    ) -> Response:
        self.cseq += 1
        uri = f"sip:{HOST}"
        lines = [
            f"REGISTER {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{HOST}>;tag=ph{self.user}",
            f"To: <sip:{self.user}@{HOST}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:{self.user}@{self.host}:{self.port}>",
            f"Expires: {expires}",
        ]
        if challenge is not None:
            lines.append(f"Authorization: {self.authorization(challenge, uri, password)}")
        self.sock.sendto(
            ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(), self.engine
        )
        data, _ = await asyncio.wait_for(self.proto.queue.get(), 30)
        message = parse(data)
        assert isinstance(message, Response)
        return message

    def authorization(self, challenge: Response, uri: str, password: str) -> str:
        (md5_challenge,) = [
            v for v in challenge.headers.lines("www-authenticate") if "algorithm=MD5" in v
        ]
        realm = re.search(r'realm="([^"]*)"', md5_challenge)[1]  # type: ignore[index]
        nonce = re.search(r'nonce="([^"]*)"', md5_challenge)[1]  # type: ignore[index]
        self.nc += 1
        nc, cnonce = f"{self.nc:08x}", secrets.token_hex(4)
        ha1 = md5(f"{self.user}:{realm}:{password}")
        ha2 = md5(f"REGISTER:{uri}")
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        return (
            f'Digest username="{self.user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
        )


def test_seat_registers_with_the_demo_password_and_unregisters(engine_config: Any) -> None:
    async def body(engine: Any) -> Any:
        loop = asyncio.get_running_loop()
        phone = Phone(engine.sip.port)
        await phone.open()
        try:
            challenge = await phone.register()
            ok = await phone.register(challenge=challenge, password=DEMO_PASSWORD)
            binding = engine.sip.registrar.contact_for("1001", loop.time())
            challenge = await phone.register(expires=0)
            gone = await phone.register(expires=0, challenge=challenge, password=DEMO_PASSWORD)
            after = engine.sip.registrar.contact_for("1001", loop.time())
            return challenge, ok, binding, gone, after, phone.port
        finally:
            phone.close()

    challenge, ok, binding, gone, after, port = with_engine(engine_config, body)
    assert challenge.status == 401
    assert any(f'realm="{REALM}"' in v for v in challenge.headers.lines("www-authenticate"))
    assert ok.status == 200
    assert ok.headers.get("contact") == f"<sip:1001@{HOST}:{port}>;expires=600"
    assert binding is not None and binding.target == (HOST, port)
    assert gone.status == 200 and gone.headers.get("contact") is None
    assert after is None


def test_binding_lapses_when_not_refreshed(engine_config: Any) -> None:
    async def body(engine: Any) -> Any:
        loop = asyncio.get_running_loop()
        phone = Phone(engine.sip.port, user="1002")
        await phone.open()
        try:
            challenge = await phone.register(expires=120)
            ok = await phone.register(expires=120, challenge=challenge, password=DEMO_PASSWORD)
            before = engine.sip.registrar.lookup("1002", loop.time())
            await asyncio.sleep(121)  # virtual clock
            return ok, before, engine.sip.registrar.lookup("1002", loop.time())
        finally:
            phone.close()

    ok, before, after = with_engine(engine_config, body)
    assert ok.status == 200 and len(before) == 1 and after == []


def test_wrong_password_is_challenged_again_then_the_source_is_locked_out(
    engine_config: Any,
) -> None:
    from structlog.testing import capture_logs

    async def body(engine: Any) -> Any:
        loop = asyncio.get_running_loop()
        max_failures = engine.sip.registrar.authenticator.max_failures
        phone = Phone(engine.sip.port)
        await phone.open()
        statuses = []
        try:
            with capture_logs() as logs:
                challenge = await phone.register()
                for _ in range(max_failures):
                    reply = await phone.register(challenge=challenge, password="guess-1234")
                    statuses.append(reply.status)
                    if reply.status == 401:
                        challenge = reply
                # locked out: even the right password is refused now
                right = await phone.register(challenge=challenge, password=DEMO_PASSWORD)
                # and a new source port on the same address does not start a fresh count
                other = Phone(engine.sip.port)
                await other.open()
                try:
                    fresh = await other.register()
                finally:
                    other.close()
            bound = engine.sip.registrar.contact_for("1001", loop.time())
            return max_failures, statuses, right, bound, logs, fresh
        finally:
            phone.close()

    max_failures, statuses, right, bound, logs, fresh = with_engine(engine_config, body)
    assert statuses == [401] * (max_failures - 1) + [403]
    assert right.status == 403 and bound is None
    assert fresh.status == 403
    events = [e["event"] for e in logs]
    assert events.count("sip.register_auth_failed") == max_failures - 1
    assert "sip.register_forbidden" in events
