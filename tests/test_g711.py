"""G.711 μ-law/A-law: bit-exact with audioop on every input, and the ITU reference facts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from drivers.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from drivers.media.tones import level_dbm0, sine

ALL_PCM = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16)
ALL_CODES = bytes(range(256))


@pytest.fixture(scope="module")
def audioop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip("audioop")


def test_encoders_match_audioop_on_all_65536_samples(audioop):
    pcm = ALL_PCM.astype("<i2").tobytes()
    assert ulaw_encode(ALL_PCM).tobytes() == audioop.lin2ulaw(pcm, 2)
    assert alaw_encode(ALL_PCM).tobytes() == audioop.lin2alaw(pcm, 2)


def test_decoders_match_audioop_on_all_256_codes(audioop):
    assert ulaw_decode(ALL_CODES).astype("<i2").tobytes() == audioop.ulaw2lin(ALL_CODES, 2)
    assert alaw_decode(ALL_CODES).astype("<i2").tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_silence_codes():
    zero = np.zeros(4, dtype=np.int16)
    assert ulaw_encode(zero).tolist() == [0xFF] * 4
    assert alaw_encode(zero).tolist() == [0xD5] * 4
    assert ulaw_decode(b"\xff\x7f").tolist() == [0, 0]  # μ-law's two zeros
    assert alaw_decode(b"\xd5\x55").tolist() == [8, -8]  # A-law has no zero level


def test_full_scale_codes():
    extremes = np.array([32767, -32768], dtype=np.int16)
    assert ulaw_encode(extremes).tolist() == [0x80, 0x00]
    assert ulaw_decode(b"\x80\x00").tolist() == [32124, -32124]
    assert alaw_encode(extremes).tolist() == [0xAA, 0x2A]
    assert alaw_decode(b"\xaa\x2a").tolist() == [32256, -32256]


@pytest.mark.parametrize(
    "decode, codes",
    [
        (ulaw_decode, [0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E]),
        (alaw_decode, [0x34, 0x21, 0x21, 0x34, 0xB4, 0xA1, 0xA1, 0xB4]),
    ],
)
def test_digital_milliwatt_is_0_dbm0(decode, codes):
    """G.711's digital milliwatt (1 kHz, 8 codes repeated) reads 0 dBm0 under our convention."""
    assert level_dbm0(decode(bytes(codes * 100))) == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize("encode, decode", [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_decoded_levels_are_fixed_points(encode, decode):
    levels = decode(ALL_CODES)
    assert np.array_equal(decode(encode(levels)), levels)


@pytest.mark.parametrize("encode, decode", [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_companding_is_monotonic_and_close(encode, decode):
    out = decode(encode(ALL_PCM)).astype(np.int32)
    order = np.argsort(ALL_PCM, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)
    # Quantisation error: at most 1/32 of the magnitude, plus the small-signal step.
    error = np.abs(out - ALL_PCM.astype(np.int32))
    assert np.all(error <= np.abs(ALL_PCM.astype(np.int32)) / 32 + 16)


@pytest.mark.parametrize("encode, decode", [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_speech_band_sine_keeps_g711_signal_to_distortion(encode, decode):
    tone = sine(1020.0, 500, -10.0)
    error = decode(encode(tone)).astype(np.float64) - tone
    sdr = 10 * np.log10(np.sum(tone.astype(np.float64) ** 2) / np.sum(error**2))
    assert sdr > 37.0  # companding noise of G.711 at −10 dBm0: about 38 dB


def test_shapes_and_input_types():
    block = np.array([[0, 1000], [-1000, 32767]], dtype=np.int16)
    assert ulaw_encode(block).shape == (2, 2)
    assert ulaw_decode(ulaw_encode(block)).shape == (2, 2)
    assert ulaw_decode(bytearray(b"\xff")).dtype == np.int16
    assert alaw_decode(np.array([0xD5], dtype=np.uint8)).tolist() == [8]
    with pytest.raises(TypeError):
        ulaw_encode(np.zeros(3, dtype=np.float32))
    with pytest.raises(TypeError):
        alaw_decode(np.zeros(3, dtype=np.int16))
