"""ACD core speed and a virtual-time end-to-end run. One command: ``python bench/acd_bench.py``.

1. Routing cost: 10,000 agents (3 skills each, so 3 queues each), 50 queues of mixed
   strategies (some with familiar-agent routing), 50,000 callers waiting; the process is
   pinned to one core. Every routing event is timed on its own through the public API with
   ``time.perf_counter_ns`` and reported by kind (median and p99, µs). Each figure includes
   logging the queue events and building the actions. Kinds:

   - *call arrives, agent free*: ``enqueue`` while free members exist (Offer returned);
   - *agent freed, no call*: ``call_ended`` with nobody waiting (the agent is indexed);
   - then, with 50,000 callers waiting, a mixed phase where each step ends a random call
     (*agent freed → offer*, the best call among the agent's queues), lets the seat answer
     (*answer → connect*), decline (*no answer (declined)*: the agent goes not ready
     "missed", the caller goes back to their place), be abandoned while ringing, or ring
     out (*ring timeout*, fired by ``tick``); missed agents press ready again after 2 s
     (*agent ready → offer*); a random waiting caller hangs up (*abandon while waiting*);
     new callers keep 50,000 waiting (*call arrives, all busy → queued*); and ``tick`` runs
     every step, timed by the one deadline it fired (ring timeouts, expert windows widening,
     familiar-agent windows ending).
   ``--profile`` runs the mixed phase once under cProfile instead and prints where the time
   goes.
2. End to end: 300 callers against 60 agents in virtual time (Poisson arrivals, exponential
   talk, wrap-up, impatient callers, seats that sometimes do not answer), driven by
   ``next_deadline()``/``tick()`` like the asyncio glue; checks that nothing is stuck at
   the end and prints SL/ASA/abandonment next to the Erlang C prediction.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import heapq
import os
import platform
import pstats
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from acd import matcher  # noqa: E402
from acd.agents import MISSED, Agent, ReasonLimit, State, Status  # noqa: E402
from acd.erlang import asa as erlang_asa  # noqa: E402
from acd.erlang import service_level as erlang_sl  # noqa: E402
from acd.events import Connect, Offer, Redirect, StopRinging, Timeout  # noqa: E402
from acd.matcher import Acd  # noqa: E402
from acd.queues import ExpertWidening, FamiliarAgent, QueueConfig, Stage  # noqa: E402
from acd.stats import agent_stats, queue_stats, thresholds_of  # noqa: E402
from acd.strategies import Strategy  # noqa: E402

N_AGENTS = 10_000
N_QUEUES = 50
N_WAITING = 50_000
STEPS = 20_000  # steps of the mixed phase; each makes several routing events
RUNS = 3
STRATEGIES = [Strategy.LONGEST_IDLE] * 4 + [Strategy.ROUND_ROBIN, Strategy.FEWEST_CALLS,
                                            Strategy.LEAST_TALK_TIME, Strategy.LINEAR,
                                            Strategy.RANDOM, Strategy.EXPERT]
CALLERS = 100_000  # distinct caller numbers: some call again and meet a familiar agent
# what the seat does with an offer in the mixed phase (cumulative shares); the rest rings out
ANSWER, DECLINE, ABANDON_RINGING = 0.85, 0.90, 0.95
MISSED_BACK = 2.0  # s until an agent marked missed presses ready again

TIMER_NAMES = {  # the deadline kinds a tick can fire
    matcher._RING: "ring timeout -> missed, call back in place",
    matcher._WRAP: "wrap-up ends",
    matcher._FAMILIAR: "familiar window ends -> queue strategy",
    matcher._WIDEN: "expert window widens",
    matcher._MAX_WAIT: "max wait",
    matcher._ANNOUNCE: "announcement",
    matcher._CALLBACK_OFFER: "callback offer",
    matcher._REASON: "not-ready limit",
}


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} cores; Python {platform.python_version()} "
            f"({platform.python_implementation()})")


def pin_one_core() -> int | None:
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        return cpu
    return None


def cold_read_ns(megabytes: int = 64, reads: int = 200_000) -> float:
    """What one read of a random object among ``megabytes`` of small Python objects costs
    (ns, loop overhead subtracted): the memory latency the routing figures are made of. It
    varies with what else runs on the machine, so it is printed next to them."""
    rng = random.Random(5)
    objects = [bytearray(8) for _ in range(megabytes * 1024 * 1024 // 64)]
    picks = [rng.randrange(len(objects)) for _ in range(reads)]
    t = time.perf_counter_ns()
    for i in picks:
        len(objects[i])
    touched = time.perf_counter_ns() - t
    t = time.perf_counter_ns()
    for _i in picks:
        len(picks)
    base = time.perf_counter_ns() - t
    return (touched - base) / reads


def pct(samples: list[int]) -> tuple[float, float]:
    samples = sorted(samples)
    return (statistics.median(samples) / 1000,
            samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000)


def build(rng: random.Random) -> Acd:
    acd = Acd(rng=random.Random(1), reason_limits={})
    for i in range(N_QUEUES):
        strategy = STRATEGIES[i % len(STRATEGIES)]
        acd.add_queue(QueueConfig(
            f"q{i}", strategy, {f"s{i}": 1}, ring_timeout=15,
            familiar_agent=FamiliarAgent(enabled=i % 5 == 2, lookback_days=7, try_first=5),
            expert=ExpertWidening(start_level=6, step_seconds=10, min_level=1)))
    for i in range(N_AGENTS):
        skills = {f"s{k}": rng.randint(1, 10) for k in rng.sample(range(N_QUEUES), 3)}
        acd.add_agent(Agent(f"a{i}", skills=skills, seat=f"seat{i}"))
    return acd


class Timed:
    """Samples (ns) per routing event kind, and the tick classifier."""

    def __init__(self, acd: Acd) -> None:
        self.samples: dict[str, list[int]] = defaultdict(list)
        self.fired: list[int] = []
        for kind, handler in list(acd._handlers.items()):
            acd._handlers[kind] = self._counting(kind, handler)

    def _counting(self, kind, handler):
        fired = self.fired

        def counted(target, now, actions):
            fired.append(kind)
            handler(target, now, actions)
        return counted

    def add(self, label: str, ns: int) -> None:
        self.samples[label].append(ns)


def routing_bench(profile: bool = False) -> dict[str, list]:
    rng = random.Random(42)
    t0 = time.perf_counter()
    acd = build(rng)
    timed = Timed(acd)
    now = 0.0
    for agent_id in acd.agents:
        acd.login(agent_id, now)
    queue_names = list(acd.queues)
    connected: list[str] = []  # connected call ids
    missed: list[tuple[float, str]] = []  # (ready again at, agent id), in time order
    recent: list[str] = []  # call ids that may be waiting (checked when picked)
    n = 0
    perf = time.perf_counter_ns

    def caller() -> str:
        return f"139{rng.randrange(CALLERS):08d}"

    def answer_all(actions) -> None:
        for a in actions:
            if isinstance(a, Offer):
                acd.offer_result(a.call_id, a.agent_id, True, now)
                connected.append(a.call_id)

    # calls arrive while agents are free (half the agents end up on calls)
    while len(connected) < N_AGENTS // 2:
        n += 1
        now += 0.001
        t = perf()
        actions = acd.enqueue(f"c{n}", rng.choice(queue_names), now, caller=caller())
        elapsed = perf() - t
        if any(isinstance(a, Offer) for a in actions):
            timed.add("call arrives, agent free -> offer", elapsed)
        answer_all(actions)
    # occupy every agent: calls into each free agent's ordinary queues, then let the expert
    # queues widen (and familiar windows end) so that waiting calls reach every lane
    for agent in list(acd.agents.values()):
        ordinary = [q.name for q in agent.queues if q.strategy is not Strategy.EXPERT]
        while agent.available and ordinary:
            n += 1
            answer_all(acd.enqueue(f"c{n}", rng.choice(ordinary), now, caller=caller()))
    while free := [a for a in acd.agents.values() if a.available]:
        for agent in free:
            n += 1
            answer_all(acd.enqueue(f"c{n}", agent.queues[0].name, now, caller=caller()))
        now += 60.0
        answer_all(acd.tick(now))
    # fill the queues: calls arrive while every agent is busy
    while len(acd.calls) - len(connected) < N_WAITING:
        n += 1
        now += 0.001
        acd.enqueue(f"c{n}", rng.choice(queue_names), now, caller=caller())
        recent.append(f"c{n}")
    acd.drain_events()
    now += 30
    acd.tick(now)  # void the ring timers of the answered offers
    setup = time.perf_counter() - t0
    waiting = len(acd.calls) - len(connected)
    gc.collect()
    gc.freeze()  # what the application does after start-up (docs/acd.md)

    def offered(actions, label: str | None = None, elapsed: int = 0) -> None:
        """Time ``actions`` under ``label`` and let the seats do what seats do."""
        if label is not None:
            timed.add(label, elapsed)
        for a in actions:
            if not isinstance(a, Offer):
                continue
            fate = rng.random()
            if fate < ANSWER:
                t = perf()
                more = acd.offer_result(a.call_id, a.agent_id, True, now)
                timed.add("answer -> connect", perf() - t)
                connected.append(a.call_id)
                offered(more)
            elif fate < DECLINE:
                t = perf()
                more = acd.offer_result(a.call_id, a.agent_id, False, now)
                timed.add("no answer (declined) -> missed, call back in place", perf() - t)
                missed.append((now + MISSED_BACK, a.agent_id))
                offered(more)
            elif fate < ABANDON_RINGING:
                t = perf()
                more = acd.abandon(a.call_id, now)
                timed.add("abandon while ringing -> agent re-offered", perf() - t)
                offered(more)
            # else: left to ring out; the core's ring timeout fires in a later tick

    # the mixed phase, 50,000 callers waiting
    full = [0, 0.0, 0.0]  # full GC collections: count, ms, start

    def on_gc(phase: str, info: dict) -> None:
        if info["generation"] == 2:
            if phase == "start":
                full[2] = time.perf_counter()
            else:
                full[0] += 1
                full[1] += (time.perf_counter() - full[2]) * 1000

    gc.callbacks.append(on_gc)
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    fired = timed.fired
    missed_at = 0
    for _ in range(STEPS):
        now += 0.001
        # an agent is freed by a hangup and gets the best call among its queues
        k = rng.randrange(len(connected))
        connected[k], connected[-1] = connected[-1], connected[k]
        call_id = connected.pop()
        t = perf()
        actions = acd.call_ended(call_id, now)
        elapsed = perf() - t
        offered(actions, "agent freed (hangup) -> offer" if actions and any(
            isinstance(a, Offer) for a in actions) else "agent freed, no call -> indexed",
            elapsed)
        # missed agents come back
        while missed_at < len(missed) and missed[missed_at][0] <= now:
            agent_id = missed[missed_at][1]
            missed_at += 1
            if acd.agents[agent_id].status is Status.NOT_READY:
                t = perf()
                actions = acd.set_status(agent_id, Status.READY, None, now)
                offered(actions, "agent ready -> offer", perf() - t)
        # a waiting caller hangs up
        while recent:
            j = rng.randrange(len(recent))
            recent[j], recent[-1] = recent[-1], recent[j]
            call_id = recent.pop()
            call = acd.calls.get(call_id)
            if call is not None and call.stage is Stage.WAITING:
                t = perf()
                actions = acd.abandon(call_id, now)
                offered(actions, "abandon while waiting", perf() - t)
                break
        # timers: ring timeouts, expert windows widening, familiar windows ending
        del fired[:]
        t = perf()
        actions = acd.tick(now)
        elapsed = perf() - t
        if len(fired) == 1:
            offered(actions, "tick: " + TIMER_NAMES[fired[0]], elapsed)
        else:
            offered(actions)
        # new callers keep 50,000 waiting
        while len(acd.calls) - len(connected) < N_WAITING:
            n += 1
            t = perf()
            actions = acd.enqueue(f"c{n}", rng.choice(queue_names), now, caller=caller())
            offered(actions, "call arrives, all busy -> queued", perf() - t)
            recent.append(f"c{n}")
        if n % 1000 == 0:
            acd.drain_events()
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    gc.callbacks.remove(on_gc)
    gc.unfreeze()
    waiting_after = len(acd.calls) - len(connected)

    # agents freed with no call waiting (a fresh ACD with idle capacity)
    acd2 = build(random.Random(7))
    for agent_id in acd2.agents:
        acd2.login(agent_id, 0.0)
    now2 = 0.0
    for i in range(STEPS):
        now2 += 0.001
        actions = acd2.enqueue(f"d{i}", rng.choice(queue_names), now2)
        for a in actions:
            if isinstance(a, Offer):
                acd2.offer_result(a.call_id, a.agent_id, True, now2)
                t = perf()
                acd2.call_ended(a.call_id, now2)
                timed.add("agent freed, no call -> indexed", perf() - t)
        if i % 1000 == 0:
            acd2.drain_events()
            acd2.tick(now2)

    assert waiting == N_WAITING and abs(waiting_after - N_WAITING) <= 5, waiting_after
    result: dict[str, list] = dict(timed.samples)
    result["_setup"] = [int(setup * 1e9)]
    result["_gc"] = [full[0], full[1]]
    return result


def report_routing(runs: list[dict[str, list]]) -> list[str]:
    """Median and p99 per event kind: the median over runs, and the range over runs."""
    setup = statistics.median(r["_setup"][0] for r in runs) / 1e9
    print(f"routing: {N_AGENTS} agents, {N_QUEUES} queues, {N_WAITING} callers waiting, each "
          f"agent in 3 queues; {len(runs)} runs, setup {setup:.1f} s each")
    labels = sorted({k for r in runs for k in r if not k.startswith("_")},
                    key=lambda k: -statistics.median(pct(r[k])[0] for r in runs if k in r))
    labels.append("all routing events")
    for r in runs:
        r["all routing events"] = [x for k in labels[:-1] for x in r.get(k, [])]
    worst = 0.0
    rows = []
    for label in labels:
        figures = [pct(r[label]) for r in runs if r.get(label)]
        meds = sorted(f[0] for f in figures)
        p99s = sorted(f[1] for f in figures)
        med = statistics.median(meds)
        worst = max(worst, med) if label != "all routing events" else worst
        count = statistics.median(len(r.get(label, [])) for r in runs)
        rows.append(f"  {label:<52} median {med:6.2f} µs ({meds[0]:.2f}–{meds[-1]:.2f})   "
                    f"p99 {statistics.median(p99s):6.1f} µs   n={count:.0f}/run")
    print("\n".join(rows))
    print(f"  slowest kind: median {worst:.2f} µs (target <= 10 µs)")
    print("  CPython full (gen 2) GC collections in the mixed phase: "
          + ", ".join(f"{int(r['_gc'][0])} taking {r['_gc'][1]:.0f} ms" for r in runs)
          + " (per run)")
    return rows


# -------------------------------------------------------------------------- end to end


def end_to_end(seed: int = 95598) -> None:
    rng = random.Random(seed)
    n_callers, n_agents = 300, 60
    rate_per_hour = 1200.0
    talk_mean, wrap = 150.0, 10.0
    patience_mean = 120.0
    acd = Acd(rng=random.Random(seed), reason_limits={MISSED: ReasonLimit(20, "ready")})
    acd.add_queue(QueueConfig("bill", skills={"bill": 1}, wrap_up=wrap, ring_timeout=15,
                              max_wait=300, timeout_destination="voicemail"))
    acd.add_queue(QueueConfig("fault", Strategy.EXPERT, {"fault": 1}, wrap_up=wrap,
                              ring_timeout=15, max_wait=300, priority_aging=30,
                              expert=ExpertWidening(start_level=8, step_seconds=5)))
    for i in range(n_agents):
        skills = {"bill": rng.randint(1, 10)} if i % 3 else {}
        if i % 3 != 1:
            skills["fault"] = rng.randint(1, 10)
        acd.add_agent(Agent(f"a{i}", skills=skills, seat=f"seat{i}"))
        acd.login(f"a{i}", 0.0)

    events: list[tuple] = []  # (time, seq, kind, call_id, agent_id)
    seq = 0

    def at(t: float, kind: str, call_id: str, agent_id: str = "") -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, call_id, agent_id))

    t = 0.0
    for i in range(n_callers):
        t += rng.expovariate(rate_per_hour / 3600)
        at(t, "arrive", f"c{i}")
    ringing: set[tuple[str, str]] = set()
    in_queue: set[str] = set()
    now = 0.0
    ticks = 0

    def carry_out(actions) -> None:
        for a in actions:
            if isinstance(a, Offer):
                ringing.add((a.call_id, a.agent_id))
                if rng.random() < 0.97:  # 3 % of seats do not answer
                    at(now + rng.uniform(1, 4), "answer", a.call_id, a.agent_id)
            elif isinstance(a, StopRinging):
                ringing.discard((a.call_id, a.agent_id))
            elif isinstance(a, Connect):
                ringing.discard((a.call_id, a.agent_id))
                in_queue.discard(a.call_id)
                at(now + rng.expovariate(1 / talk_mean), "hangup", a.call_id,
                   rng.choice(["caller", "agent"]))
            elif isinstance(a, (Timeout, Redirect)):
                in_queue.discard(a.call_id)

    while True:
        deadline = acd.next_deadline()
        if events and (deadline is None or events[0][0] <= deadline):
            now, _, kind, call_id, extra = heapq.heappop(events)
            if kind == "arrive":
                in_queue.add(call_id)
                queue = "fault" if rng.random() < 0.4 else "bill"
                carry_out(acd.enqueue(call_id, queue, now, priority=int(rng.random() < 0.05),
                                      caller=f"1380000{rng.randrange(200):04d}"))
                at(now + rng.expovariate(1 / patience_mean), "give_up", call_id)
            elif kind == "give_up":
                if call_id in in_queue:
                    in_queue.discard(call_id)
                    carry_out(acd.abandon(call_id, now))
            elif kind == "answer":
                if (call_id, extra) in ringing:
                    carry_out(acd.offer_result(call_id, extra, True, now))
            elif kind == "hangup":
                carry_out(acd.call_ended(call_id, now, by=extra))
        elif deadline is not None:
            now = deadline
            ticks += 1
            carry_out(acd.tick(now))
        else:
            break

    stuck = [a.id for a in acd.agents.values()
             if a.state is not State.IDLE or a.status is not Status.READY or a.call is not None]
    assert not acd.calls, f"calls left in the ACD: {list(acd.calls)[:5]}"
    assert not stuck, f"agents stuck: {stuck[:5]}"
    assert not ringing and not in_queue
    stats = queue_stats(acd.events, thresholds_of(acd))
    per_agent = agent_stats(acd.events)
    total_answered = sum(s.answered for s in stats.values())
    occupancy = statistics.mean(s.occupancy for s in per_agent.values() if s.occupancy)
    print(f"end to end: {n_callers} callers, {n_agents} agents, {now / 60:.1f} virtual min, "
          f"{len(acd.events)} queue events, {ticks} timer wake-ups; no stuck agent or call")
    for name, s in stats.items():
        print(f"  {name:<6} offered {s.offered:3d}  answered {s.answered:3d}  abandoned "
              f"{s.abandoned:3d} (short {s.short_abandoned})  timeouts {s.timeouts}  "
              f"SL(20) {s.service_level:.1%}  Asterisk SL {s.service_level_asterisk:.1%}  "
              f"ASA {s.asa:.1f} s  abandon {s.abandonment_rate:.1%}  AHT {s.aht:.0f} s  "
              f"接通率 {s.connection_rate:.1%}")
    handle = talk_mean + wrap
    print(f"  answered {total_answered}, mean agent occupancy {occupancy:.1%}; Erlang C for "
          f"{rate_per_hour:.0f}/h, {handle:.0f} s, {n_agents} agents (no abandons, one pooled "
          f"queue): SL(20) {erlang_sl(rate_per_hour, handle, n_agents, 20):.1%}, "
          f"ASA {erlang_asa(rate_per_hour, handle, n_agents):.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--profile", action="store_true",
                        help="run the mixed phase once under cProfile and print the top")
    parser.add_argument("--no-end-to-end", action="store_true")
    args = parser.parse_args()
    cpu = pin_one_core()
    print(f"machine: {machine()}; pinned to core {cpu}")
    started = time.perf_counter()
    if args.profile:
        routing_bench(profile=True)
        return
    runs = []
    cold = []
    for _ in range(args.runs):
        cold.append(cold_read_ns())
        runs.append(routing_bench())
        gc.collect()  # the previous run's ACD is cyclic garbage: free it before the next
    report_routing(runs)
    print("  a read of a random object in 64 MB of Python objects, before each run: "
          + ", ".join(f"{c:.0f} ns" for c in cold))
    if not args.no_end_to_end:
        end_to_end()
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
