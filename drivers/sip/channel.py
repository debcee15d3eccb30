"""The `Channel` implementation for a call that reached the engine over SIP.

A :class:`SipChannel` is a :class:`~drivers.media_channel.MediaChannel`, like the simulated
board's channel, so termination reasons, barge-in, the type-ahead digit buffer and the
swallowed trailing ``#`` behave identically: the media plane's 20 ms tick calls
``operation.frame_out()`` / ``frame_in()`` exactly as the board's does, and digits (RFC 4733
or in-band) arrive through :meth:`SipChannel.digit_detected`.
Signalling (200 OK, BYE) goes through the :class:`~drivers.sip.transport.SipEndpoint`.

:class:`OutboundSipChannel` is the other direction: a leg the engine places
(:meth:`SipEndpoint.dial <drivers.sip.transport.SipEndpoint.dial>`, the B2BUA's leg to an
agent's seat). It rings until the far end answers, then emits ``answer`` and its media runs
on the same tick; hanging it up before the answer sends CANCEL, after it BYE; the far end's
BYE ends it with ``remote_bye``. The engine can hold and resume it (re-INVITE).
"""

from __future__ import annotations

import asyncio
from typing import Any

from drivers.channel import HangupCause
from drivers.media_channel import MediaChannel


class SipChannel(MediaChannel):
    """One incoming SIP call (a UAS dialog and its RTP stream)."""

    def __init__(self, endpoint: Any, call: Any) -> None:
        super().__init__(
            channel_id=f"sip:{call.call_id}",
            call_id=endpoint.call_id_for(call),
            caller=call.caller,
            called=call.called,
            line="sip",
        )
        self.endpoint = endpoint
        self.call = call  # drivers.sip.uas.UasCall
        self.stream: Any = None  # drivers.sip.media.RtpStream once answered

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


class OutboundSipChannel(MediaChannel):
    """A leg the engine places (a UAC dialog and its RTP stream); see the module doc."""

    def __init__(self, endpoint: Any, *, caller: str, called: str, line: str) -> None:
        call_id = endpoint.call_id_for(None)
        super().__init__(
            channel_id=f"sip-out:{call_id}",
            call_id=call_id,
            caller=caller,
            called=called,
            line=line,
        )
        self.endpoint = endpoint
        self.leg: Any = None  # drivers.sip.uac.UacLeg once the INVITE went out
        self.stream: Any = None  # drivers.sip.media.RtpStream (bound before the INVITE)
        self.ringing = False  # a provisional response came
        self.on_hold = False

    async def answer(self) -> None:
        """Wait until the far end answers (the engine cannot answer a leg it placed)."""
        if self.answered_at is None:
            answered = self.loop.create_future()

            def on_event(event: Any) -> None:
                if event.kind in ("answer", "hangup") and not answered.done():
                    answered.set_result(None)

            unsubscribe = self.subscribe(on_event)
            try:
                if self.answered_at is None and self._cause is None:
                    await answered
            finally:
                unsubscribe()
        self._check()

    async def hangup(self, cause: HangupCause = HangupCause.NORMAL) -> None:
        """CANCEL before the answer, BYE after it."""
        if self._cause is None:
            self.endpoint.outbound.hangup(self)
            self.ended(cause)

    async def hold(self) -> None:
        """re-INVITE ``sendonly``: the far end stops hearing the engine."""
        self._check()
        self.endpoint.outbound.reinvite(self, hold=True)

    async def resume(self) -> None:
        """re-INVITE ``sendrecv``."""
        self._check()
        self.endpoint.outbound.reinvite(self, hold=False)

    # --- called by the endpoint --------------------------------------------------------------
    def far_end_ringing(self) -> None:
        if not self.ringing and self._cause is None:
            self.ringing = True
            self._emit("ring", count=1)

    def far_end_answered(self) -> None:
        if self.answered_at is None and self._cause is None:
            self.answered_at = self.loop.time()
            self._emit("answer")
