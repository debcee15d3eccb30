"""SpeechService: what the caller hears for prompts and read-outs (real espeak-ng and files)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from drivers.channel import Playable
from ivr.ports import Speech
from ivr.speech import readout
from ivr.speech.prompts import PromptIdError
from ivr.speech.service import SpeechService
from ivr.speech.tts import EspeakTts, TtsError
from ivr.speech.units import UnitVoice


class CountingEspeak:
    """The real espeak-ng engine, counting the texts it is asked to speak."""

    def __init__(self) -> None:
        self.inner = EspeakTts()
        self.name = self.inner.name
        self.version = self.inner.version
        self.settings = self.inner.settings
        self.spoken: list[str] = []

    async def synthesize(self, text: str) -> np.ndarray:
        self.spoken.append(text)
        return await self.inner.synthesize(text)


@pytest.fixture(scope="module")
def units() -> UnitVoice:
    return UnitVoice.shipped()


@pytest.fixture
def engine() -> CountingEspeak:
    return CountingEspeak()


def write_wav(path: Path, seconds: float) -> None:
    t = np.arange(round(16000 * seconds)) / 16000
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.sin(2 * np.pi * 350 * t) * 25000).astype(np.int16).tobytes())


async def test_prompt_is_cached_tts_with_its_encodings(tmp_path: Path, engine) -> None:
    speech: Speech = SpeechService(engine, tmp_path / "cache")
    played = await speech.prompt("welcome", "欢迎致电国家电网")
    assert isinstance(played, Playable)
    assert (played.kind, played.prompt_id, played.text) == ("prompt", "welcome", "欢迎致电国家电网")
    assert played.samples.dtype == np.int16 and 0.8 < played.seconds < 5
    assert len(played.encoded["pcmu"]) == len(played.encoded["pcma"]) == len(played.samples)
    again = await speech.prompt("welcome", "欢迎致电国家电网")
    assert again.samples is played.samples and engine.spoken == ["欢迎致电国家电网"]


async def test_recorded_prompt_overrides_tts_by_id(tmp_path: Path, engine) -> None:
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    write_wav(recorded / "welcome.wav", 1.5)
    speech = SpeechService(engine, tmp_path / "cache", recorded_dir=recorded)
    played = await speech.prompt("welcome", "欢迎致电国家电网")
    assert len(played.samples) == 12000 and played.text == "欢迎致电国家电网"
    assert engine.spoken == []
    other = await speech.prompt("goodbye", "再见")
    assert engine.spoken == ["再见"] and other.prompt_id == "goodbye"


async def test_prompt_id_escaping_the_recordings_is_rejected(tmp_path: Path, engine) -> None:
    speech = SpeechService(engine, tmp_path / "cache", recorded_dir=tmp_path)
    with pytest.raises(PromptIdError):
        await speech.prompt("../cache/x", "您好")


async def test_readout_composes_numbers_from_units_and_words_from_tts(
    tmp_path: Path, engine, units: UnitVoice
) -> None:
    speech = SpeechService(engine, tmp_path / "cache", units=units)
    text = f"您的账户{readout.balance('-35.2')}，请及时缴费"
    played = await speech.readout(text)
    assert (played.kind, played.text, played.prompt_id) == ("readout", text, None)
    # the words around the figure are synthesized (时 in 及时 stays with its word)
    assert engine.spoken == ["您的账户", "请及时缴费"]
    expected = np.concatenate(
        [
            speech.cache.peek("您的账户").samples,
            units.compose("欠费三十五元二角，"),
            speech.cache.peek("请及时缴费").samples,
        ]
    )
    assert np.array_equal(played.samples, expected)
    assert np.abs(played.samples.astype(np.int32)).max() <= 16423


async def test_readout_of_a_bare_figure_needs_no_tts(tmp_path: Path, engine, units) -> None:
    speech = SpeechService(engine, tmp_path / "cache", units=units)
    spoken = readout.amount("123.45")
    played = await speech.readout(spoken)
    assert engine.spoken == []
    assert np.array_equal(played.samples, units.compose(spoken))


async def test_static_words_around_figures_are_synthesized_once(
    tmp_path: Path, engine, units
) -> None:
    speech = SpeechService(engine, tmp_path / "cache", units=units)
    for value in ["12.05", "230.00", "0.50"]:
        await speech.readout(f"您本月电费{readout.amount(value)}")
    assert engine.spoken == ["您本月电费"]


async def test_tts_mode_speaks_the_whole_text_and_keeps_it_off_disk(
    tmp_path: Path, engine, units
) -> None:
    speech = SpeechService(engine, tmp_path / "cache", units=units, readout_mode="tts")
    text = f"您的户号是{readout.digits('3201234567')}"
    played = await speech.readout(text)
    assert engine.spoken == [text]
    assert len(played.encoded["pcmu"]) == len(played.samples)
    assert not list((tmp_path / "cache").rglob("*.s16"))


async def test_without_units_readouts_go_through_tts(tmp_path: Path, engine) -> None:
    speech = SpeechService(engine, tmp_path / "cache")
    await speech.readout("余额五元整")
    assert engine.spoken == ["余额五元整"]


async def test_empty_readout_is_silence_in_both_modes(tmp_path: Path, engine, units) -> None:
    for mode in ("units", "tts"):
        speech = SpeechService(engine, tmp_path / mode, units=units, readout_mode=mode)
        assert (await speech.readout("")).samples.size == 0
    assert engine.spoken == []


async def test_readout_with_arabic_numerals_is_refused(tmp_path: Path, engine, units) -> None:
    speech = SpeechService(engine, tmp_path / "cache", units=units)
    with pytest.raises(TtsError, match="Arabic numerals"):
        await speech.readout("您的户号是3201234567")


async def test_warm_loads_recordings_and_synthesizes_the_rest(
    tmp_path: Path, engine, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    write_wav(recorded / "welcome.wav", 0.5)
    speech = SpeechService(engine, tmp_path / "cache", recorded_dir=recorded)
    report = await speech.warm(
        {"welcome": "欢迎致电", "menu": "查询电费请按一", "bye": "再见"}, progress=True
    )
    assert sorted(engine.spoken) == sorted(["查询电费请按一", "再见"])
    assert (report.total, report.synthesized) == (3, 2)
    assert "prompts 2/2" in capsys.readouterr().err
    await speech.prompt("menu", "查询电费请按一")
    assert len(engine.spoken) == 2


def test_unknown_readout_mode_is_rejected(tmp_path: Path, engine) -> None:
    with pytest.raises(ValueError, match="readout_mode must be 'units' or 'tts'"):
        SpeechService(engine, tmp_path, readout_mode="robot")  # type: ignore[arg-type]
