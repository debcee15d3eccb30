"""Load benchmark: many simulated-board lines running the bill-lookup flow in real time.

Every line carries a scripted caller that dials, waits for each prompt, presses its keys as
in-band DTMF tones, hears its bill read out and hangs up, then calls again, for the whole run.
The engine detects every key with the board's vectorized DTMF detector and records every call
(stereo WAV). The callers run in the same process, so the figures include the tester's side.

    python bench/board_bench.py --lines 500 --seconds 60

Prints: calls completed and failed, digits expected vs. detected per call (missed/extra),
CPU used by the process as a share of one core, media-tick lateness and tick cost.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drivers.clock import new_loop  # noqa: E402
from hotline.config import load_config  # noqa: E402
from hotline.engine import Engine  # noqa: E402
from hotline.logs import configure_logging  # noqa: E402
from sim.caller import Caller, ExpectationFailed, LocalLine  # noqa: E402

ACCOUNTS = ["1234567890", "2345678901", "1111111111"]


async def caller_loop(engine: Engine, n: int, stop_at: float, stats: dict) -> None:
    loop = asyncio.get_running_loop()
    line = LocalLine(engine.board.line(n))
    caller = Caller(line)
    await asyncio.sleep((n % 250) * 0.02)  # stagger the first calls over 5 s
    while loop.time() < stop_at:
        account = ACCOUNTS[n % len(ACCOUNTS)]
        try:
            await caller.dial(f"139{n:08d}")
            await caller.expect("电费查询请按一", timeout=60)
            await caller.press("1")
            await caller.expect("请输入您的十位户号", timeout=60)
            await caller.press(account + "#")
            await caller.expect("确认请按一", timeout=60)
            await caller.press("1")
            await caller.expect("本月电费为", timeout=60)
            await caller.hang_up("loop")
            await caller.expect_hangup(timeout=10)
            stats["expected"][line.far_end.call.caller] = "1" + account + "1"
            stats["completed"] += 1
        except ExpectationFailed as exc:
            stats["failed"] += 1
            stats["errors"].append(f"line {n}: {exc}")
            if line.status().get("state") not in ("idle", "ended"):
                await caller.hang_up("loop")
        await asyncio.sleep(0.5)


async def main(args: argparse.Namespace) -> None:
    configure_logging("console", "WARNING")
    scratch = Path(tempfile.mkdtemp(prefix="board-bench-"))
    config = load_config(
        None,
        root=ROOT,
        overrides={
            "database_url": f"sqlite+aiosqlite:///{scratch}/hotline.db",
            "recordings_dir": str(scratch / "recordings"),
        },
    )
    config.control.enabled = False
    config.sip.enabled = False  # this bench measures the board alone
    config.board.trunks = args.lines
    config.board.stations = 0
    engine = Engine(config, watch_flows=False)
    await engine.start()
    gc.collect()
    gc.freeze()
    board = engine.board
    tick_costs: list[float] = []
    tick = board.clock._on_tick

    def timed_tick(n: int) -> None:
        t0 = time.perf_counter()
        tick(n)
        tick_costs.append(time.perf_counter() - t0)

    board.clock._on_tick = timed_tick
    loop = asyncio.get_running_loop()
    stats = {"completed": 0, "failed": 0, "errors": [], "expected": {}}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    board.clock.lateness.clear()
    stop_at = loop.time() + args.seconds
    busy: list[int] = []

    async def sample_busy() -> None:
        while loop.time() < stop_at:
            await asyncio.sleep(1)
            busy.append(sum(1 for ch in board._channels if ch is not None))

    sampler = asyncio.create_task(sample_busy())
    await asyncio.gather(
        *(caller_loop(engine, n, stop_at, stats) for n in range(1, args.lines + 1))
    )
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    sampler.cancel()
    await engine.idle()
    missed = extra = 0
    checked = 0
    for outcome_id, outcome in engine.outcomes.items():
        del outcome_id
        caller_no = outcome.variables.get("caller")
        want = stats["expected"].get(caller_no)
        if want is None:
            continue
        checked += 1
        got = outcome.keys
        if got != want:
            if len(got) < len(want):
                missed += len(want) - len(got)
            else:
                extra += max(1, len(got) - len(want))
    late = sorted(board.clock.lateness)
    costs = sorted(tick_costs)
    recordings = list((scratch / "recordings").rglob("*.wav"))
    await engine.stop()
    shutil.rmtree(scratch, ignore_errors=True)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else 0.0

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, loop {type(loop).__module__}"
    )
    print(
        f"lines: {args.lines}   run: {wall:.1f} s   CPU: {cpu:.1f} s "
        f"= {100 * cpu / wall:.0f}% of one core"
    )
    print(
        f"lines in a call (1 s samples): median {statistics.median(busy) if busy else 0:.0f}, "
        f"max {max(busy) if busy else 0}"
    )
    print(
        f"calls completed: {stats['completed']}   failed: {stats['failed']}   "
        f"recordings: {len(recordings)}"
    )
    print(f"digits: {checked} calls checked, missed {missed}, extra {extra}")
    print(
        f"media tick lateness ms: p50 {pct(late, 0.5):.2f}  p99 {pct(late, 0.99):.2f}  "
        f"max {pct(late, 1.0):.2f}   late(>5 ms) ticks: {board.clock.late_ticks} "
        f"of {board.clock.ticks}"
    )
    print(
        f"media tick cost ms: p50 {pct(costs, 0.5):.2f}  p99 {pct(costs, 0.99):.2f}  "
        f"max {pct(costs, 1.0):.2f}"
    )
    for line in stats["errors"][:5]:
        print("  failure:", line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    loop = new_loop()
    try:
        loop.run_until_complete(main(args))
    finally:
        loop.close()
