"""RTP packets, the 20 ms sender and RFC 4733 telephone-events both ways."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from drivers.media.g711 import ALAW_SILENCE, alaw_decode, alaw_encode
from drivers.media.tones import sine
from drivers.sip.rtp import (
    END_REPEATS,
    EventPayload,
    RtpError,
    RtpPacket,
    RtpSender,
    TelephoneEventReceiver,
    frames,
)

EVENT_PT = 101


def test_header_fields_round_trip() -> None:
    packet = RtpPacket(8, 65535, 0xFFFFFFF0, 0xDEADBEEF, b"\xd5" * 160, marker=True)
    data = bytes(packet)
    assert len(data) == 12 + 160
    assert data[:2] == b"\x80\x88"  # V=2, no P/X/CC; marker + PT 8
    assert RtpPacket.parse(data) == packet


def test_csrc_extension_and_padding_are_skipped() -> None:
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0, 7, 160, 1)
    csrcs = struct.pack("!II", 11, 12)
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\x10\xaa\x00\x00"
    data = header + csrcs + extension + b"\x01\x02\x03" + b"\x00\x00\x03"
    packet = RtpPacket.parse(data)
    assert packet.payload == b"\x01\x02\x03"
    assert packet.csrcs == (11, 12) and packet.extension == (0xBEDE, b"\x10\xaa\x00\x00")
    assert RtpPacket.parse(bytes(packet)) == packet


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80" * 11,
        b"\x40" + b"\x00" * 11,  # version 1
        b"\xa0" + b"\x00" * 11 + b"\x00",  # padding length 0
        b"\x8f" + b"\x00" * 11,  # 15 CSRCs announced, none present
        b"\x90" + b"\x00" * 11 + b"\x00\x00\x00\x09",
    ],  # extension of 9 words missing
)
def test_bad_packets_raise_rtp_error(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_random_datagrams_parse_or_raise_rtp_error() -> None:
    rng = random.Random(4733)
    for _ in range(5000):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
        try:
            RtpPacket.parse(data)
        except RtpError:
            pass


def test_sender_slices_a_prompt_into_160_byte_frames() -> None:
    prompt = alaw_encode(sine(1000.0, 110.0, -10.0)).tobytes()  # 880 samples
    sliced = list(frames(prompt, ALAW_SILENCE))
    assert [len(f) for f in sliced] == [160] * 6
    assert b"".join(sliced)[:880] == prompt and set(sliced[-1][80:]) == {ALAW_SILENCE}
    sender = RtpSender(ssrc=0x1234, payload_type=8, sequence=65534, timestamp=2**32 - 160)
    packets = [RtpPacket.parse(p) for f in sliced for p in sender.tick(f)]
    assert [p.sequence for p in packets] == [65534, 65535, 0, 1, 2, 3]
    assert [p.timestamp for p in packets] == [2**32 - 160, 0, 160, 320, 480, 640]
    assert [p.marker for p in packets] == [True] + [False] * 5
    audio = alaw_decode(b"".join(p.payload for p in packets))
    assert np.array_equal(audio[:880], alaw_decode(prompt))


def test_gap_keeps_timestamps_running_and_marks_the_next_talkspurt() -> None:
    sender = RtpSender(ssrc=1, payload_type=0)
    first = sender.tick(b"\xff" * 160)
    assert sender.tick(None) == [] and sender.tick(None) == []
    (after,) = sender.tick(b"\xff" * 160)
    packet = RtpPacket.parse(after)
    assert packet.marker and packet.timestamp == 480 and packet.sequence == 1
    assert RtpPacket.parse(first[0]).sequence == 0


def test_digit_sending_start_continuations_and_three_ends() -> None:
    sender = RtpSender(
        ssrc=9, payload_type=0, sequence=100, timestamp=8000, event_payload_type=EVENT_PT
    )
    sender.tick(b"\xff" * 160)
    sender.send_digit("5", duration_ms=100)
    packets = [RtpPacket.parse(p) for _ in range(8) for p in sender.tick(b"\xff" * 160)]
    events = [p for p in packets if p.payload_type == EVENT_PT]
    payloads = [EventPayload.parse(p.payload) for p in events]
    assert len(events) == 4 + END_REPEATS
    assert {p.timestamp for p in events} == {8160}
    assert [p.marker for p in events] == [True] + [False] * 6
    assert [e.duration for e in payloads] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in payloads] == [False] * 4 + [True] * 3
    assert {e.event for e in payloads} == {5} and {e.volume for e in payloads} == {10}
    assert [p.sequence for p in packets] == list(range(101, 109))
    resumed = packets[-1]
    assert resumed.payload_type == 0 and resumed.marker and resumed.timestamp == 8160 + 7 * 160
    assert not sender.sending_digit


def test_digit_needs_negotiated_payload_type_and_a_real_digit() -> None:
    with pytest.raises(RuntimeError):
        RtpSender(ssrc=1, payload_type=0).send_digit("1")
    with pytest.raises(ValueError):
        RtpSender(ssrc=1, payload_type=0, event_payload_type=EVENT_PT).send_digit("x")


def sent_packets(digits: str, **kwargs) -> list[RtpPacket]:
    sender = RtpSender(ssrc=5, payload_type=8, event_payload_type=EVENT_PT, **kwargs)
    out = []
    for digit in digits:
        sender.send_digit(digit, duration_ms=60)
        while sender.sending_digit:
            out.extend(RtpPacket.parse(p) for p in sender.tick(b"\xd5" * 160))
        out.extend(RtpPacket.parse(p) for p in sender.tick(b"\xd5" * 160))
    return out


def receive(packets: list[RtpPacket]) -> list[tuple[str, str, int, bool]]:
    receiver = TelephoneEventReceiver(EVENT_PT)
    return [
        (e.digit, e.kind, e.duration, e.end_received) for p in packets for e in receiver.feed(p)
    ]


def test_receiver_reports_each_digit_once_despite_redundant_ends() -> None:
    events = receive(sent_packets("95598*#AD"))
    starts = "".join(d for d, kind, _, _ in events if kind == "start")
    ends = [(d, duration) for d, kind, duration, _ in events if kind == "end"]
    assert starts == "95598*#AD"
    assert ends == [(d, 480) for d in "95598*#AD"]


def test_receiver_dedups_repeated_digit_by_timestamp() -> None:
    packets = sent_packets("11")
    duplicated = [p for p in packets for _ in range(2)]  # every packet twice
    events = receive(duplicated)
    assert [(d, k) for d, k, _, _ in events] == [("1", "start"), ("1", "end")] * 2


def test_receiver_survives_lost_start_and_lost_ends() -> None:
    packets = [p for p in sent_packets("12") if p.payload_type == EVENT_PT]
    first_ts = packets[0].timestamp
    lost = [
        p for p in packets if not (p.timestamp == first_ts and EventPayload.parse(p.payload).end)
    ]
    lost = lost[1:]  # the start packet of "1" is lost too
    events = receive(lost)
    assert events[:2] == [("1", "start", 320, True), ("1", "end", 320, False)]
    assert [(d, k) for d, k, _, _ in events[2:]] == [("2", "start"), ("2", "end")]


def test_receiver_expire_and_late_packets() -> None:
    receiver = TelephoneEventReceiver(EVENT_PT)
    packets = [p for p in sent_packets("7") if p.payload_type == EVENT_PT]
    assert [e.kind for e in receiver.feed(packets[0])] == ["start"]
    assert receiver.active_digit == "7"
    (ended,) = receiver.expire()
    assert (ended.digit, ended.kind, ended.end_received) == ("7", "end", False)
    assert ended.seconds == 160 / 8000
    assert all(receiver.feed(p) == [] for p in packets[1:])  # late packets of a finished event
    assert receiver.expire() == []


def test_receiver_ignores_audio_and_non_digit_events() -> None:
    receiver = TelephoneEventReceiver(EVENT_PT)
    assert receiver.feed(RtpPacket(8, 1, 0, 5, b"\xd5" * 160)) == []
    flash = RtpPacket(EVENT_PT, 2, 160, 5, bytes(EventPayload(16, False, 10, 160)))
    assert receiver.feed(flash) == []
    with pytest.raises(RtpError):
        receiver.feed(RtpPacket(EVENT_PT, 3, 320, 5, b"\x01"))


def test_long_press_in_segments_is_one_digit() -> None:
    """RFC 4733 §2.5.2.3: a 10 s press sent as two segments, the second without marker."""
    receiver = TelephoneEventReceiver(EVENT_PT)

    def event(ts: int, duration: int, *, end: bool = False, marker: bool = False) -> RtpPacket:
        payload = bytes(EventPayload(0, end, 10, duration))
        return RtpPacket(EVENT_PT, 0, ts, 5, payload, marker=marker)

    seen = receiver.feed(event(1000, 160, marker=True))
    seen += receiver.feed(event(1000, 65535))
    seen += receiver.feed(event(1000 + 65535, 160))  # second segment
    seen += receiver.feed(event(1000, 65535))  # late packet of the first segment
    seen += receiver.feed(event(1000 + 65535, 14465, end=True))
    seen += receiver.feed(event(1000 + 65535, 14465, end=True))
    assert [(e.digit, e.kind, e.timestamp) for e in seen] == [
        ("0", "start", 1000),
        ("0", "end", 1000),
    ]
    assert seen[-1].duration == 80000 and seen[-1].seconds == 10.0
    again = receiver.feed(event(200000, 160, marker=True))  # the same key pressed again
    assert [(e.digit, e.kind) for e in again] == [("0", "start")]
