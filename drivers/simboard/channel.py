"""The `Channel` implementation for a line of the simulated board.

Everything a call does with its audio (play, collect, record, bridge, the digit buffer) is
shared with SIP in :class:`~drivers.media_channel.MediaChannel`; a board line adds how it
answers and hangs up (going off-hook / on-hook through the board) and tells the line's far end
what is being played, which is how a tester's transcript knows what the caller heard.
"""

from __future__ import annotations

import itertools
from typing import Any

from drivers.channel import HangupCause, Playable
from drivers.media_channel import MediaChannel

_call_numbers = itertools.count(1)


class SimChannel(MediaChannel):
    """A call on one line of the simulated board."""

    def __init__(self, board: Any, line: Any, caller: str, called: str) -> None:
        super().__init__(
            channel_id=f"sim:{line.name}",
            call_id=f"{board.name}-{line.name}-{next(_call_numbers):06d}",
            caller=caller,
            called=called,
            line=line.name,
        )
        self.board = board
        self.line_obj = line
        # caller ID on a trunk comes from the exchange (FSK after the first ring)
        self.caller_verified = line.kind == "trunk"
        self.rings = 0

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

    def _heard_start(self, item: Playable) -> None:
        self.board.far_end_hears_start(self, item)

    def _heard_end(self, item: Playable, interrupted: bool) -> None:
        self.board.far_end_hears_end(self, item, interrupted)
