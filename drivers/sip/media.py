"""The SIP driver's RTP media plane: one socket per call, every stream on one shared 20 ms tick.

:class:`MediaPlane` binds each answered call an RTP port (from ``port_min``–``port_max``, or
any port the OS gives when both are 0) and drives all streams from a single
:class:`~drivers.clock.MediaClock` — no task per stream. Each tick, for every stream:

- the channel's running operation gives the engine's 20 ms frame (``frame_out``); a cached
  prompt is sent from its pre-encoded G.711 (``Playable.encoded``), anything else is encoded
  now; with nothing to play, G.711 silence keeps the stream (and NAT bindings) alive;
- the caller's next buffered frame (a plain FIFO, no jitter buffer yet) goes to the voice
  activity detector, to the in-band DTMF detector when no telephone-event was negotiated,
  to the operation when it wants audio (record), and with the engine's frame to the call's
  stereo recording (caller left, engine right).

RTP is symmetric: packets go to the address of the SDP offer until the caller's first packet
arrives, then to where it came from; packets from any other source are dropped (counted in
``foreign_packets``), so a stray sender cannot take a call's audio over. RFC 4733 digits are
decoded by :class:`~drivers.sip.rtp.TelephoneEventReceiver` as packets arrive. The in-band
detector and VAD are vectorized over ``capacity`` slots; the plane doubles them (forgetting
partial tones) when calls outgrow it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from drivers.channel import FRAME_SAMPLES
from drivers.clock import MediaClock
from drivers.media.dtmf import DtmfDetector
from drivers.media.g711 import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)
from drivers.media.recorder import CallRecorder
from drivers.media.vad import VoiceActivityDetector
from drivers.sip.rtp import RtpError, RtpPacket, RtpSender, TelephoneEventReceiver
from drivers.sip.sdp import MediaPlan

log = structlog.get_logger(__name__)

EVENT_TIMEOUT = 0.25  # s without packets before a telephone-event without its end is closed
INBOUND_FRAMES = 10  # frames kept from the caller; older ones are dropped

_CODECS = {
    "pcmu": (ulaw_encode, ulaw_decode, ULAW_SILENCE),
    "pcma": (alaw_encode, alaw_decode, ALAW_SILENCE),
}


class MediaError(RuntimeError):
    """No RTP port could be bound."""


class _RtpProtocol(asyncio.DatagramProtocol):
    stream: RtpStream | None = None  # set once the socket is bound

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.stream is None:
            return
        try:
            self.stream.received(data, addr)
        except Exception:  # one bad packet must never stop the call
            log.exception("rtp.receive_failed", call_id=self.stream.channel.call_id)


class RtpStream:
    """The media of one call: its socket, sender, receivers, inbound frames and recording."""

    def __init__(self, plane: MediaPlane, channel: Any, transport: Any, port: int) -> None:
        self.plane = plane
        self.channel = channel
        self.transport = transport
        self.port = port
        self.plan: MediaPlan | None = None
        self.remote: tuple[str, int] | None = None
        self.sender: RtpSender | None = None
        self.events: TelephoneEventReceiver | None = None
        self.inbound: deque[np.ndarray] = deque(maxlen=INBOUND_FRAMES)
        self.slot = -1
        self.recorder: CallRecorder | None = None
        self.last_event_at = 0.0
        self.packets_in = 0
        self.packets_out = 0
        self.latched: tuple[str, int] | None = None  # the caller's RTP source, once seen
        self.foreign_packets = 0
        self._encode: Any = ulaw_encode
        self._decode: Any = ulaw_decode
        self._silence_code = ULAW_SILENCE
        self._silence = bytes([ULAW_SILENCE]) * FRAME_SAMPLES

    def configure(self, plan: MediaPlan) -> None:
        self.plan = plan
        self._encode, self._decode, self._silence_code = _CODECS[plan.encoding]
        self._silence = bytes([self._silence_code]) * FRAME_SAMPLES
        self.remote = (plan.remote_address, plan.remote_port)
        self.sender = RtpSender(
            ssrc=secrets.randbits(32),
            payload_type=plan.payload_type,
            sequence=secrets.randbits(16),
            timestamp=secrets.randbits(32),
            event_payload_type=plan.event_payload_type,
        )
        self.events = None
        if plan.event_payload_type is not None:
            self.events = TelephoneEventReceiver(plan.event_payload_type)

    def update(self, plan: MediaPlan) -> None:
        """A re-INVITE's new plan: direction (hold/resume) and, if it changed, the codec.

        The sender keeps its SSRC and sequence when the codec stays, and the latched caller
        address stays in force (the SDP address is only used until the caller's RTP is seen).
        """
        old = self.plan
        if old is None or (old.payload_type, old.event_payload_type, old.encoding) != (
            plan.payload_type,
            plan.event_payload_type,
            plan.encoding,
        ):
            self.configure(plan)
        self.plan = plan
        if self.latched is not None:
            self.remote = self.latched
        else:
            self.remote = (plan.remote_address, plan.remote_port)

    @property
    def in_band_dtmf(self) -> bool:
        return self.events is None

    def received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.plan is None:
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            return
        if self.latched is None:
            self.latched = self.remote = addr  # symmetric RTP: answer where the caller sends from
        elif addr != self.latched:
            self.foreign_packets += 1  # another source: dropped, it cannot take the stream over
            return
        self.packets_in += 1
        if self.events is not None and packet.payload_type == self.events.payload_type:
            self.last_event_at = self.plane.now()
            try:
                events = self.events.feed(packet)
            except (RtpError, ValueError):
                return
            for event in events:
                if event.kind == "start":
                    self.channel.digit_detected(event.digit)
        elif packet.payload_type == self.plan.payload_type and packet.payload:
            self.inbound.append(self._decode(packet.payload))

    def frame_out(self) -> tuple[np.ndarray | None, bytes]:
        """The engine's next frame as PCM (None: silence) and as the codec's bytes."""
        op = self.channel.operation
        if op is None:
            return None, self._silence
        items = getattr(op, "items", None)
        before = (getattr(op, "index", 0), getattr(op, "pos", 0))
        pcm = op.frame_out()
        if pcm is None:
            return None, self._silence
        if items is not None and before[0] < len(items):
            item = items[before[0]]
            encoded = item.encoded.get(self.plan.encoding if self.plan else "")
            if encoded and before[1] < len(item.samples) and len(encoded) == len(item.samples):
                chunk = encoded[before[1] : before[1] + FRAME_SAMPLES]
                if len(chunk) == len(item.samples[before[1] : before[1] + FRAME_SAMPLES]):
                    pad = FRAME_SAMPLES - len(chunk)
                    return pcm, chunk + bytes([self._silence_code]) * pad
        return pcm, self._encode(pcm).tobytes()

    def expire_event(self, now: float) -> None:
        if self.events is not None and self.events.active_digit is not None:
            if now - self.last_event_at > EVENT_TIMEOUT:
                self.events.expire()


class MediaPlane:
    """All RTP streams of one SIP endpoint on one :class:`MediaClock`."""

    def __init__(
        self,
        host: str,
        *,
        port_min: int = 0,
        port_max: int = 0,
        recordings_dir: Path | None = None,
        on_event: Callable[..., None] | None = None,
        wall_clock: Callable[[], dt.datetime] | None = None,
        capacity: int = 16,
    ) -> None:
        if (port_min or port_max) and not 0 < port_min <= port_max < 65536:
            raise MediaError(f"bad RTP port range {port_min}-{port_max}")
        self.host = host
        self.port_min = port_min
        self.port_max = port_max
        self.recordings_dir = recordings_dir
        self.on_event = on_event or (lambda *_a, **_k: None)
        self.wall_clock = wall_clock or (lambda: dt.datetime.now(dt.UTC))
        self.streams: list[RtpStream] = []
        self.clock = MediaClock(self._tick)
        self._capacity = capacity
        self._free_slots = list(range(capacity))[::-1]
        self._dtmf = DtmfDetector(capacity)
        self._vad = VoiceActivityDetector(capacity)
        self._inbound = np.zeros((capacity, FRAME_SAMPLES), dtype=np.int16)
        self._ports_in_use: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    # --- streams -----------------------------------------------------------------------
    async def open(self, channel: Any) -> RtpStream:
        """Bind an RTP port for ``channel``; :meth:`start` it once the plan is known."""
        self._loop = asyncio.get_running_loop()
        candidates = (
            [p for p in range(self.port_min, self.port_max + 1, 2) if p not in self._ports_in_use]
            if self.port_min
            else [0]
        )
        stream: RtpStream | None = None
        for port in candidates:
            try:
                transport, protocol = await self._loop.create_datagram_endpoint(
                    _RtpProtocol, local_addr=(self.host, port)
                )
            except OSError:
                continue
            bound = transport.get_extra_info("sockname")[1]
            stream = RtpStream(self, channel, transport, bound)
            protocol.stream = stream
            break
        if stream is None:
            raise MediaError(f"no free RTP port in {self.port_min}-{self.port_max}")
        self._ports_in_use.add(stream.port)
        return stream

    def start(self, stream: RtpStream, plan: MediaPlan, *, record: bool = True) -> None:
        """Start sending and receiving; ``record=False`` for a leg another leg records
        (the B2BUA's seat leg: the caller's recording already has both sides)."""
        stream.configure(plan)
        if not self._free_slots:
            self._grow()
        stream.slot = self._free_slots.pop()
        self._dtmf.reset(stream.slot)
        self._vad.reset(stream.slot)
        if self.recordings_dir is not None and record:
            day = self.wall_clock()
            path = self.recordings_dir / f"{day:%Y/%m/%d}" / f"{stream.channel.call_id}.wav"
            stream.recorder = CallRecorder(path)
            self.on_event("recording.started", stream.channel.call_id, path=str(path))
        self.streams.append(stream)
        if not self.clock.running:
            self.clock.start()

    def close(self, stream: RtpStream) -> None:
        """Stop the stream, free its port and slot, finish its recording. Idempotent."""
        if stream in self.streams:
            self.streams.remove(stream)
            self._free_slots.append(stream.slot)
        self._ports_in_use.discard(stream.port)
        stream.transport.close()
        recorder, stream.recorder = stream.recorder, None
        if recorder is not None:
            finished = recorder.finish()
            self.on_event("recording.finished", stream.channel.call_id, **finished.event_data())
        if not self.streams:
            self.clock.stop()

    def stop(self) -> None:
        for stream in list(self.streams):
            self.close(stream)
        self.clock.stop()

    def _grow(self) -> None:
        old = self._capacity
        self._capacity *= 2
        self._free_slots.extend(range(self._capacity - 1, old - 1, -1))
        self._dtmf = DtmfDetector(self._capacity)
        self._vad = VoiceActivityDetector(self._capacity)
        self._inbound = np.zeros((self._capacity, FRAME_SAMPLES), dtype=np.int16)

    # --- the 20 ms tick ------------------------------------------------------------------
    def _tick(self, _n: int) -> None:
        streams = list(self.streams)
        if not streams:
            return
        now = self.now()
        inbound = self._inbound
        inbound[:] = 0
        engine_frames: list[np.ndarray | None] = []
        for stream in streams:
            try:
                pcm, payload = stream.frame_out()
            except Exception:
                log.exception("rtp.frame_out_failed", call_id=stream.channel.call_id)
                pcm, payload = None, stream._silence
            engine_frames.append(pcm)
            assert stream.sender is not None
            if (
                stream.remote is not None
                and stream.plan is not None
                and stream.plan.direction.sends
            ):
                for packet in stream.sender.tick(payload):
                    stream.transport.sendto(packet, stream.remote)
                    stream.packets_out += 1
            else:  # on hold: nothing is sent, the RTP timestamps keep time
                stream.sender.tick(None)
            if stream.inbound:
                inbound[stream.slot] = stream.inbound.popleft()
            stream.expire_event(now)
        voiced = self._vad.feed(inbound)
        digits = self._dtmf.feed(inbound) if any(s.in_band_dtmf for s in streams) else []
        silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        for stream, pcm in zip(streams, engine_frames, strict=True):
            frame_in = inbound[stream.slot]
            op = stream.channel.operation
            if op is not None and op.wants_audio:
                op.frame_in(frame_in, bool(voiced[stream.slot]))
            if stream.recorder is not None:
                stream.recorder.write(frame_in, pcm if pcm is not None else silence)
        if digits:
            by_slot = {s.slot: s for s in streams if s.in_band_dtmf}
            for event in digits:
                stream = by_slot.get(event.channel)
                if stream is not None and event.kind == "start":
                    stream.channel.digit_detected(event.digit)
