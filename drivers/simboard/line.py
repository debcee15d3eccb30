"""One analog line of the simulated board, and the far end (the PSTN side) attached to it.

A :class:`SimLine` is either a **trunk** (FXO: callers from the exchange come in here) or a
**station** (FXS: an agent's analog phone hangs here). Its :class:`FarEnd` is what a tester
drives: ring the line with a caller number, send audio (key presses are sent as in-band DTMF
tones, never as events), hang up by one of the three signals an exchange gives, and read what
the engine played with its transcript.

Hangup signals (DESIGN §3 "Hangup on analog lines"):

- ``loop``: loop current drops; the board notices after ``loop_drop_ms`` of open loop.
- ``busy``: the exchange plays busy tone (450 Hz 350/350 ms) into the line; the engine only
  notices when its call-progress detector has counted ``busy_cycles`` cycles.
- ``polarity``: battery polarity reversal, noticed at once.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivers.channel import FRAME_SAMPLES

SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)


class LineKind(enum.StrEnum):
    TRUNK = "trunk"
    STATION = "station"


class HangupSignal(enum.StrEnum):
    LOOP = "loop"
    BUSY = "busy"
    POLARITY = "polarity"


class LineState(enum.StrEnum):
    IDLE = "idle"
    RINGING = "ringing"  # far end is calling us (trunk) / we ring the phone (station)
    CONNECTED = "connected"
    CLEARING = "clearing"  # far end has gone; the engine has not noticed yet (busy tone)


@dataclass(slots=True)
class LineConfig:
    """Per-line behaviour of the exchange (or phone) on the other side."""

    hangup_signal: HangupSignal = HangupSignal.LOOP
    busy_cycles: int = 3
    loop_drop_ms: int = 300
    ring_on_ms: int = 1000
    ring_off_ms: int = 4000
    noise_dbm0: float | None = None  # line noise on the caller's audio, None for none


@dataclass(slots=True)
class Heard:
    """One item the engine played to the far end, as the tester hears it."""

    text: str
    prompt_id: str | None
    kind: str
    start: float  # loop time the first frame reached the far end
    end: float | None = None
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "prompt_id": self.prompt_id,
            "kind": self.kind,
            "start": round(self.start, 3),
            "end": None if self.end is None else round(self.end, 3),
            "interrupted": self.interrupted,
        }


class AudioQueue:
    """Audio waiting to be sent, pulled 20 ms at a time; silence when empty."""

    def __init__(self) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self._offset = 0
        self._drained: list[asyncio.Future[None]] = []

    def push(self, samples: np.ndarray) -> None:
        if len(samples):
            self._chunks.append(np.asarray(samples, dtype=np.int16))

    def clear(self) -> None:
        self._chunks.clear()
        self._offset = 0
        self._wake()

    @property
    def pending(self) -> int:
        return sum(len(c) for c in self._chunks) - self._offset

    def pull(self, n: int = FRAME_SAMPLES) -> np.ndarray | None:
        """Next ``n`` samples, or None when nothing is queued."""
        if not self._chunks:
            return None
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n and self._chunks:
            chunk = self._chunks[0]
            take = min(n - filled, len(chunk) - self._offset)
            out[filled : filled + take] = chunk[self._offset : self._offset + take]
            filled += take
            self._offset += take
            if self._offset >= len(chunk):
                self._chunks.popleft()
                self._offset = 0
        if not self._chunks:
            self._wake()
        return out

    def drained(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._chunks:
            fut.set_result(None)
        else:
            self._drained.append(fut)
        return fut

    def _wake(self) -> None:
        for fut in self._drained:
            if not fut.done():
                fut.set_result(None)
        self._drained.clear()


@dataclass(slots=True)
class FarEndCall:
    """What the far end knows about the current call on its line."""

    caller: str
    called: str
    started: float
    answered: float | None = None
    ended: float | None = None
    end_reason: str | None = None  # "far_end_hangup:<signal>" | "engine_hangup" | "abandoned"
    heard: list[Heard] = field(default_factory=list)
    captured: list[np.ndarray] = field(default_factory=list)


class FarEnd:
    """The tester's handle on one line (see the module docstring).

    Methods are plain (non-async) and take effect at the next media tick; use
    :meth:`wait_for` to wait for a condition (answered, a prompt heard, call ended).
    """

    def __init__(self, line: SimLine) -> None:
        self.line = line
        self.outgoing = AudioQueue()
        self.call: FarEndCall | None = None
        self.capture_audio = False
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []

    # --- actions ------------------------------------------------------------------
    def ring(self, caller: str, called: str = "95598") -> FarEndCall:
        """Call in on this trunk line."""
        self.call = FarEndCall(caller, called, self.line.now())
        self.outgoing.clear()
        self.line.far_end_rings(caller, called)
        return self.call

    def send(self, samples: np.ndarray) -> asyncio.Future[None]:
        """Queue audio (voice, tones) toward the engine; the future resolves when sent."""
        self.outgoing.push(samples)
        return self.outgoing.drained()

    def off_hook(self) -> None:
        """Answer (a station phone being rung by the engine)."""
        self.line.far_end_off_hook()

    def hang_up(self, signal: HangupSignal | str | None = None) -> None:
        signal = HangupSignal(signal) if signal else self.line.config.hangup_signal
        self.outgoing.clear()
        self.line.far_end_hangs_up(signal)

    # --- what the engine did --------------------------------------------------------
    def notify(self, kind: str, **data: Any) -> None:
        call = self.call
        if call is not None:
            now = self.line.now()
            if kind == "answered":
                call.answered = now
            elif kind == "ended":
                call.ended = now
                call.end_reason = data.get("reason")
                self.outgoing.clear()  # nothing more goes down this line; wake any sender
            elif kind == "heard":
                call.heard.append(data["item"])
        for listener in list(self.listeners):
            listener(kind, data)
        self._check_waiters()

    def hear_frame(self, frame: np.ndarray) -> None:
        if self.capture_audio and self.call is not None:
            self.call.captured.append(frame.copy())

    def heard_audio(self) -> np.ndarray:
        if self.call is None or not self.call.captured:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self.call.captured)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (loop time) until ``predicate()`` holds; False on timeout."""
        if predicate():
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _check_waiters(self) -> None:
        for predicate, fut in list(self._waiters):
            if not fut.done() and predicate():
                fut.set_result(None)


class SimLine:
    """Line state shared by the board (engine side) and the far end (tester side)."""

    def __init__(
        self,
        number: int,
        kind: LineKind,
        config: LineConfig,
        now: Callable[[], float],
        board_hooks: Any,
    ) -> None:
        self.number = number
        self.kind = kind
        self.name = f"{'t' if kind is LineKind.TRUNK else 's'}{number}"
        self.config = config
        self.now = now
        self.state = LineState.IDLE
        self.in_service = True  # False: no phone on the line (unplugged), see set_in_service
        self.far_end = FarEnd(self)
        self._board = board_hooks
        self.index = -1  # row in the board's media arrays, set by the board

    def far_end_rings(self, caller: str, called: str) -> None:
        if self.kind is not LineKind.TRUNK:
            raise ValueError(f"line {self.name} is a station line; callers ring trunk lines")
        if self.state is not LineState.IDLE:
            raise RuntimeError(f"line {self.name} is busy ({self.state})")
        self.state = LineState.RINGING
        self._board.line_rings(self, caller, called)

    def far_end_off_hook(self) -> None:
        self._board.station_answered(self)

    def far_end_hangs_up(self, signal: HangupSignal) -> None:
        if self.state is LineState.IDLE:
            return
        self._board.far_end_hung_up(self, signal)
