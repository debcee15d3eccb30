"""Statistics from the queue event log: the engine's formulas on hand-made logs, and on a run."""

from __future__ import annotations

import pytest

from acd.agents import Agent
from acd.events import EventKind as K
from acd.events import QueueEvent
from acd.matcher import Acd
from acd.queues import QueueConfig
from acd.stats import (
    Thresholds,
    agent_interval_stats,
    agent_stats,
    connection_rate,
    interval_stats,
    queue_stats,
    snapshot,
    thresholds_of,
)


def ev(t, kind, call=None, agent=None, queue="q", **data) -> QueueEvent:
    return QueueEvent(t, kind, queue, call, agent, data)


# T = 20, S = 5
LOG = [
    ev(0, K.ENTER, "c1", entered=0),
    ev(0, K.ENTER, "c2", entered=0),
    ev(5, K.ENTER, "c3", entered=5),
    ev(5, K.ENTER, "c4", entered=5),
    ev(8, K.ABANDON, "c3", entered=5, wait=3, position=3, stage="waiting"),  # short
    ev(10, K.CONNECT, "c1", "a", entered=0, wait=10, ring=2, callback=False),
    ev(10, K.ENTER, "c5", entered=10),
    ev(12, K.EXIT, "c6", entered=12, wait=0, reason="full", destination=None, at_entry=True),
    ev(30, K.CONNECT, "c2", "b", entered=0, wait=30, ring=3, callback=False),
    ev(45, K.ABANDON, "c4", entered=5, wait=40, position=1, stage="ringing"),
    ev(65, K.ENTER, "c7", entered=65),
    ev(70, K.TIMEOUT, "c5", entered=10, wait=60, position=1, destination="vm"),
    ev(80, K.CALLBACK, "c7", entered=65, wait=15, position=1),
    ev(90, K.COMPLETE_AGENT, "c2", "b", entered=0, wait=30, talk=60, hold=0, callback=False),
    ev(110, K.COMPLETE_CALLER, "c1", "a", entered=0, wait=10, talk=90, hold=10, callback=False),
    ev(130, K.AGENT_STATE, "c1", "a", state="idle", previous="wrap_up", wrap=20, entered=0),
    ev(200, K.CONNECT, "c7", "b", entered=65, wait=135, ring=1, callback=True),
    ev(260, K.COMPLETE_CALLER, "c7", "b", entered=65, wait=135, talk=60, hold=0, callback=True),
]


def test_queue_formulas():
    s = queue_stats(LOG)["q"]
    assert (s.offered, s.rejected, s.answered, s.answered_within_t) == (6, 1, 2, 1)
    assert (s.abandoned, s.short_abandoned, s.timeouts) == (2, 1, 1)
    assert (s.callbacks_requested, s.callbacks_answered, s.handled) == (1, 1, 3)
    assert s.service_level == pytest.approx(1 / (2 + 2 - 1))  # SL(T)
    assert s.service_level_asterisk == pytest.approx(1 / 2)
    assert s.asa == pytest.approx((10 + 30) / 2)
    assert s.abandonment_rate == pytest.approx(2 / 6)
    assert s.aht == pytest.approx((90 + 10 + 20 + 60 + 60) / 3)
    assert s.connection_rate == pytest.approx((2 + 1) / (6 + 1))
    assert connection_rate(LOG) == pytest.approx(3 / 7)
    assert s.as_dict()["service_level"] == s.service_level


def test_thresholds_are_per_queue():
    strict = queue_stats(LOG, {"q": Thresholds(service_level=5, short_abandon=2)})["q"]
    assert strict.answered_within_t == 0 and strict.short_abandoned == 0
    assert strict.service_level == 0.0
    lenient = queue_stats(LOG, default=Thresholds(60, 60))["q"]
    assert lenient.service_level == pytest.approx(2 / 2)  # both abandons were short


def test_empty_ratios_are_none():
    s = queue_stats([ev(0, K.ENTER, "c1", entered=0)])["q"]
    assert (s.service_level, s.asa, s.aht) == (None, None, None)
    assert s.abandonment_rate == 0.0


def test_intervals_follow_entry_time():
    by = interval_stats(LOG, 60)
    assert list(by) == [(0, "q"), (60, "q")]
    first, second = by[(0, "q")], by[(60, "q")]
    assert (first.offered, first.answered, first.abandoned, first.timeouts) == (5, 2, 2, 1)
    assert (second.offered, second.callbacks_requested, second.callbacks_answered) == (1, 1, 1)
    assert second.handled == 1 and first.handled == 2
    assert first.wrap == 20


AGENT_LOG = [
    ev(0, K.AGENT_STATUS, None, "a", None, status="ready", reason=None),
    ev(5, K.AGENT_STATE, "c1", "a", state="reserved", previous="idle"),
    ev(5, K.OFFER, "c1", "a", entered=4),
    ev(10, K.AGENT_STATE, "c1", "a", state="on_call", previous="reserved"),
    ev(10, K.CONNECT, "c1", "a", entered=4, wait=6, ring=5, callback=False),
    ev(110, K.COMPLETE_CALLER, "c1", "a", entered=4, wait=6, talk=80, hold=20, callback=False),
    ev(110, K.AGENT_STATE, "c1", "a", state="wrap_up", previous="on_call"),
    ev(130, K.AGENT_STATE, "c1", "a", state="idle", previous="wrap_up", wrap=20, entered=4),
    ev(150, K.AGENT_STATUS, None, "a", None, status="not_ready", reason="rest"),
    ev(200, K.AGENT_STATUS, None, "a", None, status="logged_out", reason=None),
]


def test_agent_occupancy_and_time_split():
    s = agent_stats(AGENT_LOG, until=300)["a"]
    assert (s.offers, s.answered, s.handled) == (1, 1, 1)
    assert (s.talk, s.hold, s.wrap) == (80, 20, 20)
    assert s.aht == 120
    assert (s.ready_idle, s.on_contact, s.logged_in) == (25, 125, 200)
    assert s.not_ready == {"rest": 50}
    assert s.occupancy == pytest.approx(125 / 150)


def test_agent_time_split_across_intervals():
    by = agent_interval_stats(AGENT_LOG, 100, until=200)
    first, second = by[(0, "a")], by[(100, "a")]
    assert (first.on_contact, first.ready_idle) == (95, 5)
    assert (second.on_contact, second.ready_idle, second.not_ready) == (30, 20, {"rest": 50})


def test_stats_of_a_run_and_snapshot():
    acd = Acd()
    acd.add_queue(QueueConfig("q", wrap_up=10, service_level_threshold=15, short_abandon=4))
    acd.add_queue(QueueConfig("other", skills={"x": 1}))
    for i in range(2):
        acd.add_agent(Agent(f"a{i}"))
        acd.login(f"a{i}", 0)
    acd.enqueue("c1", "q", 0)
    acd.enqueue("c2", "q", 1)
    acd.offer_result("c1", "a0", True, 5)
    acd.offer_result("c2", "a1", True, 21)  # waited 20 > T
    acd.enqueue("c3", "q", 22)
    acd.enqueue("c4", "q", 23)
    acd.abandon("c4", 25)  # short
    acd.enqueue("c5", "other", 26)
    snap = snapshot(acd, 30)
    assert snap["queues"]["q"]["waiting"] == 1 and snap["queues"]["q"]["longest_wait"] == 8
    assert snap["queues"]["other"]["staffed"] == 0
    assert snap["agents_by_state"] == {"on_call": 2}
    assert snap["connected"] == 2
    acd.call_ended("c1", 65)
    acd.tick(75)  # a0's wrap-up ends (65 + 10): c3 rings a0
    acd.offer_result("c3", "a0", True, 75)
    s = queue_stats(acd.events, thresholds_of(acd))["q"]
    assert (s.offered, s.answered, s.answered_within_t, s.abandoned, s.short_abandoned) == (
        4, 3, 1, 1, 1)
    assert s.service_level == pytest.approx(1 / 3)
    assert s.asa == pytest.approx((5 + 20 + 53) / 3)
    assert agent_stats(acd.events)["a0"].handled == 1
