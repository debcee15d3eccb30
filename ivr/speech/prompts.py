"""Static prompts: synthesized once and cached on disk and in memory, or recorded by operators.

:class:`PromptCache` keys each text by the sha256 of (text, engine name, engine version, voice
settings, cache format). On disk an entry is four files under ``<cache_dir>/<key[:2]>/``::

    <key>.pcmu  <key>.pcma   the audio pre-encoded for G.711 μ-law / A-law
    <key>.json               what it says and which engine made it (for operators)
    <key>.s16                raw 8 kHz int16 little-endian, written last: the entry is complete

In memory a hit is one dict lookup by text. Concurrent requests for the same text share one
synthesis. Texts fetched with ``persist=False`` (dynamic read-outs) stay in memory only and are
evicted oldest-first past ``memory_limit`` bytes; warmed prompts are never evicted.

:class:`RecordedPrompts` serves ``<prompt_id>.wav`` / ``.mp3`` files operators drop into a
directory to replace the synthesized prompt with that id; a replaced file is picked up on the
next play.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import structlog

from ivr.speech.audio import AudioFileError, encode_all, load_file
from ivr.speech.tts import TtsEngine, TtsError

__all__ = [
    "CACHE_FORMAT",
    "CachedAudio",
    "PromptCache",
    "PromptIdError",
    "RecordedPrompts",
    "WarmReport",
]

CACHE_FORMAT = 1  # bump when the stored audio changes meaning (levelling, rate, layout)
CODECS = ("pcmu", "pcma")

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CachedAudio:
    """8 kHz int16 samples (read-only) and the same audio pre-encoded per codec."""

    samples: np.ndarray
    encoded: Mapping[str, bytes]

    @staticmethod
    def of(samples: np.ndarray, encoded: Mapping[str, bytes] | None = None) -> CachedAudio:
        samples = np.ascontiguousarray(samples, dtype=np.int16)
        samples.flags.writeable = False
        return CachedAudio(samples, encoded if encoded is not None else encode_all(samples))

    @property
    def nbytes(self) -> int:
        return self.samples.nbytes + sum(len(b) for b in self.encoded.values())


@dataclass(slots=True)
class WarmReport:
    """What :meth:`PromptCache.warm` did: how many texts, and where each came from."""

    total: int = 0
    synthesized: int = 0
    from_disk: int = 0
    in_memory: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)


class PromptCache:
    """TTS audio cached by text, on disk (survives restarts) and in memory."""

    def __init__(
        self,
        cache_dir: str | Path,
        engine: TtsEngine,
        *,
        max_concurrent: int | None = None,
        memory_limit: int = 64 * 2**20,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.engine = engine
        self.max_concurrent = max_concurrent or os.cpu_count() or 2
        self.memory_limit = memory_limit
        self.synthesized = 0  # syntheses run by this instance
        self.disk_loads = 0  # entries read back from disk
        self._memory: dict[str, CachedAudio] = {}
        self._evictable: dict[str, int] = {}  # text → bytes, oldest first
        self._memory_bytes = 0
        self._pending: dict[str, asyncio.Future[tuple[CachedAudio, str]]] = {}
        self._slots = asyncio.Semaphore(self.max_concurrent)

    # --- lookup ---------------------------------------------------------------------------

    def key(self, text: str) -> str:
        """The sha256 hex key of ``text`` for this engine, voice settings and cache format."""
        identity = {
            "format": CACHE_FORMAT,
            "text": text,
            "engine": self.engine.name,
            "version": self.engine.version,
            "settings": dict(getattr(self.engine, "settings", {}) or {}),
        }
        blob = json.dumps(identity, ensure_ascii=False, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def path(self, text: str) -> Path:
        """Where ``text``'s entry lives on disk, without suffix."""
        key = self.key(text)
        return self.cache_dir / key[:2] / key

    def peek(self, text: str) -> CachedAudio | None:
        """The in-memory entry for ``text``, if any; never touches disk or the engine."""
        return self._memory.get(text)

    async def get(self, text: str, *, persist: bool = True) -> np.ndarray:
        """``text`` spoken: 8 kHz int16 (read-only), synthesized only on a cache miss."""
        entry = self._memory.get(text)
        if entry is None:
            entry, _ = await self._miss(text, persist, pin=False)
        return entry.samples

    async def fetch(self, text: str, *, persist: bool = True) -> CachedAudio:
        """Like :meth:`get`, with the pre-encoded audio."""
        entry = self._memory.get(text)
        if entry is None:
            entry, _ = await self._miss(text, persist, pin=False)
        return entry

    # --- warming --------------------------------------------------------------------------

    async def warm(
        self, texts: Iterable[str], progress: bool = False, *, concurrency: int | None = None
    ) -> WarmReport:
        """Make sure every text is cached and pinned in memory, synthesizing with bounded
        concurrency; with ``progress``, a counter on stderr. Raises :class:`TtsError` naming the
        failed texts after all others are done."""
        pending = list(dict.fromkeys(texts))
        report = WarmReport(total=len(pending))
        started = time.perf_counter()
        todo = iter(pending)
        done = 0

        interactive = sys.stderr.isatty()
        step = max(1, report.total // 10)

        def show() -> None:
            # a live counter on a terminal; in logs, a line every tenth of the way
            if not interactive and done % step and done != report.total:
                return
            line = (
                f"prompts {done}/{report.total}: {report.synthesized} synthesized, "
                f"{report.from_disk} from disk, {report.in_memory} in memory"
            )
            print("\r" + line if interactive else line, end="" if interactive else "\n",
                  file=sys.stderr, flush=True)

        async def worker() -> None:
            nonlocal done
            for text in todo:
                try:
                    if text in self._memory:
                        self._pin(text)
                        report.in_memory += 1
                    else:
                        _, source = await self._miss(text, persist=True, pin=True)
                        if source == "synthesized":
                            report.synthesized += 1
                        else:
                            report.from_disk += 1
                except (TtsError, OSError) as exc:
                    report.failed[text] = str(exc)
                done += 1
                if progress:
                    show()

        workers = concurrency or self.max_concurrent
        await asyncio.gather(*(worker() for _ in range(min(workers, len(pending)) or 1)))
        report.seconds = time.perf_counter() - started
        if progress and report.total and interactive:
            print(file=sys.stderr, flush=True)
        if report.failed:
            details = "; ".join(f"{t!r}: {e}" for t, e in list(report.failed.items())[:5])
            raise TtsError(f"{len(report.failed)} of {report.total} prompts failed: {details}")
        return report

    # --- internals ------------------------------------------------------------------------

    async def _miss(self, text: str, persist: bool, pin: bool) -> tuple[CachedAudio, str]:
        """The entry for ``text`` and where it came from (``"disk"`` or ``"synthesized"``)."""
        pending = self._pending.get(text)
        if pending is None:
            pending = asyncio.ensure_future(self._load(text, persist))
            self._pending[text] = pending
            pending.add_done_callback(lambda done: self._settle(text, done))
        loaded = await asyncio.shield(pending)
        if pin:
            self._pin(text)
        return loaded

    def _settle(self, text: str, done: asyncio.Future[tuple[CachedAudio, str]]) -> None:
        self._pending.pop(text, None)
        if not done.cancelled():
            done.exception()  # retrieved here so a failure nobody awaits is not logged twice

    async def _load(self, text: str, persist: bool) -> tuple[CachedAudio, str]:
        path = self.path(text)
        entry = self._read(path)
        source = "disk"
        if entry is not None:
            self.disk_loads += 1
        else:
            source = "synthesized"
            async with self._slots:
                samples = await self.engine.synthesize(text)
            if samples.ndim != 1 or samples.dtype != np.int16 or samples.size == 0:
                raise TtsError(
                    f"{self.engine.name} returned {samples.dtype}{list(samples.shape)} for "
                    f"{text!r}; expected non-empty 1-D int16"
                )
            entry = CachedAudio.of(samples)
            self.synthesized += 1
            if persist:
                self._write(path, text, entry)
        self._remember(text, entry)
        return entry, source

    def _remember(self, text: str, entry: CachedAudio) -> None:
        if text in self._memory:
            return
        self._memory[text] = entry
        self._evictable[text] = entry.nbytes
        self._memory_bytes += entry.nbytes
        while self._memory_bytes > self.memory_limit and self._evictable:
            oldest = next(iter(self._evictable))
            self._memory_bytes -= self._evictable.pop(oldest)
            del self._memory[oldest]

    def _pin(self, text: str) -> None:
        size = self._evictable.pop(text, None)
        if size is not None:
            self._memory_bytes -= size

    def _read(self, path: Path) -> CachedAudio | None:
        """A complete entry from disk, or None (absent, or damaged: then re-synthesized)."""
        try:
            raw = path.with_suffix(".s16").read_bytes()
            encoded = {codec: path.with_suffix(f".{codec}").read_bytes() for codec in CODECS}
        except FileNotFoundError:
            return None
        samples = np.frombuffer(raw, dtype="<i2")
        sizes = {len(b) for b in encoded.values()}
        if len(raw) % 2 or samples.size == 0 or sizes != {samples.size}:
            log.warning("prompt_cache.damaged_entry", path=str(path))
            return None
        return CachedAudio.of(samples.astype(np.int16), encoded)

    def _write(self, path: Path, text: str, entry: CachedAudio) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        about = {
            "text": text,
            "engine": self.engine.name,
            "version": self.engine.version,
            "settings": dict(getattr(self.engine, "settings", {}) or {}),
            "format": CACHE_FORMAT,
            "samples": int(entry.samples.size),
            "seconds": entry.samples.size / 8000,
        }
        for codec in CODECS:
            _write_atomic(path.with_suffix(f".{codec}"), entry.encoded[codec])
        _write_atomic(path.with_suffix(".json"), json.dumps(about, ensure_ascii=False).encode())
        _write_atomic(path.with_suffix(".s16"), entry.samples.astype("<i2").tobytes())


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{id(data):x}.tmp")
    scratch.write_bytes(data)
    os.replace(scratch, path)


# --- recorded prompts -----------------------------------------------------------------------

_PROMPT_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class PromptIdError(ValueError):
    """A prompt id that is not a plain file name (it could escape the prompts directory)."""


def check_prompt_id(prompt_id: str) -> str:
    """``prompt_id`` if it is safe as a file name: only ``[A-Za-z0-9_.-]``, no ``..``."""
    if not isinstance(prompt_id, str) or not _PROMPT_ID.fullmatch(prompt_id) or ".." in prompt_id:
        raise PromptIdError(
            f"prompt id {prompt_id!r} is not allowed: use only letters, digits, '_', '-', '.', "
            "without '..'"
        )
    return prompt_id


class RecordedPrompts:
    """Operator recordings that override synthesized prompts: ``<directory>/<prompt_id>.wav``.

    Any rate, mono or stereo, WAV or MP3 (decoded by ffmpeg through pydub), converted with
    :func:`audio.to_8k`. When both exist, the first suffix in ``suffixes`` wins. Loaded files
    are kept in memory and reloaded when their size or modification time changes.
    """

    def __init__(self, directory: str | Path, *, suffixes: tuple[str, ...] = (".wav", ".mp3")):
        self.directory = Path(directory)
        self.suffixes = suffixes
        self._loaded: dict[str, tuple[Path, int, int, CachedAudio]] = {}

    def _find(self, prompt_id: str) -> tuple[Path, os.stat_result] | None:
        check_prompt_id(prompt_id)
        for suffix in self.suffixes:
            path = self.directory / f"{prompt_id}{suffix}"
            try:
                return path, path.stat()
            except FileNotFoundError:
                continue
        return None

    def _cached(self, prompt_id: str, found: tuple[Path, os.stat_result]) -> CachedAudio | None:
        known = self._loaded.get(prompt_id)
        path, stat = found
        if known and known[:3] == (path, stat.st_mtime_ns, stat.st_size):
            return known[3]
        return None

    def _load(self, prompt_id: str, found: tuple[Path, os.stat_result]) -> CachedAudio | None:
        path, stat = found
        try:
            entry = CachedAudio.of(load_file(path))
        except AudioFileError as exc:
            log.warning("recorded_prompt.unreadable", prompt_id=prompt_id, error=str(exc))
            return None
        if entry.samples.size == 0:
            log.warning("recorded_prompt.empty", prompt_id=prompt_id, path=str(path))
            return None
        self._loaded[prompt_id] = (path, stat.st_mtime_ns, stat.st_size, entry)
        return entry

    def fetch_now(self, prompt_id: str) -> CachedAudio | None:
        """The recording for ``prompt_id`` with its encodings, loading it here if needed."""
        found = self._find(prompt_id)
        if found is None:
            self._loaded.pop(prompt_id, None)
            return None
        return self._cached(prompt_id, found) or self._load(prompt_id, found)

    def get(self, prompt_id: str) -> np.ndarray | None:
        """The recording for ``prompt_id`` as 8 kHz int16, or None when there is none.

        Raises :class:`PromptIdError` for ids that are not plain file names. An unreadable
        file is logged and treated as absent, so the caller falls back to TTS.
        """
        entry = self.fetch_now(prompt_id)
        return None if entry is None else entry.samples

    async def fetch(self, prompt_id: str) -> CachedAudio | None:
        """Like :meth:`fetch_now`, decoding new files in a worker thread (ffmpeg for MP3)."""
        found = self._find(prompt_id)
        if found is None:
            self._loaded.pop(prompt_id, None)
            return None
        return self._cached(prompt_id, found) or await asyncio.to_thread(
            self._load, prompt_id, found
        )
