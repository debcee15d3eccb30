"""The `Channel` API: what a flow can do with one call leg, whatever the driver.

Every operation completes with a :class:`Result` whose :class:`Reason` says why it ended, in
the voice-card tradition (Dialogic's ``TM_*`` termination masks): the caller pressed a
terminating digit, the maximum number of digits arrived, a timer expired, the line went quiet,
the caller hung up, or someone stopped the operation. Flows branch on these reasons, so a
flow behaves the same on the simulated board and on SIP.

Digits are buffered per channel like on a voice card: keys pressed while a prompt is playing
stay in the buffer (type-ahead) and are consumed by the next ``collect``.

Two legs of the same driver can be *bridged* (:meth:`Channel.bridge`): their audio flows both
ways until either side hangs up. Bridging is optional for a driver; one that cannot bridge
raises :class:`NotImplementedError`.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz: the media clock's tick


class Reason(enum.StrEnum):
    """Why a channel operation ended."""

    DONE = "done"  # played to the end / operation completed
    DIGIT = "digit"  # a terminating (or barge-in) digit arrived
    MAX_DIGITS = "max_digits"
    FIRST_DIGIT_TIMEOUT = "first_digit_timeout"  # nothing pressed at all
    INTERDIGIT_TIMEOUT = "interdigit_timeout"
    MAX_TIME = "max_time"
    SILENCE = "silence"
    HANGUP = "hangup"
    STOPPED = "stopped"


class HangupCause(enum.StrEnum):
    """How a call ended, as the driver saw it."""

    NORMAL = "normal"  # the engine hung up
    LOOP_CURRENT_DROP = "loop_current_drop"  # analog: loop current went away
    BUSY_TONE = "busy_tone"  # analog: the exchange played busy/disconnect tone
    POLARITY_REVERSAL = "polarity_reversal"  # analog: battery reversal
    REMOTE_BYE = "remote_bye"  # SIP: the other side sent BYE
    CANCELLED = "cancelled"  # given up before answer
    GUARD = "guard"  # a call-duration or step guard fired
    ERROR = "error"
    SESSION_EXPIRED = "session_expired"  # SIP: the session was not refreshed (RFC 4028)


class HungUp(Exception):
    """Raised by channel operations started after the call has ended."""

    def __init__(self, cause: HangupCause) -> None:
        super().__init__(f"channel hung up ({cause})")
        self.cause = cause


@dataclass(slots=True)
class Result:
    """How a channel operation ended."""

    reason: Reason
    digits: str = ""  # digits collected (collect) or the terminating/barge-in digit
    duration: float = 0.0  # seconds the operation ran (record: seconds recorded)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class Playable:
    """Audio ready to play: 8 kHz mono int16 samples plus what they say.

    ``prompt_id`` and ``text`` travel with the audio so that transcripts (the tester's view,
    the CDR's flow path) can say what the caller heard. ``encoded`` holds the same audio
    pre-encoded per codec (``"pcmu"``, ``"pcma"``), filled by the prompt cache so playing a
    cached prompt costs no conversion.
    """

    samples: np.ndarray
    text: str = ""
    prompt_id: str | None = None
    kind: str = "prompt"  # "prompt" (static), "readout" (dynamic text), "file", "tone"
    encoded: dict[str, bytes] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(slots=True)
class ChannelEvent:
    """Something that happened on a channel (ring, answer, digit, tone, hangup, play…)."""

    kind: str  # "ring" | "answer" | "digit" | "tone" | "hangup" | "play_start" | "play_end" …
    channel_id: str
    time: float  # loop time
    data: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[ChannelEvent], None]


class Channel(abc.ABC):
    """One call leg on a driver. Implemented by the simulated board and by SIP."""

    channel_id: str  # stable id of the line / leg, e.g. "sim:t3"
    call_id: str  # unique per call, bound into every log line
    caller: str  # calling number (caller ID), "" when withheld
    called: str  # called number / DNIS
    line: str  # line or trunk name used to choose the flow
    # True when the calling number was delivered by a network the engine trusts (an exchange
    # trunk's caller ID), False when anyone could have written it (an unauthenticated SIP
    # From header). The engine never dials a number that is not verified (toll fraud).
    caller_verified: bool = False

    @property
    @abc.abstractmethod
    def hung_up(self) -> bool: ...

    @property
    @abc.abstractmethod
    def hangup_cause(self) -> HangupCause | None: ...

    @abc.abstractmethod
    async def answer(self) -> None:
        """Go off-hook / send 200 OK. Raises :class:`HungUp` if the caller already left."""

    @abc.abstractmethod
    async def hangup(self, cause: HangupCause = HangupCause.NORMAL) -> None:
        """End the call. Idempotent."""

    @abc.abstractmethod
    async def play(
        self,
        items: Sequence[Playable],
        *,
        barge_in: str = "",
        max_time: float | None = None,
    ) -> Result:
        """Play items back to back.

        Ends with DONE at the end of the audio; DIGIT when a key in ``barge_in`` is pressed
        (the digit stays in the buffer for the next collect; ``"any"`` means any key);
        MAX_TIME; HANGUP; STOPPED.
        """

    @abc.abstractmethod
    async def collect(
        self,
        *,
        max_digits: int,
        terminators: str = "#",
        first_timeout: float = 5.0,
        inter_timeout: float = 3.0,
        max_time: float | None = None,
    ) -> Result:
        """Collect digits from the buffer and the line.

        Ends with MAX_DIGITS, DIGIT (a terminator; not included in ``digits`` and reported in
        ``detail["terminator"]``), FIRST_DIGIT_TIMEOUT, INTERDIGIT_TIMEOUT, MAX_TIME, HANGUP or
        STOPPED. ``digits`` holds whatever was collected in every case.

        Callers often finish a full-length entry with the terminator anyway ("1234567890#"):
        when MAX_DIGITS ends the collect and ``terminators`` is not empty, one terminator
        pressed within ``inter_timeout`` afterwards is swallowed instead of being buffered.
        """

    @abc.abstractmethod
    async def record(
        self,
        path: str,
        *,
        max_time: float = 60.0,
        max_silence: float | None = 5.0,
        terminators: str = "#",
        beep: bool = True,
    ) -> Result:
        """Record the caller to a WAV file at ``path`` (8 kHz mono 16-bit).

        Ends with DIGIT, MAX_TIME, SILENCE (trailing silence is trimmed), HANGUP (what was
        recorded is kept) or STOPPED. ``duration`` is the seconds kept.
        """

    async def bridge(self, other: Channel, *, max_time: float | None = None) -> Result:
        """Connect this leg with ``other`` so each side hears the other, until it ends.

        Both legs keep their recordings (this leg's far end on the left, ``other``'s voice on
        the right). Keys pressed while bridged stay in each leg's buffer. Ends, for both legs,
        with HANGUP when either side hangs up (``detail["hung_up"]`` is the ``channel_id`` of
        the leg that left, ``detail["cause"]`` its :class:`HangupCause`), STOPPED when
        :meth:`stop` is called on either leg (or the waiting task is cancelled), or MAX_TIME.
        Neither leg is hung up by the bridge ending. Raises :class:`ValueError` if ``other``
        belongs to another driver or board, :class:`NotImplementedError` if the driver cannot
        bridge.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot bridge calls")

    @abc.abstractmethod
    def clear_digits(self) -> None:
        """Drop any type-ahead digits."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the running play/collect/record; it ends with STOPPED."""

    @abc.abstractmethod
    def subscribe(self, sink: EventSink) -> Callable[[], None]:
        """Receive this channel's events; returns a function that unsubscribes."""
