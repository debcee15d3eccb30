"""The SIP driver's RTP media plane: one socket per call, every stream on one shared clock.

:class:`MediaPlane` binds each answered call an RTP port (from ``port_min``–``port_max``, or
any port the OS gives when both are 0) and drives all streams from a single
:class:`~drivers.clock.MediaClock` — no task per stream. The clock ticks every 5 ms on
absolute deadlines; each stream belongs to one of four groups and is served every 20 ms on its
group's phase, so one phase handles a quarter of the streams. On its phase, for every stream
of the group:

- the channel's running operation gives the engine's next 20 ms frame (``frame_out``); a
  prompt is sent from its pre-encoded G.711 (``Playable.encoded``; a read-out composed for the
  call is encoded whole once), and inside a prompt only the next 160 bytes are sliced and the
  play's position moved; with nothing to play G.711 silence keeps the stream (and NAT
  bindings) alive; the RTP packet for it is made now, due one frame (20 ms) later;
- the caller's next buffered frame (a plain FIFO of G.711 payloads, no jitter buffer yet) is
  taken.

The packets made on a phase go to the :class:`~drivers.sip.pacer.RtpPacer`, whose thread sends
them at their deadline even when the loop is busy (without a pacer, on a virtual-time loop,
the tick sends the packets it made a frame ago first). After the fourth phase the frame is
complete for all streams, and the rest is done once for all of them with numpy: both
directions are decoded in one pass, the caller's audio goes to the in-band DTMF detector when
some call has no telephone-event, to the operations that want audio (record, bridge) with a
voice-activity decision, and with the engine's audio (as sent, decoded) into a ring of the
last 0.5 s of every call's stereo recording (caller left, engine right), which each call
writes to its file in one piece twice a second, on its own turn, and at its end.

RTP is symmetric: packets go to the address of the SDP offer until the caller's first packet
arrives, then to where it came from, and the socket is connected to that address, so the
kernel drops any other source's packets (those already queued are dropped here and counted
in ``foreign_packets``): a stray sender cannot take a call's audio over. On a real clock the
pacer's thread reads the sockets too: plain audio packets from the latched caller take a fast
path there (no header parsing beyond the first two octets, :meth:`RtpStream.take`), anything
else is handed to the loop (:meth:`RtpStream.received`), where RFC 4733 digits are decoded by
:class:`~drivers.sip.rtp.TelephoneEventReceiver`; on a virtual-time loop the loop reads them.
The in-band detector is vectorized over ``capacity`` slots; the plane doubles them
(forgetting partial tones) when calls outgrow it.

Minimal RTCP (:mod:`drivers.sip.rtcp`): each stream also binds RTP port + 1 (when free) and
sends a sender report with its CNAME there about every 5 s; RTCP arriving is checked, counted
(``rtcp_in``, ``rtcp_bad``) and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from drivers.channel import FRAME_SAMPLES
from drivers.clock import FRAME_SECONDS, MediaClock, VirtualClockLoop
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
from drivers.operations import _Operation
from drivers.sip.pacer import RtpPacer, SentHook
from drivers.sip.rtcp import RtcpError, RtcpSchedule, parse_compound, sender_report
from drivers.sip.rtp import RtpError, RtpPacket, RtpSender, TelephoneEventReceiver
from drivers.sip.sdp import MediaPlan

log = structlog.get_logger(__name__)

PHASES = 4  # groups of streams, each sending on its own 5 ms phase of the 20 ms frame
RTCP_CHECK_FRAMES = 50  # frames (1 s) between looks for streams due an RTCP report
RECORD_RING = 25  # frames (0.5 s) of each stream's recording kept before one write
EVENT_TIMEOUT = 0.25  # s without packets before a telephone-event without its end is closed
INBOUND_FRAMES = 10  # frames kept from the caller; older ones are dropped

_CODECS = {
    "pcmu": (ulaw_encode, ulaw_decode, ULAW_SILENCE),
    "pcma": (alaw_encode, alaw_decode, ALAW_SILENCE),
}


_SILENT_FRAME_OUT = _Operation.frame_out  # an operation that never sends audio (collect)


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


class _RtcpProtocol(asyncio.DatagramProtocol):
    stream: RtpStream | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.stream is not None:
            self.stream.rtcp_received(data, addr)


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
        self.inbound: deque[bytes] = deque(maxlen=INBOUND_FRAMES)  # G.711 payloads
        self.slot = -1
        self.recorder: CallRecorder | None = None
        self.last_event_at = 0.0
        self.packets_in = 0
        self.latched: tuple[str, int] | None = None  # the caller's RTP source, once seen
        self.latched_key: tuple[int, int] | None = None  # ... as (IPv4 address, port)
        self.fd = -1  # the RTP socket's file descriptor
        self._fast: tuple[Any, int, bytes, int] | None = None  # (play, item, its bytes, limit)
        self.foreign_packets = 0
        self._encode: Any = ulaw_encode
        self._decode: Any = ulaw_decode
        self._silence_code = ULAW_SILENCE
        self._silence = bytes([ULAW_SILENCE]) * FRAME_SAMPLES
        self._encoding = "pcmu"
        self._audio_pt = -1
        self.sending = False  # a plan that sends, and the stream not closed
        self.group = 0  # the phase of the media clock the stream sends on
        self.rec_from: int | None = None  # its first frame in the plane's ring not yet written
        self.sock: socket.socket | None = None  # the RTP socket (the transport's)
        self.send_errors = 0
        self.connected = False  # the socket is connected to the latched caller address
        self.rtcp: Any = None  # the RTCP socket on port + 1, when that port could be bound
        self.rtcp_remote: tuple[str, int] | None = None
        self.rtcp_schedule: RtcpSchedule | None = None
        self.rtcp_in = 0  # valid compound RTCP packets received (and ignored)
        self.rtcp_bad = 0  # malformed datagrams on the RTCP port
        self.rtcp_sent = 0

    def configure(self, plan: MediaPlan) -> None:
        self.plan = plan
        self._encode, self._decode, self._silence_code = _CODECS[plan.encoding]
        self._silence = bytes([self._silence_code]) * FRAME_SAMPLES
        self._encoding = plan.encoding
        self._audio_pt = plan.payload_type
        self.sending = plan.direction.sends
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
        self.sending = plan.direction.sends
        if self.latched is not None:
            self.remote = self.latched
        else:
            self.remote = (plan.remote_address, plan.remote_port)

    def rtcp_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Incoming RTCP is checked and counted, nothing else: it changes nothing in a call."""
        try:
            parse_compound(data)
        except RtcpError:
            self.rtcp_bad += 1
            return
        self.rtcp_in += 1
        if self.rtcp_remote is None or self.latched is None or addr[0] == self.latched[0]:
            self.rtcp_remote = addr  # symmetric: report to where the caller's RTCP comes from

    def send_report(self, unix_time: float) -> None:
        """One sender report (SR + SDES CNAME) to the caller's RTCP address."""
        sender = self.sender
        if self.rtcp is None or sender is None:
            return
        remote = self.rtcp_remote
        if remote is None and self.remote is not None:
            remote = (self.remote[0], self.remote[1] + 1)  # RFC 3550 §11: RTP port + 1
        if remote is None:
            return
        report = sender_report(
            ssrc=sender.ssrc,
            unix_time=unix_time,
            rtp_timestamp=sender.timestamp,
            packets=sender.packets,
            octets=sender.octets,
            cname=f"hotline@{self.plane.host}",
        )
        self.rtcp.sendto(report, remote)
        self.rtcp_sent += 1

    @property
    def in_band_dtmf(self) -> bool:
        return self.events is None

    def take(self, data: bytes, addr: tuple[str, int]) -> bool:
        """The fast path, safe in the pacer's thread: a plain audio packet (version 2, no
        padding, CSRC or extension) from the latched caller joins the inbound frames."""
        return addr == self.latched and self.take_latched(data)

    def take_latched(self, data: bytes) -> bool:
        """:meth:`take` for a packet known to come from the latched caller."""
        if (
            len(data) > 12
            and data[0] == 0x80
            and data[1] & 0x7F == self._audio_pt
            and self.plan is not None
        ):
            self.packets_in += 1
            self.inbound.append(data[12:])  # decoded with all streams' frames at the tick
            return True
        return False

    def received(self, data: bytes, addr: tuple[str, int]) -> None:
        """A packet, on the loop: the fast path, else parsed in full."""
        if self.plan is None or self.take(data, addr):
            return
        try:
            self._received(data, addr)
        except Exception:  # one bad packet must never stop the call
            log.exception("rtp.receive_failed", call_id=self.channel.call_id)

    def _received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Anything but a plain audio packet from the latched source: parse it fully."""
        assert self.plan is not None
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            return
        if self.latched is None:
            self.latched = self.remote = addr  # symmetric RTP: answer where the caller sends from
            self._connect(addr)
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
            self.inbound.append(packet.payload)

    def _connect(self, addr: tuple[str, int]) -> None:
        """Connect the socket to the latched caller: the kernel then drops other sources'
        packets before they cost anything, and sending needs no address."""
        if self.sock is None:
            return
        try:
            self.sock.connect(addr)
        except OSError as exc:  # stays unconnected: sendto and the source check still work
            log.debug("rtp.connect_failed", call_id=self.channel.call_id, error=str(exc))
            return
        try:
            self.latched_key = (int.from_bytes(socket.inet_aton(addr[0]), "big"), addr[1])
        except OSError:  # not IPv4: the pacer compares addresses as text
            self.latched_key = None
        self.connected = True

    def frame_out(self) -> bytes:
        """The engine's next 20 ms frame in the codec's bytes (silence with nothing to play).

        A cached prompt is sliced from its pre-encoded bytes; anything else is encoded now.
        The frames inside a prompt (neither its first nor its last, which start and end it)
        take a fast path that only moves the play's position: this runs for every stream
        every 20 ms.
        """
        op = self.channel.operation
        if op is None:
            return self._silence
        fast = self._fast
        if fast is not None and fast[0] is op:
            pos = op.pos
            if pos < fast[3] and op.index == fast[1]:
                op.pos = pos + FRAME_SAMPLES
                return fast[2][pos : pos + FRAME_SAMPLES]
        if type(op).frame_out is _SILENT_FRAME_OUT:
            return self._silence
        return self._frame_out(op)

    def _frame_out(self, op: Any) -> bytes:
        """:meth:`frame_out` for anything but the middle of a pre-encoded prompt."""
        self._fast = None
        items = getattr(op, "items", None)
        if items is None:
            pcm = op.frame_out()
            return self._silence if pcm is None else self._encode(pcm).tobytes()
        index, pos = op.index, op.pos
        pcm = op.frame_out()
        if pcm is None:
            return self._silence
        if index < len(items):
            item = items[index]
            encoded = item.encoded.get(self._encoding)
            if encoded is None and pos == 0 and len(item.samples):
                # not pre-encoded (a read-out composed for this call): encode it whole, once
                encoded = item.encoded[self._encoding] = self._encode(item.samples).tobytes()
            if encoded and pos < len(encoded) and len(encoded) == len(item.samples):
                if op.index == index:  # the prompt goes on: its next frames take the fast path
                    self._fast = (op, index, encoded, len(encoded) - FRAME_SAMPLES)
                chunk = encoded[pos : pos + FRAME_SAMPLES]
                if len(chunk) < FRAME_SAMPLES:
                    chunk += bytes([self._silence_code]) * (FRAME_SAMPLES - len(chunk))
                return chunk
        return self._encode(pcm).tobytes()


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
        pacer: bool | None = None,
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
        self.clock = MediaClock(self._tick, period=FRAME_SECONDS / PHASES)
        self._capacity = capacity
        self._free_slots = list(range(capacity))[::-1]
        self._dtmf = DtmfDetector(capacity)
        self._vad = VoiceActivityDetector(capacity)
        self._inbound = np.zeros((capacity, FRAME_SAMPLES), dtype=np.int16)
        self._ports_in_use: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._packets_in_closed = 0  # RTP packets received by streams since closed
        self.packets_out = 0  # RTP packets sent on all streams
        self.on_sent: SentHook | None = None  # (deadline, sent_at, packets) after each batch
        self._use_pacer = pacer  # None: a pacer thread unless the loop's time is virtual
        self._pacer: RtpPacer | None = None
        self._groups: list[list[RtpStream]] = [[] for _ in range(PHASES)]
        self._ready: list[list[tuple[RtpStream, list[bytes]]]] = [[] for _ in range(PHASES)]
        self._cycle: list[RtpStream] = []  # streams done in this 20 ms frame so far
        self._payloads: list[bytes] = []  # ... what the engine sends them
        self._heard: list[bytes] = []  # ... the caller's frames
        self._missing: list[int] = []  # ... rows without a caller frame
        self._alaw: list[int] = []  # ... rows in A-law
        self._recorded: list[int] = []  # ... rows with a recording
        self._wants: list[int] = []  # ... rows whose operation takes the caller's audio
        self._slots: list[int] = []  # ... the streams' slots
        self._closed_in_frame = False  # a stream closed since the frame began
        self._turns: list[list[RtpStream]] = [[] for _ in range(RECORD_RING)]  # by slot
        self._in_band = False  # ... some stream without telephone-event (in-band DTMF)
        self._rec_ring = np.zeros((capacity, RECORD_RING, FRAME_SAMPLES, 2), dtype="<i2")
        self._rec_frames = 0

    def now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    @property
    def packets_in(self) -> int:
        """RTP packets received on all streams, open and closed."""
        return self._packets_in_closed + sum(stream.packets_in for stream in self.streams)

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
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        pacer = self._start_pacer()
        for port in candidates:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind((self.host, port))
                if pacer is None:  # the loop reads the socket
                    transport, protocol = await self._loop.create_datagram_endpoint(
                        _RtpProtocol, sock=sock
                    )
            except OSError:
                sock.close()
                continue
            bound = sock.getsockname()[1]
            if pacer is None:
                stream = RtpStream(self, channel, transport, bound)
                protocol.stream = stream
                protocol.datagram_received = stream.received  # type: ignore[method-assign]
            else:  # the pacer's thread reads it
                stream = RtpStream(self, channel, None, bound)
            stream.sock = sock  # packets are sent on it directly: cheaper than a transport
            stream.fd = sock.fileno()
            if pacer is not None:
                pacer.watch(stream)
            await self._open_rtcp(stream)
            break
        if stream is None:
            raise MediaError(f"no free RTP port in {self.port_min}-{self.port_max}")
        self._ports_in_use.add(stream.port)
        return stream

    async def _open_rtcp(self, stream: RtpStream) -> None:
        """Bind RTP port + 1 for the stream's RTCP; without it the call goes on without RTCP."""
        assert self._loop is not None
        if stream.port + 1 > 65535:
            return
        try:
            transport, protocol = await self._loop.create_datagram_endpoint(
                _RtcpProtocol, local_addr=(self.host, stream.port + 1)
            )
        except OSError as exc:
            log.debug("rtcp.port_busy", port=stream.port + 1, error=str(exc))
            return
        protocol.stream = stream
        stream.rtcp = transport

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
        stream.rec_from = None
        if stream.recorder is not None:
            self._turns[stream.slot % RECORD_RING].append(stream)
        stream.rtcp_schedule = RtcpSchedule(self.now())
        stream.group = min(range(PHASES), key=lambda g: len(self._groups[g]))
        self._groups[stream.group].append(stream)
        if not self.clock.running:
            self.clock.start()

    def close(self, stream: RtpStream) -> None:
        """Stop the stream, free its port and slot, finish its recording. Idempotent."""
        if self._pacer is not None:  # the pacer is done with its socket after this
            self._pacer.unwatch(stream)
            self._pacer.stop_sending(stream)
        else:
            stream.sending = False
        if stream in self.streams:
            self._closed_in_frame = True
            self.streams.remove(stream)
            self._groups[stream.group].remove(stream)
            self._flush_recording(stream, self._rec_frames - 1)
            turn = self._turns[stream.slot % RECORD_RING]
            if stream in turn:
                turn.remove(stream)
            self._free_slots.append(stream.slot)
        self._ports_in_use.discard(stream.port)
        self._packets_in_closed += stream.packets_in
        stream.packets_in = 0
        if stream.transport is not None:
            stream.transport.close()
        elif stream.sock is not None:
            stream.sock.close()
        if stream.rtcp is not None:
            stream.rtcp.close()
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
        if self._pacer is not None:
            self._pacer.stop()
            self._pacer = None

    def _start_pacer(self) -> RtpPacer | None:
        """On a real clock the pacer's thread sends the packets and reads the sockets (see
        :mod:`.pacer`); on a virtual-time loop (the tests' scenarios) the loop does both."""
        use = self._use_pacer
        if use is None:
            use = not isinstance(self._loop, VirtualClockLoop)
        if use and self._pacer is None:
            self._pacer = RtpPacer(on_sent=self._sent, loop=self._loop, native=":" not in self.host)
        if self._pacer is not None:
            self._pacer.start()
        return self._pacer

    def _sent(self, deadline: float, sent_at: float, packets: int) -> None:
        self.packets_out += packets
        hook = self.on_sent
        if hook is not None:
            hook(deadline, sent_at, packets)

    def _grow(self) -> None:
        old = self._capacity
        self._capacity *= 2
        self._free_slots.extend(range(self._capacity - 1, old - 1, -1))
        self._dtmf = DtmfDetector(self._capacity)
        self._vad = VoiceActivityDetector(self._capacity)
        self._inbound = np.zeros((self._capacity, FRAME_SAMPLES), dtype=np.int16)
        ring = np.zeros((self._capacity, *self._rec_ring.shape[1:]), dtype="<i2")
        ring[:old] = self._rec_ring  # frames not yet on disk stay
        self._rec_ring = ring

    # --- the shared media clock: four 5 ms phases of the 20 ms frame ----------------------
    def _tick(self, n: int) -> None:
        """One phase: make this group's next packets, due one frame (20 ms) later.

        Every stream belongs to one of :data:`PHASES` groups and sends every 20 ms on its
        group's phase of the clock, so a phase sends a quarter of the packets. The packets are
        made one frame ahead and handed to the pacer thread, which sends them at their
        deadline however busy the loop is (one frame, 20 ms, more audio delay than sending
        them as they are made); without a pacer the tick first sends the ones made a frame ago.
        The caller's frames taken in the four phases are decoded, run through VAD and the
        in-band DTMF detector, handed to the operations and recorded together in the last.
        """
        phase = n % PHASES
        group = self._groups[phase]
        pacer = self._pacer
        if pacer is None:  # no pacer thread: send the packets made one frame ago now
            self._send_inline(self._ready[phase], self.clock.deadline)
        ready: list[tuple[RtpStream, list[bytes]]] = []
        now = self.now()
        cycle, payloads, heard, missing = self._cycle, self._payloads, self._heard, self._missing
        alaw, recorded, wants, slots = self._alaw, self._recorded, self._wants, self._slots
        frame_index = self._rec_frames
        row = len(cycle)
        for stream in group:
            try:
                payload = stream.frame_out()
            except Exception:
                log.exception("rtp.frame_out_failed", call_id=stream.channel.call_id)
                payload = stream._silence
            if stream.sending:
                ready.append((stream, stream.sender.tick(payload)))  # type: ignore[union-attr]
            else:  # on hold: nothing is sent, the RTP timestamps keep time
                stream.sender.tick(None)  # type: ignore[union-attr]
            inbound = stream.inbound
            if inbound:
                frame = inbound.popleft()
                if len(frame) != FRAME_SAMPLES:  # another packet time: cut or pad to 20 ms
                    frame = frame[:FRAME_SAMPLES].ljust(FRAME_SAMPLES, stream._silence[:1])
            else:
                missing.append(row)
                frame = stream._silence
            if stream._encoding == "pcma":
                alaw.append(row)
            if stream.recorder is not None:
                recorded.append(row)
                if stream.rec_from is None:
                    stream.rec_from = frame_index
            op = stream.channel.operation
            if op is not None and op.wants_audio:
                wants.append(row)
            cycle.append(stream)
            slots.append(stream.slot)
            payloads.append(payload)
            heard.append(frame)
            row += 1
            events = stream.events
            if events is None:
                self._in_band = True
            elif events.code is not None and now - stream.last_event_at > EVENT_TIMEOUT:
                events.expire()
        if pacer is None:
            self._ready[phase] = ready
        else:  # due one frame after this tick's deadline; loop time is monotonic time here
            pacer.submit(self.clock.deadline + FRAME_SECONDS, ready)
        if phase == PHASES - 1:
            self._frame_done()

    def _send_inline(self, batch: list[tuple[RtpStream, list[bytes]]], deadline: float) -> None:
        out = RtpPacer.send_now(batch)
        self._sent(deadline, time.monotonic(), out)

    def _frame_done(self) -> None:
        """The 20 ms frame of every stream is in: detectors, operations, recordings."""
        streams, payloads, heard, missing = self._cycle, self._payloads, self._heard, self._missing
        alaw, recorded, wants, in_band = self._alaw, self._recorded, self._wants, self._in_band
        slots, closed = self._slots, self._closed_in_frame
        self._cycle, self._payloads, self._heard, self._missing = [], [], [], []
        self._alaw, self._recorded, self._wants, self._in_band = [], [], [], False
        self._slots, self._closed_in_frame = [], False
        if not streams:
            return
        engine_pcm = self._decode(payloads, alaw)
        caller_pcm = self._decode(heard, alaw)
        if missing:
            caller_pcm[missing] = 0
        digits = []
        if in_band:  # the detector runs over every slot, in step
            inbound = self._inbound
            inbound[:] = 0
            inbound[slots] = caller_pcm
            digits = self._dtmf.feed(inbound)
        frame_index = self._rec_frames
        pos = frame_index % RECORD_RING
        self._rec_frames += 1
        if self._rec_frames % RTCP_CHECK_FRAMES == 0:
            self._send_reports()
        if closed:  # a stream closed during the frame: its slot may be another's by now
            recorded = [row for row in recorded if streams[row].recorder is not None]
        if recorded:
            ring = self._rec_ring
            rows = np.array(recorded, dtype=np.intp)
            ring_rows = np.array(slots, dtype=np.intp)[rows]
            ring[ring_rows, pos, :, 0] = caller_pcm[rows]
            ring[ring_rows, pos, :, 1] = engine_pcm[rows]
        if wants:  # operations taking the caller's audio (record, bridge), with VAD
            voiced = self._vad.feed_rows(caller_pcm[wants], [slots[row] for row in wants])
            for row, loud in zip(wants, voiced.tolist(), strict=True):
                op = streams[row].channel.operation
                if op is not None and op.wants_audio:
                    op.frame_in(caller_pcm[row], loud)
        for stream in self._turns[pos]:  # each recording's turn comes once per ring
            self._flush_recording(stream, frame_index)
        if digits:
            by_slot = {s.slot: s for s in streams if s.in_band_dtmf}
            for event in digits:
                stream = by_slot.get(event.channel)
                if stream is not None and event.kind == "start":
                    stream.channel.digit_detected(event.digit)

    def _send_reports(self) -> None:
        """RTCP sender reports of the streams whose turn it is (about every 5 s each)."""
        now = self.now()
        unix_time = self.wall_clock().timestamp()
        for stream in self.streams:
            schedule = stream.rtcp_schedule
            if stream.rtcp is not None and stream.sending and schedule and schedule.due(now):
                try:
                    stream.send_report(unix_time)
                except Exception:  # a report that cannot go out must not stop the media
                    log.exception("rtcp.send_failed", call_id=stream.channel.call_id)

    def _flush_recording(self, stream: RtpStream, last: int) -> None:
        """Append the stream's frames in the ring, up to frame ``last``, to its recording."""
        first, recorder = stream.rec_from, stream.recorder
        if first is None or recorder is None or last < first:
            return
        stream.rec_from = last + 1
        first = max(first, last - RECORD_RING + 1)  # (never more than a ring waits)
        start = first % RECORD_RING
        end = start + last - first + 1
        ring = self._rec_ring[stream.slot]
        if end <= RECORD_RING:
            recorder.write_interleaved(ring[start:end].tobytes())
        else:
            recorder.write_interleaved(ring[start:].tobytes())
            recorder.write_interleaved(ring[: end - RECORD_RING].tobytes())

    @staticmethod
    def _decode(frames: list[bytes], alaw: list[int]) -> np.ndarray:
        """One 160-byte G.711 frame per stream → an (n, 160) int16 array, in one pass.

        ``alaw``: the rows in A-law; the others are μ-law.
        """
        codes = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(frames), -1)
        pcm = ulaw_decode(codes)
        if alaw:
            pcm[alaw] = alaw_decode(codes[alaw])
        return pcm
