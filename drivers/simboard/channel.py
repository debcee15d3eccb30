"""The `Channel` implementation for a line of the simulated board.

Channel operations (play, collect, record, bridge; :mod:`drivers.operations`, shared with
SIP) are small objects that the board's 20 ms media tick and the loop's timers advance: the
tick takes the engine's audio from ``channel.operation.frame_out()`` and hands the caller's
frame to ``frame_in()`` when the operation wants audio; key presses found by the detector
arrive through :meth:`SimChannel.digit_detected`. Each operation ends by resolving its future with a
:class:`~drivers.channel.Result`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from drivers.channel import (
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
from drivers.operations import _Bridge, _Collect, _Operation, _Play, _Record

_call_numbers = itertools.count(1)


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
        # caller ID on a trunk comes from the exchange (FSK after the first ring)
        self.caller_verified = line.kind == "trunk"
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
