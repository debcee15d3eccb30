"""Recorded-unit read-outs: the shipped set, composition rules, manifests, regeneration."""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import wave
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import yaml

from ivr.speech import readout
from ivr.speech.tts import EspeakTts
from ivr.speech.units import (
    DEFAULT_DIRECTORY,
    DEFAULT_UNITS,
    MANIFEST,
    PAUSES,
    Run,
    UnitsError,
    UnitVoice,
    generate_units,
)


@pytest.fixture(scope="module")
def voice() -> UnitVoice:
    return UnitVoice.shipped()


def write_tone(path: Path, seconds: float, rate: int = 8000) -> None:
    """A unit 'recording': a tone of a known length with no silence to trim."""
    t = np.arange(round(rate * seconds)) / rate
    samples = (np.sin(2 * np.pi * 400 * t) * 20000).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def random_values(kind: str, rng: random.Random) -> object:
    """A random value of ``kind`` as a billing system or a caller would supply it."""
    match kind:
        case "amount" | "balance":
            return f"{rng.randint(-10**7, 10**7) / 100:.2f}"
        case "digits":
            return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 20)))
        case "phone":
            return rng.choice(["1", "0", "9"]) + "".join(
                rng.choice("0123456789") for _ in range(rng.randint(2, 12))
            )
        case "number":
            return str(Decimal(rng.randint(-10**9, 10**9)).scaleb(-rng.randint(0, 4)))
        case "integer":
            return rng.choice([rng.randint(-100, 100), rng.randint(-10**13, 10**13)])
        case "date":
            return (dt.date(1990, 1, 1) + dt.timedelta(days=rng.randint(0, 20000))).isoformat()
        case "time":
            return f"{rng.randint(0, 23)}:{rng.randint(0, 59):02d}"
        case "percent":
            return rng.randint(-1000, 10000) / 10
    raise AssertionError(kind)


# --- the shipped set ----------------------------------------------------------------------


def test_shipped_units_are_8k_16bit_mono_wavs_listed_in_the_manifest() -> None:
    manifest = yaml.safe_load((DEFAULT_DIRECTORY / MANIFEST).read_text(encoding="utf-8"))
    assert manifest == DEFAULT_UNITS
    assert 30 <= len(manifest) <= 45
    for name in manifest.values():
        with wave.open(str(DEFAULT_DIRECTORY / name)) as unit:
            assert (unit.getframerate(), unit.getsampwidth(), unit.getnchannels()) == (8000, 2, 1)
            assert 0.1 < unit.getnframes() / 8000 < 1.0


@pytest.mark.parametrize("kind", sorted(readout.SLOT_KINDS - {"text"}))
def test_units_compose_every_read_out_kind_for_200_random_values(
    voice: UnitVoice, kind: str
) -> None:
    rng = random.Random(f"units-{kind}")
    for _ in range(200):
        spoken = readout.say(kind, random_values(kind, rng))
        audio = voice.compose(spoken)
        assert audio is not None, spoken
        assert audio.dtype == np.int16 and audio.size > 0
        assert np.abs(audio.astype(np.int32)).max() <= 16423  # −6 dBFS


def test_composed_bill_is_as_long_as_its_units_and_pauses(voice: UnitVoice) -> None:
    text = "二〇二六年十一月二十三日，欠费一百二十三元四角五分"
    units = [*"二〇二六年十一月二十三日", "欠费", *"一百二十三元四角五分"]
    expected = (
        sum(len(voice.units[u]) for u in units)
        + (len(units) - 2) * round(voice.gap * 8000)
        + round(PAUSES["，"] * 8000)
    )
    audio = voice.compose(text)
    assert audio is not None and len(audio) == expected
    assert 4 < len(audio) / 8000 < 12


def test_compose_returns_none_when_a_character_has_no_unit(voice: UnitVoice) -> None:
    assert voice.compose("您好") is None
    assert voice.compose("三十五元，") is not None
    assert not voice.can_compose("余额123")


def test_split_separates_unit_runs_from_other_text(voice: UnitVoice) -> None:
    assert voice.split("您的账户欠费三十五元二角，请及时缴费") == [
        Run("您的账户", False),
        Run("欠费三十五元二角，", True),
        Run("请及", False),
        Run("时", True),
        Run("缴费", False),
    ]


# --- composition rules on a synthetic set -------------------------------------------------


@pytest.fixture
def tone_set(tmp_path: Path) -> Path:
    lengths = {"百": 0.1, "分": 0.2, "之": 0.3, "百分之": 0.5, "五": 0.15}
    names = {}
    for i, (text, seconds) in enumerate(lengths.items()):
        names[text] = f"u{i}.wav"
        write_tone(tmp_path / names[text], seconds, rate=16000)
    (tmp_path / MANIFEST).write_text(yaml.safe_dump(names, allow_unicode=True), encoding="utf-8")
    return tmp_path


def test_greedy_longest_match_and_gaps(tone_set: Path) -> None:
    voice = UnitVoice(tone_set, gap=0.05, trim=False)
    # 百分之 (0.5) + gap + 五 (0.15), not 百 + 分 + 之
    assert len(voice.compose("百分之五")) == 4000 + 400 + 1200
    # 五 + gap + 百 + pause, no gap around the pause
    assert len(voice.compose("五百，")) == 1200 + 400 + 800 + 2000


def test_units_may_be_mp3_at_any_rate(tone_set: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=300:duration=0.4",
         "-ar", "44100", str(tone_set / "u4.mp3")],
        check=True,
    )  # fmt: skip
    manifest = yaml.safe_load((tone_set / MANIFEST).read_text(encoding="utf-8"))
    manifest["五"] = "u4.mp3"
    (tone_set / MANIFEST).write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    five = UnitVoice(tone_set).units["五"]
    assert 0.35 < len(five) / 8000 < 0.5


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("五: missing.wav\n", "cannot load"),
        ("五: ../u0.wav\n", "must be a plain file name"),
        ("五: /etc/u0.wav\n", "must be a plain file name"),
        ("5: u0.wav\n", "must be non-empty text"),
        ("- u0.wav\n", "expected a mapping"),
        ("五: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_manifests_are_clear_errors(tone_set: Path, manifest: str, message: str) -> None:
    (tone_set / MANIFEST).write_text(manifest, encoding="utf-8")
    with pytest.raises(UnitsError, match=message):
        UnitVoice(tone_set)


def test_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnitsError, match="unit manifest not found"):
        UnitVoice(tmp_path)


# --- regeneration -------------------------------------------------------------------------


async def test_generate_units_writes_a_loadable_set(tmp_path: Path) -> None:
    chosen = {text: DEFAULT_UNITS[text] for text in ["一", "百", "元", "整", "百分之"]}
    manifest = await generate_units(tmp_path, EspeakTts(), chosen)
    assert yaml.safe_load(manifest.read_text(encoding="utf-8")) == chosen
    voice = UnitVoice(tmp_path)
    assert voice.compose("一百元整") is not None
    assert voice.compose("二") is None
    with wave.open(str(tmp_path / "bai.wav")) as unit:
        assert (unit.getframerate(), unit.getsampwidth(), unit.getnchannels()) == (8000, 2, 1)
