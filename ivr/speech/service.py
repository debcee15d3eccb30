"""The engine's speech: prompt ids and Chinese text in, :class:`Playable` audio out.

:class:`SpeechService` implements :class:`ivr.ports.Speech`:

- ``prompt(prompt_id, text)`` plays the operator's recording for ``prompt_id`` when there is
  one, else the cached TTS of ``text`` (pre-encoded per codec).
- ``readout(text)`` speaks a rendered template such as "您的账户欠费三十五元二角，请及时缴费".
  In ``"units"`` mode the numeric stretches are composed from recorded units and the words
  around them are synthesized through the prompt cache (they repeat from call to call, so
  they are cached on disk); in ``"tts"`` mode the whole text is synthesized and kept in
  memory only (it holds the caller's figures, so caching it on disk would grow without end).

A stretch is composed from units only when it contains a numeral: unit characters inside
ordinary words (按时, 日期, 十分) stay with the words and go to TTS.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import numpy as np

from drivers.channel import Playable
from ivr.speech.prompts import CachedAudio, PromptCache, RecordedPrompts, WarmReport
from ivr.speech.tts import TtsEngine
from ivr.speech.units import Run, UnitVoice

__all__ = ["NUMERALS", "ReadoutMode", "SpeechService"]

ReadoutMode = Literal["units", "tts"]

#: Characters that mark a stretch of unit-composable text as a spoken number.
NUMERALS = frozenset("零〇一幺二两三四五六七八九十百千万亿")


class SpeechService:
    """Prompts and read-outs from recordings, recorded units and cached TTS."""

    def __init__(
        self,
        engine: TtsEngine,
        cache_dir: str | Path,
        recorded_dir: str | Path | None = None,
        units: UnitVoice | None = None,
        readout_mode: ReadoutMode = "units",
    ) -> None:
        if readout_mode not in ("units", "tts"):
            raise ValueError(f"readout_mode must be 'units' or 'tts', not {readout_mode!r}")
        self.cache = PromptCache(cache_dir, engine)
        self.recorded = RecordedPrompts(recorded_dir) if recorded_dir is not None else None
        self.units = units
        self.readout_mode: ReadoutMode = readout_mode

    async def prompt(self, prompt_id: str, text: str) -> Playable:
        """The recording that overrides ``prompt_id``, else ``text`` through the TTS cache."""
        entry = await self.recorded.fetch(prompt_id) if self.recorded is not None else None
        if entry is None:
            entry = await self.cache.fetch(text)
        return Playable(
            entry.samples,
            text=text,
            prompt_id=prompt_id,
            kind="prompt",
            encoded=dict(entry.encoded),
        )

    async def readout(self, text: str) -> Playable:
        """Dynamic text: numbers from units (``"units"`` mode), the rest from cached TTS."""
        if self.readout_mode == "tts" or self.units is None:
            if not _speakable(text):  # an empty slot: nothing to say, not an engine error
                return Playable(np.zeros(0, dtype=np.int16), text=text, kind="readout")
            entry = await self.cache.fetch(text, persist=False)
            return Playable(entry.samples, text=text, kind="readout", encoded=dict(entry.encoded))
        pieces = self._plan(text)
        spoken = await asyncio.gather(*(self._speak(run) for run in pieces))
        if len(spoken) == 1 and isinstance(spoken[0], CachedAudio):
            entry = spoken[0]
            return Playable(entry.samples, text=text, kind="readout", encoded=dict(entry.encoded))
        parts = [s.samples if isinstance(s, CachedAudio) else s for s in spoken]
        samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        return Playable(samples, text=text, kind="readout")

    async def warm(self, prompts: dict[str, str], progress: bool = True) -> WarmReport:
        """Prepare every prompt (id → text): load recordings, synthesize the rest into the cache."""
        to_synthesize = []
        recorded = 0
        for prompt_id, text in prompts.items():
            if self.recorded is not None and await self.recorded.fetch(prompt_id) is not None:
                recorded += 1
            else:
                to_synthesize.append(text)
        report = await self.cache.warm(to_synthesize, progress=progress)
        report.total += recorded
        return report

    def _plan(self, text: str) -> list[Run]:
        """Runs to compose from units (those holding a numeral) and runs to synthesize."""
        assert self.units is not None
        plan: list[Run] = []
        for run in self.units.split(text):
            composable = run.composable and not NUMERALS.isdisjoint(run.text)
            if plan and not plan[-1].composable and not composable:
                plan[-1] = Run(plan[-1].text + run.text, False)
            else:
                plan.append(Run(run.text, composable))
        return plan

    async def _speak(self, run: Run) -> np.ndarray | CachedAudio:
        if run.composable:
            assert self.units is not None
            samples = self.units.compose(run.text)
            assert samples is not None  # split() said every character has a unit
            return samples
        if not _speakable(run.text):
            return np.zeros(0, dtype=np.int16)  # stray punctuation or spaces between numbers
        return await self.cache.fetch(run.text)


def _speakable(text: str) -> bool:
    """Whether ``text`` has anything a TTS engine would pronounce."""
    return any(c.isalnum() for c in text)
