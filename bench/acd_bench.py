"""ACD core speed and a virtual-time end-to-end run. One command: ``python bench/acd_bench.py``.

1. Routing cost: 10,000 agents, 50 queues, 50,000 callers waiting, one process pinned to one
   core. Times each routing event through the public API (median and p99, µs):
   - *agent freed*: ``call_ended`` of a connected call; the agent picks the best waiting call
     among its queues and the core returns the Offer;
   - *call arrives, agent free*: ``enqueue`` when free members exist (Offer returned);
   - *call arrives, all busy*: ``enqueue`` into a queue of ~1,000 waiting callers;
   - *agent freed, no call*: the agent goes back into the free indexes of its queues.
   Each figure includes logging the queue events and building the actions.
2. End to end: 300 callers against 60 agents in virtual time (Poisson arrivals, exponential
   talk, wrap-up, impatient callers, seats that sometimes do not answer), driven by
   ``next_deadline()``/``tick()`` like the asyncio glue will be; checks that nothing is stuck at
   the end and prints SL/ASA/abandonment next to the Erlang C prediction.
"""

from __future__ import annotations

import gc
import heapq
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from acd.agents import MISSED, Agent, ReasonLimit, State, Status  # noqa: E402
from acd.erlang import asa as erlang_asa  # noqa: E402
from acd.erlang import service_level as erlang_sl  # noqa: E402
from acd.events import Connect, Offer, Redirect, StopRinging, Timeout  # noqa: E402
from acd.matcher import Acd  # noqa: E402
from acd.queues import ExpertWidening, QueueConfig  # noqa: E402
from acd.stats import agent_stats, queue_stats, thresholds_of  # noqa: E402
from acd.strategies import Strategy  # noqa: E402

N_AGENTS = 10_000
N_QUEUES = 50
N_WAITING = 50_000
SAMPLES = 20_000
RUNS = 3
STRATEGIES = [Strategy.LONGEST_IDLE] * 4 + [Strategy.ROUND_ROBIN, Strategy.FEWEST_CALLS,
                                            Strategy.LEAST_TALK_TIME, Strategy.LINEAR,
                                            Strategy.RANDOM, Strategy.EXPERT]


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


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})


def pct(samples: list[int]) -> tuple[float, float]:
    samples = sorted(samples)
    return (statistics.median(samples) / 1000,
            samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000)


def build(rng: random.Random) -> Acd:
    acd = Acd(rng=random.Random(1))
    for i in range(N_QUEUES):
        strategy = STRATEGIES[i % len(STRATEGIES)]
        acd.add_queue(QueueConfig(f"q{i}", strategy, {f"s{i}": 1}, ring_timeout=15,
                                  expert=ExpertWidening(start_level=6, step_seconds=10,
                                                        min_level=1)))
    for i in range(N_AGENTS):
        skills = {f"s{k}": rng.randint(1, 10) for k in rng.sample(range(N_QUEUES), 3)}
        acd.add_agent(Agent(f"a{i}", skills=skills, seat=f"seat{i}"))
    return acd


def routing_bench() -> dict[str, list]:
    rng = random.Random(42)
    t0 = time.perf_counter()
    acd = build(rng)
    now = 0.0
    for agent_id in acd.agents:
        acd.login(agent_id, now)
    queue_names = list(acd.queues)
    connected: list[str] = []
    n = 0

    def answer_all(actions) -> None:
        for a in actions:
            if isinstance(a, Offer):
                acd.offer_result(a.call_id, a.agent_id, True, now)
                connected.append(a.call_id)

    # phase A: calls arrive while agents are free (half the agents end up on calls)
    arrive_free: list[int] = []
    while len(connected) < N_AGENTS // 2:
        n += 1
        now += 0.001
        q = rng.choice(queue_names)
        t = time.perf_counter_ns()
        actions = acd.enqueue(f"c{n}", q, now)
        elapsed = time.perf_counter_ns() - t
        if any(isinstance(a, Offer) for a in actions):
            arrive_free.append(elapsed)
        answer_all(actions)
    # occupy every agent: calls into each free agent's ordinary queues, then let the
    # expert queues widen so that their waiting calls reach the lower levels
    for agent in list(acd.agents.values()):
        ordinary = [q.name for q in agent.queues if q.strategy is not Strategy.EXPERT]
        while agent.available and ordinary:
            n += 1
            answer_all(acd.enqueue(f"c{n}", rng.choice(ordinary), now))
    while free := [a for a in acd.agents.values() if a.available]:
        for agent in free:
            n += 1
            answer_all(acd.enqueue(f"c{n}", agent.queues[0].name, now))
        now += 60.0  # expert thresholds widen to the lowest level
        answer_all(acd.tick(now))
    # fill the queues: calls arrive while every agent is busy
    arrive_busy: list[int] = []
    while sum(len(q.calls) for q in acd.queues.values()) < N_WAITING:
        n += 1
        q = rng.choice(queue_names)
        t = time.perf_counter_ns()
        acd.enqueue(f"c{n}", q, now)
        arrive_busy.append(time.perf_counter_ns() - t)
    acd.drain_events()
    acd.tick(now + 30)  # void ring timers of the answered offers
    now += 30
    setup = time.perf_counter() - t0
    waiting = sum(len(q.calls) for q in acd.queues.values())

    # phase B: agents freed while 50,000 wait (the queue is topped up after each)
    freed: list[int] = []
    gc.collect()
    full = [0, 0.0, 0.0]  # count, ms, start

    def on_gc(phase: str, info: dict) -> None:
        if info["generation"] == 2:
            if phase == "start":
                full[2] = time.perf_counter()
            else:
                full[0] += 1
                full[1] += (time.perf_counter() - full[2]) * 1000

    gc.callbacks.append(on_gc)
    for i in range(SAMPLES):
        now += 0.001
        k = rng.randrange(len(connected))
        connected[k], connected[-1] = connected[-1], connected[k]
        call_id = connected.pop()
        t = time.perf_counter_ns()
        actions = acd.call_ended(call_id, now)
        freed.append(time.perf_counter_ns() - t)
        answer_all(actions)
        n += 1
        acd.enqueue(f"c{n}", rng.choice(queue_names), now)
        if i % 1000 == 0:
            acd.drain_events()
            acd.tick(now)
    gc.callbacks.remove(on_gc)
    gc_full = (full[0], full[1])
    waiting_after = sum(len(q.calls) for q in acd.queues.values())

    # phase C: agents freed with no call waiting (a fresh ACD with idle capacity)
    acd2 = build(random.Random(7))
    for agent_id in acd2.agents:
        acd2.login(agent_id, 0.0)
    now2 = 0.0
    freed_idle: list[int] = []
    for i in range(SAMPLES):
        now2 += 0.001
        actions = acd2.enqueue(f"d{i}", rng.choice(queue_names), now2)
        for a in actions:
            if isinstance(a, Offer):
                acd2.offer_result(a.call_id, a.agent_id, True, now2)
                t = time.perf_counter_ns()
                acd2.call_ended(a.call_id, now2)
                freed_idle.append(time.perf_counter_ns() - t)
        if i % 1000 == 0:
            acd2.drain_events()
            acd2.tick(now2)

    assert waiting == waiting_after == N_WAITING
    return {
        "agent freed -> offer (50k waiting)": freed,
        "call arrives, agent free -> offer": arrive_free,
        "call arrives, all busy -> queued": arrive_busy,
        "agent freed, no call -> indexed": freed_idle,
        "_setup": [int(setup * 1e9)],
        "_gc": gc_full,
    }


def report_routing(runs: list[dict[str, list[int]]]) -> None:
    """Median and p99 per event kind: the middle run's figure, and the range over runs."""
    setup = statistics.median(r["_setup"][0] for r in runs) / 1e9
    gc_full = [r["_gc"] for r in runs]
    print(f"routing: {N_AGENTS} agents, {N_QUEUES} queues, {N_WAITING} callers waiting, each "
          f"agent in 3 queues; {len(runs)} runs, setup {setup:.1f} s each")
    labels = [k for k in runs[0] if not k.startswith("_")]
    labels.append("all routing events")
    for r in runs:
        r["all routing events"] = [x for k in labels[:-1] for x in r[k]]
    for label in labels:
        figures = [pct(r[label]) for r in runs]
        meds = sorted(f[0] for f in figures)
        p99s = sorted(f[1] for f in figures)
        print(f"  {label:<36} median {statistics.median(meds):6.2f} µs "
              f"({meds[0]:.2f}–{meds[-1]:.2f})   p99 {statistics.median(p99s):6.2f} µs "
              f"({p99s[0]:.1f}–{p99s[-1]:.1f})   n={len(runs[0][label])}/run")
    print("  CPython full (gen 2) GC collections during the 50k-waiting phase: "
          + ", ".join(f"{n} taking {ms:.0f} ms" for n, ms in gc_full)
          + " in all (per run)")
    for i, r in enumerate(runs):
        print(f"    run {i + 1}: " + "  ".join(
            f"{pct(r[label])[0]:.2f}" for label in labels) + " µs (medians, in the order above)")


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
    pin_one_core()
    print(f"machine: {machine()}; pinned to one core")
    started = time.perf_counter()
    runs = []
    for _ in range(RUNS):
        runs.append(routing_bench())
        gc.collect()  # the previous run's ACD is cyclic garbage: free it before the next
    report_routing(runs)
    end_to_end()
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
