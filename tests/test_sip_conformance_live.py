"""The RFC 4475 corpus against the running engine's SIP endpoint, while a call is in progress.

Every corpus message is sent over UDP from its own socket to a live engine (virtual clock).
Each request gets the response the corpus calls for — 400/505 for the invalid ones, 416, 420,
415, 406 for the application-layer cases, 405 for methods the endpoint does not serve, 401
(a digest challenge from the registrar) for the REGISTERs, 481 for an in-dialog INVITE to no dialog — and responses are dropped. The
three INVITEs the corpus calls valid become calls; their SDP and Contact name hosts of the
RFC's examples, so those are rewritten to the test's loopback sockets (the body keeps its
length). Afterwards the call in progress still receives its media and a new call is set up.

Which message was answered is told apart by the socket it came from; after each message an
OPTIONS probe on the same socket marks the end of what the message caused (UDP on loopback
keeps order, the endpoint handles datagrams one at a time).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from test_sip_calls import HOST, SipCaller, _Udp, wait_for
from test_sip_torture import APPLICATION, CORPUS, INVALID, VALID, load, pytestmark  # noqa: F401

from support import with_engine

# status codes each message gets, in order, before its probe is answered ([] = dropped)
EXPECTED: dict[str, list[int]] = {
    # valid (RFC 4475 §3.1.1)
    "wsinv": [481],  # carries a To tag: an in-dialog INVITE for a dialog that does not exist
    "intmeth": [405],
    "esc01": [100, 180],  # a call; the 200 follows after the ringing time
    "escnull": [401],  # REGISTER without credentials: challenged
    "esc02": [405],  # method RE%47IST%45R
    "lwsdisp": [200],
    "longreq": [100, 180],
    "dblreq": [401],
    "semiuri": [200],
    "transports": [200],
    "mpart01": [405],  # MESSAGE
    "unreason": [],  # responses without a transaction: discarded
    "noreason": [],
    # invalid (§3.1.2)
    **{name: [400] for name in INVALID},
    "badvers": [505],
    "scalarlg": [],  # responses
    "bigcode": [],
    # application layer (§3.3)
    "insuf": [400],
    "unkscm": [416],
    "novelsc": [416],
    "unksm2": [401],
    "bext01": [420],
    "invut": [415],
    "regescrt": [401],
    "sdp01": [406],
    "multi01": [400],
    "zeromf": [200],  # OPTIONS with Max-Forwards 0, addressed to the endpoint itself
    "cparam01": [401],
    "cparam02": [401],
    "regaut01": [401],  # unknown Authorization scheme: challenged again
    "badbranch": [200],
    "inv2543": [100, 180],
    "mcl01": [400],
    "bcast": [],
}
CALLS = {"esc01", "longreq", "inv2543"}


def addressed(name: str, data: bytes, port: int) -> bytes:
    """A corpus INVITE pointed at ``port`` on loopback: SDP address/port and Contact host."""
    if name not in CALLS:
        return data
    head, _, body = data.partition(b"\r\n\r\n")
    assert len(str(port)) == 5  # the body keeps its length, so Content-Length stays right
    body = re.sub(rb"c=IN IP4 192\.0\.2\.\d", b"c=IN IP4 127.0.0.1", body)
    body = body.replace(b"m=audio 49217", f"m=audio {port}".encode())
    head = head.replace(b"host5.example.net", f"{HOST}:{port}".encode())
    return head + b"\r\n\r\n" + body


def probe(n: int, port: int) -> bytes:
    return (
        f"OPTIONS sip:95598@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{port};branch=z9hG4bKprobe{n}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:95598@127.0.0.1>\r\n"
        f"Call-ID: probe-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_corpus_against_the_running_endpoint_during_a_call(engine_config: Any) -> None:
    assert set(EXPECTED) == {p.stem for p in CORPUS.glob("*.dat")}

    async def body(engine: Any) -> Any:
        loop = asyncio.get_running_loop()
        good = SipCaller(engine.sip.port)
        await good.open()
        sockets: dict[str, tuple[Any, Any]] = {}
        try:
            await good.call()
            await wait_for(lambda: len(good.received) > 160 * 25)
            for name in EXPECTED:
                sockets[name] = await loop.create_datagram_endpoint(_Udp, local_addr=(HOST, 0))
            before = len(good.received)
            got: dict[str, list[int]] = {}
            for n, (name, (transport, proto)) in enumerate(sockets.items()):
                port = transport.get_extra_info("sockname")[1]
                transport.sendto(addressed(name, load(name), port), (HOST, engine.sip.port))
                transport.sendto(probe(n, port), (HOST, engine.sip.port))
                got[name] = []
                while True:
                    data, _ = await asyncio.wait_for(proto.queue.get(), 10)
                    if f"probe-{n}".encode() in data:
                        break
                    if data.startswith(b"SIP/2.0 "):
                        got[name].append(int(data.split(b" ", 2)[1]))
            # the corpus calls are answered (200 + SDP), then ended by Timer H: no ACK comes
            answered = {}
            for name in CALLS:
                proto = sockets[name][1]
                seen: list[bytes] = []
                while not any(d.startswith(b"BYE ") for d in seen):
                    seen.append((await asyncio.wait_for(proto.queue.get(), 120))[0])
                answered[name] = [d.split(b"\r\n", 1)[0] for d in seen]
            # the call in progress kept its media; a new call is set up and hears audio
            await wait_for(lambda: len(good.received) > before + 160 * 50)
            fresh = SipCaller(engine.sip.port)
            await fresh.open()
            try:
                await fresh.call()
                await wait_for(lambda: len(fresh.received) > 160 * 25)
                fresh.bye()
                good.bye()
                await engine.idle()
            finally:
                fresh.close()
            leftover = (dict(engine.sip.channels), dict(engine.sip.uas.calls))
            return got, answered, leftover
        finally:
            good.close()
            for transport, _ in sockets.values():
                transport.close()

    got, answered, leftover = with_engine(engine_config, body)
    assert got == EXPECTED
    for lines in answered.values():
        assert b"SIP/2.0 200 OK" in lines and lines[-1].startswith(b"BYE ")
    assert leftover == ({}, {})
