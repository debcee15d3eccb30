"""Channel operations shared by the drivers: play, collect, record and bridge as small objects.

A driver's channel keeps the running operation in ``channel.operation``; the driver's 20 ms
media tick takes the engine's audio from ``operation.frame_out()`` and hands the caller's frame
to ``frame_in()`` when ``wants_audio``; digits arrive through ``operation.digit()``. Each
operation ends by resolving its future with a :class:`~drivers.channel.Result`, so flows see
the same termination reasons, barge-in, type-ahead buffer and swallowed terminator on the
simulated board (:mod:`drivers.simboard.channel`) and on SIP (:mod:`drivers.sip.channel`).

What an operation needs from its channel (:class:`OperationHost`, which
:class:`~drivers.media_channel.MediaChannel` provides): ``loop``, ``channel_id``,
the digit buffer ``_digits``, ``operation``, and the hooks ``_play_started``,
``_play_ended`` and ``_swallow``.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from drivers.channel import FRAME_SAMPLES, SAMPLE_RATE, Playable, Reason, Result
from drivers.media.tones import sine

BEEP = sine(1000, 250, -12.0)


class OperationHost(Protocol):
    """The channel side of an operation (see the module docstring)."""

    loop: asyncio.AbstractEventLoop
    channel_id: str
    operation: Any
    _digits: list[str]

    def _play_started(self, item: Playable) -> None: ...
    def _play_ended(self, item: Playable, interrupted: bool) -> None: ...
    def _swallow(self, terminators: str, seconds: float) -> None: ...


class _Operation:
    """A running play/collect/record; subclasses react to frames, digits and timers."""

    wants_audio = False  # does frame_in need the caller's audio (record)?

    def __init__(self, channel: OperationHost) -> None:
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
    def __init__(self, channel: OperationHost, items: Sequence[Playable], barge_in: str) -> None:
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
        channel: OperationHost,
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
        channel: OperationHost,
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

    def __init__(self, channel: OperationHost) -> None:
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
