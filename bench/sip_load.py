"""SIP load benchmark: one engine process on one core, a load generator on the other.

    python bench/sip_load.py --calls 600 --rate 250 --seconds 60

Starts the engine in its own process pinned to CPU 0 (``bench/sip_load_engine.py``: SIP on a
free port of 127.0.0.1, every call recorded, ``sip.answer_after`` 0 so the 200 OK follows the
INVITE at once, the per-source INVITE limit raised) and runs the callers in this process,
pinned to CPU 1 (``bench/sip_load_callers.py``): SIP signalling plus RTP both ways — each
caller sends G.711 every 20 ms and presses its keys as RFC 4733 events — through the bill
lookup of flows/main.yaml (1, account number and #, 1 to confirm, hear the bill, 9, #; the
engine says goodbye and hangs up).

Phases: a warm-up call; the ramp, new calls at ``--rate`` per second until ``--calls`` are in
progress; the steady phase of ``--seconds``, each finished call replaced at once so
``--calls`` stay in progress; then the last calls finish. Every call is checked afterwards in
the engine's call records (keys stored = keys pressed, the bill was read, the engine hung
up, a recording exists).

Prints: calls completed/failed, peak concurrent calls, call setup rate during the ramp
(INVITE→200 OK, and INVITE→180), the engine's CPU as a share of one core, RTP send lateness in
the engine (the media clock ticks every 5 ms and each tick sends a quarter of the streams'
packets: the lateness of a tick's last packet against the tick's deadline, i.e. the worst
packet), the cost of a tick, packet arrival spacing at the callers, recordings written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sip_load_callers import Call, Generator  # noqa: E402
from drivers.clock import new_loop  # noqa: E402

ACCOUNTS = ["1234567890", "2345678901", "3456789012"]
DRAIN_SECONDS = 300  # the calls in progress at the end must finish within this
EXPECTED_KEYS = "1{account}19#"  # the # after ten digits is swallowed by the collect


class EngineProcess:
    """The engine child process and its one-line JSON command channel."""

    def __init__(
        self,
        scratch: Path,
        cpu: int | None,
        answer_after: float,
        profile: str | None,
        stalls: bool = False,
    ) -> None:
        command = [sys.executable, str(ROOT / "bench" / "sip_load_engine.py")]
        command += ["--scratch", str(scratch), "--answer-after", str(answer_after)]
        if cpu is not None:
            command += ["--cpu", str(cpu)]
        if profile:
            command += ["--profile", profile]
        if stalls:
            command += ["--stalls"]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )

    async def read(self, timeout: float = 120.0) -> dict:
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = await asyncio.wait_for(
                loop.run_in_executor(None, self.proc.stdout.readline),
                deadline - time.monotonic(),
            )
            if not line:
                raise RuntimeError(f"engine process exited ({self.proc.poll()})")
            if line.startswith("{"):
                return json.loads(line)
        raise TimeoutError("engine process did not answer")

    async def command(self, word: str, timeout: float = 120.0) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        return await self.read(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def pct(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


def check_records(db: Path, calls: list[Call]) -> dict[str, str]:
    """Each completed call's record in the engine's store: problems by caller number."""
    want = {f"139{c.n:08d}": c for c in calls if not c.failure}
    problems: dict[str, str] = {}
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT caller, keys, flow_path, hangup_cause, recording_path, answered_at"
            " FROM call_records"
        ).fetchall()
    seen = set()
    for caller, keys, path, cause, recording, answered in rows:
        call = want.get(caller)
        if call is None:
            continue
        seen.add(caller)
        expected = EXPECTED_KEYS.format(account=call.account)
        steps = json.loads(path) if isinstance(path, str) else path
        if keys != expected:
            problems[caller] = f"keys {keys!r}, pressed {expected!r}"
        elif not any("read_charge" in s for s in steps) or not steps[-1].endswith("goodbye"):
            problems[caller] = f"path {steps}"
        elif answered is None or cause not in ("normal", "NORMAL"):
            problems[caller] = f"answered {answered}, cause {cause}"
        elif not recording or not Path(recording).exists():
            problems[caller] = f"no recording ({recording})"
    for caller in want.keys() - seen:
        problems[caller] = "no call record"
    return problems


async def run(args: argparse.Namespace, scratch: Path) -> int:
    if args.generator_cpu is not None:
        os.sched_setaffinity(0, {args.generator_cpu})
    engine = EngineProcess(scratch, args.engine_cpu, args.answer_after, args.profile, args.stalls)
    try:
        return await drive(args, scratch, engine)
    finally:
        engine.kill()


async def drive(args: argparse.Namespace, scratch: Path, engine: EngineProcess) -> int:
    hello = await engine.read(timeout=300)
    gen = Generator(hello["port"], think=args.think)
    await gen.open()
    loop = asyncio.get_running_loop()
    numbers = iter(range(1, 10**7))

    def start(n: int) -> asyncio.Task[Call]:
        return asyncio.create_task(gen.run_call(n, ACCOUNTS[n % len(ACCOUNTS)]))

    warm = await start(next(numbers))  # the first call loads what the engine loads lazily
    if warm.failure:
        print(f"warm-up call failed: {warm.failure}")
        return 1
    await engine.command("mark")
    cpu0, wall0 = time.process_time(), time.monotonic()
    running: set[asyncio.Task[Call]] = set()
    done: list[Call] = []
    peak = 0

    def finished(task: asyncio.Task[Call]) -> None:
        running.discard(task)
        if not task.cancelled():
            done.append(task.result())

    def launch() -> None:
        task = start(next(numbers))
        running.add(task)
        task.add_done_callback(finished)

    # ramp: new calls at --rate until --calls are in progress
    ramp_t0 = loop.time()
    for i in range(args.calls):
        await asyncio.sleep(max(0.0, ramp_t0 + i / args.rate - loop.time()))
        launch()
    await asyncio.sleep(1.0)
    ramp_report = await engine.command("report")  # the ramp's figures; the rest: steady phase
    await engine.command("mark")
    ramp_calls = [c for c in gen.calls.values() if c.n > 1]
    answered = [c for c in ramp_calls if c.answered_at]
    # steady: keep --calls in progress for --seconds
    steady_end = loop.time() + args.seconds
    while loop.time() < steady_end:
        peak = max(peak, len(gen.active))
        for _ in range(args.calls - len(running)):
            launch()
        await asyncio.sleep(0.05)
    report = await engine.command("report")
    # drain: the calls in progress finish
    drain_end = loop.time() + DRAIN_SECONDS
    while running and loop.time() < drain_end:
        peak = max(peak, len(gen.active))
        await asyncio.sleep(0.1)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    unfinished = len(running)
    for task in list(running):
        task.cancel()
    stopped = await engine.command("stop", timeout=180)
    engine.proc.wait(60)
    gen.close()
    all_calls = [warm, *done]
    failed = [c for c in all_calls if c.failure]
    problems = check_records(scratch / "hotline.db", all_calls)

    # --- figures ----------------------------------------------------------------------
    invites = [c.invite_at for c in ramp_calls]
    oks = sorted(c.answered_at for c in answered)
    rings = sorted(c.ringing_at for c in ramp_calls if c.ringing_at)
    setup = [c.answered_at - c.invite_at for c in answered]
    span_ok = (oks[-1] - min(invites)) if oks else 0.0
    span_ring = (rings[-1] - min(invites)) if rings else 0.0
    gaps = np.array([g for c in all_calls for g in c.gaps]) * 1000
    durations = [c.ended_at - c.answered_at for c in all_calls if c.bye and c.answered_at]
    completed = len(all_calls) - len(failed) - len(problems)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, loop {type(loop).__module__}; "
        f"load average (1 min) before the run: {args.loadavg:.2f}"
    )
    print(
        f"engine pinned to CPU {args.engine_cpu}, callers to CPU {args.generator_cpu}; "
        f"target {args.calls} concurrent calls, ramp at {args.rate:.0f}/s, "
        f"steady {args.seconds:.0f} s, answer_after {args.answer_after} s, "
        f"callers think 0–{args.think:g} s"
    )
    print(
        f"calls: {len(all_calls) + unfinished} placed, {completed} completed and checked, "
        f"{len(failed) + unfinished} failed, {len(problems)} wrong in the call records; "
        f"peak concurrent {max(peak, report['max_streams'], ramp_report['max_streams'])} "
        f"(engine media streams max {max(report['max_streams'], ramp_report['max_streams'])}); "
        f"call length median {pct(durations, 50):.1f} s"
    )
    print(
        f"setup during ramp: {len(answered)} of {len(ramp_calls)} answered in "
        f"{span_ok:.2f} s = {len(answered) / span_ok if span_ok else 0:.0f} calls/s "
        f"INVITE→200 OK (INVITE→180: {len(rings) / span_ring if span_ring else 0:.0f}/s); "
        f"INVITE→200 latency p50 {pct(setup, 50) * 1000:.1f} ms, "
        f"p99 {pct(setup, 99) * 1000:.1f} ms"
    )
    print(
        f"engine CPU: {report['cpu_s']:.1f} s in {report['wall_s']:.1f} s = "
        f"{report['cpu_pct']:.0f}% of one core (steady phase; during the ramp "
        f"{ramp_report['cpu_pct']:.0f}%); "
        f"callers' CPU {100 * cpu / wall:.0f}% of one core"
    )
    send, late, cost = report["send_late_ms"], report["tick_late_ms"], report["tick_cost_ms"]
    ramp_send = ramp_report["send_late_ms"]
    print(
        f"during the ramp: RTP send lateness ms p50 {ramp_send['p50']:.2f}  "
        f"p99 {ramp_send['p99']:.2f}  max {ramp_send['max']:.2f}; the rest is the steady phase"
    )
    print(
        f"RTP send lateness (engine; per clock phase, its last packet) ms: p50 {send['p50']:.2f}  "
        f"p99 {send['p99']:.2f}  max {send['max']:.2f}; phases > 5 ms: "
        f"{report['send_late_over_5ms']} of {report['send_batches']}; resyncs {report['resyncs']}"
        f"; sent by {'the pacer thread' if report['pacer'] else 'the tick'}"
    )
    print(
        f"media clock phase start lateness ms: p50 {late['p50']:.2f}  p99 {late['p99']:.2f}  "
        f"max {late['max']:.2f}; phase cost ms: p50 {cost['p50']:.2f}  p99 {cost['p99']:.2f}  "
        f"max {cost['max']:.2f}"
    )
    tcpu = report["tick_cpu_ms"]
    print(
        f"media clock CPU: {report['ticks_cpu_s']:.1f} s of the engine's {report['cpu_s']:.1f} s; "
        f"per tick (CPU time, preemption not counted) ms: p50 {tcpu['p50']:.2f}  "
        f"p99 {tcpu['p99']:.2f}  max {tcpu['max']:.2f}; the pacer thread's sending "
        f"{report['pacer_cpu_s']:.1f} s"
    )
    print(
        f"engine garbage collections (gen 0/1/2): {report['gc_runs']}, "
        f"{report['gc_ms']} ms in all, longest {report['gc_longest_ms']} ms"
    )
    print(
        f"RTP packets engine in/out: {report['packets_in']}/{report['packets_out']}; "
        f"arrival spacing at the callers ms: p50 {pct(gaps, 50):.1f}  p99 {pct(gaps, 99):.1f}"
        f"  max {gaps.max() if len(gaps) else 0:.1f}"
    )
    print(
        f"recordings: {stopped['recordings']} written ({stopped['recording_bytes'] / 1e6:.0f} MB),"
        f" {stopped['partial_recordings']} unfinished; calls left running in the engine: "
        f"{stopped['calls_left_running']}"
    )
    for call in failed[:5]:
        print(f"  failed call 139{call.n:08d}: {call.failure}")
    for caller, problem in list(problems.items())[:5]:
        print(f"  wrong record {caller}: {problem}")
    if unfinished:
        print(f"  {unfinished} calls still running {DRAIN_SECONDS} s after the steady phase")
    ok = not failed and not problems and not unfinished and completed == len(all_calls)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=600, help="calls kept in progress")
    parser.add_argument("--rate", type=float, default=250.0, help="new calls/s during the ramp")
    parser.add_argument("--seconds", type=float, default=60.0, help="steady phase length")
    parser.add_argument("--answer-after", type=float, default=0.0, help="ring before 200 OK")
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="each caller waits 0…THINK s (uniform) before pressing keys; 0: all in lock step",
    )
    parser.add_argument("--engine-cpu", type=int, default=0)
    parser.add_argument("--generator-cpu", type=int, default=1)
    parser.add_argument("--profile", help="cProfile the engine into this file")
    parser.add_argument("--stalls", action="store_true", help="engine: print where it stalls")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    if not 1 <= args.calls <= 5000 or not 0 < args.rate <= 2000 or args.seconds > 3600:
        parser.error("--calls 1..5000, --rate up to 2000/s, --seconds up to 3600")
    args.loadavg = os.getloadavg()[0]
    scratch = Path(tempfile.mkdtemp(prefix="sip-load-"))
    loop = new_loop()
    try:
        return loop.run_until_complete(run(args, scratch))
    finally:
        loop.close()
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
