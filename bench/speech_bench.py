"""Speech layer figures: prompt-cache hit cost, cold espeak-ng synthesis, unit composition.

Run: ``python bench/speech_bench.py`` (from the repository root). Uses a temporary cache
directory and the real espeak-ng; prints one line per figure.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr.speech import readout
from ivr.speech.prompts import PromptCache
from ivr.speech.tts import EspeakTts
from ivr.speech.units import UnitVoice

HITS = 100_000
COLD_TEXTS = [
    "欢迎致电国家电网", "查询电费请按一", "故障报修请按二", "人工服务请按零", "请输入您的户号",
    "请稍候", "正在为您转接", "感谢您的来电", "再见", "您所在的区域正在停电",
    "抢修人员正在赶往现场", "请在提示音后留言", "您的留言已保存", "输入有误请重新输入",
    "按井号键结束", "本月电费已结清", "请您及时缴费", "系统繁忙请稍后再拨", "您好", "谢谢",
]  # fmt: skip


def machine() -> str:
    model = "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line
        )
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


async def cache_hits(cache: PromptCache, text: str) -> tuple[float, float]:
    """Median ns of ``await cache.get(text)`` and of the synchronous ``cache.peek(text)``."""
    await cache.get(text)
    clock = time.perf_counter_ns
    awaited, peeked = [], []
    for _ in range(HITS):
        start = clock()
        await cache.get(text)
        awaited.append(clock() - start)
    for _ in range(HITS):
        start = clock()
        cache.peek(text)
        peeked.append(clock() - start)
    overhead = statistics.median([-(clock() - clock()) for _ in range(10_000)])
    return statistics.median(awaited) - overhead, statistics.median(peeked) - overhead


async def cold_synthesis(engine: EspeakTts, directory: Path) -> tuple[float, float]:
    """Median ms of a bare espeak-ng synthesis and of a cache miss (synthesis + disk write)."""
    bare = []
    for text in COLD_TEXTS:
        start = time.perf_counter()
        await engine.synthesize(text)
        bare.append(time.perf_counter() - start)
    cache = PromptCache(directory, engine)
    missed = []
    for text in COLD_TEXTS:
        start = time.perf_counter()
        await cache.get(text)
        missed.append(time.perf_counter() - start)
    return statistics.median(bare) * 1e3, statistics.median(missed) * 1e3


def bill_readout() -> str:
    """The figures of a bill announcement, as the read-out rules word them."""
    return "，".join(
        [readout.date("2026-11-23"), readout.balance("-123.45"), readout.digits("3201234567")]
    )


def composition(voice: UnitVoice) -> tuple[str, float, float]:
    """Median µs to compose a bill read-out from units, without and with the read-out rules."""
    bill = bill_readout()
    runs = 2000
    compose, both = [], []
    for _ in range(runs):
        start = time.perf_counter_ns()
        voice.compose(bill)
        compose.append(time.perf_counter_ns() - start)
    for _ in range(runs):
        start = time.perf_counter_ns()
        voice.compose(bill_readout())
        both.append(time.perf_counter_ns() - start)
    return bill, statistics.median(compose) / 1e3, statistics.median(both) / 1e3


async def main() -> None:
    engine = EspeakTts()
    print(f"machine: {machine()}; espeak-ng {engine.version}")
    with tempfile.TemporaryDirectory() as scratch:
        cache = PromptCache(Path(scratch) / "hits", engine)
        awaited, peeked = await cache_hits(cache, "欢迎致电国家电网")
        print(
            f"prompt cache hit: {awaited / 1e3:.2f} µs per await get(), "
            f"{peeked / 1e3:.3f} µs per peek() (median of {HITS:,})"
        )
        bare, missed = await cold_synthesis(engine, Path(scratch) / "cold")
        print(
            f"cold synthesis: {bare:.1f} ms espeak-ng, {missed:.1f} ms cache miss incl. disk "
            f"(median of {len(COLD_TEXTS)} distinct texts)"
        )
    bill, compose_us, with_readout_us = composition(UnitVoice.shipped())
    print(
        f"unit composition: {compose_us:.1f} µs for {bill!r} "
        f"({with_readout_us:.1f} µs including the read-out rules)"
    )


if __name__ == "__main__":
    asyncio.run(main())
