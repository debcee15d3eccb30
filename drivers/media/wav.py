"""Reading and writing WAV files: prompts and recordings on disk (the one media module doing I/O).

``read_wav`` accepts mono 16-bit PCM through the stdlib ``wave`` module, and mono G.711
(μ-law, format tag 7; A-law, tag 6) and WAVE_FORMAT_EXTENSIBLE files, which ``wave`` refuses,
through a small RIFF parser; G.711 audio is decoded to int16. Anything else — unreadable,
truncated, stereo, 8/24/32-bit or float PCM, or the wrong rate when one is required — raises
:class:`WavError` saying what is wrong with which file. ``write_wav`` writes 16-bit PCM.
"""

from __future__ import annotations

import os
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivers.media.g711 import alaw_decode, ulaw_decode

__all__ = ["WavError", "read_wav", "write_wav"]

PathLike = str | os.PathLike[str]

_PCM, _ALAW, _ULAW, _EXTENSIBLE = 1, 6, 7, 0xFFFE
_FORMAT_NAMES = {_PCM: "PCM", 3: "IEEE float", _ALAW: "A-law", _ULAW: "μ-law", 0x11: "IMA ADPCM"}


class WavError(ValueError):
    """A WAV file that cannot be used: unreadable, or not 8 kHz-style mono telephony audio."""


@dataclass(frozen=True, slots=True)
class _Format:
    tag: int
    channels: int
    rate: int
    bits: int
    data: bytes


def read_wav(path: PathLike, require_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono samples (int16) and sample rate of the WAV file at ``path``.

    ``require_rate`` (e.g. 8000) rejects files at any other rate instead of resampling them.
    """
    try:
        with wave.open(str(path), "rb") as w:
            fmt = _Format(
                _PCM, w.getnchannels(), w.getframerate(), 8 * w.getsampwidth(), w.readframes(-1)
            )
    except OSError as exc:
        raise WavError(f"{path}: cannot read WAV file: {exc}") from exc
    except (wave.Error, EOFError, RuntimeError, struct.error):
        # A format the wave module does not handle, or a damaged file: our own parser
        # reads the former and says what is wrong with the latter.
        fmt = _parse_riff(path)

    name = _FORMAT_NAMES.get(fmt.tag, f"format tag {fmt.tag:#x}")
    if fmt.channels != 1:
        raise WavError(f"{path}: {fmt.channels} channels; mono is required")
    if fmt.tag == _PCM and fmt.bits == 16:
        samples = np.frombuffer(fmt.data[: len(fmt.data) // 2 * 2], dtype="<i2")
    elif fmt.tag in (_ALAW, _ULAW) and fmt.bits == 8:
        samples = (alaw_decode if fmt.tag == _ALAW else ulaw_decode)(fmt.data)
    elif fmt.tag in (_PCM, _ALAW, _ULAW):
        raise WavError(f"{path}: {fmt.bits}-bit {name}; 16-bit PCM or 8-bit G.711 is required")
    else:
        raise WavError(f"{path}: {name} audio; 16-bit PCM or G.711 is required")
    if require_rate is not None and fmt.rate != require_rate:
        raise WavError(f"{path}: sample rate {fmt.rate} Hz; {require_rate} Hz is required")
    return samples.astype(np.int16), fmt.rate


def write_wav(path: PathLike, samples: np.ndarray, rate: int = 8000, channels: int = 1) -> None:
    """Write 16-bit PCM: ``samples`` int16, shape (n,) for mono or (n, channels)."""
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        raise TypeError(f"write_wav needs int16 samples, got {samples.dtype}")
    if samples.ndim == 2 and samples.shape[1] != channels:
        raise ValueError(f"samples have {samples.shape[1]} channels, channels={channels}")
    if (samples.ndim == 1 and channels != 1) or samples.ndim > 2:
        raise ValueError(f"samples of shape {samples.shape} do not match channels={channels}")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def _parse_riff(path: PathLike) -> _Format:
    """The format and data chunks of a RIFF/WAVE file, for the formats ``wave`` refuses."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise WavError(f"{path}: cannot read WAV file: {exc}") from exc
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise WavError(f"{path}: not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(raw):
        chunk_id, size = raw[pos : pos + 4], struct.unpack_from("<I", raw, pos + 4)[0]
        body = raw[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise WavError(f"{path}: truncated fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE:
                if len(body) < 26:
                    raise WavError(f"{path}: truncated WAVE_FORMAT_EXTENSIBLE fmt chunk")
                tag = struct.unpack_from("<H", body, 24)[0]  # first field of the sub-format GUID
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError(f"{path}: data chunk before the fmt chunk")
            return _Format(*fmt, data=body)  # a streamed file's size field may overshoot
        pos += 8 + size + (size & 1)
    raise WavError(f"{path}: no {'data' if fmt else 'fmt'} chunk")
