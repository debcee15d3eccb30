"""The `Channel` implementation for a line of the simulated board.

Channel operations (play, collect, record, bridge) are small objects that the board's 20 ms
media tick and the loop's timers advance: the tick takes the engine's audio from
``channel.operation.frame_out()`` and hands the caller's frame to ``frame_in()`` when the
operation wants audio; key presses found by the detector arrive through
:meth:`SimChannel.digit_detected`. Each operation ends by resolving its future with a
:class:`~drivers.channel.Result`.
"""

from __future__ import annotations

import asyncio
import itertools
import wave
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from drivers.channel import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    Channel,
    ChannelEvent,
    EventSink,
    HangupCause,
    HungUp,
    Playable,
    Reason,
    Result,
)
from drivers.media.tones import sine

BEEP = sine(1000, 250, -12.0)
_call_numbers = itertools.count(1)


class _Operation:
    """A running play/collect/record; subclasses react to frames, digits and timers."""

    wants_audio = False  # does frame_in need the caller's audio (record)?

    def __init__(self, channel: SimChannel) -> None:
        self.channel = channel
        self.loop = channel.loop
        self.future: asyncio.Future[Result] = self.loop.create_future()
        self.started = self.loop.time()
        self._timers: list[asyncio.TimerHandle] = []

    def after(self, seconds: float, reason: Reason) -> None:
        self._timers.append(self.loop.call_later(seconds, self.finish, reason))

    def finish(self, reason: Reason, **fields: Any) -> None:
        if self.future.done():
            return
        for timer in self._timers:
            timer.cancel()
        self.close(reason)
        fields.setdefault("duration", self.loop.time() - self.started)
        self.future.set_result(Result(reason, **fields))
        if self.channel.operation is self:
            self.channel.operation = None

    # hooks
    def close(self, reason: Reason) -> None: ...
    def frame_out(self) -> np.ndarray | None:
        return None

    def frame_in(self, frame: np.ndarray, voiced: bool) -> None: ...
    def digit(self, digit: str) -> None: ...


class _Play(_Operation):
    def __init__(self, channel: SimChannel, items: Sequence[Playable], barge_in: str) -> None:
        super().__init__(channel)
        self.items = list(items)
        self.index = 0
        self.pos = 0
        self.barge_in = barge_in
        self.current_heard: Any = None

    def start(self) -> None:
        if self.barge_in and self.channel._digits and self._barges(self.channel._digits[0]):
            self.finish(Reason.DIGIT, digits=self.channel._digits[0])
        elif not any(len(item.samples) for item in self.items):
            self.finish(Reason.DONE)

    def _barges(self, digit: str) -> bool:
        return self.barge_in == "any" or digit in self.barge_in

    def frame_out(self) -> np.ndarray | None:
        while self.index < len(self.items):
            item = self.items[self.index]
            if self.pos == 0:
                self.channel._play_started(item)
            chunk = item.samples[self.pos : self.pos + FRAME_SAMPLES]
            self.pos += len(chunk)
            if self.pos >= len(item.samples):
                self.channel._play_ended(item, interrupted=False)
                self.index += 1
                self.pos = 0
            if len(chunk):
                if len(chunk) < FRAME_SAMPLES:
                    chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), np.int16)])
                if self.index >= len(self.items):
                    # the last frame is on its way; the play is done once it has gone out
                    self.loop.call_soon(self.finish, Reason.DONE)
                return chunk
        self.finish(Reason.DONE)
        return None

    def digit(self, digit: str) -> None:
        if self.barge_in and self._barges(digit):
            self.finish(Reason.DIGIT, digits=digit)

    def close(self, reason: Reason) -> None:
        if self.index < len(self.items) and self.pos > 0:
            self.channel._play_ended(self.items[self.index], interrupted=True)


class _Collect(_Operation):
    def __init__(
        self,
        channel: SimChannel,
        max_digits: int,
        terminators: str,
        first_timeout: float,
        inter_timeout: float,
    ) -> None:
        super().__init__(channel)
        self.max_digits = max_digits
        self.terminators = terminators
        self.first_timeout = first_timeout
        self.inter_timeout = inter_timeout
        self.digits = ""
        self._idd: asyncio.TimerHandle | None = None

    def start(self, max_time: float | None) -> None:
        if max_time:
            self.after(max_time, Reason.MAX_TIME)
        while self.channel._digits and not self.future.done():
            self.digit(self.channel._digits.pop(0), from_buffer=True)
        if not self.future.done():
            self._arm()

    def _arm(self) -> None:
        if self._idd is not None:
            self._idd.cancel()
        if self.digits:
            self._idd = self.loop.call_later(
                self.inter_timeout, self.finish_with, Reason.INTERDIGIT_TIMEOUT
            )
        else:
            self._idd = self.loop.call_later(
                self.first_timeout, self.finish_with, Reason.FIRST_DIGIT_TIMEOUT
            )
        self._timers.append(self._idd)

    def finish_with(self, reason: Reason) -> None:
        self.finish(reason, digits=self.digits)

    def digit(self, digit: str, from_buffer: bool = False) -> None:
        if not from_buffer:
            # consume it: collect takes digits out of the buffer as they arrive
            if self.channel._digits and self.channel._digits[-1] == digit:
                self.channel._digits.pop()
        if digit in self.terminators:
            self.finish(Reason.DIGIT, digits=self.digits, detail={"terminator": digit})
            return
        self.digits += digit
        if len(self.digits) >= self.max_digits:
            if self.terminators:
                self.channel._swallow(self.terminators, self.inter_timeout)
            self.finish(Reason.MAX_DIGITS, digits=self.digits)
        else:
            self._arm()

    def close(self, reason: Reason) -> None:
        pass


class _Record(_Operation):
    wants_audio = True

    def __init__(
        self,
        channel: SimChannel,
        path: str,
        max_silence: float | None,
        terminators: str,
        beep: bool,
    ) -> None:
        super().__init__(channel)
        self.path = Path(path)
        self.max_silence = max_silence
        self.terminators = terminators
        self.frames: list[np.ndarray] = []
        self.silent_frames = 0
        self.heard_voice = False
        self.beep = BEEP.copy() if beep else np.zeros(0, np.int16)
        self.beep_pos = 0

    def frame_out(self) -> np.ndarray | None:
        if self.beep_pos >= len(self.beep):
            return None
        chunk = self.beep[self.beep_pos : self.beep_pos + FRAME_SAMPLES]
        self.beep_pos += FRAME_SAMPLES
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), np.int16)])
        return chunk

    def frame_in(self, frame: np.ndarray, voiced: bool) -> None:
        if self.beep_pos < len(self.beep):
            return  # recording starts after the beep
        self.frames.append(frame.copy())
        if voiced:
            self.silent_frames = 0
            self.heard_voice = True
        else:
            self.silent_frames += 1
            if (
                self.max_silence is not None
                and self.silent_frames * FRAME_SAMPLES / SAMPLE_RATE >= self.max_silence
            ):
                self.finish(Reason.SILENCE)

    def digit(self, digit: str) -> None:
        if digit in self.terminators:
            if self.channel._digits and self.channel._digits[-1] == digit:
                self.channel._digits.pop()
            self.finish(Reason.DIGIT, digits=digit)

    def close(self, reason: Reason) -> None:
        frames = self.frames
        if reason in (Reason.SILENCE, Reason.DIGIT, Reason.HANGUP, Reason.MAX_TIME):
            frames = frames[: len(frames) - self.silent_frames] if self.silent_frames else frames
        if reason is Reason.DIGIT and frames:
            frames = frames[:-4]  # drop the ~80 ms of key tone that ended the recording
        samples = np.concatenate(frames) if frames else np.zeros(0, np.int16)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(self.path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(samples.astype("<i2").tobytes())
        self.kept = len(samples) / SAMPLE_RATE

    def finish(self, reason: Reason, **fields: Any) -> None:
        if self.future.done():
            return
        for timer in self._timers:
            timer.cancel()
        self.close(reason)
        detail = {"path": str(self.path), **fields.pop("detail", {})}
        fields.pop("duration", None)
        self.future.set_result(Result(reason, duration=self.kept, detail=detail, **fields))
        if self.channel.operation is self:
            self.channel.operation = None


class _Bridge(_Operation):
    """One side of a bridge: sends the other side's last inbound frame, keeps its own.

    The board's tick asks every line for its outbound frame before it reads the far ends,
    so audio crosses the bridge one tick (20 ms) later, like a frame of jitter buffer.
    Finishing either side finishes the other with the same result.
    """

    wants_audio = True

    def __init__(self, channel: SimChannel) -> None:
        super().__init__(channel)
        self.peer: _Bridge | None = None
        self.last_in = np.zeros(FRAME_SAMPLES, dtype=np.int16)

    def frame_in(self, frame: np.ndarray, voiced: bool) -> None:
        np.copyto(self.last_in, frame)

    def frame_out(self) -> np.ndarray | None:
        return self.peer.last_in if self.peer is not None else None

    def finish(self, reason: Reason, **fields: Any) -> None:
        if self.future.done():
            return
        if reason is Reason.HANGUP:
            detail = dict(fields.pop("detail", {}))
            detail.setdefault("hung_up", self.channel.channel_id)
            fields["detail"] = detail
        super().finish(reason, **fields)
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.peer = None
            peer.finish(reason, **fields)


class SimChannel(Channel):
    """A call on one line of the simulated board."""

    def __init__(self, board: Any, line: Any, caller: str, called: str) -> None:
        self.board = board
        self.line_obj = line
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        self.channel_id = f"sim:{line.name}"
        self.call_id = f"{board.name}-{line.name}-{next(_call_numbers):06d}"
        self.caller = caller
        self.called = called
        self.line = line.name
        self.answered_at: float | None = None
        self._cause: HangupCause | None = None
        self._digits: list[str] = []
        self._swallow_terminator: tuple[str, float] | None = None
        self.operation: _Operation | None = None
        self._sinks: list[EventSink] = []
        self._ended: asyncio.Future[HangupCause] = self.loop.create_future()
        self.rings = 0

    # --- Channel API ------------------------------------------------------------------
    @property
    def hung_up(self) -> bool:
        return self._cause is not None

    @property
    def hangup_cause(self) -> HangupCause | None:
        return self._cause

    async def wait_ended(self) -> HangupCause:
        return await asyncio.shield(self._ended)

    async def answer(self) -> None:
        self._check()
        if self.answered_at is None:
            self.answered_at = self.loop.time()
            self.board.engine_answers(self)
            self._emit("answer")

    async def hangup(self, cause: HangupCause = HangupCause.NORMAL) -> None:
        if self._cause is None:
            self.board.engine_hangs_up(self)
            self.ended(cause)

    async def play(
        self, items: Sequence[Playable], *, barge_in: str = "", max_time: float | None = None
    ) -> Result:
        op = _Play(self, items, barge_in)
        return await self._run(op, max_time, op.start)

    async def collect(
        self,
        *,
        max_digits: int,
        terminators: str = "#",
        first_timeout: float = 5.0,
        inter_timeout: float = 3.0,
        max_time: float | None = None,
    ) -> Result:
        op = _Collect(self, max_digits, terminators, first_timeout, inter_timeout)
        return await self._run(op, None, lambda: op.start(max_time))

    async def record(
        self,
        path: str,
        *,
        max_time: float = 60.0,
        max_silence: float | None = 5.0,
        terminators: str = "#",
        beep: bool = True,
    ) -> Result:
        self._digits.clear()
        op = _Record(self, path, max_silence, terminators, beep)
        return await self._run(op, max_time + len(op.beep) / SAMPLE_RATE, None)

    async def bridge(self, other: Channel, *, max_time: float | None = None) -> Result:
        """Connect two legs of this board (see :meth:`Channel.bridge`)."""
        if not isinstance(other, SimChannel) or other.board is not self.board:
            raise ValueError(f"{self.channel_id} can only be bridged with a line of the same board")
        if other is self:
            raise ValueError(f"{self.channel_id} cannot be bridged with itself")
        for leg in (self, other):
            if leg._cause is not None:
                return Result(
                    Reason.HANGUP, detail={"cause": str(leg._cause), "hung_up": leg.channel_id}
                )
        mine, theirs = _Bridge(self), _Bridge(other)
        mine.peer, theirs.peer = theirs, mine
        if other.operation is not None:
            other.operation.finish(Reason.STOPPED)
        other.operation = theirs
        return await self._run(mine, max_time, None)

    def clear_digits(self) -> None:
        self._digits.clear()

    async def stop(self) -> None:
        if self.operation is not None:
            self.operation.finish(Reason.STOPPED)

    def subscribe(self, sink: EventSink) -> Callable[[], None]:
        self._sinks.append(sink)
        return lambda: self._sinks.remove(sink) if sink in self._sinks else None

    # --- internals ----------------------------------------------------------------------
    def _check(self) -> None:
        if self._cause is not None:
            raise HungUp(self._cause)

    async def _run(
        self, op: _Operation, max_time: float | None, start: Callable[[], None] | None
    ) -> Result:
        if self._cause is not None:
            return Result(Reason.HANGUP, detail={"cause": str(self._cause)})
        if self.operation is not None:
            self.operation.finish(Reason.STOPPED)
        self.operation = op
        if max_time:
            op.after(max_time, Reason.MAX_TIME)
        if start is not None:
            start()
        try:
            return await asyncio.shield(op.future)
        except asyncio.CancelledError:
            op.finish(Reason.STOPPED)
            raise

    def _emit(self, event_kind: str, **data: Any) -> None:
        event = ChannelEvent(event_kind, self.channel_id, self.loop.time(), data)
        for sink in list(self._sinks):
            sink(event)

    def _play_started(self, item: Playable) -> None:
        self._emit("play_start", prompt_id=item.prompt_id, text=item.text, kind=item.kind)
        self.board.far_end_hears_start(self, item)

    def _play_ended(self, item: Playable, interrupted: bool) -> None:
        self._emit("play_end", prompt_id=item.prompt_id, interrupted=interrupted)
        self.board.far_end_hears_end(self, item, interrupted)

    def _swallow(self, terminators: str, seconds: float) -> None:
        """Ignore one of ``terminators`` pressed in the next ``seconds`` (see Channel.collect)."""
        self._swallow_terminator = (terminators, self.loop.time() + seconds)

    def digit_detected(self, digit: str) -> None:
        swallow = self._swallow_terminator
        if swallow is not None:
            self._swallow_terminator = None
            if digit in swallow[0] and self.loop.time() <= swallow[1]:
                self._emit("digit", digit=digit, swallowed=True)
                return
        self._digits.append(digit)
        self._emit("digit", digit=digit)
        if self.operation is not None:
            self.operation.digit(digit)

    def tone_detected(self, kind: str, cycles: int) -> None:
        self._emit("tone", tone=kind, cycles=cycles)

    def ended(self, cause: HangupCause) -> None:
        """The call is over (either side). Ends any running operation with HANGUP."""
        if self._cause is not None:
            return
        self._cause = cause
        if self.operation is not None:
            self.operation.finish(Reason.HANGUP, detail={"cause": str(cause)})
        self._emit("hangup", cause=str(cause))
        if not self._ended.done():
            self._ended.set_result(cause)
