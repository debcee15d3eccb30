"""Signal generators: levels per the G.711 convention, DTMF pairs, cadences, noise, mixing."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.media.tones import (
    DTMF_FREQS,
    cadence_tone,
    dbm0_to_amplitude,
    dbm0_to_rms,
    dtmf_sequence,
    dtmf_tone,
    level_dbm0,
    mix,
    silence,
    sine,
    white_noise,
)


def tone_level_dbm0(samples: np.ndarray, freq: float, rate: int = 8000) -> float:
    """Level of the component at ``freq`` (single-bin DFT over the whole signal)."""
    n = np.arange(len(samples))
    amplitude = 2 * abs(np.sum(samples * np.exp(-2j * np.pi * freq * n / rate))) / len(samples)
    return 20 * np.log10(amplitude / dbm0_to_amplitude(0.0))


def test_level_convention():
    assert dbm0_to_amplitude(3.14) == pytest.approx(32767, abs=0.5)  # full-scale sine
    assert dbm0_to_amplitude(0.0) == pytest.approx(22826, abs=1)
    assert dbm0_to_rms(0.0) == pytest.approx(dbm0_to_amplitude(0.0) / np.sqrt(2))
    assert dbm0_to_amplitude(-20.0) == pytest.approx(dbm0_to_amplitude(0.0) / 10)


@pytest.mark.parametrize("dbm0", [3.0, 0.0, -10.0, -25.0, -55.0])
def test_sine_has_the_requested_level_and_length(dbm0):
    tone = sine(1000.0, 250, dbm0)
    assert tone.dtype == np.int16 and len(tone) == 2000
    assert level_dbm0(tone) == pytest.approx(dbm0, abs=0.05 if dbm0 > -50 else 0.3)


def test_level_of_silence_is_minus_infinity():
    assert level_dbm0(silence(20)) == float("-inf")
    assert level_dbm0(np.zeros(0)) == float("-inf")


def test_dtmf_table_is_the_standard_keypad():
    assert "".join(sorted(DTMF_FREQS)) == "".join(sorted("0123456789*#ABCD"))
    assert DTMF_FREQS["1"] == (697.0, 1209.0)
    assert DTMF_FREQS["5"] == (770.0, 1336.0)
    assert DTMF_FREQS["9"] == (852.0, 1477.0)
    assert DTMF_FREQS["0"] == (941.0, 1336.0)
    assert DTMF_FREQS["*"] == (941.0, 1209.0) and DTMF_FREQS["#"] == (941.0, 1477.0)
    assert DTMF_FREQS["D"] == (941.0, 1633.0)


@pytest.mark.parametrize("digit", list("159#D"))
@pytest.mark.parametrize("twist_db", [-8.0, 0.0, 4.0])
def test_dtmf_tone_levels_and_twist(digit, twist_db):
    low, high = DTMF_FREQS[digit]
    tone = dtmf_tone(digit, ms=200, dbm0=-12.0, twist_db=twist_db)
    assert len(tone) == 1600
    assert tone_level_dbm0(tone, low) == pytest.approx(-12.0, abs=0.1)
    assert tone_level_dbm0(tone, high) == pytest.approx(-12.0 + twist_db, abs=0.1)


def test_dtmf_frequency_deviation_moves_both_or_each_tone():
    low, high = DTMF_FREQS["3"]
    both = dtmf_tone("3", ms=500, freq_dev=0.03)
    assert tone_level_dbm0(both, low * 1.03) == pytest.approx(-10.0, abs=0.1)
    assert tone_level_dbm0(both, high * 1.03) == pytest.approx(-10.0, abs=0.1)
    apart = dtmf_tone("3", ms=500, freq_dev=(-0.02, 0.01))
    assert tone_level_dbm0(apart, low * 0.98) == pytest.approx(-10.0, abs=0.1)
    assert tone_level_dbm0(apart, high * 1.01) == pytest.approx(-10.0, abs=0.1)
    assert tone_level_dbm0(apart, low) < -20.0


def test_dtmf_at_0_dbm0_per_tone_clips_instead_of_wrapping():
    tone = dtmf_tone("D", ms=100, dbm0=0.0)
    assert tone.max() == 32767 and tone.min() == -32768
    ideal = dtmf_tone("D", ms=100, dbm0=-20.0).astype(np.float64)
    same_sign = np.sign(tone) == np.sign(ideal)
    assert same_sign[np.abs(ideal) > 100].all()


def test_unknown_digit_is_refused():
    with pytest.raises(ValueError, match="not a DTMF digit"):
        dtmf_tone("E")
    assert len(dtmf_tone("a", ms=10)) == 80  # lower-case A-D accepted


def test_dtmf_sequence_is_tone_then_gap_per_digit():
    seq = dtmf_sequence("12", on_ms=50, off_ms=30, dbm0=-10.0)
    assert len(seq) == 2 * (400 + 240)
    assert np.count_nonzero(seq[400:640]) == 0 and np.count_nonzero(seq[1040:]) == 0
    assert np.array_equal(seq[640:1040], dtmf_tone("2", 50, -10.0))
    assert dtmf_sequence("").size == 0


def test_cadence_tone_alternates_on_and_off():
    busy = cadence_tone(450.0, 350, 350, cycles=3, dbm0=-10.0)
    assert len(busy) == 3 * 5600
    on = busy.reshape(3, 5600)[:, :2800]
    off = busy.reshape(3, 5600)[:, 2800:]
    assert not off.any()
    assert all(level_dbm0(part) == pytest.approx(-10.0, abs=0.05) for part in on)


def test_white_noise_level_and_seed():
    noise = white_noise(2000, -30.0, seed=7)
    assert len(noise) == 16000
    assert level_dbm0(noise) == pytest.approx(-30.0, abs=0.2)
    assert np.array_equal(noise, white_noise(2000, -30.0, seed=7))
    spectrum = np.abs(np.fft.rfft(noise.astype(np.float64))) ** 2
    low, high = spectrum[1:4000].mean(), spectrum[4000:8000].mean()
    assert low == pytest.approx(high, rel=0.15)  # flat: white


def test_mix_pads_and_clips():
    loud = np.full(4, 30000, dtype=np.int16)
    out = mix(loud, np.full(2, 10000, dtype=np.int16))
    assert out.tolist() == [32767, 32767, 30000, 30000] and out.dtype == np.int16
    assert mix().size == 0


def test_negative_duration_is_refused():
    with pytest.raises(ValueError):
        sine(1000.0, -1, -10.0)
