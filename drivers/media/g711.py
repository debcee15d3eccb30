"""G.711 μ-law and A-law companding through lookup tables.

Encoding indexes a 65536-entry table with the int16 sample reinterpreted as uint16; decoding
indexes a 256-entry table with the code byte. Both tables are built once at import from the
classic G.711 segment algorithm (Sun's ``g711.c``, the one CPython's ``audioop`` uses), so the
results are bit-exact with ``audioop.lin2ulaw/ulaw2lin/lin2alaw/alaw2lin`` at width 2 — which
Python 3.13 no longer ships.

μ-law works on the sample's top 14 bits and A-law on its top 13 bits (arithmetic shift, i.e.
rounding toward −∞). Silence encodes as 0xFF (μ-law) and 0xD5 (A-law); A-law code bytes carry
the even-bit inversion (XOR 0x55) of G.711.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5

_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # largest 14-bit magnitude μ-law represents


def _all_int16() -> np.ndarray:
    """Every int16 value, ordered by its uint16 bit pattern (the encode tables' index)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> np.ndarray:
    pcm = _all_int16() >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, mag)  # first segment whose end is >= mag
    code = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _build_alaw_encode() -> np.ndarray:
    pcm = _all_int16() >> 3  # 13-bit
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)
    mag = np.where(negative, -pcm - 1, pcm)
    seg = np.searchsorted(_ALAW_SEG_END, mag)
    shift = np.where(seg < 2, 1, seg)
    code = (seg << 4) | ((mag >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256) ^ 0x55
    seg = (a & 0x70) >> 4
    t = ((a & 0x0F) << 4) + np.where(seg == 0, 8, 0x108)
    t = t << np.maximum(seg - 1, 0)
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENCODE = _build_ulaw_encode()
_ULAW_DECODE = _build_ulaw_decode()
_ALAW_ENCODE = _build_alaw_encode()
_ALAW_DECODE = _build_alaw_decode()
for _table in (_ULAW_ENCODE, _ULAW_DECODE, _ALAW_ENCODE, _ALAW_DECODE):
    _table.flags.writeable = False


def _as_pcm16(pcm: np.ndarray) -> np.ndarray:
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16:
        raise TypeError(f"G.711 encoding needs int16 samples, got {pcm.dtype}")
    return pcm.view(np.uint16)


def _as_codes(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    data = np.asarray(data)
    if data.dtype != np.uint8:
        raise TypeError(f"G.711 decoding needs bytes or uint8 codes, got {data.dtype}")
    return data


def ulaw_encode(pcm: np.ndarray) -> np.ndarray:
    """int16 samples (any shape) → μ-law code bytes (uint8, same shape)."""
    return _ULAW_ENCODE[_as_pcm16(pcm)]


def ulaw_decode(data: bytes | np.ndarray) -> np.ndarray:
    """μ-law code bytes (``bytes`` or uint8 array) → int16 samples."""
    return _ULAW_DECODE[_as_codes(data)]


def alaw_encode(pcm: np.ndarray) -> np.ndarray:
    """int16 samples (any shape) → A-law code bytes (uint8, same shape)."""
    return _ALAW_ENCODE[_as_pcm16(pcm)]


def alaw_decode(data: bytes | np.ndarray) -> np.ndarray:
    """A-law code bytes (``bytes`` or uint8 array) → int16 samples."""
    return _ALAW_DECODE[_as_codes(data)]
