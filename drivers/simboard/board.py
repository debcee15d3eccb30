"""The simulated analog voice-card board: N trunk lines and M station lines.

Modelled on the event model of Dialogic/Synway/Donjin boards: a trunk rings with the Chinese
cadence (1 s on, 4 s off), caller ID arrives after the first ring, the engine goes off-hook,
audio flows as 8 kHz frames both ways, and the caller's keys arrive **as in-band DTMF tones in
the audio**, found by the board's own detector exactly as on a real card. Hangup arrives by
loop-current drop, busy tone or polarity reversal (see :mod:`drivers.simboard.line`).
The engine also places calls: :meth:`SimBoard.ring_station` rings an agent's desk phone on a
station line, :meth:`SimBoard.dial` rings a number on the first free trunk (a queued
callback); the far end hears ``"ringing"`` and answers with ``FarEnd.off_hook()``.

One shared :class:`~drivers.clock.MediaClock` tick moves 20 ms of audio on every line; the DTMF,
call-progress and voice detectors run vectorized over all lines at once. Every answered call
is recorded (caller left, engine right) and the recording is finalized however the call ends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from drivers.channel import FRAME_SAMPLES, HangupCause, Playable
from drivers.clock import MediaClock
from drivers.media.dtmf import DtmfDetector
from drivers.media.progress import CallProgressDetector
from drivers.media.recorder import CallRecorder, FinishedRecording
from drivers.media.tones import cadence_tone, dbm0_to_amplitude
from drivers.media.vad import VoiceActivityDetector
from drivers.simboard.channel import SimChannel
from drivers.simboard.line import (
    FarEndCall,
    HangupSignal,
    Heard,
    LineConfig,
    LineKind,
    LineState,
    SimLine,
)

log = structlog.get_logger(__name__)

BUSY_PERIOD = cadence_tone(450, 350, 350, 1, -10.0)  # 700 ms = 35 frames
RECORD_BLOCK_TICKS = 50  # recordings reach the disk once a second


class SimBoard:
    """A simulated voice card. Start it inside a running loop with :meth:`start`."""

    def __init__(
        self,
        *,
        name: str = "board0",
        trunks: int = 8,
        stations: int = 0,
        recordings_dir: str | Path | None = None,
        line_config: LineConfig | None = None,
        line_configs: dict[str, LineConfig] | None = None,
        on_incoming: Callable[[SimChannel], Any] | None = None,
        on_event: Callable[..., None] | None = None,
        wall_clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.name = name
        self.recordings_dir = Path(recordings_dir) if recordings_dir else None
        self.on_incoming = on_incoming
        self.on_event = on_event or (lambda kind, call_id, **data: None)
        self.wall_clock = wall_clock or (lambda: dt.datetime.now(dt.UTC))
        default = line_config or LineConfig()
        configs = line_configs or {}
        self.lines: list[SimLine] = []
        for kind, count in ((LineKind.TRUNK, trunks), (LineKind.STATION, stations)):
            for number in range(1, count + 1):
                name_ = f"{'t' if kind is LineKind.TRUNK else 's'}{number}"
                config = configs.get(name_, default)
                line = SimLine(number, kind, LineConfig(**_fields(config)), self._now, self)
                line.index = len(self.lines)
                self.lines.append(line)
        n = len(self.lines)
        self._channels: list[SimChannel | None] = [None] * n
        self._recorders: list[CallRecorder | None] = [None] * n
        self._busy_pos = [0] * n
        self._clearing_signal: list[HangupSignal | None] = [None] * n
        self._clearing_timers: list[asyncio.TimerHandle | None] = [None] * n
        self._ring_timers: list[asyncio.TimerHandle | None] = [None] * n
        self._active: list[int] = []
        self._inbound = np.zeros((n, FRAME_SAMPLES), dtype=np.int16)
        self._out_block = np.zeros((max(n, 1), FRAME_SAMPLES), dtype=np.int16)
        self._rec_buf = np.zeros((n, RECORD_BLOCK_TICKS * 2 * FRAME_SAMPLES), dtype=np.int16)
        self._rec_pos = 0
        self._rec_tick = 0
        self._rec_count = [0] * n  # ticks of each line in the ring, not yet on disk
        self._dtmf = DtmfDetector(n)
        self._progress = CallProgressDetector(n)
        for line in self.lines:
            self._progress.set_busy_cycles(line.index, line.config.busy_cycles)
        self._vad = VoiceActivityDetector(n)
        self.clock = MediaClock(self._tick)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.digits_detected = 0

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.clock.start()

    async def stop(self) -> None:
        for index, channel in enumerate(self._channels):
            if channel is not None:
                self._end_call(index, HangupCause.NORMAL)
        self.clock.stop()

    def _now(self) -> float:
        return self._loop.time() if self._loop else 0.0

    def line(self, name: str | int) -> SimLine:
        """A line by name (``"t3"``, ``"s1"``) or trunk number (``3``)."""
        key = f"t{name}" if isinstance(name, int) or str(name).isdigit() else str(name)
        for line in self.lines:
            if line.name == key:
                return line
        raise KeyError(f"board {self.name} has no line {name!r}")

    @property
    def trunks(self) -> list[SimLine]:
        return [line for line in self.lines if line.kind is LineKind.TRUNK]

    def channel_on(self, line: SimLine) -> SimChannel | None:
        return self._channels[line.index]

    # --- far end → board (called by SimLine) -------------------------------------------
    def line_rings(self, line: SimLine, caller: str, called: str) -> None:
        assert self._loop is not None, "start the board first"
        channel = SimChannel(self, line, caller, called)
        self._channels[line.index] = channel
        self.on_event("line.ringing", channel.call_id, line=line.name, caller=caller, called=called)
        self._ring(line, channel, first=True)

    def _ring(self, line: SimLine, channel: SimChannel, first: bool) -> None:
        assert self._loop is not None
        if line.state is not LineState.RINGING or self._channels[line.index] is not channel:
            return
        channel.rings += 1
        channel._emit("ring", count=channel.rings, caller=channel.caller)
        cfg = line.config
        if first:
            # caller ID (FSK) is delivered in the silence after the first ring
            self._loop.call_later(cfg.ring_on_ms / 1000, self._incoming, line, channel)
        period = (cfg.ring_on_ms + cfg.ring_off_ms) / 1000
        self._ring_timers[line.index] = self._loop.call_later(
            period, self._ring, line, channel, False
        )

    def _incoming(self, line: SimLine, channel: SimChannel) -> None:
        if line.state is LineState.RINGING and self._channels[line.index] is channel:
            if self.on_incoming is not None:
                self.on_incoming(channel)

    def station_answered(self, line: SimLine) -> None:
        channel = self._channels[line.index]
        if line.state is LineState.RINGING and channel is not None:
            self._connect(line, channel)
            channel._emit("answer")

    def far_end_hung_up(self, line: SimLine, signal: HangupSignal) -> None:
        assert self._loop is not None
        index = line.index
        channel = self._channels[index]
        line.far_end.notify("ended", reason=f"far_end_hangup:{signal}")
        if channel is None:
            line.state = LineState.IDLE
            return
        if line.state is LineState.RINGING:
            # the ringing stops; the board notices when the next ring fails to come
            line.state = LineState.CLEARING
            self._cancel_ring(index)
            delay = line.config.ring_off_ms / 1000 + 0.5
            self._clearing_timers[index] = self._loop.call_later(
                delay, self._end_call, index, HangupCause.CANCELLED
            )
            return
        line.state = LineState.CLEARING
        self._clearing_signal[index] = signal
        self.on_event("line.far_end_hangup", channel.call_id, line=line.name, signal=str(signal))
        if signal is HangupSignal.POLARITY:
            self._end_call(index, HangupCause.POLARITY_REVERSAL)
        elif signal is HangupSignal.LOOP:
            self._clearing_timers[index] = self._loop.call_later(
                line.config.loop_drop_ms / 1000,
                self._end_call,
                index,
                HangupCause.LOOP_CURRENT_DROP,
            )
        else:
            self._busy_pos[index] = 0  # the exchange starts playing busy tone into the line

    # --- engine → board (called by SimChannel) --------------------------------------------
    def engine_answers(self, channel: SimChannel) -> None:
        line = channel.line_obj
        if line.kind is LineKind.TRUNK and line.state is LineState.RINGING:
            self._connect(line, channel)

    def engine_hangs_up(self, channel: SimChannel) -> None:
        index = channel.line_obj.index
        if self._channels[index] is channel:
            self._end_call(index, HangupCause.NORMAL, notify_channel=False)

    def ring_station(self, line_name: str, caller: str = "", called: str = "") -> SimChannel:
        """Ring an agent's phone on a station line; the channel is answered when it picks up."""
        line = self.line(line_name)
        if line.kind is not LineKind.STATION:
            raise ValueError(f"{line.name} is not a station line")
        if not line.in_service:
            raise RuntimeError(f"station {line.name} is out of service (no phone)")
        if line.state is not LineState.IDLE:
            raise RuntimeError(f"station {line.name} is busy")
        return self._ring_out(line, caller, called or line.name)

    def set_in_service(self, line_name: str | int, in_service: bool) -> None:
        """Plug a phone into a line or unplug it (an FXS line with no phone).

        Publishes ``line.service`` (``line``, ``in_service``) first, then ends any call on the
        line: a ringing or connected leg goes away as if the phone had been pulled out.
        """
        line = self.line(line_name)
        if line.in_service == in_service:
            return
        line.in_service = in_service
        self.on_event("line.service", None, line=line.name, in_service=in_service)
        if not in_service and self._channels[line.index] is not None:
            self._end_call(line.index, HangupCause.ERROR)

    def dial(self, number: str, caller: str = "") -> SimChannel:
        """An outbound call on the first free trunk: its far end rings (``"ringing"`` notify
        with ``number``); the channel is answered when the far end goes off-hook
        (``FarEnd.off_hook``). Hang the channel up to stop ringing. Raises ``RuntimeError``
        when every trunk is busy."""
        if not number:
            raise ValueError("dial: no number")
        for line in self.trunks:
            if line.state is LineState.IDLE and self._channels[line.index] is None:
                return self._ring_out(line, caller, number)
        raise RuntimeError("dial: every trunk is busy")

    def _ring_out(self, line: SimLine, caller: str, called: str) -> SimChannel:
        channel = SimChannel(self, line, caller, called)
        self._channels[line.index] = channel
        line.state = LineState.RINGING
        line.far_end.call = FarEndCall(caller, called, self._now())
        line.far_end.notify("ringing", caller=caller, number=called)
        return channel

    def far_end_hears_start(self, channel: SimChannel, item: Playable) -> None:
        far = channel.line_obj.far_end
        heard = Heard(item.text, item.prompt_id, item.kind, self._now())
        far.notify("heard", item=heard)

    def far_end_hears_end(self, channel: SimChannel, item: Playable, interrupted: bool) -> None:
        far = channel.line_obj.far_end
        if far.call is not None:
            for heard in reversed(far.call.heard):
                if heard.end is None:
                    heard.end = self._now()
                    heard.interrupted = interrupted
                    break
        far.notify("heard_end", interrupted=interrupted)

    # --- call set-up and tear-down -------------------------------------------------------
    def _connect(self, line: SimLine, channel: SimChannel) -> None:
        index = line.index
        self._cancel_ring(index)
        line.state = LineState.CONNECTED
        channel.answered_at = channel.answered_at or self._now()
        self._dtmf.reset(index)
        self._progress.reset(index)
        if self.recordings_dir is not None:
            path = self.recording_path(channel.call_id)
            self._recorders[index] = CallRecorder(path)
            self._rec_count[index] = 0
            self.on_event("recording.started", channel.call_id, path=str(path))
        self._active.append(index)
        line.far_end.notify("answered")

    def recording_path(self, call_id: str) -> Path:
        assert self.recordings_dir is not None
        day = self.wall_clock()
        return self.recordings_dir / f"{day:%Y/%m/%d}" / f"{call_id}.wav"

    def _cancel_ring(self, index: int) -> None:
        timer = self._ring_timers[index]
        if timer is not None:
            timer.cancel()
            self._ring_timers[index] = None

    def _end_call(self, index: int, cause: HangupCause, notify_channel: bool = True) -> None:
        channel = self._channels[index]
        if channel is None:
            return
        line = self.lines[index]
        self._channels[index] = None
        self._cancel_ring(index)
        timer = self._clearing_timers[index]
        if timer is not None:
            timer.cancel()
            self._clearing_timers[index] = None
        if index in self._active:
            self._active.remove(index)
        recorder = self._recorders[index]
        self._recorders[index] = None
        finished: FinishedRecording | None = None
        if recorder is not None:
            self._flush_recording(index, recorder)
            finished = recorder.finish()
        if line.state is not LineState.CLEARING and line.far_end.call is not None:
            line.far_end.notify("ended", reason="engine_hangup")
        line.state = LineState.IDLE
        self._clearing_signal[index] = None
        self._inbound[index] = 0
        if notify_channel:
            channel.ended(cause)
        if finished is not None:
            self.on_event("recording.finished", channel.call_id, **finished.event_data())

    # --- the media tick ------------------------------------------------------------------
    def _tick(self, _n: int) -> None:
        active = self._active
        if not active:
            return
        inbound = self._inbound
        inbound.fill(0)
        out_block = self._out_block
        channels, lines = self._channels, self.lines
        rows = list(active)
        for j, index in enumerate(rows):
            channel = channels[index]
            line = lines[index]
            op = channel.operation if channel is not None else None
            out = None
            if op is not None:
                try:
                    out = op.frame_out()
                except Exception:  # one line's fault must not stop the board's other lines
                    log.exception("board.line_failed", line=line.name, call_id=channel.call_id)
                    self._end_call(index, HangupCause.ERROR)
            if out is None:
                out_block[j] = 0
            else:
                out_block[j] = out
            far = line.far_end
            if far.capture_audio:
                far.hear_frame(out_block[j])
            if line.state is LineState.CLEARING:
                if self._clearing_signal[index] is HangupSignal.BUSY:
                    pos = self._busy_pos[index]
                    inbound[index] = BUSY_PERIOD[pos : pos + FRAME_SAMPLES]
                    self._busy_pos[index] = (pos + FRAME_SAMPLES) % len(BUSY_PERIOD)
            elif far.outgoing._chunks:
                inbound[index] = far.outgoing.pull()
            noise = line.config.noise_dbm0
            if noise is not None:
                level = dbm0_to_amplitude(noise) / np.sqrt(2)
                inbound[index] = np.clip(
                    inbound[index] + np.random.normal(0, level, FRAME_SAMPLES), -32768, 32767
                ).astype(np.int16)
        digits = self._dtmf.feed(inbound)
        tones = self._progress.feed(inbound)
        voiced = self._vad.feed(inbound)
        self._record(rows, out_block)
        for index in rows:
            channel = channels[index]
            op = channel.operation if channel is not None else None
            if op is not None and op.wants_audio:
                try:
                    op.frame_in(inbound[index], bool(voiced[index]))
                except Exception:
                    log.exception(
                        "board.line_failed", line=lines[index].name, call_id=channel.call_id
                    )
                    self._end_call(index, HangupCause.ERROR)
        for event in digits:
            if event.kind == "start":
                channel = channels[event.channel]
                if channel is not None and event.channel in active:
                    self.digits_detected += 1
                    channel.digit_detected(event.digit)
        for event in tones:
            channel = channels[event.channel]
            if channel is None:
                continue
            channel.tone_detected(event.kind, event.cycles)
            if event.kind == "busy":
                self._end_call(event.channel, HangupCause.BUSY_TONE)

    # --- recording: one ring buffer for all lines, each line flushed once a second ------------
    def _record(self, rows: list[int], out_block: np.ndarray) -> None:
        """Append this tick's stereo frames of every recorded line to the shared ring buffer.

        Lines are flushed to disk in 50 staggered groups (line ``i`` on ticks where
        ``tick % 50 == i % 50``), so each tick writes about 1/50 of the lines' last second
        instead of one tick writing everything.
        """
        recorders = self._recorders
        kept = [j for j, index in enumerate(rows) if recorders[index] is not None]
        width = 2 * FRAME_SAMPLES
        if kept:
            if len(kept) == len(rows):
                indices, outs = np.asarray(rows), out_block[: len(rows)]
            else:
                indices, outs = np.asarray([rows[j] for j in kept]), out_block[kept]
            p = self._rec_pos
            self._rec_buf[indices, p : p + width : 2] = self._inbound[indices]
            self._rec_buf[indices, p + 1 : p + width : 2] = outs
            for index in indices.tolist():
                self._rec_count[index] += 1
        self._rec_pos = (self._rec_pos + width) % self._rec_buf.shape[1]
        self._rec_tick = phase = (self._rec_tick + 1) % RECORD_BLOCK_TICKS
        for index in range(phase, len(recorders), RECORD_BLOCK_TICKS):
            recorder = recorders[index]
            if recorder is not None:
                self._flush_recording(index, recorder)

    def _flush_recording(self, index: int, recorder: CallRecorder) -> None:
        count = self._rec_count[index]
        if not count:
            return
        width = 2 * FRAME_SAMPLES
        ring = self._rec_buf[index]
        end = self._rec_pos or ring.shape[0]  # the data ends where the next tick will write
        start = end - count * width
        if start >= 0:
            recorder.write_interleaved(ring[start:end].astype("<i2").tobytes())
        else:  # wrapped around the end of the ring
            recorder.write_interleaved(
                ring[start:].astype("<i2").tobytes() + ring[:end].astype("<i2").tobytes()
            )
        self._rec_count[index] = 0


def _fields(config: LineConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}
