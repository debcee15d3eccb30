"""End-to-end ACD run on the simulated board: many callers, agent seats at station lines.

Callers arrive at random (Poisson) over a stretch of virtual time, each on its own trunk,
go through the real main menu and press 0 for an agent. Generated agents sit at station
lines; each seat answers after a random ring delay (a few never answer: the caller is
re-offered and the agent, set not ready "missed", presses ready again a little later), the
two talk for a random time, and either side hangs up. Some callers run out of patience and
abandon. Everything runs on the virtual clock (:class:`drivers.clock.VirtualClockLoop`), so
ten minutes of traffic take a fraction of that in wall time.

    python bench/acd_board_bench.py --callers 300 --agents 60 --minutes 10

At the end it checks, and prints: every caller finished (connected, abandoned, timed out,
sent to leave a message), no agent is stuck (every agent idle, ready or not ready with a
reason; none reserved or on a call), the stored queue log recounts to the live statistics;
then SL(20), ASA, abandonment, 接通率 and the wall time. The agents and queue files are
generated in a scratch folder; the shipped ones are not touched.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from acd.stats import queue_stats, thresholds_of  # noqa: E402
from drivers.clock import VirtualClockLoop  # noqa: E402
from drivers.simboard.line import FarEnd  # noqa: E402
from hotline.config import load_config  # noqa: E402
from hotline.engine import Engine  # noqa: E402
from hotline.logs import configure_logging  # noqa: E402
from hotline.services.queue_log import stored_queue_stats  # noqa: E402
from sim.caller import Caller, ExpectationFailed, LocalLine  # noqa: E402

QUEUE = "general"
TERMINAL = {"complete_caller", "complete_agent", "abandon", "timeout", "exit"}
STUCK_STATES = {"reserved", "on_call", "on_hold"}


def write_queue_files(folder: Path, agents: int) -> None:
    """``agents`` generated agents at seats s1..sN, the shipped queues sized for them."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["agents:"]
    for n in range(1, agents + 1):
        skills = "{general: 5, fault: 5}" if n % 4 == 0 else "{general: 5}"
        lines.append(f'  - {{id: "{2000 + n}", name: 坐席{n}, skills: {skills}, seat: s{n}}}')
    (folder / "agents.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in ("general", "fault"):
        text = (ROOT / "queues" / f"{name}.yaml").read_text(encoding="utf-8")
        text = text.replace("max_length: 50", "max_length: 1000")
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")


def ringing(far: FarEnd) -> bool:
    return far.call is not None and far.call.answered is None and far.call.ended is None


class Run:
    """The tester's side: callers on trunks and agents at their seats."""

    def __init__(self, engine: Engine, args: argparse.Namespace) -> None:
        self.engine = engine
        self.args = args
        self.rng = random.Random(args.seed)
        self.done = False
        self.results: Counter[str] = Counter()
        self.seat_counts: Counter[str] = Counter()

    async def caller(self, n: int, trunk: int) -> None:
        rng = random.Random(self.args.seed * 100_003 + n)
        caller = Caller(LocalLine(self.engine.board.line(trunk)))
        far = self.engine.board.line(trunk).far_end
        patience = rng.uniform(5, 90) if rng.random() < 0.25 else 400.0
        talk = rng.uniform(20, 150)
        try:
            await caller.dial(f"139{n:08d}")
            await caller.expect("人工服务请按零")
            await caller.press("0")
            await caller.expect("正在为您转接人工服务")
            try:
                await caller.expect("工号", timeout=patience)  # 报工号
            except ExpectationFailed:
                self.results["gave_up_or_voice_mail"] += 1
                if far.call is not None and far.call.ended is None:
                    await caller.hang_up("loop")
                return
            self.results["reached_agent"] += 1
            await far.wait_for(lambda: far.call is None or far.call.ended is not None, talk)
            if far.call is not None and far.call.ended is None:
                await caller.hang_up("loop")
        except ExpectationFailed as exc:
            self.results["script_failed"] += 1
            print(f"caller {n}: {exc}", file=sys.stderr)
            if far.call is not None and far.call.ended is None:
                await caller.hang_up("loop")

    async def seat(self, agent_id: str, seat: str) -> None:
        rng = random.Random(f"{self.args.seed}-{seat}")
        far = self.engine.board.line(seat).far_end
        while not self.done:
            if not await far.wait_for(lambda: ringing(far) or self.done, 3600) or self.done:
                return
            self.seat_counts["rung"] += 1
            call = far.call
            if rng.random() < self.args.no_answer:  # away from the desk: rings out
                await far.wait_for(lambda c=call: c.ended is not None, 60)
                self.seat_counts["not_answered"] += 1
                await asyncio.sleep(rng.uniform(10, 30))  # comes back, presses ready
                if self.engine.agent_status(agent_id)["status"] == "not_ready":
                    self.engine.set_agent_ready(agent_id)
                continue
            delay = rng.uniform(0.5, 8)
            await far.wait_for(lambda c=call: c.ended is not None, delay)
            if call.ended is not None:  # the caller gave up, or rang out
                self.seat_counts["gone_before_answer"] += 1
                continue
            far.off_hook()
            self.seat_counts["answered"] += 1
            talk = rng.uniform(20, 150)
            await far.wait_for(lambda c=call: c.ended is not None, talk)
            if call.ended is None:
                far.hang_up("loop")
                self.seat_counts["agent_hung_up"] += 1


async def main(args: argparse.Namespace) -> int:
    configure_logging("console", "ERROR")
    scratch = Path(tempfile.mkdtemp(prefix="acd-board-bench-"))
    write_queue_files(scratch / "queues", args.agents)
    config = load_config(
        None,
        root=ROOT,
        overrides={
            "database_url": f"sqlite+aiosqlite:///{scratch}/hotline.db",
            "recordings_dir": str(scratch / "recordings"),
        },
    )
    config.control.enabled = False
    config.sip.port = 0
    config.board.trunks = args.callers
    config.board.stations = args.agents
    config.acd.queues_dir = str(scratch / "queues")
    engine = Engine(config, watch_flows=False)
    await engine.start()
    loop = asyncio.get_running_loop()
    wall0 = time.perf_counter()
    try:
        center = engine.contact_center
        assert center is not None, "no queues configured"
        run = Run(engine, args)
        seats = [asyncio.create_task(run.seat(a.id, a.seat)) for a in center.acd.agents.values()]
        t0 = loop.time()
        callers = []
        at = 0.0
        for n in range(args.callers):
            at += run.rng.expovariate(args.callers / (args.minutes * 60))
            await asyncio.sleep(max(0.0, t0 + at - loop.time()))
            callers.append(asyncio.create_task(run.caller(n, n + 1)))
        await asyncio.gather(*callers)
        await engine.idle()
        await asyncio.sleep(15)  # the last wrap-ups end
        run.done = True
        for seat in seats:
            seat.cancel()
        await asyncio.gather(*seats, return_exceptions=True)
        virtual = loop.time() - t0

        # every caller finished: each session that entered ended in a terminal event
        ends: dict[str, str] = {}
        entered: set[str] = set()
        for event in center.recent_events:
            kind = event.kind.value.lower()
            if kind == "enter":
                entered.add(event.call_id or "")
            if kind in TERMINAL:
                ends[event.call_id or ""] = kind
        unfinished = [
            t.name for t in engine.board.trunks if t.far_end.call and t.far_end.call.ended is None
        ]
        assert not unfinished, f"callers still on the line: {unfinished[:10]}"
        assert len(entered) == args.callers, f"{len(entered)} of {args.callers} reached the queue"
        assert entered <= set(ends), f"sessions without an end: {sorted(entered - set(ends))[:5]}"

        # no agent stuck
        states = Counter()
        for agent_id in center.acd.agents:
            s = engine.agent_status(agent_id)
            assert s["state"] not in STUCK_STATES, f"agent stuck: {s}"
            assert s["status"] != "not_ready" or s["reason"], f"not ready without reason: {s}"
            states[f"{s['status']}/{s['state']}" + (f"({s['reason']})" if s["reason"] else "")] += 1

        # the stored log recounts to the live figures
        thresholds = thresholds_of(center.acd)
        live = queue_stats(list(center.recent_events), thresholds)[QUEUE]
        stored = (await stored_queue_stats(engine.db, thresholds=thresholds))[QUEUE]
        for name, value in live.as_dict().items():
            other = stored.as_dict()[name]
            if isinstance(value, float) and isinstance(other, float):
                assert abs(value - other) < 1e-3, (name, value, other)
            else:
                assert value == other, (name, value, other)
        wall = time.perf_counter() - wall0
    finally:
        await engine.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.1f} %"

    print(f"callers {args.callers}, agents {args.agents}, arrivals over {args.minutes} min")
    print(f"virtual time {virtual:.0f} s, wall time {wall:.1f} s")
    print("session ends:", dict(Counter(ends.values())))
    print("callers:", dict(run.results), " seats:", dict(run.seat_counts))
    print("agents at the end:", dict(states))
    print(
        f"offered {live.offered}, answered {live.answered}, abandoned {live.abandoned} "
        f"(short {live.short_abandoned}), timeouts {live.timeouts}"
    )
    print(
        f"SL(20) {pct(live.service_level)}, ASA {live.asa or 0:.1f} s, "
        f"abandonment {pct(live.abandonment_rate)}, 接通率 {pct(live.connection_rate)}, "
        f"AHT {live.aht or 0:.0f} s"
    )
    print("stored queue log recount = live statistics: yes")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=300)
    parser.add_argument("--agents", type=int, default=60)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--no-answer", type=float, default=0.05, help="share of rings left")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    loop = VirtualClockLoop()
    try:
        sys.exit(loop.run_until_complete(main(args)))
    finally:
        loop.close()
