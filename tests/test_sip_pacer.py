"""The RTP pacer's thread on real sockets: batches leave at their deadline, reads come in.

Each test runs with the C socket calls and with Python's socket methods (``native``).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from typing import Any

import pytest

from drivers.sip import pacer as pacer_module
from drivers.sip.pacer import RtpPacer

HOST = "127.0.0.1"
AUDIO = bytes([0x80, 0]) + bytes(10) + b"\xff" * 160  # PCMU, version 2, no extras


class Stream:
    """What the pacer uses of an RtpStream."""

    def __init__(self, peer: socket.socket) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        self.remote = peer.getsockname()
        self.sending = True
        self.connected = False
        self.latched: tuple[str, int] | None = None
        self.latched_key: tuple[int, int] | None = None
        self.send_errors = 0
        self.inbound: deque[bytes] = deque()
        self.slow: list[tuple[bytes, tuple[str, int]]] = []

    def latch(self, addr: tuple[str, int]) -> None:
        self.sock.connect(addr)
        self.latched = self.remote = addr
        self.latched_key = (int.from_bytes(socket.inet_aton(addr[0]), "big"), addr[1])
        self.connected = True

    def take(self, data: bytes, addr: tuple[str, int]) -> bool:
        return addr == self.latched and self.take_latched(data)

    def take_latched(self, data: bytes) -> bool:
        if data[:2] == AUDIO[:2]:
            self.inbound.append(data[12:])
            return True
        return False

    def received(self, data: bytes, addr: tuple[str, int]) -> None:  # on the loop
        self.slow.append((data, addr))


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(2.0)
    return sock


@pytest.fixture(params=[True, False], ids=["c", "python"])
def native(request: Any) -> bool:
    if request.param and pacer_module._rtpio is None:
        pytest.fail("the C socket calls were not built (setup.py)")
    return request.param


async def wait_for(condition: Any, seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_a_batch_leaves_at_its_deadline_and_not_before(native: bool) -> None:
    caller = udp()
    sent: list[tuple[float, float, int]] = []
    pacer = RtpPacer(on_sent=lambda d, at, n: sent.append((d, at, n)), native=native)
    connected, unconnected = Stream(caller), Stream(caller)
    connected.latch(caller.getsockname())
    pacer.start()
    try:
        deadline = time.monotonic() + 0.08
        pacer.submit(deadline, [(connected, [b"one", b"two"]), (unconnected, [b"three"])])
        first = caller.recvfrom(100)
        arrived = time.monotonic()
        rest = {caller.recvfrom(100)[0], caller.recvfrom(100)[0]}
        assert arrived >= deadline
        assert {first[0], *rest} == {b"one", b"two", b"three"}
        await wait_for(lambda: bool(sent))
        (due, sent_at, count) = sent[0]
        assert due == deadline and count == 3 and 0 <= sent_at - deadline < 0.5
        assert pacer.packets_out == 3 and pacer.late_batches == 0
    finally:
        pacer.stop()
        caller.close()


async def test_a_stream_that_stopped_sending_is_skipped(native: bool) -> None:
    caller = udp()
    caller.settimeout(0.3)
    pacer = RtpPacer(native=native)
    stream, other = Stream(caller), Stream(caller)
    pacer.start()
    try:
        pacer.submit(time.monotonic() + 0.05, [(stream, [b"held"]), (other, [b"goes"])])
        pacer.stop_sending(stream)  # closed or on hold before the deadline
        assert caller.recvfrom(100)[0] == b"goes"
        with pytest.raises(TimeoutError):
            caller.recvfrom(100)
    finally:
        pacer.stop()
        caller.close()


async def test_reads_audio_itself_and_hands_everything_else_to_the_loop(native: bool) -> None:
    caller, stranger = udp(), udp()
    pacer = RtpPacer(loop=asyncio.get_running_loop(), native=native)
    stream = Stream(caller)
    pacer.watch(stream)
    pacer.start()
    try:
        port = stream.sock.getsockname()[1]
        caller.sendto(AUDIO, (HOST, port))  # not latched yet: the loop decides
        await wait_for(lambda: len(stream.slow) == 1)
        assert stream.slow[0] == (AUDIO, caller.getsockname()) and not stream.inbound
        stream.latch(caller.getsockname())
        for _ in range(5):
            caller.sendto(AUDIO, (HOST, port))
        event = bytes([0x80, 101]) + bytes(14)  # telephone-event: parsed on the loop
        caller.sendto(event, (HOST, port))
        await wait_for(lambda: len(stream.inbound) == 5 and len(stream.slow) == 2)
        assert list(stream.inbound) == [AUDIO[12:]] * 5 and stream.slow[1][0] == event
        stranger.sendto(AUDIO, (HOST, port))  # the connected socket never delivers it
        pacer.unwatch(stream)
        caller.sendto(AUDIO, (HOST, port))
        await asyncio.sleep(0.05)
        assert len(stream.inbound) == 5 and len(stream.slow) == 2
    finally:
        pacer.stop()
        caller.close()
        stranger.close()
