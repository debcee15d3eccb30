"""The `Channel` implementation for a call that reached the engine over SIP.

A :class:`SipChannel` is a :class:`~drivers.media_channel.MediaChannel`, like the simulated
board's channel, so termination reasons, barge-in, the type-ahead digit buffer and the
swallowed trailing ``#`` behave identically: the media plane's 20 ms tick calls
``operation.frame_out()`` / ``frame_in()`` exactly as the board's does, and digits (RFC 4733
or in-band) arrive through :meth:`SipChannel.digit_detected`.
Signalling (200 OK, BYE) goes through the :class:`~drivers.sip.transport.SipEndpoint`.
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
