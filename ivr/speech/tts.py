"""Text-to-speech engines: Chinese text in, 8 kHz int16 audio levelled to −6 dBFS out.

:class:`EspeakTts` is the default: one ``espeak-ng --stdout`` process per text through asyncio,
so syntheses run in parallel and never block the event loop. It uses the ``cmn-latn-pinyin``
voice (Debian espeak-ng 1.51's plain ``cmn`` spells common characters out as pinyin with tone
numbers, "您" → "nin two").

:class:`Pyttsx3Tts` reaches the host's system voices (Windows SAPI5, macOS NSSpeechSynthesizer)
through the optional pyttsx3 package. pyttsx3's engine is a per-process singleton that hangs or
raises when used from several threads, ``runAndWait()`` may return before the file exists, and
queued ``save_to_file`` calls overwrite each other; so it runs in one dedicated worker thread
that takes one job at a time and checks the written file before handing it back.

Engines refuse text containing Arabic numerals: espeak reads ``1234567890`` as a quantity and
drops the 点 of ``123.45``. Numbers must go through :mod:`ivr.speech.readout` first.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import itertools
import queue
import re
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from ivr.speech.audio import load_file, to_8k

__all__ = ["EspeakTts", "Pyttsx3Tts", "TtsEngine", "TtsError", "check_text"]

_ARABIC_DIGITS = re.compile(r"\d+")


class TtsError(RuntimeError):
    """Synthesis failed: engine missing or broken, or text the engine must not be given."""


class TtsEngine(Protocol):
    """What the prompt cache needs from a speech synthesizer.

    ``name`` and ``version`` are part of the prompt cache key, so upgrading the engine
    re-synthesizes every prompt. An engine may also expose ``settings`` (a mapping of its
    voice settings, e.g. voice and speed), which the cache adds to the key.
    """

    name: str
    version: str

    async def synthesize(self, text: str) -> np.ndarray:
        """Speak ``text``; returns 8 kHz mono int16 levelled by :func:`audio.to_8k`."""
        ...


def check_text(text: str) -> None:
    """Raise :class:`TtsError` unless ``text`` is something an engine may be given."""
    if not text or not text.strip():
        raise TtsError("nothing to synthesize: the text is empty")
    match = _ARABIC_DIGITS.search(text)
    if match:
        raise TtsError(
            f"text contains Arabic numerals ({match.group()!r} in {text!r}); "
            "read numbers out with ivr.speech.readout first"
        )


def parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """PCM samples and rate from WAV bytes; tolerates streamed headers with bogus sizes.

    ``espeak-ng --stdout`` writes 0x7ffff000 as the RIFF and data sizes because it cannot seek
    back, so the data chunk is taken to run to the end of the stream.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TtsError("engine output is not a WAV stream")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", data, body)
        elif chunk == b"data":
            if fmt is None:
                raise TtsError("WAV stream has no fmt chunk before its data")
            encoding, channels, rate, _, _, bits = fmt
            if encoding != 1 or bits != 16:
                raise TtsError(f"unsupported WAV format {encoding}/{bits}-bit from engine")
            payload = data[body : body + size]
            payload = payload[: len(payload) - len(payload) % (2 * channels)]
            samples = np.frombuffer(payload, dtype="<i2")
            if channels > 1:
                samples = samples.reshape(-1, channels)
            return samples, rate
        pos = body + size + (size & 1)
    raise TtsError("WAV stream has no data chunk")


class EspeakTts:
    """espeak-ng through an asyncio subprocess; parallel-safe, ~20–30 ms per prompt."""

    name = "espeak-ng"

    def __init__(
        self,
        voice: str = "cmn-latn-pinyin",
        speed: int | None = None,
        *,
        executable: str = "espeak-ng",
        timeout: float = 30.0,
    ) -> None:
        self.voice = voice
        self.speed = speed
        self.executable = executable
        self.timeout = timeout

    @property
    def settings(self) -> Mapping[str, str]:
        return {"voice": self.voice, "speed": "" if self.speed is None else str(self.speed)}

    @functools.cached_property
    def version(self) -> str:
        """espeak-ng's version (``1.51``), asked once per engine from ``espeak-ng --version``."""
        try:
            command = [self.executable, "--version"]
            done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=10)
        except (FileNotFoundError, PermissionError) as exc:
            raise TtsError(f"espeak-ng not found ({self.executable!r}): {exc}") from exc
        match = re.search(r"text-to-speech:\s*(\S+)", done.stdout)
        if done.returncode != 0 or not match:
            raise TtsError(f"cannot read the espeak-ng version: {done.stdout or done.stderr!r}")
        return match.group(1)

    def _command(self, text: str) -> list[str]:
        command = [self.executable, "-v", self.voice, "--stdout"]
        if self.speed is not None:
            command += ["-s", str(self.speed)]
        return command + ["--", text]

    async def synthesize(self, text: str) -> np.ndarray:
        check_text(text)
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command(text),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise TtsError(f"espeak-ng not found ({self.executable!r}): {exc}") from exc
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), self.timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise TtsError(f"espeak-ng took longer than {self.timeout} s for {text!r}") from None
        except asyncio.CancelledError:
            if process.returncode is None:
                process.kill()
            raise
        if process.returncode != 0:
            problem = stderr.decode(errors="replace").strip() or f"exit {process.returncode}"
            raise TtsError(f"espeak-ng failed for {text!r} (voice {self.voice}): {problem}")
        samples, rate = parse_wav(stdout)
        if samples.size == 0:
            raise TtsError(f"espeak-ng produced no audio for {text!r}")
        return to_8k(samples, rate)


class _Job:
    __slots__ = ("future", "loop", "text")

    def __init__(self, text: str, future: asyncio.Future, loop: asyncio.AbstractEventLoop) -> None:
        self.text, self.future, self.loop = text, future, loop


class Pyttsx3Tts:
    """The host's system voices (SAPI5, NSSS, espeak) through pyttsx3, in one worker thread.

    pyttsx3 is optional (``pip install .[pyttsx3]``) and imported only by the worker thread.
    Each job runs ``save_to_file`` + ``runAndWait``, then waits (up to ``file_timeout``) for
    the file to exist, be non-empty, stop growing and, for WAV, have a complete header, before
    decoding it. Jobs are served one at a time, in order.
    """

    name = "pyttsx3"

    def __init__(
        self,
        voice: str | None = None,
        rate: int | None = None,
        *,
        driver: str | None = None,
        file_timeout: float = 5.0,
    ) -> None:
        if importlib.util.find_spec("pyttsx3") is None:
            raise TtsError("pyttsx3 is not installed (pip install 'hotline95598[pyttsx3]')")
        self.voice = voice
        self.rate = rate
        self.driver = driver
        self.file_timeout = file_timeout
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._start_error: TtsError | None = None  # pyttsx3 could not start: fail fast

    @property
    def settings(self) -> Mapping[str, str]:
        return {
            "voice": self.voice or "",
            "rate": "" if self.rate is None else str(self.rate),
            "driver": self.driver or "",
        }

    @functools.cached_property
    def version(self) -> str:
        from importlib.metadata import version

        return f"{version('pyttsx3')}/{self.driver or 'default'}"

    async def synthesize(self, text: str) -> np.ndarray:
        check_text(text)
        if self._start_error is not None:
            raise self._start_error
        self._ensure_worker()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._jobs.put(_Job(text, future, loop))
        if self._start_error is not None:  # the worker failed while this job was queued
            self._fail_all(self._start_error)
        return await future

    def close(self) -> None:
        """Stop the worker thread after the jobs already queued."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join(timeout=30)

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="pyttsx3", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        try:
            import pyttsx3

            engine = pyttsx3.init(self.driver) if self.driver else pyttsx3.init()
            if self.voice is not None:
                engine.setProperty("voice", self.voice)
            if self.rate is not None:
                engine.setProperty("rate", self.rate)
        except Exception as exc:  # noqa: BLE001 - reported to every waiting caller
            self._start_error = TtsError(f"pyttsx3 failed to start: {exc!r}")
            self._fail_all(self._start_error)
            return
        with tempfile.TemporaryDirectory(prefix="pyttsx3-") as scratch:
            for serial in itertools.count():
                job = self._jobs.get()
                if job is None:
                    return
                path = Path(scratch) / f"{serial}.wav"
                try:
                    engine.save_to_file(job.text, str(path))
                    engine.runAndWait()
                    _wait_for_complete_file(path, self.file_timeout)
                    result: np.ndarray | BaseException = load_file(path)
                except Exception as exc:  # noqa: BLE001 - handed to the caller
                    result = exc if isinstance(exc, TtsError) else TtsError(
                        f"pyttsx3 failed for {job.text!r}: {exc!r}"
                    )
                finally:
                    path.unlink(missing_ok=True)
                _resolve(job, result)

    def _fail_all(self, error: TtsError) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                _resolve(job, error)


def _resolve(job: _Job, result: np.ndarray | BaseException) -> None:
    def deliver() -> None:
        if job.future.done():  # the caller gave up
            return
        if isinstance(result, BaseException):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)

    job.loop.call_soon_threadsafe(deliver)


def _wav_complete(path: Path, size: int) -> bool:
    """True when a WAV file's RIFF size matches its length (non-WAV: trusted once stable)."""
    with open(path, "rb") as file:
        head = file.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return True  # AIFF from NSSS etc.: decoded by ffmpeg, stability is the check
    return struct.unpack_from("<I", head, 4)[0] + 8 == size


def _wait_for_complete_file(path: Path, timeout: float) -> None:
    """Poll until ``path`` exists, is non-empty, has stopped growing and is a complete WAV."""
    deadline = time.monotonic() + timeout
    last_size = -1
    while True:
        size = path.stat().st_size if path.exists() else -1
        if size > 44 and size == last_size and _wav_complete(path, size):
            return
        if time.monotonic() > deadline:
            state = "missing" if size < 0 else f"incomplete ({size} bytes)"
            raise TtsError(f"pyttsx3 output file {state} after {timeout} s: {path}")
        last_size = size
        time.sleep(0.02)

