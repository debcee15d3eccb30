"""Minimal RTCP (RFC 3550 §6) for the media plane, as plain objects without I/O.

The engine sends, for each stream, a compound packet of a sender report (SR: NTP and RTP
time of "now", packets and octets sent so far) and an SDES with its CNAME, every
``interval`` seconds (5 s, randomized ×0.5…1.5 as §6.3.1 asks, so streams started together
do not report together) on the RTP port + 1. What arrives on that port is checked with
:func:`parse_compound` and otherwise ignored: RTCP from phones (receiver reports, SDES, BYE)
changes nothing in a call, and a malformed datagram raises :class:`RtcpError`, which the
shell counts and drops.

* :func:`sender_report` → the bytes of SR + SDES CNAME.
* :func:`parse_compound` → the packets of a compound datagram (type, count, SSRC, body).
* :class:`RtcpSchedule` → when a stream's next report is due (``now`` passed in).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

RTCP_VERSION = 2
SR, RR, SDES, BYE, APP = 200, 201, 202, 203, 204
SDES_CNAME = 1
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)
INTERVAL = 5.0  # seconds between a stream's reports, on average

_HEADER = struct.Struct("!BBH")
_SR_BODY = struct.Struct("!IIIIII")  # SSRC, NTP seconds, NTP fraction, RTP ts, packets, octets


class RtcpError(ValueError):
    """A datagram that is not a valid RTCP compound packet."""


@dataclass(slots=True, frozen=True)
class RtcpPacket:
    """One packet of a compound datagram: its type, count field, first SSRC and body."""

    packet_type: int
    count: int  # reception report count / source count, by type
    ssrc: int | None  # the sender's (or first source's) SSRC, when the packet has one
    body: bytes  # after the 4-byte header


@dataclass(slots=True, frozen=True)
class SenderInfo:
    """The sender information of an SR (RFC 3550 §6.4.1)."""

    ssrc: int
    ntp_seconds: float  # Unix time
    rtp_timestamp: int
    packets: int
    octets: int


def ntp_time(unix_seconds: float) -> tuple[int, int]:
    """Unix time → the 64-bit NTP timestamp as (seconds, fraction of 2³²)."""
    whole = int(unix_seconds)
    fraction = int((unix_seconds - whole) * (1 << 32)) & 0xFFFFFFFF
    return (whole + NTP_EPOCH_OFFSET) & 0xFFFFFFFF, fraction


def sender_report(
    *,
    ssrc: int,
    unix_time: float,
    rtp_timestamp: int,
    packets: int,
    octets: int,
    cname: str,
) -> bytes:
    """A compound RTCP packet: SR without report blocks, then SDES with the CNAME."""
    seconds, fraction = ntp_time(unix_time)
    sr = _HEADER.pack(RTCP_VERSION << 6, SR, 6) + _SR_BODY.pack(
        ssrc,
        seconds,
        fraction,
        rtp_timestamp & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )
    name = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, SDES_CNAME, len(name)) + name + b"\0"  # END item
    chunk += b"\0" * (-len(chunk) % 4)  # chunks end on a 32-bit boundary
    sdes = _HEADER.pack(RTCP_VERSION << 6 | 1, SDES, len(chunk) // 4) + chunk
    return sr + sdes


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Split and check a compound datagram (RFC 3550 §6.1 and the A.2 validity checks).

    The first packet must be an SR or RR without padding; every packet must be version 2
    and its length must fit; only the last may be padded.
    """
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _HEADER.size:
            raise RtcpError(f"{len(data) - offset} stray bytes after the RTCP packets")
        first, packet_type, words = _HEADER.unpack_from(data, offset)
        if first >> 6 != RTCP_VERSION:
            raise RtcpError(f"RTCP version {first >> 6}, expected 2")
        size = 4 * (words + 1)
        if offset + size > len(data):
            raise RtcpError(f"RTCP packet of {size} bytes runs past the datagram")
        if not packets and (packet_type not in (SR, RR) or first & 0x20):
            raise RtcpError(f"compound RTCP starts with type {packet_type}, not SR or RR")
        body = data[offset + 4 : offset + size]
        if first & 0x20:
            if offset + size != len(data):
                raise RtcpError("padding on an RTCP packet that is not the last")
            padding = body[-1] if body else 0
            if not 0 < padding <= len(body):
                raise RtcpError(f"bad RTCP padding length {padding}")
            body = body[:-padding]
        ssrc = struct.unpack_from("!I", body)[0] if len(body) >= 4 else None
        packets.append(RtcpPacket(packet_type, first & 0x1F, ssrc, bytes(body)))
        offset += size
    if not packets:
        raise RtcpError("empty RTCP datagram")
    return packets


def sender_info(packet: RtcpPacket) -> SenderInfo:
    """The sender information of a parsed SR."""
    if packet.packet_type != SR or len(packet.body) < _SR_BODY.size:
        raise RtcpError("not a sender report")
    ssrc, seconds, fraction, rtp_ts, count, octets = _SR_BODY.unpack_from(packet.body)
    unix = seconds - NTP_EPOCH_OFFSET + fraction / (1 << 32)
    return SenderInfo(ssrc, unix, rtp_ts, count, octets)


def cname_of(packet: RtcpPacket) -> str | None:
    """The CNAME of the first chunk of a parsed SDES packet, if it has one."""
    if packet.packet_type != SDES or len(packet.body) < 6:
        return None
    offset = 4
    while offset + 2 <= len(packet.body) and packet.body[offset] != 0:
        item, length = packet.body[offset], packet.body[offset + 1]
        value = packet.body[offset + 2 : offset + 2 + length]
        if item == SDES_CNAME:
            return value.decode(errors="replace")
        offset += 2 + length
    return None


class RtcpSchedule:
    """When one stream's next report is due: ``interval`` × a random 0.5…1.5 after the last."""

    def __init__(
        self, now: float, *, interval: float = INTERVAL, rng: random.Random | None = None
    ) -> None:
        if interval <= 0:
            raise ValueError(f"RTCP interval {interval} must be > 0")
        self.interval = interval
        self._rng = rng or random.Random()
        self.next_at = now + self._spread()

    def _spread(self) -> float:
        return self.interval * (0.5 + self._rng.random())

    def due(self, now: float) -> bool:
        """True (and the next report scheduled) when a report should go out now."""
        if now < self.next_at:
            return False
        self.next_at = now + self._spread()
        return True
