"""Signal generators for outbound signalling and for testers: sines, DTMF, cadenced tones, noise.

Level convention (the G.711 one): a full-scale int16 sine (peak 32767) is **+3.14 dBm0**, so
0 dBm0 is a sine whose RMS is 3.14 dB below that of the full-scale sine — peak ≈ 22 826, RMS
≈ 16 141. ``dbm0_to_amplitude`` gives the peak of a sine at a level, ``dbm0_to_rms`` the RMS of
any signal at that level (noise included), ``level_dbm0`` measures a signal's RMS level.

Every generator returns 8 kHz (or ``rate``) mono int16, rounded and clipped to the int16 range:
a DTMF pair at 0 dBm0 per tone peaks above full scale and clips, as it would in a codec.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "DTMF_FREQS",
    "FULL_SCALE",
    "FULL_SCALE_SINE_DBM0",
    "cadence_tone",
    "dbm0_to_amplitude",
    "dbm0_to_rms",
    "dtmf_sequence",
    "dtmf_tone",
    "level_dbm0",
    "mix",
    "silence",
    "sine",
    "to_int16",
    "white_noise",
]

FULL_SCALE = 32767.0
FULL_SCALE_SINE_DBM0 = 3.14  # level of a full-scale int16 sine
_ZERO_DBM0_RMS = FULL_SCALE / np.sqrt(2.0) * 10.0 ** (-FULL_SCALE_SINE_DBM0 / 20.0)

DTMF_ROWS = (697.0, 770.0, 852.0, 941.0)
DTMF_COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")
DTMF_FREQS: dict[str, tuple[float, float]] = {
    key: (low, high)
    for low, row in zip(DTMF_ROWS, DTMF_KEYS, strict=True)
    for high, key in zip(DTMF_COLUMNS, row, strict=True)
}


def dbm0_to_rms(dbm0: float) -> float:
    """RMS (int16 units) of a signal at ``dbm0``."""
    return float(_ZERO_DBM0_RMS * 10.0 ** (dbm0 / 20.0))


def dbm0_to_amplitude(dbm0: float) -> float:
    """Peak amplitude (int16 units) of a sine at ``dbm0``; +3.14 dBm0 → 32767."""
    return dbm0_to_rms(dbm0) * np.sqrt(2.0)


def level_dbm0(samples: np.ndarray) -> float:
    """Measured RMS level of ``samples`` in dBm0 (−inf for digital silence)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return float("-inf")
    rms = np.sqrt(np.mean(x * x))
    return float("-inf") if rms == 0 else float(20.0 * np.log10(rms / _ZERO_DBM0_RMS))


def to_int16(signal: np.ndarray) -> np.ndarray:
    """Round and clip a float signal (int16 units) to int16."""
    return np.clip(np.rint(signal), -32768, 32767).astype(np.int16)


def _count(ms: float, rate: int) -> int:
    if ms < 0:
        raise ValueError(f"duration must be >= 0 ms, got {ms}")
    return round(ms * rate / 1000.0)


def _sines(freqs_amps: Iterable[tuple[float, float]], n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    out = np.zeros(n)
    for freq, amp in freqs_amps:
        out += amp * np.sin(2.0 * np.pi * freq * t)
    return out


def silence(ms: float, rate: int = 8000) -> np.ndarray:
    """Digital silence."""
    return np.zeros(_count(ms, rate), dtype=np.int16)


def sine(freq: float, ms: float, dbm0: float, rate: int = 8000) -> np.ndarray:
    """A sine of ``freq`` Hz lasting ``ms`` at ``dbm0``."""
    return to_int16(_sines([(freq, dbm0_to_amplitude(dbm0))], _count(ms, rate), rate))


def dtmf_tone(
    digit: str,
    ms: float = 100.0,
    dbm0: float = -10.0,
    twist_db: float = 0.0,
    freq_dev: float | tuple[float, float] = 0.0,
    rate: int = 8000,
) -> np.ndarray:
    """One DTMF digit.

    ``dbm0`` is the level of the low (row) tone; the high (column) tone sits ``twist_db``
    above it (positive: high tone louder, "reverse twist"). ``freq_dev`` shifts the tones by a
    relative amount (0.015 = +1.5 %), the same for both or ``(low_dev, high_dev)``.
    """
    try:
        low, high = DTMF_FREQS[digit.upper()]
    except KeyError:
        raise ValueError(f"not a DTMF digit: {digit!r}") from None
    low_dev, high_dev = freq_dev if isinstance(freq_dev, tuple) else (freq_dev, freq_dev)
    n = _count(ms, rate)
    pair = [
        (low * (1.0 + low_dev), dbm0_to_amplitude(dbm0)),
        (high * (1.0 + high_dev), dbm0_to_amplitude(dbm0 + twist_db)),
    ]
    return to_int16(_sines(pair, n, rate))


def dtmf_sequence(
    digits: str,
    on_ms: float = 100.0,
    off_ms: float = 100.0,
    dbm0: float = -10.0,
    rate: int = 8000,
) -> np.ndarray:
    """Digits as dialled: each tone ``on_ms`` followed by ``off_ms`` of silence."""
    gap = silence(off_ms, rate)
    parts = [part for d in digits for part in (dtmf_tone(d, on_ms, dbm0, rate=rate), gap)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def cadence_tone(
    freq: float,
    on_ms: float,
    off_ms: float,
    cycles: int,
    dbm0: float = -10.0,
    rate: int = 8000,
) -> np.ndarray:
    """``cycles`` × (tone ``on_ms``, silence ``off_ms``): busy, ring-back, congestion tones."""
    cycle = np.concatenate([sine(freq, on_ms, dbm0, rate), silence(off_ms, rate)])
    return np.tile(cycle, cycles)


def white_noise(
    ms: float,
    dbm0: float,
    rate: int = 8000,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Gaussian white noise whose RMS level is ``dbm0``."""
    rng = np.random.default_rng(seed)
    return to_int16(rng.standard_normal(_count(ms, rate)) * dbm0_to_rms(dbm0))


def mix(*signals: np.ndarray) -> np.ndarray:
    """Sum signals sample by sample (shorter ones padded with silence), clipped to int16."""
    if not signals:
        return np.zeros(0, dtype=np.int16)
    out = np.zeros(max(len(s) for s in signals))
    for s in signals:
        out[: len(s)] += s
    return to_int16(out)
