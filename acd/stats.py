"""Queue and agent statistics, computed only from the queue event log; a live snapshot.

Reports never come from ad-hoc counters: :func:`queue_stats`, :func:`interval_stats`,
:func:`agent_stats` and :func:`connection_rate` read a list of
:class:`~acd.events.QueueEvent` (the Acd's log, or the durable log read back). The engine's
formulas (DESIGN §4), with T the service-level threshold and S the short-abandon threshold
of the queue (defaults 20 s and 5 s):

- offered = calls that entered the queue (ENTER); rejected = turned away at entry (full, or
  nobody logged in);
- answered = CONNECT of a caller on the line (callbacks are counted apart);
- SL(T) = answered with wait ≤ T / (answered + abandoned − abandoned with wait ≤ S);
- Asterisk-style SL = answered with wait ≤ T / answered (for comparison only);
- ASA = Σ queue wait of answered calls / answered (wait = ENTER to CONNECT, ringing included);
- abandonment rate = abandoned / offered;
- AHT = (talk + hold + wrap-up) / handled (handled = calls an agent finished or transferred);
- occupancy = on-contact / (on-contact + idle), on-contact = reserved (ringing) + on call +
  on hold + wrap-up, idle = ready and idle;
- 接通率 (connection rate) = answered by agents (callbacks included) / calls requesting an
  agent (offered + rejected).

Timeouts are neither answered nor abandoned, so they do not enter SL(T); they are reported
as ``timeouts``. A call is attributed to the interval in which it entered the queue.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from acd.agents import CONTACT_STATES, State, Status
from acd.events import EventKind, QueueEvent
from acd.queues import Stage

if TYPE_CHECKING:
    from acd.matcher import Acd

# Enum members bound once (class attribute access on an Enum is slow in CPython 3.11).
_ABANDON = EventKind.ABANDON
_AGENT_STATE = EventKind.AGENT_STATE
_AGENT_STATUS = EventKind.AGENT_STATUS
_CALLBACK = EventKind.CALLBACK
_CONNECT = EventKind.CONNECT
_ENTER = EventKind.ENTER
_EXIT = EventKind.EXIT
_OFFER = EventKind.OFFER
_RING_NO_ANSWER = EventKind.RING_NO_ANSWER
_TIMEOUT = EventKind.TIMEOUT
_TRANSFER = EventKind.TRANSFER
_COMPLETE = (EventKind.COMPLETE_CALLER, EventKind.COMPLETE_AGENT)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


@dataclass(frozen=True, slots=True)
class Thresholds:
    """A queue's service-level threshold T and short-abandon threshold S, in seconds."""

    service_level: float = 20.0
    short_abandon: float = 5.0


def thresholds_of(acd: Acd) -> dict[str, Thresholds]:
    """Each configured queue's T and S (to pass to :func:`queue_stats`)."""
    return {
        name: Thresholds(q.config.service_level_threshold, q.config.short_abandon)
        for name, q in acd.queues.items()
    }


@dataclass(slots=True)
class QueueStats:
    """Counts and sums for one queue (and one interval, if ``interval_start`` is set)."""

    queue: str
    interval_start: float | None = None
    offered: int = 0
    rejected: int = 0
    answered: int = 0
    answered_within_t: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    timeouts: int = 0
    exits: int = 0  # left without an agent after entering (no_agent, callback cancelled)
    callbacks_requested: int = 0
    callbacks_answered: int = 0
    transfers: int = 0
    handled: int = 0
    no_answers: int = 0
    wait_answered: float = 0.0
    talk: float = 0.0
    hold: float = 0.0
    wrap: float = 0.0

    @property
    def service_level(self) -> float | None:
        """SL(T) = answered ≤ T / (answered + abandoned − abandoned ≤ S)."""
        return _ratio(self.answered_within_t,
                      self.answered + self.abandoned - self.short_abandoned)

    @property
    def service_level_asterisk(self) -> float | None:
        """Asterisk's SL = answered ≤ T / answered."""
        return _ratio(self.answered_within_t, self.answered)

    @property
    def asa(self) -> float | None:
        return _ratio(self.wait_answered, self.answered)

    @property
    def abandonment_rate(self) -> float | None:
        return _ratio(self.abandoned, self.offered)

    @property
    def aht(self) -> float | None:
        return _ratio(self.talk + self.hold + self.wrap, self.handled)

    @property
    def connection_rate(self) -> float | None:
        """接通率 = (answered + callbacks answered) / (offered + rejected)."""
        return _ratio(self.answered + self.callbacks_answered, self.offered + self.rejected)

    def as_dict(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("service_level", "service_level_asterisk", "asa", "abandonment_rate",
                     "aht", "connection_rate"):
            d[name] = getattr(self, name)
        return d


def _bucket_start(t: float, interval: float | None) -> float | None:
    return None if interval is None else math.floor(t / interval) * interval


def _queue_stats(events: Iterable[QueueEvent], thresholds: Mapping[str, Thresholds],
                 default: Thresholds, interval: float | None
                 ) -> dict[tuple[str, float | None], QueueStats]:
    out: dict[tuple[str, float | None], QueueStats] = {}
    for e in events:
        kind = e.kind
        queue = e.queue
        if queue is None or kind is _AGENT_STATUS:
            continue
        data = e.data
        if kind is _AGENT_STATE and "wrap" not in data:
            continue
        entered = data.get("entered")
        start = _bucket_start(e.time if entered is None else entered, interval)
        s = out.get((queue, start))
        if s is None:
            s = out[(queue, start)] = QueueStats(queue, start)
        th = thresholds.get(queue, default)
        if kind is _ENTER:
            s.offered += 1
        elif kind is _CONNECT:
            if data.get("callback"):
                s.callbacks_answered += 1
            else:
                s.answered += 1
                s.wait_answered += data["wait"]
                if data["wait"] <= th.service_level:
                    s.answered_within_t += 1
        elif kind is _ABANDON:
            s.abandoned += 1
            if data["wait"] <= th.short_abandon:
                s.short_abandoned += 1
        elif kind is _TIMEOUT:
            s.timeouts += 1
        elif kind is _EXIT:
            if data.get("at_entry"):
                s.rejected += 1
            else:
                s.exits += 1
        elif kind is _CALLBACK:
            s.callbacks_requested += 1
        elif kind is _RING_NO_ANSWER:
            s.no_answers += 1
        elif kind in _COMPLETE or kind is _TRANSFER:
            if kind is _TRANSFER:
                s.transfers += 1
            if e.agent_id is not None:
                s.handled += 1
                s.talk += data["talk"]
                s.hold += data["hold"]
        elif kind is _AGENT_STATE:
            s.wrap += data["wrap"]
    return out


def queue_stats(events: Iterable[QueueEvent], thresholds: Mapping[str, Thresholds] | None = None,
                default: Thresholds = Thresholds()) -> dict[str, QueueStats]:
    """Per-queue statistics over the whole log."""
    raw = _queue_stats(events, thresholds or {}, default, None)
    return {queue: s for (queue, _), s in raw.items()}


def interval_stats(events: Iterable[QueueEvent], interval: float,
                   thresholds: Mapping[str, Thresholds] | None = None,
                   default: Thresholds = Thresholds()
                   ) -> dict[tuple[float, str], QueueStats]:
    """Per (interval start, queue) statistics; calls count in the interval they entered."""
    if interval <= 0:
        raise ValueError("interval must be positive")
    raw = _queue_stats(events, thresholds or {}, default, interval)
    return {(start, queue): s for (queue, start), s in sorted(  # type: ignore[misc]
        raw.items(), key=lambda kv: (kv[0][1], kv[0][0]))}


def connection_rate(events: Iterable[QueueEvent]) -> float | None:
    """接通率 over all queues, by distinct call: calls that reached an agent / calls that
    asked for one (a call transferred between queues counts once)."""
    requested: set[str] = set()
    answered: set[str] = set()
    for e in events:
        if e.call_id is None:
            continue
        if e.kind is _ENTER or (e.kind is _EXIT and e.data.get("at_entry")):
            requested.add(e.call_id)
        elif e.kind is _CONNECT:
            answered.add(e.call_id)
    return _ratio(len(answered & requested), len(requested))


# ------------------------------------------------------------------------------- agents


@dataclass(slots=True)
class AgentStats:
    """One agent's work (and time split) over the log, or over one interval."""

    agent_id: str
    interval_start: float | None = None
    offers: int = 0
    answered: int = 0
    no_answers: int = 0
    handled: int = 0
    talk: float = 0.0
    hold: float = 0.0
    wrap: float = 0.0
    logged_in: float = 0.0
    ready_idle: float = 0.0
    on_contact: float = 0.0
    not_ready: dict[str, float] = field(default_factory=dict)  # reason -> seconds

    @property
    def occupancy(self) -> float | None:
        """on-contact / (on-contact + idle)."""
        return _ratio(self.on_contact, self.on_contact + self.ready_idle)

    @property
    def aht(self) -> float | None:
        return _ratio(self.talk + self.hold + self.wrap, self.handled)


def _agent_stats(events: Iterable[QueueEvent], until: float | None, interval: float | None
                 ) -> dict[tuple[str, float | None], AgentStats]:
    out: dict[tuple[str, float | None], AgentStats] = {}
    # agent id -> [status, reason, state, since]
    timeline: dict[str, list[Any]] = {}
    last_time = -math.inf

    def stats(agent_id: str, t: float) -> AgentStats:
        start = _bucket_start(t, interval)
        s = out.get((agent_id, start))
        if s is None:
            s = out[(agent_id, start)] = AgentStats(agent_id, start)
        return s

    def account(agent_id: str, status: str, reason: str | None, state: str,
                t0: float, t1: float) -> None:
        while t0 < t1:
            end = t1 if interval is None else min(t1, (math.floor(t0 / interval) + 1) * interval)
            s = stats(agent_id, t0)
            span = end - t0
            if state in _CONTACT:
                s.on_contact += span
            elif status == _READY:
                s.ready_idle += span
            if status != _LOGGED_OUT:
                s.logged_in += span
                if status == _NOT_READY and state not in _CONTACT:
                    s.not_ready[reason or ""] = s.not_ready.get(reason or "", 0.0) + span
            t0 = end

    def advance(agent_id: str, t: float) -> list[Any]:
        line = timeline.get(agent_id)
        if line is None:
            line = timeline[agent_id] = [_LOGGED_OUT, None, _IDLE, t]
        else:
            account(agent_id, line[0], line[1], line[2], line[3], t)
            line[3] = t
        return line

    for e in events:
        last_time = e.time
        agent_id = e.agent_id
        if agent_id is None:
            continue
        kind = e.kind
        data = e.data
        if kind is _AGENT_STATUS:
            line = advance(agent_id, e.time)
            line[0], line[1] = data["status"], data["reason"]
        elif kind is _AGENT_STATE:
            line = advance(agent_id, e.time)
            line[2] = data["state"]
            if "wrap" in data:
                stats(agent_id, e.time).wrap += data["wrap"]
        elif kind is _OFFER:
            stats(agent_id, e.time).offers += 1
        elif kind is _CONNECT:
            stats(agent_id, e.time).answered += 1
        elif kind is _RING_NO_ANSWER:
            stats(agent_id, e.time).no_answers += 1
        elif kind in _COMPLETE or kind is _TRANSFER:
            s = stats(agent_id, e.time)
            s.handled += 1
            s.talk += data["talk"]
            s.hold += data["hold"]
    end = last_time if until is None else until
    for agent_id in list(timeline):
        advance(agent_id, end)
    return out


_CONTACT = frozenset(s.value for s in CONTACT_STATES)
_READY = Status.READY.value
_NOT_READY = Status.NOT_READY.value
_LOGGED_OUT = Status.LOGGED_OUT.value
_IDLE = State.IDLE.value


def agent_stats(events: Iterable[QueueEvent], until: float | None = None
                ) -> dict[str, AgentStats]:
    """Per-agent statistics; time in each status/state is counted up to ``until`` (default:
    the last event's time)."""
    return {agent_id: s for (agent_id, _), s in _agent_stats(events, until, None).items()}


def agent_interval_stats(events: Iterable[QueueEvent], interval: float,
                         until: float | None = None) -> dict[tuple[float, str], AgentStats]:
    """Per (interval start, agent) statistics; times are split at interval boundaries."""
    if interval <= 0:
        raise ValueError("interval must be positive")
    raw = _agent_stats(events, until, interval)
    return {(start, agent_id): s for (agent_id, start), s in sorted(  # type: ignore[misc]
        raw.items(), key=lambda kv: (kv[0][1], kv[0][0]))}


# ----------------------------------------------------------------------------- real time


def snapshot(acd: Acd, now: float) -> dict[str, Any]:
    """What a wallboard shows now: per queue, callers waiting on the line, ringing, callback
    places, the longest current wait, members logged in and free; agents by status/state.

    Costs O(calls + agents): for a wallboard refresh, not for routing.
    """
    queues: dict[str, Any] = {}
    for name, q in acd.queues.items():
        waiting = ringing = callbacks = 0
        for call in q.calls.values():
            if call.callback:
                callbacks += 1
            elif call.stage is Stage.RINGING:
                ringing += 1
            else:
                waiting += 1
        oldest = q.longest_waiting()
        queues[name] = {
            "waiting": waiting,
            "ringing": ringing,
            "callbacks": callbacks,
            "longest_wait": now - oldest.entered if oldest is not None else 0.0,
            "staffed": q.staffed,
            "free": len(q.free),
            "agents_by_state": dict(Counter(
                a.state.value for a in q.members.values() if a.logged_in)),
        }
    agents = acd.agents.values()
    return {
        "time": now,
        "queues": queues,
        "agents_by_status": dict(Counter(a.status.value for a in agents)),
        "agents_by_state": dict(Counter(a.state.value for a in agents if a.logged_in)),
        "not_ready_by_reason": dict(Counter(
            a.reason for a in agents if a.status is Status.NOT_READY)),
        "connected": sum(1 for c in acd.calls.values() if c.stage is Stage.CONNECTED),
    }
