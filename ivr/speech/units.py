"""Recorded-unit read-outs: numbers, amounts and dates spoken by joining short recordings.

Production sites prefer a human voice reading ~35 units (零–九, 幺, 两, 十百千万亿, 点, 元角分整,
年月日…) to a synthetic voice. :class:`UnitVoice` loads such a set from a directory with a
manifest ``units.yaml`` (unit text → file name, WAV or MP3, any rate) and composes any output of
:mod:`ivr.speech.readout` (every kind but ``text``) by greedy longest match, with a small gap
between units and a short pause for "，". :meth:`UnitVoice.compose` returns None when a
character has no unit, so the caller falls back to TTS.

The set shipped in ``ivr/speech/units/`` was generated with espeak-ng by
:func:`generate_units`; replace it with studio recordings by keeping the manifest and dropping
in new files (see ``docs/speech.md``).
"""

from __future__ import annotations

import asyncio
import re
import wave
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog
import yaml

from drivers.channel import SAMPLE_RATE
from ivr.speech import readout
from ivr.speech.audio import AudioFileError, load_file, silence, trim_silence
from ivr.speech.tts import TtsEngine

__all__ = [
    "DEFAULT_DIRECTORY",
    "DEFAULT_UNITS",
    "MANIFEST",
    "PAUSES",
    "Run",
    "UnitVoice",
    "UnitsError",
    "generate_units",
]

MANIFEST = "units.yaml"
DEFAULT_DIRECTORY = Path(__file__).with_name("units")

#: The unit set: what each recording says → its file name. Covers every read-out kind.
DEFAULT_UNITS: dict[str, str] = {
    "零": "d0.wav", "〇": "o.wav", "一": "d1.wav", "幺": "yao.wav", "二": "d2.wav",
    "两": "liang.wav", "三": "d3.wav", "四": "d4.wav", "五": "d5.wav", "六": "d6.wav",
    "七": "d7.wav", "八": "d8.wav", "九": "d9.wav",
    "十": "shi.wav", "百": "bai.wav", "千": "qian.wav", "万": "wan.wav", "亿": "yi.wav",
    "点": "dian.wav", "负": "fu.wav", "百分之": "baifenzhi.wav",
    "元": "yuan.wav", "角": "jiao.wav", "分": "fen.wav", "整": "zheng.wav",
    "余额": "yue.wav", "欠费": "qianfei.wav",
    "年": "nian.wav", "月": "month.wav", "日": "ri.wav", "号": "hao.wav",
    "时": "hour.wav", "秒": "miao.wav",
}  # fmt: skip

#: Punctuation composed as silence (seconds); other punctuation has no unit.
PAUSES: dict[str, float] = {
    "，": 0.25, ",": 0.25, "、": 0.2, "；": 0.3, ";": 0.3, "：": 0.2, "。": 0.4,
}  # fmt: skip

_FILE_NAME = re.compile(r"[A-Za-z0-9_.-]+")

#: Read-outs that together use every unit a complete set needs; checked when a set loads.
_COVERAGE = (
    readout.amount("-1234567.89"),
    readout.amount("20000.05"),
    readout.balance("-12.3"),
    readout.balance("3"),
    readout.number("-3.14"),
    readout.integer(2_0000_0000),
    readout.phone("13800010000"),
    readout.date("2026-10-30"),
    readout.time("02:05:09"),
    readout.percent("-99.5"),
)

log = structlog.get_logger(__name__)


class UnitsError(ValueError):
    """A unit set that cannot be loaded (manifest or file problem)."""


@dataclass(frozen=True, slots=True)
class Run:
    """A stretch of text that units can (``composable``) or cannot speak."""

    text: str
    composable: bool


class UnitVoice:
    """A set of recorded units and the composition of read-outs from them."""

    def __init__(
        self, directory: str | Path = DEFAULT_DIRECTORY, *, gap: float = 0.02, trim: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.gap = gap
        manifest = _read_manifest(self.directory)
        self.units: dict[str, np.ndarray] = {}
        for text, name in manifest.items():
            try:
                samples = load_file(self.directory / name)
            except (AudioFileError, FileNotFoundError) as exc:
                raise UnitsError(
                    f"unit {text!r}: cannot load {self.directory / name}: {exc}"
                ) from exc
            if trim:
                samples = trim_silence(samples)
            if samples.size == 0:
                raise UnitsError(f"unit {text!r}: {self.directory / name} is silent")
            samples.flags.writeable = False
            self.units[text] = samples
        self._longest = max(map(len, self.units))
        self._gap = silence(gap)
        self._pauses = {mark: silence(seconds) for mark, seconds in PAUSES.items()}
        missing = sorted({c for r in _COVERAGE for run in self.split(r) if not run.composable
                          for c in run.text})  # fmt: skip
        if missing:
            log.warning("units.incomplete", directory=str(self.directory), missing="".join(missing))

    @classmethod
    def shipped(cls) -> UnitVoice:
        """The espeak-generated set shipped with the engine."""
        return cls(DEFAULT_DIRECTORY)

    def _tokens(self, text: str) -> Iterable[tuple[str, bool]]:
        """(token, known) pairs by greedy longest match; pauses and spaces count as known."""
        i, n = 0, len(text)
        while i < n:
            for length in range(min(self._longest, n - i), 0, -1):
                piece = text[i : i + length]
                if piece in self.units:
                    yield piece, True
                    i += length
                    break
            else:
                char = text[i]
                yield char, char in self._pauses or char.isspace()
                i += 1

    def split(self, text: str) -> list[Run]:
        """``text`` cut into maximal runs that units can and cannot speak."""
        runs: list[Run] = []
        for token, known in self._tokens(text):
            if runs and runs[-1].composable == known:
                runs[-1] = Run(runs[-1].text + token, known)
            else:
                runs.append(Run(token, known))
        return runs

    def compose(self, text: str) -> np.ndarray | None:
        """``text`` spoken from units (8 kHz int16), or None if some character has no unit."""
        parts: list[np.ndarray] = []
        previous_unit = False
        for token, known in self._tokens(text):
            if not known:
                return None
            unit = self.units.get(token)
            if unit is not None:
                if previous_unit:
                    parts.append(self._gap)
                parts.append(unit)
                previous_unit = True
            elif token in self._pauses:
                parts.append(self._pauses[token])
                previous_unit = False
        if not parts:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(parts)

    def can_compose(self, text: str) -> bool:
        return all(known for _, known in self._tokens(text))


def _read_manifest(directory: Path) -> dict[str, str]:
    path = directory / MANIFEST
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnitsError(f"{path}: unit manifest not found") from None
    except yaml.YAMLError as exc:
        raise UnitsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise UnitsError(f"{path}: expected a mapping of unit text to file name")
    manifest: dict[str, str] = {}
    for text, name in data.items():
        if not isinstance(text, str) or not text.strip():
            raise UnitsError(f"{path}: unit {text!r} must be non-empty text (quote digits)")
        if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or ".." in name:
            raise UnitsError(
                f"{path}: unit {text!r}: file {name!r} must be a plain file name in {directory}"
            )
        manifest[text] = name
    return manifest


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.astype("<i2").tobytes())


def _manifest_text(units: Mapping[str, str]) -> str:
    lines = [
        "# Read-out units: what each recording says -> its file (WAV or MP3, any rate, mono).",
        "# Replace the files with studio recordings of the same words; keep this mapping.",
    ]
    lines += [f'"{text}": {name}' for text, name in units.items()]
    return "\n".join(lines) + "\n"


async def generate_units(
    directory: str | Path, engine: TtsEngine, units: Mapping[str, str] = DEFAULT_UNITS
) -> Path:
    """Synthesize every unit with ``engine`` into ``directory`` (8 kHz 16-bit mono WAVs,
    silence trimmed) and write the manifest; returns the manifest's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    slots = asyncio.Semaphore(4)

    async def speak(text: str) -> np.ndarray:
        async with slots:
            return await engine.synthesize(text)

    spoken = await asyncio.gather(*(speak(text) for text in units))
    for name, samples in zip(units.values(), spoken, strict=True):
        _write_wav(directory / name, trim_silence(samples))
    manifest = directory / MANIFEST
    manifest.write_text(_manifest_text(units), encoding="utf-8")
    return manifest
