"""RTP packets (RFC 3550) and RFC 4733 telephone-events, as plain objects for the media plane.

* :class:`RtpPacket` with :meth:`RtpPacket.parse` / ``bytes(packet)``: the fixed header,
  CSRCs, header extension and padding.
* :class:`RtpSender`: one outgoing stream. The media clock calls :meth:`RtpSender.tick` every
  20 ms with the next 160-byte G.711 frame (sliced from a prompt's pre-encoded bytes by
  :func:`frames`) and sends what it returns; while a digit is being sent the tick carries
  telephone-event packets instead (start with marker, continuations, three redundant ends),
  all on the stream's SSRC and sequence numbers as RFC 4733 §2.3 requires.
* :class:`TelephoneEventReceiver`: received telephone-event packets in, digits out. An event is
  identified by its RTP timestamp: continuations and the redundant end packets of an event
  already reported are dropped, a lost end is recovered when the next event starts or when
  the shell calls :meth:`TelephoneEventReceiver.expire`.

Digits are the characters of ``drivers.media`` (``0-9 * # A-D``), so RFC 4733 and in-band
detection feed the same collect logic.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from drivers.channel import FRAME_SAMPLES
from drivers.media.tones import DTMF_KEYS

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
EVENT_PAYLOAD = struct.Struct("!BBH")
EVENT_DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2 event codes 0-15
assert set(EVENT_DIGITS) == set("".join(DTMF_KEYS))
END_REPEATS = 3  # RFC 4733 §2.5.1.4: the final packet is sent three times
DEFAULT_EVENT_VOLUME = 10  # −10 dBm0
MAX_EVENT_DURATION = 0xFFFF  # samples; longer events are split by the sender (§2.5.1.3)


class RtpError(ValueError):
    """A datagram that is not a usable RTP packet."""


@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None  # (profile-defined id, data)

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < HEADER.size:
            raise RtpError(f"{len(data)} bytes is shorter than the RTP header")
        first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {first >> 6}, expected 2")
        offset = HEADER.size
        csrc_count = first & 0x0F
        end = len(data)
        if first & 0x20:  # padding: the last octet counts the padding octets
            padding = data[-1]
            if padding == 0 or padding > end - offset - 4 * csrc_count:
                raise RtpError(f"bad padding length {padding}")
            end -= padding
        if offset + 4 * csrc_count > end:
            raise RtpError("CSRC list runs past the packet")
        csrcs = struct.unpack_from(f"!{csrc_count}I", data, offset)
        offset += 4 * csrc_count
        extension = None
        if first & 0x10:
            if offset + 4 > end:
                raise RtpError("header extension runs past the packet")
            profile, words = struct.unpack_from("!HH", data, offset)
            offset += 4
            if offset + 4 * words > end:
                raise RtpError("header extension runs past the packet")
            extension = (profile, bytes(data[offset : offset + 4 * words]))
            offset += 4 * words
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(second & 0x80),
            csrcs=tuple(csrcs),
            extension=extension,
        )

    def __bytes__(self) -> bytes:
        first = RTP_VERSION << 6 | (0x10 if self.extension else 0) | len(self.csrcs)
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc)]
        parts.extend(struct.pack("!I", c) for c in self.csrcs)
        if self.extension:
            profile, data = self.extension
            if len(data) % 4:
                raise RtpError("header extension data must be a multiple of 4 bytes")
            parts.append(struct.pack("!HH", profile, len(data) // 4) + data)
        parts.append(self.payload)
        return b"".join(parts)


# --------------------------------------------------------------------------- telephone-event


@dataclass(slots=True, frozen=True)
class EventPayload:
    """The 4-byte RFC 4733 payload: event code, end bit, volume, duration in samples."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> EventPayload:
        if len(payload) < EVENT_PAYLOAD.size:
            raise RtpError(f"telephone-event payload of {len(payload)} bytes")
        event, flags, duration = EVENT_PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        return EVENT_PAYLOAD.pack(
            self.event, (0x80 if self.end else 0) | self.volume, self.duration
        )


def event_code(digit: str) -> int:
    code = EVENT_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return code


@dataclass(slots=True, frozen=True)
class TelephoneEvent:
    """A digit seen on the telephone-event stream."""

    digit: str
    kind: Literal["start", "end"]
    timestamp: int  # RTP timestamp of the event (its start)
    duration: int  # samples so far ("start") or in total ("end")
    end_received: bool = True  # False when the end was inferred (all end packets lost)

    @property
    def seconds(self) -> float:
        return self.duration / 8000


class TelephoneEventReceiver:
    """RFC 4733 receive state machine for one stream (payload type given at negotiation).

    A key held longer than one event's 16-bit duration arrives as segments with new
    timestamps and no marker bit (RFC 4733 §2.5.2.3); they extend the current digit.
    """

    def __init__(self, payload_type: int, *, remembered: int = 16) -> None:
        self.payload_type = payload_type
        self.code: int | None = None  # event code of the digit in progress, None between digits
        self._start = 0  # its first timestamp
        self._segment = 0  # timestamp of its current segment
        self._offset = 0  # samples from the start to the current segment
        self._duration = 0  # samples signalled so far
        self._finished: deque[int] = deque(maxlen=remembered)  # timestamps already done

    @property
    def active_digit(self) -> str | None:
        return EVENT_DIGITS[self.code] if self.code is not None else None

    def feed(self, packet: RtpPacket) -> list[TelephoneEvent]:
        """Events caused by one received packet (empty for audio and duplicates)."""
        if packet.payload_type != self.payload_type:
            return []
        payload = EventPayload.parse(packet.payload)
        if payload.event >= len(EVENT_DIGITS):  # flash and other non-digit events
            return []
        timestamp = packet.timestamp
        if timestamp in self._finished:
            return []  # redundant end or a late continuation of a reported event
        out: list[TelephoneEvent] = []
        if self.code is not None and timestamp != self._segment:
            ahead = (timestamp - self._segment) & 0xFFFFFFFF
            if not packet.marker and payload.event == self.code and 0 < ahead < 2**31:
                self._finished.append(self._segment)  # next segment of a long press
                self._offset = (timestamp - self._start) & 0xFFFFFFFF
                self._segment = timestamp
            else:
                out.extend(self.expire())  # a new event began: the previous end was lost
        if self.code is None:
            self.code = payload.event
            self._start = self._segment = timestamp
            self._offset = self._duration = 0
            out.append(
                TelephoneEvent(EVENT_DIGITS[payload.event], "start", timestamp, payload.duration)
            )
        self._duration = max(self._duration, self._offset + payload.duration)
        if payload.end:
            out.append(self._end(received=True))
        return out

    def expire(self) -> list[TelephoneEvent]:
        """End the current event without its end packet (the shell's timeout, or a new event)."""
        return [self._end(received=False)] if self.code is not None else []

    def _end(self, *, received: bool) -> TelephoneEvent:
        assert self.code is not None
        self._finished.extend({self._start, self._segment})
        event = TelephoneEvent(
            EVENT_DIGITS[self.code], "end", self._start, self._duration, received
        )
        self.code = None
        return event


# --------------------------------------------------------------------------- sending


def frames(encoded: bytes, silence: int, size: int = FRAME_SAMPLES) -> Iterator[bytes]:
    """160-byte slices of pre-encoded G.711; the last one is padded with the silence code."""
    view = memoryview(encoded)
    for start in range(0, len(encoded), size):
        chunk = view[start : start + size]
        yield bytes(chunk) + bytes([silence]) * (size - len(chunk))


@dataclass(slots=True)
class _PendingDigit:
    code: int
    samples: int  # total duration to signal
    volume: int
    timestamp: int = -1  # set when the event starts
    sent: int = 0  # duration signalled so far
    ends_left: int = END_REPEATS


@dataclass(slots=True)
class RtpSender:
    """One outgoing RTP stream on the shared 20 ms clock."""

    ssrc: int
    payload_type: int
    sequence: int = 0  # of the next packet (start at a random value, RFC 3550 §5.1)
    timestamp: int = 0  # of the next frame
    event_payload_type: int | None = None
    samples_per_tick: int = FRAME_SAMPLES
    packets: int = 0  # sent so far, and their payload octets (for RTCP sender reports)
    octets: int = 0
    _marker_next: bool = True
    _digits: deque[_PendingDigit] = field(default_factory=deque)

    def send_digit(
        self, digit: str, duration_ms: int = 100, volume: int = DEFAULT_EVENT_VOLUME
    ) -> None:
        """Queue a digit; the coming ticks carry it instead of audio."""
        if self.event_payload_type is None:
            raise RuntimeError("no telephone-event payload type was negotiated")
        samples = max(self.samples_per_tick, duration_ms * 8)
        if samples > MAX_EVENT_DURATION:
            raise ValueError(f"digit duration {duration_ms} ms exceeds one RFC 4733 event")
        self._digits.append(_PendingDigit(event_code(digit), samples, volume))

    @property
    def sending_digit(self) -> bool:
        return bool(self._digits)

    def tick(self, frame: bytes | None) -> list[bytes]:
        """The packets to send this tick: the audio frame, or the current digit's packets.

        ``frame=None`` sends nothing (hold, silence suppression); the next audio packet then
        carries the marker bit as the start of a talkspurt. The timestamp advances either way.
        """
        if self._digits:
            packets = [self._event_packet(self._digits[0])]
            self.timestamp = (self.timestamp + self.samples_per_tick) & 0xFFFFFFFF
            return packets
        timestamp = self.timestamp
        self.timestamp = (timestamp + self.samples_per_tick) & 0xFFFFFFFF
        if frame is None:
            self._marker_next = True
            return []
        # the audio packet, packed here directly: this runs for every stream every 20 ms
        sequence = self.sequence
        self.sequence = (sequence + 1) & 0xFFFF
        second = self.payload_type | 0x80 if self._marker_next else self.payload_type
        self._marker_next = False
        self.packets += 1
        self.octets += len(frame)
        return [HEADER.pack(0x80, second, sequence, timestamp, self.ssrc) + frame]

    def _event_packet(self, digit: _PendingDigit) -> bytes:
        assert self.event_payload_type is not None
        start = digit.timestamp < 0
        if start:
            digit.timestamp = self.timestamp
        if digit.sent < digit.samples:
            digit.sent = min(digit.samples, digit.sent + self.samples_per_tick)
        end = not start and digit.sent >= digit.samples
        if end:
            digit.ends_left -= 1
            if digit.ends_left == 0:
                self._digits.popleft()
                self._marker_next = True  # audio after an event starts a new talkspurt
        payload = bytes(EventPayload(digit.code, end, digit.volume, digit.sent))
        return self._packet(self.event_payload_type, digit.timestamp, payload, start)

    def _packet(self, payload_type: int, timestamp: int, payload: bytes, marker: bool) -> bytes:
        packet = RtpPacket(payload_type, self.sequence, timestamp, self.ssrc, payload, marker)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        return bytes(packet)
