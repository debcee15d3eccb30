"""The `Channel` implementation for a call that reached the engine over SIP.

A :class:`SipChannel` runs the same operation objects as the simulated board's channel (play,
collect, record, bridge from :mod:`drivers.operations`), so termination reasons, barge-in,
the type-ahead digit buffer and the swallowed trailing ``#`` behave identically: the media
plane's 20 ms tick calls ``operation.frame_out()`` / ``frame_in()`` exactly as the board's
does, and digits (RFC 4733 or in-band) arrive through :meth:`SipChannel.digit_detected`.
Signalling (200 OK, BYE) goes through the :class:`~drivers.sip.transport.SipEndpoint`.
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


class SipChannel(Channel):
    """One incoming SIP call (a UAS dialog and its RTP stream)."""

    def __init__(self, endpoint: Any, call: Any) -> None:
        self.endpoint = endpoint
        self.call = call  # drivers.sip.uas.UasCall
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        self.channel_id = f"sip:{call.call_id}"
        self.call_id = endpoint.call_id_for(call)
        self.caller = call.caller
        self.called = call.called
        self.line = "sip"
        self.answered_at: float | None = None
        self.stream: Any = None  # drivers.sip.media.RtpStream once answered
        self._cause: HangupCause | None = None
        self._digits: list[str] = []
        self._swallow_terminator: tuple[str, float] | None = None
        self.operation: _Operation | None = None
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

    async def answer(self) -> None:
        """Let it ring ``answer_after`` seconds, then 200 OK with the SDP answer."""
        self._check()
        if self.answered_at is not None:
            return
        ring = self.endpoint.answer_after
        if ring > 0:
            await asyncio.wait([asyncio.shield(self._ended)], timeout=ring)
        self._check()
        await self.endpoint.answer(self)
        self._check()
        self.answered_at = self.loop.time()
        self._emit("answer")

    async def hangup(self, cause: HangupCause = HangupCause.NORMAL) -> None:
        if self._cause is None:
            self.endpoint.engine_hangs_up(self)
            self.ended(cause)

    async def play(
        self, items: Sequence[Playable], *, barge_in: str = "", max_time: float | None = None
    ) -> Result:
        op = _Play(self, items, barge_in)  # type: ignore[arg-type]
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
        op = _Collect(self, max_digits, terminators, first_timeout, inter_timeout)  # type: ignore[arg-type]
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
        op = _Record(self, path, max_silence, terminators, beep)  # type: ignore[arg-type]
        return await self._run(op, max_time + len(op.beep) / SAMPLE_RATE, None)

    async def bridge(self, other: Channel, *, max_time: float | None = None) -> Result:
        """Connect this caller with a leg of this endpoint or of a simulated board (a seat).

        Both sides run the board's bridge operation: each tick (the media plane's for this
        leg, the board's for a board line) sends the other side's last received frame, so
        audio crosses with one frame of delay; either side ending ends both (see
        :meth:`Channel.bridge`).
        """
        if other is self:
            raise ValueError(f"{self.channel_id} cannot be bridged with itself")
        if not hasattr(other, "operation") or not hasattr(other, "loop"):
            raise ValueError(f"{self.channel_id} cannot be bridged with {type(other).__name__}")
        for leg in (self, other):
            if leg.hangup_cause is not None:
                return Result(
                    Reason.HANGUP,
                    detail={"cause": str(leg.hangup_cause), "hung_up": leg.channel_id},
                )
        mine, theirs = _Bridge(self), _Bridge(other)  # type: ignore[arg-type]
        mine.peer, theirs.peer = theirs, mine
        if other.operation is not None:  # type: ignore[attr-defined]
            other.operation.finish(Reason.STOPPED)  # type: ignore[attr-defined]
        other.operation = theirs  # type: ignore[attr-defined]
        return await self._run(mine, max_time, None)

    def clear_digits(self) -> None:
        self._digits.clear()

    async def stop(self) -> None:
        if self.operation is not None:
            self.operation.finish(Reason.STOPPED)

    def subscribe(self, sink: EventSink) -> Callable[[], None]:
        self._sinks.append(sink)
        return lambda: self._sinks.remove(sink) if sink in self._sinks else None

    # --- internals (the names the shared operation objects use) -------------------------
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

    def _play_ended(self, item: Playable, interrupted: bool) -> None:
        self._emit("play_end", prompt_id=item.prompt_id, interrupted=interrupted)

    def _swallow(self, terminators: str, seconds: float) -> None:
        self._swallow_terminator = (terminators, self.loop.time() + seconds)

    def digit_detected(self, digit: str) -> None:
        """A key from the caller (RFC 4733 event start or in-band tone)."""
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
