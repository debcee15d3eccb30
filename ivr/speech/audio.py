"""Prompt audio preparation: any rate and format in, 8 kHz int16 levelled to −6 dBFS out.

Resampling uses soxr (a proper anti-alias low-pass; pydub's ``set_frame_rate`` aliases
everything above 4 kHz back into the band). Levelling is done after resampling, in floating
point, to a fixed peak of −6 dBFS: espeak output peaks at 0 dBFS and the resampler's ringing
would otherwise clip. Every prompt, read-out unit and recorded file goes through :func:`to_8k`,
so they all play at the same level and can be concatenated.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soxr

from drivers.channel import SAMPLE_RATE
from drivers.media import g711

__all__ = [
    "PEAK_DBFS",
    "AudioFileError",
    "encode_all",
    "load_file",
    "silence",
    "to_8k",
    "trim_silence",
]

PEAK_DBFS = -6.0
_PEAK = math.floor(32768 * 10 ** (PEAK_DBFS / 20))  # 16423: never above −6 dBFS
_NOISE_FLOOR = 10 ** (-60 / 20)  # quieter than this is left alone, not amplified


class AudioFileError(ValueError):
    """An audio file that cannot be read or decoded."""


def _as_float(samples: np.ndarray) -> np.ndarray:
    """Samples of any PCM dtype as float64 in [−1, 1], mixed down to mono."""
    x = np.asarray(samples)
    if x.ndim == 2:  # (frames, channels)
        x = x.mean(axis=1) if x.dtype.kind == "f" else x.astype(np.float64).mean(axis=1)
    elif x.ndim != 1:
        raise ValueError(f"expected mono or (frames, channels) samples, got shape {x.shape}")
    if x.dtype.kind == "f":
        return x.astype(np.float64, copy=False)
    if x.dtype == np.uint8:  # 8-bit WAV is unsigned
        return (x.astype(np.float64) - 128.0) / 128.0
    if x.dtype.kind in "iu":
        return x.astype(np.float64) / float(2 ** (8 * x.dtype.itemsize - 1))
    raise ValueError(f"unsupported sample dtype {x.dtype}")


def to_8k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Resample to 8 kHz mono and level to a −6 dBFS peak; returns int16.

    Integer input is read as full-scale PCM of its width, float input as [−1, 1]; 2-D input
    is (frames, channels) and is mixed down. Silence (peak below −60 dBFS) is not amplified.
    """
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    x = _as_float(samples)
    if x.size == 0:
        return np.zeros(0, dtype=np.int16)
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE, quality="HQ")
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak < _NOISE_FLOOR:
        return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
    return np.round(x * (_PEAK / peak)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    """``seconds`` of 8 kHz int16 silence."""
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


def trim_silence(samples: np.ndarray, threshold_db: float = -40.0, pad: float = 0.01) -> np.ndarray:
    """Cut leading and trailing audio quieter than ``threshold_db`` below the peak.

    Keeps ``pad`` seconds either side so consonant onsets survive; used on read-out units so
    composed numbers do not carry each unit's recorded lead-in and tail.
    """
    if samples.size == 0:
        return samples
    level = np.abs(samples.astype(np.int32))
    limit = level.max() * 10 ** (threshold_db / 20)
    loud = np.flatnonzero(level > limit)
    if loud.size == 0:
        return samples[:0]
    margin = round(pad * SAMPLE_RATE)
    return samples[max(0, loud[0] - margin) : loud[-1] + 1 + margin]


def load_file(path: str | Path) -> np.ndarray:
    """Decode an audio file (WAV natively, MP3 and others via ffmpeg) to 8 kHz levelled int16."""
    from pydub import AudioSegment  # deferred: pydub warns about audioop at import
    from pydub.exceptions import CouldntDecodeError

    try:
        segment = AudioSegment.from_file(str(path))
    except (CouldntDecodeError, IndexError, OSError) as exc:
        raise AudioFileError(f"{path}: cannot decode audio ({exc})") from exc
    width = segment.sample_width
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}.get(width)
    if dtype is None:  # 24-bit: let ffmpeg/pydub widen it
        segment = segment.set_sample_width(4)
        dtype = np.int32
    raw = np.frombuffer(segment.raw_data, dtype=dtype)
    if segment.channels > 1:
        raw = raw[: len(raw) - len(raw) % segment.channels].reshape(-1, segment.channels)
    return to_8k(raw, segment.frame_rate)


def encode_all(samples: np.ndarray) -> dict[str, bytes]:
    """The same 8 kHz int16 audio pre-encoded for every codec: ``{"pcmu": …, "pcma": …}``."""
    pcm = np.ascontiguousarray(samples, dtype=np.int16)
    return {
        "pcmu": g711.ulaw_encode(pcm).tobytes(),
        "pcma": g711.alaw_encode(pcm).tobytes(),
    }
