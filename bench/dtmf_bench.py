"""DTMF detector throughput: time per (channels, 160) block — one 20 ms media tick — on one core.

Every channel carries line noise at −40 dBm0; one channel in ten also dials digits, so the
state machine produces events as it would on a busy hotline. Prints, per channel count, the
median and 95th-percentile wall time and the median CPU time per block (CPU time is what one
core can carry; wall time also shows other load on a shared machine), and the channel count
that fits in the 20 ms real-time budget (linear fit of the medians).

    python bench/dtmf_bench.py
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # one core, before numpy is imported
os.environ["OMP_NUM_THREADS"] = "1"

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.media.dtmf import DtmfDetector  # noqa: E402
from drivers.media.tones import dtmf_sequence, white_noise  # noqa: E402

BLOCK = 160
TICK_SECONDS = BLOCK / 8000
SECONDS = 2.0  # audio fed per measurement (100 blocks)


def make_audio(channels: int) -> np.ndarray:
    blocks = int(SECONDS / TICK_SECONDS)
    n = blocks * BLOCK
    noise = white_noise(n / 8, -40.0, seed=1).astype(np.float32)
    audio = np.tile(noise, (channels, 1))
    digits = dtmf_sequence("95598", on_ms=80, off_ms=80, dbm0=-12.0).astype(np.float32)
    for ch in range(0, channels, 10):
        start = (ch * 331) % (n - len(digits))
        audio[ch, start : start + len(digits)] += digits
    return audio.astype(np.int16)


def measure(channels: int) -> tuple[float, float, float, int]:
    """Median and p95 wall time and median CPU time (ms) per block, and the events seen."""
    audio = make_audio(channels)
    detector = DtmfDetector(channels)
    wall, cpu, events = [], [], 0
    for i in range(0, audio.shape[1], BLOCK):
        block = np.ascontiguousarray(audio[:, i : i + BLOCK])
        w0, c0 = time.perf_counter(), time.process_time()
        events += len(detector.feed(block))
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    wall_ms, cpu_ms = np.array(wall[5:]) * 1000, np.array(cpu[5:]) * 1000  # drop warm-up
    return np.median(wall_ms), np.percentile(wall_ms, 95), np.median(cpu_ms), events


def main() -> None:
    budget = TICK_SECONDS * 1000
    print(f"DTMF detector, (channels, {BLOCK}) int16 blocks, real-time budget {budget:.0f} ms")
    print(f"{'channels':>8} {'wall ms':>8} {'p95 ms':>7} {'cpu ms':>7} {'µs/ch':>6} {'events':>7}")
    sizes, walls, cpus = [], [], []
    for channels in (500, 1000, 2000, 4000):
        wall, p95, cpu, events = measure(channels)
        sizes.append(channels)
        walls.append(wall)
        cpus.append(cpu)
        per_channel = cpu * 1000 / channels
        print(f"{channels:>8} {wall:>8.2f} {p95:>7.2f} {cpu:>7.2f} {per_channel:>6.2f} {events:>7}")
    for label, times in (("cpu", cpus), ("wall", walls)):
        slope, intercept = np.polyfit(sizes, times, 1)
        print(
            f"max channels in real time on one core ({label} median, linear fit): "
            f"{int((budget - intercept) / slope)}"
        )


if __name__ == "__main__":
    main()
