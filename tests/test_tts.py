"""TTS engines and prompt audio preparation, with the real espeak-ng."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from drivers.media import g711
from ivr.speech.audio import encode_all, load_file, to_8k, trim_silence
from ivr.speech.tts import EspeakTts, Pyttsx3Tts, TtsError, parse_wav

PEAK_LIMIT_DBFS = -6.0 + 0.1


def peak_dbfs(samples: np.ndarray) -> float:
    return 20 * np.log10(np.max(np.abs(samples.astype(np.int32))) / 32768)


def tone(freq: float, rate: int, seconds: float, amplitude: float = 1.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def level_at(samples: np.ndarray, freq: float) -> float:
    """Magnitude (dB re. full scale sine) of ``freq`` in 8 kHz ``samples``."""
    x = samples.astype(np.float64) / 32768
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) / (len(x) / 4)
    bin_ = round(freq * len(x) / 8000)
    return 20 * np.log10(spectrum[bin_ - 2 : bin_ + 3].max() + 1e-12)


# --- audio preparation --------------------------------------------------------------------


def test_to_8k_resamples_and_levels_full_scale_audio_to_minus_6_dbfs() -> None:
    full_scale = (tone(440, 22050, 1.0) * 32767).astype(np.int16)
    out = to_8k(full_scale, 22050)
    assert out.dtype == np.int16
    assert len(out) == 8000
    assert -6.1 <= peak_dbfs(out) <= PEAK_LIMIT_DBFS


def test_to_8k_filters_out_what_would_alias() -> None:
    # 1 kHz plus 6 kHz at 22.05 kHz: 6 kHz is above the 4 kHz band and must not fold to 2 kHz
    mix = tone(1000, 22050, 1.0, 0.45) + tone(6000, 22050, 1.0, 0.45)
    out = to_8k(mix, 22050)
    assert level_at(out, 1000) - level_at(out, 2000) > 60


def test_to_8k_mixes_stereo_and_amplifies_quiet_audio_but_not_silence() -> None:
    quiet = (tone(300, 16000, 0.5, 0.01) * 32767).astype(np.int16)
    stereo = np.stack([quiet, quiet], axis=1)
    out = to_8k(stereo, 16000)
    assert len(out) == 4000 and -6.1 <= peak_dbfs(out) <= PEAK_LIMIT_DBFS
    assert not to_8k(np.zeros(800, dtype=np.int16), 8000).any()
    assert to_8k(np.zeros(0, dtype=np.int16), 44100).size == 0


def test_trim_silence_keeps_the_sound_and_a_little_padding() -> None:
    sound = (tone(500, 8000, 0.2, 0.5) * 32767).astype(np.int16)
    padded = np.concatenate([np.zeros(4000, np.int16), sound, np.zeros(4000, np.int16)])
    trimmed = trim_silence(padded, pad=0.01)
    assert len(sound) <= len(trimmed) <= len(sound) + 2 * 80 + 2


def test_encode_all_gives_both_g711_codecs_byte_for_sample() -> None:
    samples = to_8k(tone(440, 8000, 0.1), 8000)
    encoded = encode_all(samples)
    assert set(encoded) == {"pcmu", "pcma"}
    assert encoded["pcmu"] == g711.ulaw_encode(samples).tobytes()
    assert encoded["pcma"] == g711.alaw_encode(samples).tobytes()
    assert len(encoded["pcmu"]) == len(encoded["pcma"]) == len(samples)


def test_load_file_reads_wav_at_any_rate(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44100)
        left = (tone(440, 44100, 0.5, 0.9) * 32767).astype(np.int16)
        out.writeframes(np.stack([left, left], axis=1).tobytes())
    samples = load_file(path)
    assert samples.dtype == np.int16 and len(samples) == 4000
    assert -6.1 <= peak_dbfs(samples) <= PEAK_LIMIT_DBFS


def test_parse_wav_takes_streamed_data_to_the_end() -> None:
    header = (
        b"RIFF\xff\xff\xff\x7fWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x22\x56\x00\x00"
        b"\x44\xac\x00\x00\x02\x00\x10\x00data\x00\xf0\xff\x7f"
    )
    samples, rate = parse_wav(header + np.arange(10, dtype="<i2").tobytes() + b"\x01")
    assert rate == 22050 and samples.tolist() == list(range(10))
    with pytest.raises(TtsError, match="not a WAV"):
        parse_wav(b"hello")


# --- espeak-ng ----------------------------------------------------------------------------


async def test_espeak_speaks_chinese_at_8k_levelled() -> None:
    engine = EspeakTts()
    samples = await engine.synthesize("您好，欢迎致电国家电网")
    assert samples.dtype == np.int16 and samples.ndim == 1
    assert -6.1 <= peak_dbfs(samples) <= PEAK_LIMIT_DBFS
    seconds = len(samples) / 8000
    assert 1.0 < seconds < 6.0  # 11 syllables and a pause
    rms = np.sqrt(np.mean(samples.astype(np.float64) ** 2))
    assert rms > 500  # clearly not silence


async def test_espeak_version_and_settings_identify_the_voice() -> None:
    engine = EspeakTts(speed=150)
    assert engine.name == "espeak-ng"
    assert engine.version[0].isdigit()
    assert engine.settings == {"voice": "cmn-latn-pinyin", "speed": "150"}


async def test_espeak_speed_changes_duration() -> None:
    slow, fast = await asyncio.gather(
        EspeakTts(speed=120).synthesize("请输入您的户号"),
        EspeakTts(speed=260).synthesize("请输入您的户号"),
    )
    assert len(fast) < len(slow) * 0.75


async def test_espeak_runs_in_parallel_and_each_text_gets_its_own_audio() -> None:
    engine = EspeakTts()
    texts = ["一", "一二三四五六", "您好", "再见"]
    results = await asyncio.gather(*(engine.synthesize(t) for t in texts))
    assert len(results[1]) > len(results[0])
    assert all(r.size > 0 for r in results)


@pytest.mark.parametrize("text", ["户号1234", "余额123.45元", "１２３"])
async def test_espeak_refuses_arabic_numerals(text: str) -> None:
    with pytest.raises(TtsError, match="Arabic numerals.*ivr.speech.readout"):
        await EspeakTts().synthesize(text)


async def test_espeak_refuses_empty_text() -> None:
    with pytest.raises(TtsError, match="empty"):
        await EspeakTts().synthesize("  ")


async def test_missing_espeak_is_a_clear_error(tmp_path: Path) -> None:
    engine = EspeakTts(executable=str(tmp_path / "espeak-ng"))
    with pytest.raises(TtsError, match="espeak-ng not found"):
        await engine.synthesize("您好")
    with pytest.raises(TtsError, match="espeak-ng not found"):
        _ = engine.version


async def test_unknown_voice_reports_espeak_error() -> None:
    with pytest.raises(TtsError, match="voice does not exist"):
        await EspeakTts(voice="zz").synthesize("您好")


# --- pyttsx3 ------------------------------------------------------------------------------

HAVE_PYTTSX3 = importlib.util.find_spec("pyttsx3") is not None


@pytest.mark.skipif(
    not HAVE_PYTTSX3, reason="pyttsx3 is optional and not installed (pip install '.[pyttsx3]')"
)
async def test_pyttsx3_synthesizes_in_its_worker_thread() -> None:
    engine = Pyttsx3Tts()
    try:
        first, second = await asyncio.gather(engine.synthesize("hello"), engine.synthesize("bye"))
        assert first.dtype == np.int16 and first.size > 800 and second.size > 800
        assert -6.1 <= peak_dbfs(first) <= PEAK_LIMIT_DBFS
    finally:
        engine.close()


def test_pyttsx3_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyttsx3", None)  # as on a host without it: import fails
    with pytest.raises(TtsError, match="pyttsx3 is not installed"):
        Pyttsx3Tts()
