"""A `Channel` whose operations are advanced by a driver's 20 ms media tick.

Both drivers (the simulated board and SIP) move audio on a shared media clock and detect keys
in the media (in-band DTMF, RFC 4733). :class:`MediaChannel` holds everything their channels
have in common: the running operation (:mod:`drivers.operations`), the type-ahead digit
buffer with the swallowed terminator after a full entry, the event subscribers, bridging two
legs and the end of the call. A driver's channel adds only signalling — how it answers and
hangs up — and may react to what the caller hears (:meth:`_heard_start`/:meth:`_heard_end`).

The driver's tick calls ``channel.operation.frame_out()`` for the engine's audio and
``frame_in()`` with the caller's frame when ``operation.wants_audio``; keys arrive through
:meth:`MediaChannel.digit_detected`, call-progress tones through :meth:`tone_detected`, and the
end of the call through :meth:`ended`.
"""

from __future__ import annotations

import asyncio
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


class MediaChannel(Channel):
    """Common state and Channel operations of the media-tick drivers (see the module doc)."""

    def __init__(self, channel_id: str, call_id: str, caller: str, called: str, line: str) -> None:
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        self.channel_id = channel_id
        self.call_id = call_id
        self.caller = caller
        self.called = called
        self.line = line
        self.answered_at: float | None = None
        self.operation: _Operation | None = None
        self._cause: HangupCause | None = None
        self._digits: list[str] = []
        self._swallow_terminator: tuple[str, float] | None = None
        self._sinks: list[EventSink] = []
        self._ended: asyncio.Future[HangupCause] = self.loop.create_future()

    # --- Channel API ------------------------------------------------------------------
    @property
    def hung_up(self) -> bool:
        return self._cause is not None

    @property
    def hangup_cause(self) -> HangupCause | None:
        return self._cause

    async def wait_ended(self) -> HangupCause:
        return await asyncio.shield(self._ended)

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
        """Connect this leg with another media-tick leg, of this driver or another.

        Each side's tick sends the other side's last received frame, so audio crosses with one
        frame of delay; either side ending ends both (see :meth:`Channel.bridge`).
        """
        if other is self:
            raise ValueError(f"{self.channel_id} cannot be bridged with itself")
        if not isinstance(other, MediaChannel):
            raise ValueError(f"{self.channel_id} cannot be bridged with {type(other).__name__}")
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

    # --- called by the driver -----------------------------------------------------------
    def digit_detected(self, digit: str) -> None:
        """A key from the caller (an in-band tone or an RFC 4733 event)."""
        if self._cause is not None:
            return
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

    # --- driver hooks ---------------------------------------------------------------------
    def _heard_start(self, item: Playable) -> None:
        """The first frame of ``item`` went out to the caller."""

    def _heard_end(self, item: Playable, interrupted: bool) -> None:
        """``item`` finished playing, or was cut short."""

    # --- what the operations use (see drivers.operations.OperationHost) --------------------
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
        self._heard_start(item)

    def _play_ended(self, item: Playable, interrupted: bool) -> None:
        self._emit("play_end", prompt_id=item.prompt_id, interrupted=interrupted)
        self._heard_end(item, interrupted)

    def _swallow(self, terminators: str, seconds: float) -> None:
        """Ignore one of ``terminators`` pressed in the next ``seconds`` (see Channel.collect)."""
        self._swallow_terminator = (terminators, self.loop.time() + seconds)
