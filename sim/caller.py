"""A scripted caller on a simulated board line: dial, listen, press keys, speak, hang up.

A :class:`Caller` works the same in-process (a test holding the engine's board) and against
a running engine over the board's control socket (see :mod:`sim.remote`): both give it a
*line handle* with the few primitives below. Key presses always travel as DTMF tones in the
audio; the engine has to detect them like a voice card would.

What the caller heard comes back as a transcript (prompt id + text per item played, with
start/end times and whether it was cut short by a key press). :meth:`Caller.expect` walks that
transcript in order with a cursor, so a scenario reads like the call.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from drivers.media.tones import dtmf_sequence
from drivers.media.wav import read_wav
from drivers.simboard.line import FarEnd, HangupSignal, SimLine


class ExpectationFailed(AssertionError):
    """What the caller heard (or did not hear) differs from what the scenario expected."""


class LineHandle(Protocol):
    """The primitives a caller needs from its line (local far end or remote socket)."""

    async def ring(self, caller: str, called: str) -> None: ...
    async def send_audio(self, samples: np.ndarray) -> None: ...
    async def hang_up(self, signal: str | None) -> None: ...
    def heard(self) -> list[dict[str, Any]]: ...
    def status(self) -> dict[str, Any]: ...
    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool: ...


class LocalLine:
    """A line handle on a line of an in-process board (driven through its far end)."""

    def __init__(self, line: SimLine) -> None:
        self.far_end: FarEnd = line.far_end

    async def ring(self, caller: str, called: str) -> None:
        self.far_end.ring(caller, called)

    async def send_audio(self, samples: np.ndarray) -> None:
        await self.far_end.send(samples)

    async def hang_up(self, signal: str | None) -> None:
        self.far_end.hang_up(signal)

    def heard(self) -> list[dict[str, Any]]:
        call = self.far_end.call
        return [h.to_dict() for h in call.heard] if call else []

    def status(self) -> dict[str, Any]:
        call = self.far_end.call
        if call is None:
            return {"state": "idle"}
        return {
            "state": "ended"
            if call.ended is not None
            else "connected"
            if call.answered is not None
            else "ringing",
            "answered": call.answered,
            "ended": call.ended,
            "end_reason": call.end_reason,
        }

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return await self.far_end.wait_for(predicate, timeout)


class Caller:
    """A person calling the hotline, scripted."""

    def __init__(
        self,
        line: LineHandle,
        *,
        key_on_ms: int = 100,
        key_off_ms: int = 100,
        key_dbm0: float = -10.0,
    ) -> None:
        self.line = line
        self.cursor = 0
        self.key_on_ms = key_on_ms
        self.key_off_ms = key_off_ms
        self.key_dbm0 = key_dbm0

    # --- actions ------------------------------------------------------------------------
    async def dial(
        self, caller: str, called: str = "95598", *, answer_timeout: float = 30.0
    ) -> None:
        """Ring the line and wait until the engine answers."""
        self.cursor = 0
        await self.line.ring(caller, called)
        ok = await self.line.wait_for(
            lambda: self.line.status().get("answered") is not None, answer_timeout
        )
        if not ok:
            raise ExpectationFailed(f"the engine did not answer within {answer_timeout:g} s")

    async def press(self, digits: str) -> None:
        """Press keys: DTMF tones in the audio. Returns when the last tone has been sent."""
        bad = [d for d in digits if d not in "0123456789*#ABCD"]
        if bad:
            raise ValueError(f"not a telephone key: {''.join(bad)!r}")
        self._check_connected("press keys")
        await self.line.send_audio(
            dtmf_sequence(digits, on_ms=self.key_on_ms, off_ms=self.key_off_ms, dbm0=self.key_dbm0)
        )

    async def speak(self, path: str | Path) -> None:
        """Play a WAV file (8 kHz mono 16-bit) as the caller's voice."""
        samples, _ = read_wav(path, require_rate=8000)
        self._check_connected("speak")
        await self.line.send_audio(samples)

    async def silence(self, seconds: float) -> None:
        """Say nothing for a while (the line carries silence)."""
        await self.line.send_audio(np.zeros(int(seconds * 8000), dtype=np.int16))

    async def hang_up(self, signal: HangupSignal | str | None = None) -> None:
        """Put the phone down; the line reports it by its signal (loop, busy, polarity)."""
        await self.line.hang_up(str(signal) if signal else None)

    # --- listening -----------------------------------------------------------------------
    @property
    def transcript(self) -> list[dict[str, Any]]:
        return self.line.heard()

    def transcript_text(self) -> list[str]:
        return [item["text"] for item in self.transcript]

    async def expect(
        self, text: str = "", *, prompt_id: str | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Wait for the next item heard (after the cursor) containing ``text``.

        Items heard in between are skipped; the cursor moves past the match.
        """

        def find() -> int | None:
            heard = self.line.heard()
            for i in range(self.cursor, len(heard)):
                item = heard[i]
                if text in item["text"] and (prompt_id is None or item["prompt_id"] == prompt_id):
                    return i
            return None

        found = await self.line.wait_for(lambda: find() is not None, timeout)
        index = find()
        if not found or index is None:
            heard = self.line.heard()[self.cursor :]
            said = " | ".join(item["text"] for item in heard) or "(nothing)"
            what = f"{text!r}" + (f" (prompt {prompt_id})" if prompt_id else "")
            raise ExpectationFailed(f"expected to hear {what} within {timeout:g} s; heard: {said}")
        self.cursor = index + 1
        return self.line.heard()[index]

    async def expect_hangup(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the call to end (the engine hung up, or the caller's hangup took effect)."""
        ok = await self.line.wait_for(lambda: self.line.status().get("ended") is not None, timeout)
        if not ok:
            raise ExpectationFailed(f"the call did not end within {timeout:g} s")
        return self.line.status()

    async def wait_quiet(self, timeout: float = 30.0) -> None:
        """Wait until whatever is playing now has finished."""

        def quiet() -> bool:
            heard = self.line.heard()
            return (
                not heard
                or heard[-1]["end"] is not None
                or self.line.status().get("ended") is not None
            )

        await self.line.wait_for(quiet, timeout)

    def _check_connected(self, action: str) -> None:
        if self.line.status().get("state") != "connected":
            raise ExpectationFailed(
                f"cannot {action}: the call is {self.line.status().get('state')}"
            )
