"""Minimal RTCP: sender reports built and parsed as plain objects, and on a live call.

The plain-object tests check the SR + SDES compound packet field by field, the RFC 3550
validity checks on what arrives, and the randomized 5 s schedule. The live test runs a call
from the raw-socket caller of ``test_sip_calls`` with an RTCP socket on its RTP port + 1: the
engine's sender reports arrive there about every 5 s with the RTP stream's SSRC and growing
counts, and RTCP sent to the engine (a receiver report, and garbage) leaves the call alone.
"""

from __future__ import annotations

import asyncio
import random
import struct
from typing import Any

import pytest
from test_sip_calls import HOST, SipCaller, _Udp, wait_for

from drivers.sip.rtcp import (
    BYE,
    NTP_EPOCH_OFFSET,
    RR,
    SDES,
    SR,
    RtcpError,
    RtcpSchedule,
    cname_of,
    ntp_time,
    parse_compound,
    sender_info,
    sender_report,
)
from support import with_engine


def receiver_report(ssrc: int) -> bytes:
    """An RR with one report block followed by SDES and BYE, as a softphone sends it."""
    block = struct.pack("!IIIIII", 0x1234, 0, 0, 0, 0, 0)
    rr = struct.pack("!BBHI", 0x81, RR, 7, ssrc) + block
    chunk = struct.pack("!IBB", ssrc, 1, 5) + b"phone" + b"\0"
    chunk += b"\0" * (-len(chunk) % 4)
    sdes = struct.pack("!BBH", 0x81, SDES, len(chunk) // 4) + chunk
    bye = struct.pack("!BBHI", 0x81, BYE, 1, ssrc)
    return rr + sdes + bye


def test_sender_report_fields_round_trip() -> None:
    data = sender_report(
        ssrc=0xDEADBEEF,
        unix_time=1_700_000_000.25,
        rtp_timestamp=123_456,
        packets=250,
        octets=40_000,
        cname="hotline@127.0.0.1",
    )
    assert len(data) % 4 == 0
    assert data[0] == 0x80 and data[1] == SR and struct.unpack("!H", data[2:4])[0] == 6
    sr, sdes = parse_compound(data)
    info = sender_info(sr)
    assert (info.ssrc, info.rtp_timestamp, info.packets, info.octets) == (
        0xDEADBEEF,
        123_456,
        250,
        40_000,
    )
    assert info.ntp_seconds == pytest.approx(1_700_000_000.25, abs=1e-6)
    assert sr.count == 0  # no reception report blocks
    assert sdes.packet_type == SDES and sdes.ssrc == 0xDEADBEEF
    assert cname_of(sdes) == "hotline@127.0.0.1"


def test_ntp_time_counts_from_1900() -> None:
    assert ntp_time(0.5) == (NTP_EPOCH_OFFSET, 1 << 31)


def test_a_phone_s_receiver_report_parses() -> None:
    packets = parse_compound(receiver_report(0x55))
    assert [p.packet_type for p in packets] == [RR, SDES, BYE]
    assert packets[0].count == 1 and packets[0].ssrc == 0x55
    assert cname_of(packets[1]) == "phone"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x80\xc8\x00", "stray"),
        (b"\x40\xc8\x00\x00", "version"),
        (b"\x80\xca\x00\x00", "not SR or RR"),  # compound must start with SR/RR
        (b"\x80\xc9\x00\x05\x00\x00\x00\x01", "runs past"),
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x01", "not SR or RR"),  # padded first packet
    ],
)
def test_malformed_rtcp_is_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(RtcpError, match=reason):
        parse_compound(data)


def test_random_datagrams_raise_only_rtcp_error() -> None:
    rng = random.Random(4)
    good = receiver_report(7)
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(0, len(data))]
        try:
            parse_compound(bytes(data))
        except RtcpError:
            pass


def test_schedule_spreads_reports_around_five_seconds() -> None:
    schedule = RtcpSchedule(0.0, rng=random.Random(1))
    sent = [t / 10 for t in range(0, 6000) if schedule.due(t / 10)]
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert all(2.5 - 0.1 <= g <= 7.5 + 0.1 for g in gaps)
    assert 4.0 < sum(gaps) / len(gaps) < 6.0
    with pytest.raises(ValueError):
        RtcpSchedule(0.0, interval=0)


def test_engine_sends_sender_reports_and_ignores_incoming_rtcp(engine_config: Any) -> None:
    async def body(engine: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        for _ in range(20):  # a caller whose RTP port + 1 is free for its RTCP socket
            caller = SipCaller(engine.sip.port)
            await caller.open()
            try:
                rtcp, rtcp_proto = await loop.create_datagram_endpoint(
                    _Udp, local_addr=(HOST, caller.rtp_port + 1)
                )
                break
            except OSError:
                caller.close()
        else:
            raise AssertionError("no caller RTP port with a free port above it")
        try:
            await caller.call()
            engine_rtp = caller.engine_rtp
            (stream,) = engine.sip.media.streams
            await wait_for(lambda: rtcp_proto.queue.qsize() >= 2, 20)
            reports = [rtcp_proto.queue.get_nowait() for _ in range(rtcp_proto.queue.qsize())]
            rtcp.sendto(receiver_report(1234), (HOST, engine_rtp[1] + 1))
            rtcp.sendto(b"\x00garbage", (HOST, engine_rtp[1] + 1))
            before = len(caller.received)
            await asyncio.sleep(1.0)
            return {
                "reports": reports,
                "ssrc": stream.sender.ssrc,
                "rtcp_in": stream.rtcp_in,
                "rtcp_bad": stream.rtcp_bad,
                "audio_after": len(caller.received) - before,
                "reports_at": engine_rtp[1] + 1,
            }
        finally:
            caller.bye()
            await asyncio.sleep(0.5)
            rtcp.close()
            caller.close()

    result = with_engine(engine_config, body)
    infos = []
    for data, addr in result["reports"]:
        assert addr[1] == result["reports_at"]  # sent from the engine's RTP port + 1
        sr, sdes = parse_compound(data)
        infos.append(sender_info(sr))
        assert cname_of(sdes) == "hotline@127.0.0.1"
    assert all(i.ssrc == result["ssrc"] for i in infos)
    assert infos[1].packets > infos[0].packets > 50  # seconds of 50 packets/s
    assert infos[1].octets == 160 * infos[1].packets
    # 5 s × 0.5…1.5, looked at once a second by the media plane
    assert 2.4 <= infos[1].ntp_seconds - infos[0].ntp_seconds <= 8.6
    # incoming RTCP was read and ignored; the call's audio went on
    assert result["rtcp_in"] == 1 and result["rtcp_bad"] == 1
    assert result["audio_after"] >= 160 * 40
