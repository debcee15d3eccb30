"""The Acd's behaviour: no-answers, abandons, callbacks, timers, transfers, reconcile."""

from __future__ import annotations

import json

import pytest

from acd.agents import MISSED, UNREGISTERED, Agent, ReasonLimit, State, Status, TransitionError
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
    QueueEvent,
    Redirect,
    StatusLimitExceeded,
    StopRinging,
    Timeout,
    TransferFailed,
)
from acd.matcher import Acd, ClockError
from acd.queues import Announcements, CallbackOffer, QueueConfig
from acd.stats import queue_stats


def make(n: int = 2, *, login: bool = True, **config) -> Acd:
    acd = Acd()
    acd.add_queue(QueueConfig("q", **config))
    for i in range(n):
        acd.add_agent(Agent(f"a{i}", seat=f"seat{i}"))
        if login:
            acd.login(f"a{i}", 0)
    return acd


def offered(actions) -> list[tuple[str, str]]:
    return [(a.call_id, a.agent_id) for a in actions if isinstance(a, Offer)]


def kinds(acd: Acd, kind: EventKind) -> list[QueueEvent]:
    return [e for e in acd.events if e.kind is kind]


def busy(acd: Acd, *agent_ids: str, now: float = 0) -> None:
    for agent_id in agent_ids:
        acd.set_status(agent_id, "not_ready", "busy", now)


# --------------------------------------------------------------------------- no answer


def test_no_answer_sets_agent_missed_and_reoffers_keeping_place():
    acd = make(2, ring_timeout=10)
    busy(acd, "a1")
    assert offered(acd.enqueue("c1", "q", 1)) == [("c1", "a0")]
    acd.enqueue("c2", "q", 2)
    acd.enqueue("c3", "q", 3)
    assert acd.next_deadline() == 11
    actions = acd.tick(11)
    assert StopRinging("c1", "a0", "no_answer") in actions
    a0 = acd.agents["a0"]
    assert (a0.status, a0.reason, a0.state) == (Status.NOT_READY, MISSED, State.IDLE)
    assert acd.position("c1") == 1  # still first in line
    assert offered(acd.set_status("a1", "ready", None, 12)) == [("c1", "a1")]
    (rna,) = kinds(acd, EventKind.RING_NO_ANSWER)
    assert (rna.call_id, rna.agent_id, rna.data["ring"], rna.data["cause"]) == (
        "c1", "a0", 10, "timeout")


def test_declined_offer_counts_as_no_answer():
    acd = make(2)
    acd.enqueue("c1", "q", 1)
    actions = acd.offer_result("c1", "a0", False, 2)
    assert offered(actions) == [("c1", "a1")]
    assert acd.agents["a0"].reason == MISSED


def test_ring_timeout_with_nobody_else_waits_in_place():
    acd = make(1, ring_timeout=5)
    acd.enqueue("c1", "q", 0)
    acd.tick(5)
    assert acd.calls["c1"].stage == "waiting"
    assert offered(acd.set_status("a0", "ready", None, 6)) == [("c1", "a0")]


# ----------------------------------------------------------------------------- abandon


def test_abandon_while_waiting_is_counted_once():
    acd = make(1)
    busy(acd, "a0")
    acd.enqueue("c1", "q", 0)
    acd.enqueue("c2", "q", 1)
    assert acd.abandon("c1", 4) == []
    assert acd.abandon("c1", 5) == []  # a repeated hangup report
    assert acd.call_ended("c1", 6) == []
    (ab,) = kinds(acd, EventKind.ABANDON)
    assert ab.data == {"entered": 0, "wait": 4, "position": 1, "entry_position": 1,
                       "stage": "waiting"}
    assert acd.position("c2") == 1
    s = queue_stats(acd.events)["q"]
    assert (s.offered, s.abandoned, s.short_abandoned) == (2, 1, 1)


def test_abandon_while_ringing_stops_ringing_and_frees_agent():
    acd = make(1)
    acd.enqueue("c1", "q", 0)
    acd.enqueue("c2", "q", 1)
    actions = acd.abandon("c1", 3)
    assert actions[0] == StopRinging("c1", "a0", "abandon")
    assert offered(actions) == [("c2", "a0")]  # the agent is not penalised
    assert acd.agents["a0"].status is Status.READY
    # the seat answered just as the caller hung up
    assert acd.offer_result("c1", "a0", True, 3.1) == [StopRinging("c1", "a0", "stale")]
    assert acd.abandon("c1", 4) == []
    assert len(kinds(acd, EventKind.ABANDON)) == 1
    assert kinds(acd, EventKind.ABANDON)[0].data["stage"] == "ringing"


def test_ring_all_abandon_stops_every_seat():
    acd = make(3, strategy="ring_all")
    acd.enqueue("c1", "q", 0)
    actions = acd.abandon("c1", 2)
    assert sorted(a.agent_id for a in actions if isinstance(a, StopRinging)) == ["a0", "a1", "a2"]
    assert all(a.available for a in acd.agents.values())


def test_hangup_after_connect_is_a_completion_not_an_abandon():
    acd = make(1)
    acd.enqueue("c1", "q", 0)
    acd.offer_result("c1", "a0", True, 2)
    acd.abandon("c1", 30)
    assert kinds(acd, EventKind.ABANDON) == []
    (done,) = kinds(acd, EventKind.COMPLETE_CALLER)
    assert done.data["talk"] == 28


# ---------------------------------------------------------------------------- callback


def test_callback_keeps_its_place_and_is_offered_in_order():
    acd = make(1)
    busy(acd, "a0")
    for i, t in enumerate((0, 1, 2)):
        acd.enqueue(f"c{i}", "q", t)
    assert acd.request_callback("c1", 5) == [CallbackAccepted("c1", "q", 2)]
    assert acd.request_callback("c1", 6) == []
    acd.enqueue("c3", "q", 7)
    assert [acd.position(c) for c in ("c0", "c1", "c2", "c3")] == [1, 2, 3, 4]
    order = []
    actions = acd.set_status("a0", "ready", None, 10)
    for i in range(4):
        (offer,) = [a for a in actions if isinstance(a, Offer)]
        order.append((offer.call_id, offer.callback))
        connect = acd.offer_result(offer.call_id, "a0", True, 11 + i)
        assert connect == [Connect(offer.call_id, "a0", "q", "seat0", offer.callback)]
        actions = acd.call_ended(offer.call_id, 11 + i)
    assert order == [("c0", False), ("c1", True), ("c2", False), ("c3", False)]
    s = queue_stats(acd.events)["q"]
    assert (s.answered, s.callbacks_requested, s.callbacks_answered) == (3, 1, 1)
    assert s.connection_rate == 1.0


def test_callback_does_not_time_out_and_gets_no_announcements():
    acd = make(1, max_wait=60, announcements=Announcements(interval=30))
    busy(acd, "a0")
    acd.enqueue("c1", "q", 0)
    acd.request_callback("c1", 10)
    assert acd.tick(1000) == []
    assert acd.next_deadline() is None
    assert acd.position("c1") == 1


def test_callback_offer_after_wait():
    acd = make(1, callback=CallbackOffer(offer_after=45, key="2"))
    busy(acd, "a0")
    acd.enqueue("c1", "q", 0)
    assert acd.next_deadline() == 45
    assert acd.tick(45) == [OfferCallback("c1", "q", "2")]


def test_callback_cancelled_is_an_exit_not_an_abandon():
    acd = make(1)
    busy(acd, "a0")
    acd.enqueue("c1", "q", 0)
    acd.request_callback("c1", 5)
    acd.abandon("c1", 50)
    assert kinds(acd, EventKind.ABANDON) == []
    assert kinds(acd, EventKind.EXIT)[0].data["reason"] == "callback_cancelled"


# ------------------------------------------------------------------------------ limits


def test_max_wait_times_out_to_destination():
    acd = make(1, max_wait=120, timeout_destination="voicemail")
    busy(acd, "a0")
    acd.enqueue("c1", "q", 0)
    assert acd.next_deadline() == 120
    assert acd.tick(119) == []
    assert acd.tick(120) == [Timeout("c1", "q", "voicemail")]
    assert "c1" not in acd.calls
    (ev,) = kinds(acd, EventKind.TIMEOUT)
    assert ev.data["wait"] == 120


def test_max_wait_during_ringing_lets_the_ring_finish():
    acd = make(1, max_wait=20, ring_timeout=15)
    acd.enqueue("c1", "q", 10)  # rings a0 until 25; max wait at 30
    acd.tick(25)  # no answer: a0 missed, c1 waits
    acd.set_status("a0", "ready", None, 26)  # rings again until 41
    assert acd.tick(30) == []  # expired, but ringing
    assert acd.tick(41)[-1] == Timeout("c1", "q", None)


def test_max_wait_during_ringing_then_answered_connects():
    acd = make(1, max_wait=5, ring_timeout=15)
    acd.enqueue("c1", "q", 0)
    acd.tick(6)
    assert acd.offer_result("c1", "a0", True, 7) == [Connect("c1", "a0", "q", "seat0", False)]


def test_full_queue_redirects():
    acd = make(1, max_length=2, full_destination="busy_flow")
    busy(acd, "a0")
    acd.enqueue("c1", "q", 0)
    acd.enqueue("c2", "q", 0)
    assert acd.enqueue("c3", "q", 0) == [Redirect("c3", "q", "full", "busy_flow")]
    s = queue_stats(acd.events)["q"]
    assert (s.offered, s.rejected) == (2, 1)


def test_no_agent_logged_in_redirects_and_last_logout_empties_queue():
    acd = make(2, login=False, no_agent_destination="after_hours")
    assert acd.enqueue("c1", "q", 0) == [Redirect("c1", "q", "no_agent", "after_hours")]
    acd.login("a0", 1, "not_ready", "busy")
    assert isinstance(acd.enqueue("c2", "q", 2)[0], Queued)
    acd.enqueue("c3", "q", 3)
    assert acd.logout("a0", 4) == [Redirect("c2", "q", "no_agent", "after_hours"),
                                   Redirect("c3", "q", "no_agent", "after_hours")]
    assert acd.calls == {}


def test_without_no_agent_destination_callers_wait_for_agents():
    acd = make(1, login=False)
    assert isinstance(acd.enqueue("c1", "q", 0)[0], Queued)
    assert offered(acd.login("a0", 10)) == [("c1", "a0")]


# ---------------------------------------------------------------------- status vs state


def test_wrap_up_then_idle_on_timer_or_early():
    acd = make(1, wrap_up=30)
    acd.enqueue("c1", "q", 0)
    acd.offer_result("c1", "a0", True, 1)
    acd.call_ended("c1", 61, by="agent")
    a0 = acd.agents["a0"]
    assert a0.state is State.WRAP_UP and a0.status is Status.READY
    acd.enqueue("c2", "q", 62)
    assert acd.next_deadline() == 91
    assert offered(acd.tick(91)) == [("c2", "a0")]
    acd.offer_result("c2", "a0", True, 92)
    acd.call_ended("c2", 100)
    assert acd.wrap_up_done("a0", 105) == []
    assert a0.state is State.IDLE and a0.wrap_time == 35
    assert acd.tick(200) == []  # the old wrap-up timer is void
    with pytest.raises(TransitionError):
        acd.wrap_up_done("a0", 201)


def test_not_ready_during_call_takes_effect_after_it():
    acd = make(1)
    acd.enqueue("c1", "q", 0)
    acd.offer_result("c1", "a0", True, 1)
    acd.set_status("a0", "not_ready", "busy", 5)
    acd.enqueue("c2", "q", 6)
    acd.call_ended("c1", 10)
    assert acd.agents["a0"].state is State.IDLE
    assert acd.calls["c2"].stage == "waiting"


def test_logout_during_call_keeps_the_call():
    acd = make(1)
    acd.enqueue("c1", "q", 0)
    acd.offer_result("c1", "a0", True, 1)
    acd.logout("a0", 5)
    assert acd.agents["a0"].state is State.ON_CALL
    acd.call_ended("c1", 10)
    assert acd.agents["a0"].state is State.IDLE
    assert kinds(acd, EventKind.COMPLETE_CALLER)


def test_leaving_ready_while_ringing_withdraws_offer_and_keeps_place():
    acd = make(2)
    busy(acd, "a1")
    acd.enqueue("c1", "q", 0)
    acd.enqueue("c2", "q", 1)
    actions = acd.set_status("a0", "not_ready", "rest", 2)
    assert actions == [StopRinging("c1", "a0", "cancelled")]
    assert acd.position("c1") == 1
    assert offered(acd.set_status("a1", "ready", None, 3)) == [("c1", "a1")]


def test_rest_limit_alerts_then_forces():
    acd = make(1)
    acd.set_status("a0", "not_ready", "rest", 100)
    assert acd.next_deadline() == 1000
    assert acd.tick(1000) == [StatusLimitExceeded("a0", "rest", 100, 900, "alert")]
    assert acd.agents["a0"].reason == "rest"

    forced = Acd(reason_limits={"rest": ReasonLimit(600, "ready"),
                                MISSED: ReasonLimit(60, "ready")})
    forced.add_queue(QueueConfig("q", ring_timeout=10))
    forced.add_agent(Agent("a0"))
    forced.login("a0", 0)
    forced.set_status("a0", "not_ready", "rest", 0)
    forced.enqueue("c1", "q", 10)
    actions = forced.tick(600)
    assert actions[0] == StatusLimitExceeded("a0", "rest", 0, 600, "ready")
    assert offered(actions) == [("c1", "a0")]
    forced.tick(610)  # no answer -> missed, itself limited to 60 s
    assert forced.agents["a0"].reason == MISSED
    assert offered(forced.tick(670)) == [("c1", "a0")]


def test_rest_limit_void_after_status_change():
    acd = make(1)
    acd.set_status("a0", "not_ready", "rest", 0)
    acd.set_status("a0", "ready", None, 10)
    assert acd.next_deadline() is None
    assert acd.tick(2000) == []


def test_invalid_transitions_raise_clear_errors():
    acd = make(1)
    with pytest.raises(TransitionError, match="already logged in"):
        acd.login("a0", 1)
    with pytest.raises(TransitionError, match="ready -> ready"):
        acd.set_status("a0", "ready", None, 1)
    with pytest.raises(TransitionError, match="needs a reason"):
        acd.set_status("a0", "not_ready", None, 1)
    with pytest.raises(TransitionError, match="not in wrap_up"):
        acd.wrap_up_done("a0", 1)
    acd.enqueue("c1", "q", 1)
    with pytest.raises(TransitionError, match="not connected"):
        acd.hold("c1", 2)
    with pytest.raises(TransitionError):
        acd.remove_agent("a0")
    acd.logout("a0", 3)
    with pytest.raises(TransitionError, match="logged_out -> logged_out"):
        acd.logout("a0", 4)
    with pytest.raises(KeyError):
        acd.login("nobody", 5)
    with pytest.raises(ValueError):
        acd.enqueue("c1", "q", 5)
    with pytest.raises(ClockError):
        acd.tick(4)


def test_hold_and_resume_are_accounted():
    acd = make(1, wrap_up=10)
    acd.enqueue("c1", "q", 0)
    acd.offer_result("c1", "a0", True, 0)
    acd.hold("c1", 10)
    assert acd.agents["a0"].state is State.ON_HOLD
    acd.resume("c1", 25)
    acd.hold("c1", 40)
    acd.call_ended("c1", 50)  # ended while on hold
    (done,) = kinds(acd, EventKind.COMPLETE_CALLER)
    assert (done.data["talk"], done.data["hold"]) == (25, 25)
    acd.tick(60)
    s = queue_stats(acd.events)["q"]
    assert (s.handled, s.aht) == (1, 60)


# ---------------------------------------------------------------------------- transfer


def test_transfer_connected_call_to_another_queue():
    acd = make(1, wrap_up=5)
    acd.add_queue(QueueConfig("fault", skills={"fault": 1}))
    acd.add_agent(Agent("f0", skills={"fault": 5}, seat="seatf"))
    acd.login("f0", 0)
    acd.enqueue("c1", "q", 0, priority=2)
    acd.offer_result("c1", "a0", True, 1)
    actions = acd.transfer("c1", "fault", 20)
    assert offered(actions) == [("c1", "f0")]
    assert acd.agents["a0"].state is State.WRAP_UP
    assert acd.calls["c1"].queue.name == "fault" and acd.calls["c1"].priority == 2
    (tr,) = kinds(acd, EventKind.TRANSFER)
    assert (tr.queue, tr.agent_id, tr.data["target"], tr.data["talk"]) == ("q", "a0", "fault", 19)
    assert kinds(acd, EventKind.ENTER)[-1].data["transfer_from"] == "q"


def test_transfer_to_agent_and_failures():
    acd = make(3)
    acd.enqueue("c1", "q", 0)
    acd.offer_result("c1", "a0", True, 1)
    busy(acd, "a2", now=2)
    assert acd.transfer("c1", "a2", 3) == [TransferFailed("c1", "a2", "agent_unavailable")]
    assert acd.calls["c1"].agent.id == "a0"  # unchanged
    actions = acd.transfer("c1", "a1", 4)
    assert offered(actions) == [("c1", "a1")]
    with pytest.raises(KeyError):
        acd.transfer("c1", "nowhere", 5)


def test_transfer_waiting_call_and_full_target():
    acd = make(1)
    acd.add_queue(QueueConfig("small", max_length=1))
    busy(acd, "a0")
    acd.enqueue("c1", "q", 0)
    acd.enqueue("c2", "q", 0)
    acd.transfer("c1", "small", 1)
    assert acd.position("c1") == 1 and acd.calls["c1"].queue.name == "small"
    assert acd.transfer("c2", "small", 2) == [TransferFailed("c2", "small", "full")]


# ---------------------------------------------------------------------------- reconcile


def test_reconcile_unregistered_seat_goes_not_ready_and_comes_back():
    acd = make(2)
    busy(acd, "a1")
    acd.enqueue("c1", "q", 0)  # ringing a0
    actions = acd.reconcile("a0", False, {"c1"}, 1)
    assert StopRinging("c1", "a0", "cancelled") in actions
    assert any(isinstance(a, Fixed) for a in actions)
    assert (acd.agents["a0"].status, acd.agents["a0"].reason) == (Status.NOT_READY, UNREGISTERED)
    assert acd.position("c1") == 1
    assert acd.reconcile("a0", False, set(), 2) == []  # nothing more to fix
    actions = acd.reconcile("a0", True, set(), 3)
    assert offered(actions) == [("c1", "a0")]
    assert acd.agents["a0"].status is Status.READY


def test_reconcile_ringing_without_leg_and_connected_without_leg():
    acd = make(1)
    acd.enqueue("c1", "q", 0)
    actions = acd.reconcile("a0", True, set(), 1)
    assert [a.what for a in actions if isinstance(a, Fixed)] == [
        "ringing without a seat leg: offer withdrawn"]
    assert offered(actions) == [("c1", "a0")]  # still ready: offered again
    acd.offer_result("c1", "a0", True, 2)
    assert acd.reconcile("a0", True, {"c1"}, 3) == []  # consistent: nothing to do
    actions = acd.reconcile("a0", True, set(), 4)
    assert [a.what for a in actions if isinstance(a, Fixed)] == [
        "connected without a seat leg: call ended"]
    assert acd.agents["a0"].state is State.IDLE and "c1" not in acd.calls
    (done,) = kinds(acd, EventKind.COMPLETE_AGENT)
    assert done.data["cause"] == "lost_leg"


def test_reconcile_drops_unknown_legs():
    acd = make(1)
    actions = acd.reconcile("a0", True, {"ghost"}, 1)
    assert actions[0] == DropLeg("a0", "ghost")


# ------------------------------------------------------------------------ announcements


def test_announcements_report_position_and_estimate():
    acd = make(2, announcements=Announcements(interval=30, initial_handle_time=120))
    busy(acd, "a0", "a1")
    acd.enqueue("c1", "q", 0)
    acd.enqueue("c2", "q", 10)
    assert acd.tick(30) == [Announce("c1", "q", 1, 60.0)]
    assert acd.tick(40) == [Announce("c2", "q", 2, 120.0)]
    acd.abandon("c1", 45)
    assert acd.tick(70) == [Announce("c2", "q", 1, 60.0)]


def test_next_deadline_is_the_earliest_pending_timer():
    acd = make(1, ring_timeout=15, max_wait=100)
    assert acd.next_deadline() is None
    acd.enqueue("c1", "q", 0)
    assert acd.next_deadline() == 15
    acd.offer_result("c1", "a0", True, 3)
    assert acd.next_deadline() is None  # ring and max-wait timers are void once connected


def test_queue_events_serialize():
    acd = make(1)
    acd.enqueue("c1", "q", 0, caller="95598")
    acd.offer_result("c1", "a0", True, 1)
    acd.call_ended("c1", 2)
    dumped = json.dumps([e.to_dict() for e in acd.events], ensure_ascii=False)
    back = [QueueEvent.from_dict(d) for d in json.loads(dumped)]
    assert back == acd.events
    assert acd.drain_events() == back and acd.events == []


def test_add_and_remove_queues_and_agents():
    acd = make(1)
    acd.add_queue(QueueConfig("late"))
    assert "a0" in acd.queues["late"].members
    assert offered(acd.enqueue("c1", "late", 1)) == [("c1", "a0")]
    with pytest.raises(ValueError):
        acd.remove_queue("late")
    acd.abandon("c1", 2)
    acd.remove_queue("late")
    acd.logout("a0", 3)
    acd.remove_agent("a0")
    assert acd.agents == {} and acd.queues["q"].members == {}
    with pytest.raises(ValueError):
        acd.add_agent(Agent("q"))  # names are shared with queues (transfer targets)


def test_agent_hangup_report_on_unconnected_call_changes_nothing():
    acd = make(1)
    acd.enqueue("c1", "q", 0)
    assert acd.call_ended("c1", 1, by="agent") == []
    assert acd.calls["c1"].stage == "ringing"
    with pytest.raises(ValueError):
        acd.call_ended("c1", 1, by="nobody")


def test_transferred_callback_place_stays_a_callback():
    acd = make(1)
    acd.add_queue(QueueConfig("other"))
    busy(acd, "a0")
    acd.enqueue("c1", "q", 0)
    acd.request_callback("c1", 5)
    acd.transfer("c1", "other", 6)
    actions = acd.set_status("a0", "ready", None, 7)
    assert [a.callback for a in actions if isinstance(a, Offer)] == [True]
