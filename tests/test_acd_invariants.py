"""Randomised interleavings of everything that can happen to an ACD, checked after each step.

A :class:`Harness` plays the glue: it feeds the :class:`~acd.matcher.Acd` arrivals, answers,
no-answers, abandons at every stage, hangups by either side, holds, wrap-ups, status changes,
logouts, callbacks, transfers, phones unregistering and legs lost without a hangup report
(fixed by ``reconcile``), and time passing; it carries out the returned actions on its own
model of the wire. After every step it checks:

- every agent's state matches the call it holds (reserved ⇒ ringing a live waiting call;
  on call ⇒ connected to it; otherwise no call), and no agent is on two calls;
- every call is in exactly one stage, and a waiting call is not also connected or ringing;
- the wire agrees with the core (modulo legs deliberately lost, until reconcile);
- no free agent could take a waiting call (work conservation), and the free-agent indexes
  hold exactly the free members;
- each queue session has exactly one ending, every abandon the harness caused is counted
  once, and :mod:`acd.stats` equals an independent recount of the event log and of the
  harness's own tally; the agents' counters equal the log (after every step in the
  hypothesis machine; every 25 steps and at the end in the seeded driver).
- when a call arrives, it is offered to the agent the queue's strategy says (brute force
  over all agents); when an agent becomes free, it gets the best call it may take.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from acd.agents import MISSED, REST, Agent, ReasonLimit, State, Status
from acd.events import (
    Announce,
    CallbackAccepted,
    Connect,
    DropLeg,
    EventKind,
    Fixed,
    Offer,
    OfferCallback,
    Queued,
    Redirect,
    StatusLimitExceeded,
    StopRinging,
    Timeout,
    TransferFailed,
)
from acd.matcher import Acd
from acd.queues import (
    Announcements,
    CallbackOffer,
    ExpertWidening,
    FamiliarAgent,
    QueueConfig,
    Stage,
)
from acd.stats import Thresholds, agent_stats, queue_stats, thresholds_of
from acd.strategies import Strategy

QUEUES = [
    QueueConfig("bill", Strategy.LONGEST_IDLE, {"bill": 1}, max_wait=150, max_length=6,
                ring_timeout=8, wrap_up=3, familiar_agent=FamiliarAgent(True, 1, 12),
                callback=CallbackOffer(offer_after=30), announcements=Announcements(20),
                timeout_destination="voicemail", full_destination="busy"),
    QueueConfig("fault", Strategy.EXPERT, {"fault": 1}, ring_timeout=6, priority_aging=20,
                expert=ExpertWidening(start_level=8, step_seconds=5, min_level=2),
                no_agent_destination="after_hours", service_level_threshold=10,
                short_abandon=3),
    QueueConfig("vip", Strategy.RING_ALL, {"bill": 4}, ring_timeout=5, wrap_up=2),
    QueueConfig("rr", Strategy.ROUND_ROBIN, {"rr": 1}, max_wait=90),
    QueueConfig("rand", Strategy.RANDOM, {"rr": 1}, priority_aging=None),
    QueueConfig("fewest", Strategy.FEWEST_CALLS, {"misc": 1}, wrap_up=1),
    QueueConfig("talk", Strategy.LEAST_TALK_TIME, {"misc": 1}),
    QueueConfig("linear", Strategy.LINEAR, {"misc": 1}, max_wait=60),
]
CALLERS = ["138", "139", "186", None]


def brute_key(strategy: Strategy, agent: Agent, q, rr_last: dict[str, int]) -> tuple:
    """The strategy's preference, computed from scratch (smaller first)."""
    if strategy is Strategy.LONGEST_IDLE:
        return (agent.idle_since, agent.seq)
    if strategy is Strategy.ROUND_ROBIN:
        return (rr_last.get(agent.id, 0), agent.seq)
    if strategy is Strategy.FEWEST_CALLS:
        return (agent.calls_handled, agent.idle_since, agent.seq)
    if strategy is Strategy.LEAST_TALK_TIME:
        return (agent.talk_time, agent.idle_since, agent.seq)
    if strategy is Strategy.LINEAR:
        return (agent.order if agent.order is not None else agent.seq, agent.seq)
    if strategy is Strategy.EXPERT:
        return (-agent.level(q.expert_skill), agent.idle_since, agent.seq)
    raise AssertionError(strategy)


class Harness:
    """The glue, with its own model of the wire and its own tally."""

    def __init__(self, seed: int) -> None:
        self.acd = Acd(rng=random.Random(seed), reason_limits={
            REST: ReasonLimit(40, "ready"), MISSED: ReasonLimit(25, "ready"),
            "busy": ReasonLimit(60, "alert")})
        for config in QUEUES:
            self.acd.add_queue(config)
        rng = random.Random(seed)
        for i in range(9):
            skills = {s: rng.randint(1, 10) for s in ("bill", "fault", "rr", "misc")
                      if rng.random() < 0.6}
            self.acd.add_agent(Agent(f"a{i}", skills=skills, seat=f"s{i}",
                                     order=rng.choice([None, rng.randint(0, 20)])))
        for i, agent_id in enumerate(self.acd.agents):
            self.acd.login(agent_id, 0.0, "ready" if i % 3 else "not_ready",
                           None if i % 3 else "busy")
        self.now = 0.0
        self.registered = {a: True for a in self.acd.agents}
        self.ringing: set[tuple[str, str]] = set()  # wire: seats ringing for calls
        self.connected: dict[str, str] = {}  # wire: call -> agent
        self.lost: set[tuple[str, str]] = set()  # legs gone without telling the core
        self.n_calls = 0
        self.tally: dict[str, Counter] = defaultdict(Counter)  # queue -> what we saw
        self.rr_last: dict[str, dict[str, int]] = defaultdict(dict)
        self.rr_seq = 0
        self.sessions: dict[str, str | None] = {}  # call id -> open session's queue
        self.seen_events = 0

    # ------------------------------------------------------------------- carrying out

    def apply(self, actions) -> None:
        acd = self.acd
        for action in actions:
            if isinstance(action, Offer):
                key = (action.call_id, action.agent_id)
                assert key not in self.ringing
                assert acd.agents[action.agent_id].state is State.RESERVED
                self.ringing.add(key)
                if acd.queues[action.queue].strategy is Strategy.ROUND_ROBIN:
                    self.rr_seq += 1
                    self.rr_last[action.queue][action.agent_id] = self.rr_seq
            elif isinstance(action, StopRinging):
                self.ringing.discard((action.call_id, action.agent_id))
                self.lost.discard((action.call_id, action.agent_id))
            elif isinstance(action, Connect):
                self.ringing.discard((action.call_id, action.agent_id))
                self.connected[action.call_id] = action.agent_id
                if not action.callback:
                    self.tally[action.queue]["answered"] += 1
            elif isinstance(action, (Timeout, Redirect)):
                assert not any(c == action.call_id for c, _ in self.ringing)
                if isinstance(action, Timeout):
                    self.tally[action.queue]["timeouts"] += 1
            elif isinstance(action, Queued):
                self.tally[action.queue]["offered"] += 1
            elif isinstance(action, DropLeg):
                self.connected.pop(action.call_id, None)
                self.ringing.discard((action.call_id, action.agent_id))
            else:
                assert isinstance(action, (Announce, OfferCallback, CallbackAccepted, Fixed,
                                           StatusLimitExceeded, TransferFailed)), action

    def do(self, actions) -> list:
        self.apply(actions)
        return actions

    # ------------------------------------------------------------------------ the world

    def advance(self, r: random.Random) -> None:
        self.now += r.choice([0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0])
        self.do(self.acd.tick(self.now))
        deadline = self.acd.next_deadline()
        assert deadline is None or deadline > self.now

    def arrive(self, r: random.Random) -> None:
        acd = self.acd
        self.n_calls += 1
        call_id = f"c{self.n_calls}"
        q = acd.queues[r.choice(QUEUES).name]
        priority = r.choice([0, 0, 0, 1, 3])
        caller = r.choice(CALLERS)
        expected = self._expected_agent(q, priority, caller)
        actions = self.do(acd.enqueue(call_id, q.name, self.now, priority, caller))
        got = [a.agent_id for a in actions if isinstance(a, Offer)]
        if expected is not None:
            assert got == [expected], (q.name, got, expected)

    def _expected_agent(self, q, priority: int, caller) -> str | None:
        """The brute-force choice for a new call, when the strategy is deterministic."""
        if q.strategy in (Strategy.RANDOM, Strategy.RING_ALL):
            return None
        if q.config.familiar_agent.enabled and caller is not None:
            return None  # the familiar agent may go first
        if q.config.max_length is not None and len(q.calls) >= q.config.max_length:
            return None
        threshold = q.config.expert.start_level if q.strategy is Strategy.EXPERT else 0
        free = [a for a in q.members.values() if a.available
                and (q.strategy is not Strategy.EXPERT or a.level(q.expert_skill) >= threshold)]
        if not free:
            return None
        return min(free, key=lambda a: brute_key(q.strategy, a, q, self.rr_last[q.name])).id

    def _pick_call(self, r: random.Random, *stages: Stage):
        calls = [c for c in self.acd.calls.values() if not stages or c.stage in stages]
        return r.choice(calls) if calls else None

    def answer(self, r: random.Random, answered: bool) -> None:
        if not self.ringing or r.random() < 0.05:
            # an answer the core no longer expects (stale) or for a call it never offered
            call_id, agent_id = f"c{r.randint(0, self.n_calls)}", r.choice(list(self.acd.agents))
            call = self.acd.calls.get(call_id)
            if call is None or self.acd.agents[agent_id] not in call.ringing:
                expected = [StopRinging(call_id, agent_id, "stale")] if answered else []
                assert self.acd.offer_result(call_id, agent_id, answered, self.now) == expected
                return
        if not self.ringing:
            return
        call_id, agent_id = r.choice(sorted(self.ringing))
        if (call_id, agent_id) in self.lost:
            return
        if not answered:
            self.ringing.discard((call_id, agent_id))  # the seat declined: it stopped ringing
        self.do(self.acd.offer_result(call_id, agent_id, answered, self.now))

    def hang_up(self, r: random.Random) -> None:
        call = self._pick_call(r)
        if call is None:
            return
        self._count_abandon(call)
        by = r.choice(["caller", "agent"])
        if call.stage is Stage.CONNECTED and by == "agent":
            actions = self.acd.call_ended(call.call_id, self.now, by="agent")
        elif r.random() < 0.5:
            actions = self.acd.abandon(call.call_id, self.now)
        else:
            actions = self.acd.call_ended(call.call_id, self.now, by="caller")
        self.connected.pop(call.call_id, None)
        self.do(actions)
        # a duplicate hangup report changes nothing
        assert self.acd.abandon(call.call_id, self.now) == []

    def _count_abandon(self, call) -> None:
        if call.stage is not Stage.CONNECTED and not call.callback:
            self.tally[call.queue.name]["abandoned"] += 1

    def hold(self, r: random.Random) -> None:
        call = self._pick_call(r, Stage.CONNECTED)
        if call is None or call.call_id not in self.connected:
            return
        if call.agent.state is State.ON_HOLD:
            self.do(self.acd.resume(call.call_id, self.now))
        else:
            self.do(self.acd.hold(call.call_id, self.now))

    def wrap_done(self, r: random.Random) -> None:
        agents = [a for a in self.acd.agents.values() if a.state is State.WRAP_UP]
        if agents:
            agent = r.choice(agents)
            self._freeing(agent, agent.status is Status.READY,
                          lambda: self.acd.wrap_up_done(agent.id, self.now))

    def status(self, r: random.Random) -> None:
        agent = r.choice(list(self.acd.agents.values()))
        choice = r.choice(["ready", "ready", "busy", "rest", "logout"])
        if choice == "logout":
            if agent.logged_in:
                self.do(self.acd.logout(agent.id, self.now))
            return
        if choice == "ready":
            if agent.status is not Status.READY:
                self._freeing(agent, agent.state is State.IDLE,
                              lambda: self.acd.set_status(agent.id, "ready", None, self.now))
            return
        self.do(self.acd.set_status(agent.id, "not_ready", choice, self.now))

    def _freeing(self, agent: Agent, becomes_free: bool, op) -> None:
        """Run an op that frees ``agent`` (if ``becomes_free``) and check the call it gets:
        the best waiting call it may take, or none if there is none."""
        candidates = self._calls_for(agent) if becomes_free else None
        actions = self.do(op())
        if candidates is None:
            return
        offers = [a.call_id for a in actions if isinstance(a, Offer) and a.agent_id == agent.id]
        expected = [candidates[0].call_id] if candidates else []
        assert offers == expected, (agent.id, offers, [c.call_id for c in candidates])

    def _calls_for(self, agent: Agent) -> list:
        """Waiting calls the agent may take, best first: its familiar callers, then by
        effective priority across its queues."""
        now = self.now
        personal, general = [], []
        for call in self.acd.calls.values():
            if call.stage is not Stage.WAITING:
                continue
            if call.familiar is not None:
                if call.familiar is agent:
                    personal.append(call)
                continue
            q = call.queue
            if agent.id not in q.members:
                continue
            if q.strategy is Strategy.EXPERT and agent.level(q.expert_skill) < call.threshold:
                continue
            general.append(call)
        personal.sort(key=lambda c: c.key)

        def effective(c):
            aging = c.queue.aging
            return c.priority + ((now - c.entered) / aging if aging else 0.0)

        if general:
            # the best effective priority; near-equal ones (rounding) tie: earliest caller first
            top = max(effective(c) for c in general)
            tied = [c for c in general if effective(c) >= top - 1e-6]
            first = min(tied, key=lambda c: (c.entered, c.seq))
            general.remove(first)
            general.insert(0, first)
        return personal + general

    def callback(self, r: random.Random) -> None:
        call = self._pick_call(r, Stage.WAITING, Stage.RINGING)
        if call is not None:
            self.do(self.acd.request_callback(call.call_id, self.now))

    def transfer(self, r: random.Random) -> None:
        call = self._pick_call(r)
        if call is None or (call.stage is Stage.CONNECTED and call.call_id not in self.connected):
            return
        target = r.choice([q.name for q in QUEUES] + list(self.acd.agents))
        was_connected = call.stage is Stage.CONNECTED
        actions = self.do(self.acd.transfer(call.call_id, target, self.now))
        if not any(isinstance(a, TransferFailed) for a in actions) and was_connected:
            self.connected.pop(call.call_id, None)

    def lose_leg(self, r: random.Random) -> None:
        """The seat's leg vanished and the hangup report never came."""
        legs = sorted(self.ringing - self.lost) + sorted(
            (c, a) for c, a in self.connected.items() if (c, a) not in self.lost)
        if not legs:
            return
        call_id, agent_id = r.choice(legs)
        self.lost.add((call_id, agent_id))
        self.ringing.discard((call_id, agent_id))
        self.connected.pop(call_id, None)

    def reconcile(self, r: random.Random) -> None:
        agent_id = r.choice(list(self.acd.agents))
        if r.random() < 0.3:
            self.registered[agent_id] = not self.registered[agent_id]
        legs = {c for c, a in self.ringing if a == agent_id}
        legs |= {c for c, a in self.connected.items() if a == agent_id}
        ghost = r.random() < 0.1
        if ghost:
            legs.add("ghost")
        actions = self.do(self.acd.reconcile(agent_id, self.registered[agent_id], legs,
                                             self.now))
        for c, a in list(self.lost):
            if a == agent_id:
                self.lost.discard((c, a))
        if ghost:
            assert DropLeg(agent_id, "ghost") in actions
        agent = self.acd.agents[agent_id]
        call = agent.call
        if call is not None:  # after reconcile the core and the wire agree on this seat
            if agent.state is State.RESERVED:
                assert (call.call_id, agent_id) in self.ringing
            else:
                assert self.connected.get(call.call_id) == agent_id

    BALANCED = [("advance", 6), ("arrive", 3), ("answer", 6), ("decline", 1), ("hang_up", 4),
                ("hold", 1), ("wrap_done", 1), ("status", 3), ("callback", 0.5),
                ("transfer", 1), ("lose_leg", 0.4), ("reconcile", 2)]
    # queues build up: timeouts, full queues, announcements, callback offers, widening
    OVERLOADED = [("advance", 6), ("arrive", 5), ("answer", 4), ("decline", 1),
                  ("hang_up", 3), ("hold", 1), ("wrap_done", 1), ("status", 3),
                  ("callback", 1), ("transfer", 1), ("lose_leg", 1), ("reconcile", 2)]

    def step(self, r: random.Random, ops=BALANCED) -> str:
        names, weights = zip(*ops, strict=True)
        op = r.choices(names, weights)[0]
        if op == "answer":
            self.answer(r, True)
        elif op == "decline":
            self.answer(r, False)
        else:
            getattr(self, op)(r)
        return op

    def drain(self) -> None:
        """Bring everything to rest: everyone ready, every call answered and ended."""
        acd = self.acd
        for agent_id, ok in self.registered.items():
            if not ok:
                self.registered[agent_id] = True
            legs = {c for c, a in self.ringing if a == agent_id}
            legs |= {c for c, a in self.connected.items() if a == agent_id}
            self.do(acd.reconcile(agent_id, True, legs, self.now))
        self.lost.clear()
        for _ in range(10_000):
            for agent in acd.agents.values():
                if agent.status is not Status.READY:
                    self.do(acd.set_status(agent.id, "ready", None, self.now))
            if not acd.calls and all(a.state is State.IDLE for a in acd.agents.values()):
                return
            if self.ringing:
                call_id, agent_id = sorted(self.ringing)[0]
                self.do(acd.offer_result(call_id, agent_id, True, self.now))
            elif self.connected:
                call_id = sorted(self.connected)[0]
                del self.connected[call_id]
                self.do(acd.call_ended(call_id, self.now))
            else:
                self.now += 1.0
                self.do(acd.tick(self.now))
            check(self)
        raise AssertionError("the ACD did not come to rest")


# ------------------------------------------------------------------------------ checks


def check(h: Harness) -> None:
    acd = h.acd
    core_ringing = set()
    core_connected = {}
    for call_id, call in acd.calls.items():
        assert call.call_id == call_id and call.alive
        q = call.queue
        if call.stage is Stage.WAITING:
            assert call.ringing == [] and call.agent is None
            assert call.in_queue and q.calls.get(call_id) is call
            assert call.lane is not None, call_id
        elif call.stage is Stage.RINGING:
            assert call.ringing and call.lane is None and call.agent is None
            assert call.in_queue and q.calls.get(call_id) is call
            for agent in call.ringing:
                assert agent.state is State.RESERVED and agent.call is call
                core_ringing.add((call_id, agent.id))
        else:
            assert call.stage is Stage.CONNECTED
            assert not call.in_queue and call_id not in q.calls and call.lane is None
            assert call.agent.state in (State.ON_CALL, State.ON_HOLD)
            assert call.agent.call is call
            core_connected[call_id] = call.agent.id
    on_calls = Counter()
    for agent in acd.agents.values():
        call = agent.call
        if agent.state is State.RESERVED:
            assert call is not None and call.stage is Stage.RINGING and agent in call.ringing
            assert acd.calls.get(call.call_id) is call and call.in_queue
            on_calls[agent.id] += 1
        elif agent.state in (State.ON_CALL, State.ON_HOLD):
            assert call is not None and call.stage is Stage.CONNECTED and call.agent is agent
            on_calls[agent.id] += 1
        else:
            assert call is None
        assert agent.indexed == agent.available, agent.id
        assert agent.lane_ids == [lane.lid for q in agent.queues for lane in q.lanes_for(agent)]
        if agent.status is not Status.READY and agent.personal is not None:
            assert agent.personal.live == 0
    assert all(n == 1 for n in on_calls.values())
    # no agent on two calls, seen from the calls
    holders = Counter(a for _, a in core_ringing) + Counter(core_connected.values())
    assert all(n == 1 for n in holders.values())
    # the wire agrees with the core, apart from legs lost and not yet reconciled
    assert h.ringing <= core_ringing
    assert core_ringing - h.ringing <= h.lost
    assert {c: a for c, a in core_connected.items() if (c, a) not in h.lost} == h.connected
    # queues: positions, free indexes, work conservation
    for q in acd.queues.values():
        assert q.order() == sorted(c.key for c in q.calls.values())
        personal = [a.personal for a in q.members.values() if a.personal]
        for lane in list(q.lanes) + personal:  # the head on the lane, the unboxed keys beside
            entries = lane.items[lane.start:]
            assert entries == sorted(entries, key=lambda e: e[:3])
            assert list(lane.k1s[lane.start:]) == [e[0] for e in entries]
            assert lane.item is (entries[0][-1] if entries else None)
            if lane in personal:  # stale entries (familiar window over) are dropped lazily
                live = [e[-1] for e in entries if e[-1].lane is lane]
                assert live == sorted((c for c in acd.calls.values() if c.lane is lane),
                                      key=lambda c: c.key)
            else:
                assert all(e[-1].lane is lane for e in entries)
            if lane.lid >= 0:  # the head published for routing
                heads = acd._lane_heads
                assert heads.lanes[lane.lid] is lane
                assert heads.k1[lane.lid] == (entries[0][0] if entries else float("inf"))
        if q.strategy is not Strategy.RANDOM:
            live = q.free.live_entries()
            assert q.free.item is (live[0][-1] if live else None)
            assert len(q.free.k1s) == len(q.free.items)
            assert list(q.free.k1s[q.free.start:]) == [e[0] for e in q.free.items[q.free.start:]]
        free = [a for a in q.members.values() if a.available]
        assert len(q.free) == len(free)
        assert q.staffed == sum(1 for a in q.members.values() if a.logged_in)
        for call in q.calls.values():
            if call.stage is not Stage.WAITING:
                continue
            if call.familiar is not None:
                f = call.familiar
                assert call.lane is f.personal and f.status is Status.READY
                assert not f.available and h.now < call.familiar_until
                continue
            for agent in free:
                if q.strategy is Strategy.EXPERT:
                    assert agent.level(q.expert_skill) < call.threshold, (call.call_id, agent.id)
                else:
                    raise AssertionError(
                        f"{agent.id} is free while {call.call_id} waits in {q.name}")
    check_log(h)


def check_log(h: Harness) -> None:
    acd = h.acd
    events = acd.events
    # each session ends exactly once
    for e in events[h.seen_events:]:
        if e.call_id is None or e.queue is None or e.kind is EventKind.AGENT_STATE:
            continue
        open_queue = h.sessions.get(e.call_id)
        if e.kind is EventKind.ENTER:
            assert open_queue is None, (e.call_id, open_queue)
            h.sessions[e.call_id] = e.queue
        elif e.kind is EventKind.EXIT and e.data["at_entry"]:
            assert open_queue is None
        else:
            assert open_queue == e.queue, (e, open_queue)
            if e.kind in (EventKind.ABANDON, EventKind.TIMEOUT, EventKind.EXIT,
                          EventKind.COMPLETE_CALLER, EventKind.COMPLETE_AGENT,
                          EventKind.TRANSFER):
                h.sessions[e.call_id] = None
    h.seen_events = len(events)
    assert {c for c, q in h.sessions.items() if q is not None} == set(acd.calls)


def check_stats(h: Harness) -> None:
    """Statistics equal an independent recount of the log, and the harness's own tally."""
    acd = h.acd
    thresholds = thresholds_of(acd)
    stats = queue_stats(acd.events, thresholds)
    recount: dict[str, Counter] = defaultdict(Counter)
    waits: dict[str, float] = defaultdict(float)
    for e in acd.events:
        if e.queue is None:
            continue
        c = recount[e.queue]
        th = thresholds.get(e.queue, Thresholds())
        if e.kind is EventKind.ENTER:
            c["offered"] += 1
        elif e.kind is EventKind.CONNECT and not e.data["callback"]:
            c["answered"] += 1
            waits[e.queue] += e.data["wait"]
            c["within_t"] += e.data["wait"] <= th.service_level
        elif e.kind is EventKind.ABANDON:
            c["abandoned"] += 1
            c["short"] += e.data["wait"] <= th.short_abandon
        elif e.kind is EventKind.TIMEOUT:
            c["timeouts"] += 1
    for name, c in recount.items():
        s = stats[name]
        assert (s.offered, s.answered, s.abandoned, s.short_abandoned, s.timeouts) == (
            c["offered"], c["answered"], c["abandoned"], c["short"], c["timeouts"])
        tally = h.tally[name]
        assert (s.offered, s.answered, s.abandoned, s.timeouts) == (
            tally["offered"], tally["answered"], tally["abandoned"], tally["timeouts"]), name
        denominator = c["answered"] + c["abandoned"] - c["short"]
        expected_sl = c["within_t"] / denominator if denominator else None
        assert s.service_level == pytest.approx(expected_sl) if expected_sl is not None \
            else s.service_level is None
        if c["answered"]:
            assert s.asa == pytest.approx(waits[name] / c["answered"])
    per_agent = agent_stats(acd.events, until=h.now)
    for agent in acd.agents.values():
        s = per_agent.get(agent.id)
        if s is None:
            continue
        assert (s.offers, s.no_answers, s.handled) == (agent.offers, agent.no_answers,
                                                       agent.calls_handled)
        assert s.talk == pytest.approx(agent.talk_time, abs=1e-6)
        assert s.hold == pytest.approx(agent.hold_time, abs=1e-6)
        assert s.wrap == pytest.approx(agent.wrap_time, abs=1e-6)
        assert s.on_contact + s.ready_idle <= h.now + 1e-6


# -------------------------------------------------------------------- seeded driver


@pytest.mark.parametrize("seed", range(8))
def test_random_interleavings_keep_invariants(seed):
    h = Harness(seed)
    r = random.Random(1000 + seed)
    ops = Counter()
    profile = Harness.OVERLOADED if seed % 2 else Harness.BALANCED
    for i in range(4000):
        ops[h.step(r, profile)] += 1
        check(h)
        if i % 25 == 0:  # a full recount of the log: every step would be quadratic
            check_stats(h)
    check_stats(h)
    h.drain()
    check(h)
    check_stats(h)
    assert acd_at_rest(h.acd)
    kinds = Counter(e.kind for e in h.acd.events)
    assert kinds[EventKind.CONNECT] > 50 and kinds[EventKind.ABANDON] > 20
    assert kinds[EventKind.RING_NO_ANSWER] > 10 and kinds[EventKind.TRANSFER] > 10
    if profile is Harness.OVERLOADED:
        assert kinds[EventKind.TIMEOUT] > 10 and kinds[EventKind.CALLBACK] > 10


def acd_at_rest(acd: Acd) -> bool:
    return (not acd.calls and all(a.state is State.IDLE and a.available
                                  for a in acd.agents.values())
            and all(not q.calls and q.waiting == 0 for q in acd.queues.values()))


# ------------------------------------------------------------------ hypothesis machine


class AcdMachine(RuleBasedStateMachine):
    """The same operations, chosen and shrunk by hypothesis."""

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(0)

    @rule(r=st.randoms(use_true_random=False))
    def advance(self, r):
        self.h.advance(r)

    @rule(r=st.randoms(use_true_random=False))
    def arrive(self, r):
        self.h.arrive(r)

    @rule(r=st.randoms(use_true_random=False), answered=st.booleans())
    def answer(self, r, answered):
        self.h.answer(r, answered)

    @rule(r=st.randoms(use_true_random=False))
    def hang_up(self, r):
        self.h.hang_up(r)

    @rule(r=st.randoms(use_true_random=False))
    def hold(self, r):
        self.h.hold(r)

    @rule(r=st.randoms(use_true_random=False))
    def wrap_done(self, r):
        self.h.wrap_done(r)

    @rule(r=st.randoms(use_true_random=False))
    def status(self, r):
        self.h.status(r)

    @rule(r=st.randoms(use_true_random=False))
    def callback(self, r):
        self.h.callback(r)

    @rule(r=st.randoms(use_true_random=False))
    def transfer(self, r):
        self.h.transfer(r)

    @rule(r=st.randoms(use_true_random=False))
    def lose_leg(self, r):
        self.h.lose_leg(r)

    @rule(r=st.randoms(use_true_random=False))
    def reconcile(self, r):
        self.h.reconcile(r)

    @invariant()
    def consistent(self):
        check(self.h)
        check_stats(self.h)

    def teardown(self):
        check_stats(self.h)
        self.h.drain()
        check_stats(self.h)
        assert acd_at_rest(self.h.acd)


AcdMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=60, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow])
test_acd_state_machine = AcdMachine.TestCase
