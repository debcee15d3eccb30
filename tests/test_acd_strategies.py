"""Each routing strategy offers the call to the agent it should, in explicit scenarios."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from acd.agents import Agent, State
from acd.events import Connect, Offer, StopRinging
from acd.matcher import Acd
from acd.queues import ExpertWidening, FamiliarAgent, QueueConfig
from acd.strategies import Strategy


def make(strategy: Strategy, n: int = 3, *, rng: random.Random | None = None,
         skills: dict[str, int] | None = None, **config) -> Acd:
    acd = Acd(rng=rng)
    acd.add_queue(QueueConfig("q", strategy=strategy, skills={"power": 1}, **config))
    for i in range(n):
        acd.add_agent(Agent(f"a{i}", skills=(skills or {}).get(f"a{i}") or {"power": 5},
                            seat=f"seat{i}"))
    return acd


def offers(actions) -> list[str]:
    return [a.agent_id for a in actions if isinstance(a, Offer)]


def offered_calls(actions) -> list[str]:
    return [a.call_id for a in actions if isinstance(a, Offer)]


def answer(acd: Acd, call_id: str, now: float) -> str:
    """Enqueue a call and answer it; returns the agent (the call stays connected)."""
    (agent,) = offers(acd.enqueue(call_id, "q", now))
    acd.offer_result(call_id, agent, True, now)
    return agent


def serve(acd: Acd, call_id: str, now: float, talk: float = 0.0) -> str:
    """Enqueue a call, answer it, end it after ``talk`` seconds; returns the agent."""
    (agent,) = offers(acd.enqueue(call_id, "q", now))
    acd.offer_result(call_id, agent, True, now)
    acd.call_ended(call_id, now + talk)
    return agent


def login_all(acd: Acd, now: float = 0.0) -> None:
    for agent_id in acd.agents:
        acd.login(agent_id, now)


def test_longest_idle_picks_the_agent_idle_longest():
    acd = make(Strategy.LONGEST_IDLE)
    login_all(acd, 0)
    assert answer(acd, "c1", 1) == "a0"  # all idle since 0: add order breaks the tie
    assert answer(acd, "c2", 2) == "a1"
    acd.call_ended("c2", 30)
    acd.call_ended("c1", 50)
    # a2 idle since 0, a1 since 30, a0 since 50
    assert serve(acd, "c3", 60) == "a2"
    assert serve(acd, "c4", 61) == "a1"
    assert serve(acd, "c5", 62) == "a0"


def test_longest_idle_resets_on_login():
    acd = make(Strategy.LONGEST_IDLE, 2)
    acd.login("a1", 0)
    acd.login("a0", 10)
    assert offers(acd.enqueue("c1", "q", 11)) == ["a1"]


def test_round_robin_rotates_in_member_order():
    acd = make(Strategy.ROUND_ROBIN)
    login_all(acd)
    picked = [serve(acd, f"c{i}", i) for i in range(7)]
    assert picked == ["a0", "a1", "a2", "a0", "a1", "a2", "a0"]


def test_round_robin_skipped_busy_agent_is_next_when_free():
    acd = make(Strategy.ROUND_ROBIN)
    login_all(acd)
    assert serve(acd, "c0", 0) == "a0"
    (a1,) = offers(acd.enqueue("c1", "q", 1))  # a1 keeps this call
    acd.offer_result("c1", a1, True, 1)
    assert serve(acd, "c2", 2) == "a2"
    assert serve(acd, "c3", 3) == "a0"  # a1 is busy at its turn
    acd.call_ended("c1", 4)
    assert serve(acd, "c4", 5) == "a1"  # least recently offered


def test_fewest_calls_beats_idle_time():
    acd = make(Strategy.FEWEST_CALLS)
    acd.login("a0", 0)
    assert [serve(acd, f"c{i}", i) for i in (1, 2, 3)] == ["a0"] * 3
    acd.login("a1", 4)
    assert serve(acd, "c4", 5) == "a1"
    acd.login("a2", 10)
    # a0 (3 calls) and a1 (1 call) have been idle longer, but a2 has handled none
    assert serve(acd, "c5", 11) == "a2"
    assert serve(acd, "c6", 12) == "a1"  # a1 and a2 have 1 each; a1 idle since 5


def test_fewest_calls_counts_handled_calls():
    acd = make(Strategy.FEWEST_CALLS)
    login_all(acd)
    assert [serve(acd, f"c{i}", i) for i in range(6)] == ["a0", "a1", "a2"] * 2


def test_least_talk_time():
    acd = make(Strategy.LEAST_TALK_TIME)
    login_all(acd)
    assert answer(acd, "c1", 1) == "a0"
    assert answer(acd, "c2", 2) == "a1"
    assert answer(acd, "c3", 3) == "a2"
    acd.call_ended("c2", 102)
    acd.call_ended("c3", 203)
    acd.call_ended("c1", 301)
    # talk: a0 300, a1 100, a2 200
    assert [serve(acd, f"d{i}", 400 + i) for i in range(3)] == ["a1", "a1", "a1"]
    assert serve(acd, "d9", 410, talk=150) == "a1"  # a1 now 250
    assert serve(acd, "e1", 600) == "a2"


def test_linear_always_offers_the_first_free_agent_in_order():
    acd = Acd()
    acd.add_queue(QueueConfig("q", strategy=Strategy.LINEAR))
    for agent_id, order in (("x", 3), ("y", 1), ("z", 2)):
        acd.add_agent(Agent(agent_id, order=order))
    login_all(acd)
    assert [serve(acd, f"c{i}", i) for i in range(3)] == ["y", "y", "y"]
    (first,) = offers(acd.enqueue("d1", "q", 10))
    (second,) = offers(acd.enqueue("d2", "q", 10))
    (third,) = offers(acd.enqueue("d3", "q", 10))
    assert (first, second, third) == ("y", "z", "x")


def test_random_is_uniform_and_reproducible():
    def run(seed: int) -> list[str]:
        acd = make(Strategy.RANDOM, 4, rng=random.Random(seed))
        login_all(acd)
        return [serve(acd, f"c{i}", i) for i in range(2000)]

    picks = run(7)
    assert picks == run(7)
    assert picks != run(8)
    counts = Counter(picks)
    assert set(counts) == {"a0", "a1", "a2", "a3"}
    assert all(420 < n < 580 for n in counts.values()), counts


def test_ring_all_rings_every_free_member_and_first_answer_wins():
    acd = make(Strategy.RING_ALL, 4)
    login_all(acd)
    acd.set_status("a3", "not_ready", "busy", 0)
    actions = acd.enqueue("c1", "q", 1)
    assert sorted(offers(actions)) == ["a0", "a1", "a2"]
    acd.enqueue("c2", "q", 2)  # waits: everyone free is ringing for c1
    actions = acd.offer_result("c1", "a1", True, 3)
    assert Connect("c1", "a1", "q", "seat1", False) in actions
    stopped = sorted(a.agent_id for a in actions if isinstance(a, StopRinging))
    assert stopped == ["a0", "a2"]
    # the released agents are free again; the first of them takes c2, the other is idle
    assert offers(actions) == ["a0"]
    assert acd.agents["a2"].available
    # a late answer from a released seat is refused
    assert acd.offer_result("c1", "a2", True, 4) == [StopRinging("c1", "a2", "stale")]


def test_skills_gate_membership():
    acd = Acd()
    acd.add_queue(QueueConfig("fault", skills={"fault": 3, "mandarin": 1}))
    acd.add_agent(Agent("novice", skills={"fault": 2, "mandarin": 5}))
    acd.add_agent(Agent("no_lang", skills={"fault": 9}))
    acd.add_agent(Agent("ok", skills={"fault": 3, "mandarin": 1}))
    login_all(acd)
    assert set(acd.queues["fault"].members) == {"ok"}
    assert offers(acd.enqueue("c1", "fault", 1)) == ["ok"]
    assert offers(acd.enqueue("c2", "fault", 2)) == []


# ------------------------------------------------------------------------------- expert


def expert_acd() -> Acd:
    acd = Acd()
    acd.add_queue(QueueConfig("q", strategy=Strategy.EXPERT, skills={"power": 1},
                              expert=ExpertWidening(start_level=9, step_seconds=10,
                                                    min_level=4)))
    for agent_id, level in (("l3", 3), ("l5", 5), ("l7", 7), ("l9", 9)):
        acd.add_agent(Agent(agent_id, skills={"power": level}))
    return acd


def test_expert_offers_best_level_first():
    acd = expert_acd()
    login_all(acd)
    assert offers(acd.enqueue("c1", "q", 1)) == ["l9"]


def test_expert_widens_to_lower_levels_as_the_wait_grows():
    acd = expert_acd()
    login_all(acd)
    acd.set_status("l9", "not_ready", "busy", 0)
    assert offers(acd.enqueue("c1", "q", 100)) == []  # threshold 9: nobody that good
    assert acd.next_deadline() == 110
    assert offers(acd.tick(110)) == []  # threshold 8
    assert offers(acd.tick(120)) == ["l7"]  # threshold 7: the best free agent qualifies


def test_expert_widening_sequence_and_floor():
    acd = expert_acd()
    login_all(acd)
    for agent_id in ("l9", "l7"):
        acd.set_status(agent_id, "not_ready", "busy", 0)
    acd.enqueue("c1", "q", 100)
    seen = {}
    t = 100.0
    while not seen:
        t = acd.next_deadline()
        picked = offers(acd.tick(t))
        if picked:
            seen[t] = picked
    # 9@100, 8@110, 7@120, 6@130, 5@140 -> l5 takes it; l3 is below the floor (4)
    assert seen == {140.0: ["l5"]}
    acd.offer_result("c1", "l5", True, 141)
    acd.set_status("l5", "not_ready", "busy", 142)
    acd.enqueue("c2", "q", 150)
    for t in range(150, 400, 10):
        assert offers(acd.tick(t)) == []  # l3 never qualifies (min_level 4)
    assert acd.calls["c2"].threshold == 4


def test_expert_agent_freed_takes_call_whose_threshold_fits():
    acd = expert_acd()
    login_all(acd)
    for agent_id in ("l9", "l7", "l5", "l3"):
        acd.set_status(agent_id, "not_ready", "busy", 0)
    acd.enqueue("old", "q", 100)
    acd.tick(130)  # old: threshold 6
    acd.enqueue("vip", "q", 130, priority=5)  # threshold 9
    # l7 is free: vip is ahead by priority but needs 9; old accepts 7
    assert offered_calls(acd.set_status("l7", "ready", None, 131)) == ["old"]
    assert offered_calls(acd.set_status("l9", "ready", None, 132)) == ["vip"]


# ------------------------------------------------------------------------------ familiar


def familiar_acd(try_first: float = 30.0) -> Acd:
    acd = make(Strategy.LONGEST_IDLE, 3,
               familiar_agent=FamiliarAgent(enabled=True, lookback_days=7, try_first=try_first))
    login_all(acd)
    return acd


def test_familiar_agent_is_tried_first():
    acd = familiar_acd()
    (first,) = offers(acd.enqueue("c1", "q", 1, caller="13800000000"))
    assert first == "a0"
    acd.offer_result("c1", "a0", True, 2)
    acd.call_ended("c1", 100)
    # a1 and a2 have been idle longer, but the caller is familiar with a0
    assert offers(acd.enqueue("c2", "q", 200, caller="13800000000")) == ["a0"]
    assert offers(acd.enqueue("c3", "q", 201, caller="13900000000")) == ["a1"]


def test_familiar_agent_busy_waits_then_falls_back_on_time():
    acd = familiar_acd(try_first=30)
    serve(acd, "c1", 1)  # a0 served the caller... with no caller id; use explicit below
    (busy,) = offers(acd.enqueue("x", "q", 10))
    acd.offer_result("x", busy, True, 10)  # a1 is now on a call
    assert busy == "a1"
    actions = acd.enqueue("c2", "q", 20, familiar_agent="a1")
    assert offers(actions) == []  # a2 and a0 are free, but a1 is tried first
    assert acd.position("c2") == 1
    assert acd.next_deadline() == 50  # x was answered: only the familiar window is pending
    assert offers(acd.tick(49)) == []
    assert offers(acd.tick(50)) == ["a2"]  # window over: longest idle among the rest


def test_familiar_agent_freed_within_window_takes_the_caller():
    acd = familiar_acd(try_first=30)
    (busy,) = offers(acd.enqueue("x", "q", 10))
    acd.offer_result("x", busy, True, 10)
    acd.enqueue("c2", "q", 20, familiar_agent=busy)
    assert offers(acd.call_ended("x", 30)) == [busy]
    assert acd.calls["c2"].ringing == [acd.agents[busy]]


def test_familiar_agent_not_ready_means_no_waiting():
    acd = familiar_acd()
    acd.set_status("a1", "not_ready", "rest", 0)
    assert offers(acd.enqueue("c1", "q", 1, familiar_agent="a1")) == ["a0"]


def test_familiar_window_ends_when_agent_leaves_ready():
    acd = familiar_acd(try_first=60)
    (busy,) = offers(acd.enqueue("x", "q", 10))
    acd.offer_result("x", busy, True, 10)
    assert busy == "a0"
    acd.enqueue("c2", "q", 20, familiar_agent=busy)
    assert offers(acd.set_status(busy, "not_ready", "busy", 25)) == ["a1"]


def test_familiar_history_expires_after_lookback():
    acd = familiar_acd()
    serve(acd, "c1", 0)  # no caller: nothing remembered
    (agent,) = offers(acd.enqueue("c2", "q", 10, caller="139"))
    acd.offer_result("c2", agent, True, 11)
    acd.call_ended("c2", 20)
    eight_days = 8 * 86400
    others = {"a0", "a1", "a2"} - {agent}
    (again,) = offers(acd.enqueue("c3", "q", 30, caller="139"))
    assert again == agent
    acd.offer_result("c3", again, True, 31)
    acd.call_ended("c3", 40)
    (later,) = offers(acd.enqueue("c4", "q", 40 + eight_days, caller="139"))
    assert later in others


# ------------------------------------------------------------------------------ priority


def test_priority_jumps_ahead():
    acd = make(Strategy.LONGEST_IDLE, 1, priority_aging=None)
    login_all(acd)
    acd.set_status("a0", "not_ready", "busy", 0)
    acd.enqueue("n1", "q", 1)
    acd.enqueue("n2", "q", 2)
    acd.enqueue("vip", "q", 3, priority=1)
    assert acd.position("vip") == 1
    assert offered_calls(acd.set_status("a0", "ready", None, 4)) == ["vip"]


def test_aged_normal_call_beats_new_vip_calls():
    # aging 60 s per level: after 120 s a normal call equals a new priority-2 call
    acd = make(Strategy.LONGEST_IDLE, 1, priority_aging=60)
    login_all(acd)
    acd.set_status("a0", "not_ready", "busy", 0)
    acd.enqueue("old", "q", 0)
    acd.enqueue("vip1", "q", 100, priority=2)  # 2 + 0 > 0 + 100/60
    assert acd.position("vip1") == 1
    acd.enqueue("vip2", "q", 121, priority=2)  # 2 + 0 < 0 + 121/60
    assert acd.position("old") == 2
    assert acd.position("vip2") == 3
    order = []
    actions = acd.set_status("a0", "ready", None, 130)
    for i in range(3):
        (offer,) = [a for a in actions if isinstance(a, Offer)]
        order.append(offer.call_id)
        acd.offer_result(offer.call_id, "a0", True, 131 + i)
        actions = acd.call_ended(offer.call_id, 131 + i)
    assert order == ["vip1", "old", "vip2"]


def test_without_aging_vip_calls_starve_normal_ones():
    acd = make(Strategy.LONGEST_IDLE, 1, priority_aging=None)
    login_all(acd)
    acd.set_status("a0", "not_ready", "busy", 0)
    acd.enqueue("old", "q", 0)
    acd.enqueue("vip", "q", 10_000, priority=1)
    assert acd.position("vip") == 1


def test_agent_freed_takes_highest_effective_priority_across_queues():
    acd = Acd()
    acd.add_queue(QueueConfig("bill", skills={"bill": 1}, priority_aging=60))
    acd.add_queue(QueueConfig("fault", skills={"fault": 1}, priority_aging=30))
    acd.add_agent(Agent("a", skills={"bill": 5, "fault": 5}))
    acd.login("a", 0)
    acd.set_status("a", "not_ready", "busy", 0)
    acd.enqueue("b1", "bill", 0)  # effective at 90: 0 + 90/60 = 1.5
    acd.enqueue("f1", "fault", 30)  # effective at 90: 0 + 60/30 = 2.0
    assert offers(acd.set_status("a", "ready", None, 90)) == ["a"]
    assert acd.agents["a"].call.call_id == "f1"


def test_agent_states_after_ring_all_answer():
    acd = make(Strategy.RING_ALL, 2)
    login_all(acd)
    acd.enqueue("c1", "q", 0)
    acd.offer_result("c1", "a0", True, 1)
    assert acd.agents["a0"].state is State.ON_CALL
    assert acd.agents["a1"].state is State.IDLE and acd.agents["a1"].available


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_strategy_routes_a_call(strategy):
    acd = make(strategy, 2, rng=random.Random(1), skills={"a0": {"power": 10}})
    login_all(acd)
    assert offers(acd.enqueue("c1", "q", 1))
