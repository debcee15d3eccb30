"""The engine side of the SIP load benchmark: one engine process, measured from inside.

Started by ``bench/sip_load.py`` (not meant to be run by hand): it starts the engine on the
given scratch folder with SIP on a free port of 127.0.0.1 (board and control socket off, the
INVITE rate limit raised, ``sip.answer_after`` as given), pins itself to one CPU, prints one
JSON line ``{"port": …, "pid": …}`` on stdout and then obeys one-word commands on stdin:

- ``mark``: start measuring (CPU time, media tick lateness and cost, RTP send lateness);
- ``report``: print one JSON line with the figures since ``mark``;
- ``stop``: let the running calls finish (at most 30 s), stop the engine, print the final
  JSON line (recordings on disk) and exit.

RTP send lateness is measured per tick of the media clock (every 5 ms; each tick sends the
packets of a quarter of the streams) as the time from the tick's deadline to the moment its
last RTP packet was handed to the socket — the worst packet of the tick. The
deadline and the clock are the loop's (``CLOCK_MONOTONIC``), compared with ``time.monotonic()``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import cProfile  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drivers.clock import new_loop  # noqa: E402
from hotline.config import load_config  # noqa: E402
from hotline.engine import Engine  # noqa: E402
from hotline.logs import configure_logging  # noqa: E402

MAX_SAMPLES = 200_000  # ticks kept per figure (over an hour at 50 ticks/s)


class GcWatch:
    """Counts the garbage collector's runs and their time while the benchmark runs."""

    def __init__(self) -> None:
        self.started = 0.0
        self.runs = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        spent = time.perf_counter() - self.started
        generation = info["generation"]
        self.runs[generation] += 1
        self.seconds[generation] += spent
        self.longest = max(self.longest, spent)

    def report(self) -> dict:
        return {
            "gc_runs": self.runs,
            "gc_ms": [round(s * 1000, 1) for s in self.seconds],
            "gc_longest_ms": round(self.longest * 1000, 1),
        }


class StallWatch:
    """A thread that notes where the loop's thread is whenever a tick is 30 ms overdue."""

    def __init__(self, meter: Meter) -> None:
        import collections
        import threading

        self.meter = meter
        self.main = threading.get_ident()
        self.main_native = threading.get_native_id()
        self.seen: collections.Counter[str] = collections.Counter()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import traceback

        task = f"/proc/self/task/{self.main_native}"
        syscalls = {
            "232": "epoll_wait", "281": "epoll_pwait", "1": "write", "0": "read",
            "202": "futex", "44": "sendto", "45": "recvfrom", "47": "recvmsg",
            "230": "clock_nanosleep", "74": "fsync", "75": "fdatasync",
        }  # fmt: skip
        while True:
            time.sleep(0.01)
            if time.monotonic() - self.meter.last_tick > 0.03:
                try:  # the OS's view: running (R), sleeping (S, in which call), disk (D)
                    state = open(f"{task}/stat").read().rsplit(")", 1)[1].split()[0]
                    call = open(f"{task}/syscall").read().split()[0]
                except OSError:
                    state, call = "?", "?"
                frame = sys._current_frames().get(self.main)
                where = f"[{state} {syscalls.get(call, call)}]"
                if frame is not None:
                    stack = traceback.extract_stack(frame)[-8:]
                    where += " " + " < ".join(
                        f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in reversed(stack)
                    )
                self.seen[where] += 1

    def report(self) -> None:
        for where, count in self.seen.most_common(12):
            print(f"stall sample x{count}: {where}", file=sys.stderr)


class Meter:
    """Wraps the media plane's tick to time it; figures since :meth:`mark`."""

    def __init__(self, media) -> None:  # noqa: ANN001
        self.media = media
        self.clock = media.clock
        self.tick = self.clock._on_tick
        self.clock._on_tick = self._timed
        self.late = np.zeros(MAX_SAMPLES)
        self.send_late = np.zeros(MAX_SAMPLES)
        self.cost = np.zeros(MAX_SAMPLES)
        self.cpu = np.zeros(MAX_SAMPLES)  # CPU time of the tick (preemption not counted)
        self.n = 0
        self.sends = 0  # batches sent (one per stream group and 5 ms phase)
        media.on_sent = self._sent
        self.max_streams = 0
        self.cpu0 = self.wall0 = 0.0
        self.resyncs0 = 0
        self.packets0 = (0, 0)
        self.last_tick = time.monotonic()
        self.pacer_cpu0 = 0.0

    def _pacer_cpu(self) -> float:
        pacer = self.media._pacer
        return pacer.cpu_time() if pacer is not None else 0.0

    def mark(self) -> None:
        self.n = 0
        self.sends = 0
        self.pacer_cpu0 = self._pacer_cpu()
        self.max_streams = 0
        self.cpu0, self.wall0 = time.process_time(), time.monotonic()
        self.resyncs0 = self.clock.resyncs
        self.packets0 = (self.media.packets_in, self.media.packets_out)

    def _timed(self, n: int) -> None:
        clock = self.clock
        deadline = clock._start + clock.ticks * clock.period
        c0 = time.thread_time()
        t0 = time.monotonic()
        self.tick(n)
        t1 = time.monotonic()
        c1 = time.thread_time()
        self.last_tick = t1
        i = self.n
        if i < MAX_SAMPLES:
            self.late[i] = t0 - deadline
            self.cost[i] = t1 - t0
            self.cpu[i] = c1 - c0
            self.n = i + 1
        streams = len(self.media.streams)
        if streams > self.max_streams:
            self.max_streams = streams

    def _sent(self, deadline: float, sent_at: float, packets: int) -> None:
        """A batch went out (in the pacer's thread, or in the tick without one)."""
        i = self.sends
        if i < MAX_SAMPLES:
            self.send_late[i] = sent_at - deadline
            self.sends = i + 1

    def report(self) -> dict:
        n = self.n
        wall = time.monotonic() - self.wall0
        cpu = time.process_time() - self.cpu0

        def pct(values: np.ndarray, n: int = n) -> dict:
            if n == 0:
                return {"p50": 0.0, "p99": 0.0, "max": 0.0}
            v = values[:n] * 1000
            return {
                "p50": round(float(np.percentile(v, 50)), 2),
                "p99": round(float(np.percentile(v, 99)), 2),
                "max": round(float(v.max()), 2),
            }

        sends = self.sends
        send = self.send_late[:sends]

        return {
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "cpu_pct": round(100 * cpu / wall, 1) if wall else 0.0,
            "ticks": n,
            "tick_late_ms": pct(self.late),
            "send_late_ms": pct(self.send_late, sends),
            "send_batches": sends,
            "tick_cost_ms": pct(self.cost),
            "tick_cpu_ms": pct(self.cpu),
            "ticks_cpu_s": round(float(self.cpu[:n].sum()), 2),
            "pacer_cpu_s": round(self._pacer_cpu() - self.pacer_cpu0, 2),
            "pacer": self.media._pacer is not None,
            "send_late_over_5ms": int((send > 0.005).sum()),
            "resyncs": self.clock.resyncs - self.resyncs0,
            "max_streams": self.max_streams,
            "packets_in": self.media.packets_in - self.packets0[0],
            "packets_out": self.media.packets_out - self.packets0[1],
        }


async def main(args: argparse.Namespace) -> None:
    configure_logging("console", "WARNING")
    scratch = Path(args.scratch)
    config = load_config(
        None,
        root=ROOT,
        overrides={
            "database_url": f"sqlite+aiosqlite:///{scratch}/hotline.db",
            "recordings_dir": str(scratch / "recordings"),
        },
    )
    config.control.enabled = False
    config.board.enabled = False  # the SIP side alone
    config.sip.host = "127.0.0.1"
    config.sip.port = 0
    config.sip.answer_after = args.answer_after
    config.sip.invite_rate = 100_000.0
    config.sip.invite_burst = 100_000
    engine = Engine(config, watch_flows=False)
    await engine.start()
    gc.collect()
    gc.freeze()
    meter = Meter(engine.sip.media)
    profiler = cProfile.Profile()
    watch = StallWatch(meter) if args.stalls else None
    gc_watch = GcWatch()
    print(json.dumps({"port": engine.sip.port, "pid": os.getpid()}), flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    buffer = b""

    def on_stdin() -> None:
        nonlocal buffer
        data = os.read(sys.stdin.fileno(), 4096)
        if not data:
            if not done.done():
                done.set_result(None)
            return
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            command = line.decode().strip()
            if command == "mark":
                meter.mark()
                if args.profile:
                    profiler.enable()
                print(json.dumps({"marked": True}), flush=True)
            elif command == "report":
                print(json.dumps(meter.report() | gc_watch.report()), flush=True)
            elif command == "stop" and not done.done():
                done.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await done
    loop.remove_reader(sys.stdin.fileno())
    if watch is not None:
        watch.report()
    if args.profile:
        profiler.disable()
        profiler.dump_stats(args.profile)
    try:
        await asyncio.wait_for(engine.idle(), 30)
    except TimeoutError:
        pass
    left = len(engine.calls)
    await engine.stop()
    recordings = scratch / "recordings"
    print(
        json.dumps(
            {
                "stopped": True,
                "calls_left_running": left,
                "recordings": len(list(recordings.rglob("*.wav"))),
                "partial_recordings": len(list(recordings.rglob("*.wav.part"))),
                "recording_bytes": sum(p.stat().st_size for p in recordings.rglob("*.wav")),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", required=True)
    parser.add_argument("--answer-after", type=float, default=0.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin the engine to this CPU")
    parser.add_argument("--profile", help="write a cProfile of the measured part to this file")
    parser.add_argument("--stalls", action="store_true", help="print where the loop stalls")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    loop = new_loop()
    try:
        loop.run_until_complete(main(args))
    finally:
        loop.close()
