"""The prompt cache (real espeak-ng, real files) and operator-recorded prompts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr.speech.prompts import CACHE_FORMAT, PromptCache, PromptIdError, RecordedPrompts
from ivr.speech.tts import EspeakTts, TtsError


class CountingEspeak:
    """The real espeak-ng engine, counting the texts it is asked to speak."""

    def __init__(self, version: str | None = None, voice: str = "cmn-latn-pinyin") -> None:
        self.inner = EspeakTts(voice=voice)
        self.name = self.inner.name
        self.version = version or self.inner.version
        self.settings = self.inner.settings
        self.spoken: list[str] = []

    async def synthesize(self, text: str) -> np.ndarray:
        self.spoken.append(text)
        return await self.inner.synthesize(text)


def peak_dbfs(samples: np.ndarray) -> float:
    return 20 * np.log10(np.max(np.abs(samples.astype(np.int32))) / 32768)


def write_wav(path: Path, rate: int, seconds: float, channels: int = 1, freq: float = 440) -> None:
    t = np.arange(round(rate * seconds)) / rate
    mono = (np.sin(2 * np.pi * freq * t) * 30000).astype(np.int16)
    frames = np.stack([mono] * channels, axis=1) if channels > 1 else mono
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames.tobytes())


# --- cache --------------------------------------------------------------------------------


async def test_miss_synthesizes_and_stores_raw_and_encoded_files(tmp_path: Path) -> None:
    engine = CountingEspeak()
    cache = PromptCache(tmp_path, engine)
    samples = await cache.get("欢迎致电国家电网")
    assert engine.spoken == ["欢迎致电国家电网"]
    assert samples.dtype == np.int16 and peak_dbfs(samples) <= -5.9
    base = cache.path("欢迎致电国家电网")
    assert base.parent.name == base.name[:2] and len(base.name) == 64
    assert np.array_equal(np.fromfile(base.with_suffix(".s16"), dtype="<i2"), samples)
    assert base.with_suffix(".pcmu").stat().st_size == len(samples)
    assert base.with_suffix(".pcma").stat().st_size == len(samples)
    assert '"text": "欢迎致电国家电网"' in base.with_suffix(".json").read_text(encoding="utf-8")


async def test_hit_returns_the_same_audio_without_synthesizing(tmp_path: Path) -> None:
    engine = CountingEspeak()
    cache = PromptCache(tmp_path, engine)
    first = await cache.get("您好")
    again = await cache.get("您好")
    assert again is first and engine.spoken == ["您好"]
    assert not first.flags.writeable  # nobody can alter the cached audio


async def test_a_new_cache_on_the_same_directory_reads_from_disk(tmp_path: Path) -> None:
    first = await PromptCache(tmp_path, CountingEspeak()).fetch("请输入户号")
    engine = CountingEspeak()
    cache = PromptCache(tmp_path, engine)
    again = await cache.fetch("请输入户号")
    assert engine.spoken == [] and cache.disk_loads == 1
    assert np.array_equal(again.samples, first.samples)
    assert again.encoded == first.encoded


async def test_key_covers_text_engine_version_voice_and_format(tmp_path: Path) -> None:
    base = PromptCache(tmp_path, CountingEspeak(version="1.51"))
    assert base.key("您好") == PromptCache(tmp_path, CountingEspeak(version="1.51")).key("您好")
    assert base.key("您好") != base.key("您好。")
    assert base.key("您好") != PromptCache(tmp_path, CountingEspeak(version="1.52")).key("您好")
    other_voice = CountingEspeak(version="1.51", voice="cmn")
    assert base.key("您好") != PromptCache(tmp_path, other_voice).key("您好")
    assert CACHE_FORMAT >= 1


async def test_upgraded_engine_synthesizes_again(tmp_path: Path) -> None:
    await PromptCache(tmp_path, CountingEspeak(version="1.51")).get("您好")
    upgraded = CountingEspeak(version="1.52")
    await PromptCache(tmp_path, upgraded).get("您好")
    assert upgraded.spoken == ["您好"]


async def test_concurrent_requests_for_one_text_synthesize_once(tmp_path: Path) -> None:
    engine = CountingEspeak()
    cache = PromptCache(tmp_path, engine)
    results = await asyncio.gather(*(cache.get("请稍候") for _ in range(8)))
    assert engine.spoken == ["请稍候"]
    assert all(r is results[0] for r in results)


async def test_a_cancelled_caller_does_not_cancel_the_synthesis_for_others(tmp_path: Path) -> None:
    engine = CountingEspeak()
    cache = PromptCache(tmp_path, engine)
    leaving = asyncio.ensure_future(cache.get("正在为您转接"))
    staying = asyncio.ensure_future(cache.get("正在为您转接"))
    await asyncio.sleep(0)
    leaving.cancel()
    assert (await staying).size > 0
    assert engine.spoken == ["正在为您转接"]


async def test_failure_reaches_every_waiter_and_is_retried_later(tmp_path: Path) -> None:
    engine = CountingEspeak()
    cache = PromptCache(tmp_path, engine)
    attempts = (cache.get("户号12") for _ in range(3))
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    assert all(isinstance(o, TtsError) for o in outcomes)
    with pytest.raises(TtsError):
        await cache.get("户号12")
    assert engine.spoken == ["户号12", "户号12"]  # one attempt per round, none cached


async def test_damaged_entry_is_synthesized_again(tmp_path: Path) -> None:
    await PromptCache(tmp_path, CountingEspeak()).get("您好")
    engine = CountingEspeak()
    cache = PromptCache(tmp_path, engine)
    cache.path("您好").with_suffix(".pcma").write_bytes(b"\xd5" * 10)  # truncated
    samples = await cache.get("您好")
    assert engine.spoken == ["您好"] and samples.size > 10
    assert cache.path("您好").with_suffix(".pcma").stat().st_size == samples.size


async def test_memory_only_entries_are_not_written_and_are_evicted_oldest_first(
    tmp_path: Path,
) -> None:
    engine = CountingEspeak()
    cache = PromptCache(tmp_path, engine, memory_limit=40_000)  # 2 digits: ~17 kB each
    await cache.warm(["您好"])
    for text in ["一", "二", "三", "四"]:
        await cache.get(text, persist=False)
    assert not cache.path("一").with_suffix(".s16").exists()
    assert cache.peek("您好") is not None  # warmed prompts stay, outside the budget
    kept = [text for text in ["一", "二", "三", "四"] if cache.peek(text) is not None]
    assert kept == ["三", "四"]


async def test_warm_builds_many_with_a_progress_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = CountingEspeak()
    cache = PromptCache(tmp_path, engine)
    texts = ["您好", "再见", "请按一", "请按二", "请稍候", "您好"]
    report = await cache.warm(texts, progress=True, concurrency=2)
    assert (report.total, report.synthesized) == (5, 5)
    assert sorted(engine.spoken) == sorted(set(texts))
    assert "prompts 5/5: 5 synthesized" in capsys.readouterr().err
    again = await PromptCache(tmp_path, CountingEspeak()).warm(texts)
    assert (again.from_disk, again.synthesized) == (5, 0)


async def test_warm_names_the_texts_that_failed_after_doing_the_rest(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, CountingEspeak())
    with pytest.raises(TtsError, match="1 of 3 prompts failed: '请拨打95598'"):
        await cache.warm(["您好", "请拨打95598", "再见"])
    assert cache.peek("您好") is not None and cache.peek("再见") is not None


# --- recorded prompts ---------------------------------------------------------------------


def test_recorded_wav_at_any_rate_is_converted(tmp_path: Path) -> None:
    write_wav(tmp_path / "welcome.wav", 44100, 0.5, channels=2)
    samples = RecordedPrompts(tmp_path).get("welcome")
    assert samples is not None and samples.dtype == np.int16
    assert len(samples) == 4000 and -6.1 <= peak_dbfs(samples) <= -5.9


def test_recorded_mp3_is_decoded_with_ffmpeg(tmp_path: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=500:duration=1",
         str(tmp_path / "menu.main.mp3")],
        check=True,
    )  # fmt: skip
    samples = RecordedPrompts(tmp_path).get("menu.main")
    assert samples is not None
    assert 0.95 < len(samples) / 8000 < 1.1 and -6.1 <= peak_dbfs(samples) <= -5.9


def test_missing_recording_is_none_and_wav_wins_over_mp3(tmp_path: Path) -> None:
    prompts = RecordedPrompts(tmp_path)
    assert prompts.get("welcome") is None
    write_wav(tmp_path / "welcome.wav", 8000, 0.25)
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=1",
         str(tmp_path / "welcome.mp3")],
        check=True,
    )  # fmt: skip
    assert len(prompts.get("welcome")) == 2000


def test_replaced_recording_is_picked_up(tmp_path: Path) -> None:
    prompts = RecordedPrompts(tmp_path)
    write_wav(tmp_path / "bye.wav", 8000, 0.5)
    assert len(prompts.get("bye")) == 4000
    assert prompts.get("bye") is prompts.get("bye")  # kept in memory
    write_wav(tmp_path / "bye.wav", 8000, 1.0)
    os.utime(tmp_path / "bye.wav", ns=(1, 10**18))
    assert len(prompts.get("bye")) == 8000
    (tmp_path / "bye.wav").unlink()
    assert prompts.get("bye") is None


def test_unreadable_recording_falls_back_to_none(tmp_path: Path) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    assert RecordedPrompts(tmp_path).get("broken") is None


@pytest.mark.parametrize(
    "prompt_id", ["../secret", "..", "a/b", "/etc/passwd", "a\\b", "", "x..y", "名字", "a b"]
)
def test_ids_that_could_escape_the_directory_are_rejected(tmp_path: Path, prompt_id: str) -> None:
    inner = tmp_path / "prompts"
    inner.mkdir()
    write_wav(tmp_path / "secret.wav", 8000, 0.1)
    with pytest.raises(PromptIdError, match="not allowed"):
        RecordedPrompts(inner).get(prompt_id)


async def test_async_fetch_loads_in_a_thread_and_carries_encodings(tmp_path: Path) -> None:
    write_wav(tmp_path / "hold.music-1.wav", 16000, 0.5)
    entry = await RecordedPrompts(tmp_path).fetch("hold.music-1")
    assert entry is not None and len(entry.encoded["pcmu"]) == len(entry.samples) == 4000
