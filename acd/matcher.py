"""The ACD core: matches waiting calls with free agents, without I/O.

:class:`Acd` is a plain object in the style of h11: the asyncio glue feeds it what happened
(a call entered a queue, a seat answered, a caller hung up, an agent went ready, time passed)
with the current time ``now`` (seconds, from a monotonic clock), and gets back a list of
:mod:`actions <acd.events>` to carry out (ring this seat, stop ringing, bridge, announce, send
the caller elsewhere). Every change is also appended to ``Acd.events`` as a
:class:`~acd.events.QueueEvent`. The core never sleeps: ``next_deadline()`` says when
``tick(now)`` must be called next (ring timeouts, wrap-up ends, rest limits, familiar-agent and
expert windows, max wait, announcements, callback offers).

Matching is event-driven and indexed. Nothing is rescanned per second, nothing scans all
agents per call. It runs only when

- a call arrives (or comes back after a no-answer, or a familiar/expert window widens): the
  best free agent is the first entry of the queue's free-agent index;
- an agent becomes free (ready and idle): the best call is among the heads of the lanes of
  the agent's queues (one lane per ordinary queue, ≤ 10 per expert queue) and of the agent's
  personal lane (callers for whom they are the familiar agent).

Both sides keep the invariant that after every method no free agent could take any waiting
call (apart from calls held for a familiar agent), so each event only has to look at the one
new call or the one new agent.

Data structures (n = calls in a queue, m = free members of a queue, k = queues an agent
serves, D = pending deadlines). The per-queue orders are :class:`~acd.strategies.SortedFront`
lists: kept sorted, consumed from the front, stale entries skipped (lazy deletion through a
generation counter) and compacted when half stale. Most insertions sort last (calls arrive in
time order, agents are freed in time order) and are appends; the rest are a binary search and
a pointer shift (memmove). Taking the first entry touches nothing else, where a heap's sift
would read O(log n) scattered entries — the dominant cost at 50,000 waiting calls.

=====================  ===================================================  ===============
structure              what                                                 cost
=====================  ===================================================  ===============
``QueueState.free``    free members by strategy key (random strategy: a     first O(1)(*),
                       list + position map, uniform choice in O(1))         insert O(1)(*)
``QueueState.lanes``   waiting calls by (entered/aging − priority,          head O(1)(*),
                       entered, seq); expert queues: one lane per           insert O(1)(*)
                       threshold level 0–10
``Agent.personal``     calls waiting for this agent as familiar agent       same
``QueueState.ranks``   sorted keys of all the queue's calls → position      O(1)(*) at the
                       (binary search)                                      ends, O(log n)
``Acd._deadlines``     one heap of (time, seq, kind, target, generation);   O(log D)
                       stale timers skipped when they surface
=====================  ===================================================  ===============

(*) amortised, for an append or a removal at the front; an out-of-order insertion or a removal
from the middle costs O(log n) comparisons plus a memmove of up to n pointers.

Call arrival: the queue's best free agent is the first live entry of ``free`` (expert: if
its level reaches the call's threshold): O(1). Agent becomes free: compare the first call of
its personal lane and of the lanes of its k queues by effective priority (expert queues:
only lanes with threshold ≤ the agent's level): O(k); with no call, insert it into k free
indexes. An agent stops being free: O(k) (one generation bump, k live counters). Ring-all:
O(r) for r seats. A window widening moves one call to another lane and retries it: O(1).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable

from acd.agents import (
    MISSED,
    REST,
    UNREGISTERED,
    Agent,
    ReasonLimit,
    State,
    Status,
    TransitionError,
)
from acd.events import (
    Action,
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
from acd.queues import Call, Lane, QueueConfig, QueueState, Stage
from acd.strategies import PRIORITY_EPSILON, call_key, expert_threshold

# deadline kinds
_RING, _WRAP, _REASON, _FAMILIAR, _WIDEN, _MAX_WAIT, _ANNOUNCE, _CALLBACK_OFFER = range(8)

DAY = 86400.0

# Enum members bound once: ``EventKind.ENTER`` is a descriptor lookup (~0.1 µs) in CPython 3.11.
_ABANDON = EventKind.ABANDON
_AGENT_STATE = EventKind.AGENT_STATE
_AGENT_STATUS = EventKind.AGENT_STATUS
_CALLBACK = EventKind.CALLBACK
_COMPLETE_AGENT = EventKind.COMPLETE_AGENT
_COMPLETE_CALLER = EventKind.COMPLETE_CALLER
_CONNECT = EventKind.CONNECT
_ENTER = EventKind.ENTER
_EXIT = EventKind.EXIT
_OFFER = EventKind.OFFER
_RING_NO_ANSWER = EventKind.RING_NO_ANSWER
_TIMEOUT = EventKind.TIMEOUT
_TRANSFER = EventKind.TRANSFER
_READY = Status.READY
_NOT_READY = Status.NOT_READY
_LOGGED_OUT = Status.LOGGED_OUT
_IDLE = State.IDLE
_RESERVED = State.RESERVED
_ON_CALL = State.ON_CALL
_ON_HOLD = State.ON_HOLD
_WRAP_UP = State.WRAP_UP
_WAITING = Stage.WAITING
_RINGING = Stage.RINGING
_CONNECTED = Stage.CONNECTED


class ClockError(ValueError):
    """``now`` went backwards: the glue must pass a monotonic clock."""


class Acd:
    """Automatic call distribution over any number of queues and agents (see module doc).

    ``rng`` drives the random strategy (pass a seeded ``random.Random`` for reproducible
    runs). ``reason_limits`` caps not-ready reasons, by default 休息 (``rest``) at 15 min
    with an alert.
    """

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        reason_limits: dict[str, ReasonLimit] | None = None,
    ) -> None:
        self.queues: dict[str, QueueState] = {}
        self.agents: dict[str, Agent] = {}
        self.calls: dict[str, Call] = {}  # live sessions by call id
        # queue events are recorded as plain tuples and become QueueEvent objects when read,
        # which keeps building log objects off the routing path
        self._raw_events: list[tuple] = []
        self._record = self._raw_events.append
        self._events: list[QueueEvent] = []
        self.reason_limits = (
            {REST: ReasonLimit(900.0)} if reason_limits is None else dict(reason_limits)
        )
        self._rng = rng if rng is not None else random.Random(0)
        self._deadlines: list[tuple] = []
        self._seq = itertools.count(1)
        self._agent_seq = itertools.count(1)
        self._now = float("-inf")
        self._last_served: dict[str, tuple[str, float]] = {}  # caller -> (agent id, time)
        self._handlers = {
            _RING: self._on_ring_timeout,
            _WRAP: self._on_wrap_end,
            _REASON: self._on_reason_limit,
            _FAMILIAR: self._on_familiar_end,
            _WIDEN: self._on_widen,
            _MAX_WAIT: self._on_max_wait,
            _ANNOUNCE: self._on_announce,
            _CALLBACK_OFFER: self._on_callback_offer,
        }

    # ------------------------------------------------------------------------ configuration

    def add_queue(self, config: QueueConfig) -> None:
        """Add a queue; agents whose skills qualify become its members."""
        if config.name in self.queues or config.name in self.agents:
            raise ValueError(f"queue {config.name!r}: name already used by a queue or agent")
        q = QueueState(config, self._rng)
        self.queues[config.name] = q
        for agent in self.agents.values():
            if agent.qualifies(config.skills):
                self._join(agent, q)

    def remove_queue(self, name: str) -> None:
        """Remove an empty queue."""
        q = self._queue(name)
        if q.calls:
            raise ValueError(f"queue {name!r} still has {len(q.calls)} calls")
        for agent in q.members.values():
            agent.queues.remove(q)
        del self.queues[name]

    def add_agent(self, agent: Agent) -> None:
        """Add a (logged out) agent; it joins every queue its skills qualify for."""
        if agent.id in self.agents or agent.id in self.queues:
            raise ValueError(f"agent {agent.id!r}: id already used by an agent or queue")
        agent.seq = next(self._agent_seq)
        self.agents[agent.id] = agent
        for q in self.queues.values():
            if agent.qualifies(q.config.skills):
                self._join(agent, q)

    def remove_agent(self, agent_id: str) -> None:
        """Remove a logged-out, idle agent."""
        agent = self._agent(agent_id)
        if agent.logged_in or agent.state is not _IDLE:
            raise TransitionError(f"agent {agent_id}: log out and finish calls before removal")
        for q in agent.queues:
            del q.members[agent.id]
            q.last_offer.pop(agent.id, None)
        agent.queues = []
        del self.agents[agent_id]

    def _join(self, agent: Agent, q: QueueState) -> None:
        q.members[agent.id] = agent
        agent.queues.append(q)
        if agent.logged_in:
            q.staffed += 1
        if agent.indexed:
            q.free.add(agent)

    # ------------------------------------------------------------------------------- agents

    def login(self, agent_id: str, now: float, status: Status | str = Status.READY,
              reason: str | None = None) -> list[Action]:
        """Log the agent in, ready (default) or not ready with ``reason``."""
        self._clock(now)
        agent = self._agent(agent_id)
        status = Status(status)
        if agent.logged_in:
            raise TransitionError(f"agent {agent_id}: already logged in ({agent.status})")
        if status is _LOGGED_OUT:
            raise TransitionError(f"agent {agent_id}: cannot log in as logged_out")
        if agent.state is _IDLE:
            agent.idle_since = now
        actions: list[Action] = []
        self._status(agent, status, reason, now, actions, "login")
        return actions

    def logout(self, agent_id: str, now: float) -> list[Action]:
        """Log the agent out; a ringing offer is withdrawn, a call in progress continues."""
        self._clock(now)
        actions: list[Action] = []
        self._status(self._agent(agent_id), _LOGGED_OUT, None, now, actions, "logout")
        return actions

    def set_status(self, agent_id: str, status: Status | str, reason: str | None,
                   now: float) -> list[Action]:
        """The agent chose ``status`` (ready, or not_ready with a reason such as 示忙 busy).

        Leaving ready withdraws a ringing offer (the caller keeps their place). From
        logged_out this logs in; to logged_out it logs out.
        """
        status = Status(status)
        agent = self._agent(agent_id)
        if not agent.logged_in and status is not _LOGGED_OUT:
            return self.login(agent_id, now, status, reason)
        self._clock(now)
        actions: list[Action] = []
        self._status(agent, status, reason, now, actions, "agent")
        return actions

    def wrap_up_done(self, agent_id: str, now: float) -> list[Action]:
        """The agent finished wrap-up early."""
        self._clock(now)
        agent = self._agent(agent_id)
        if agent.state is not _WRAP_UP:
            raise TransitionError(f"agent {agent_id}: not in wrap_up (state {agent.state})")
        actions: list[Action] = []
        self._end_wrap(agent, now, actions, "agent")
        return actions

    # -------------------------------------------------------------------------------- calls

    def enqueue(self, call_id: str, queue: str, now: float, priority: int = 0,
                caller: str | None = None, familiar_agent: str | None = None) -> list[Action]:
        """A call asks for an agent in ``queue``.

        The first action is :class:`~acd.events.Queued` (with the position) or
        :class:`~acd.events.Redirect` (queue full, or nobody logged in when the queue has a
        ``no_agent_destination``). ``familiar_agent`` overrides the core's own memory of who
        last served ``caller``.
        """
        self._clock(now)
        if call_id in self.calls:
            raise ValueError(f"call {call_id} is already in queue {self.calls[call_id].queue.name}")
        q = self._queue(queue)
        actions: list[Action] = []
        refusal = self._refusal(q, None)
        if refusal is not None:
            destination = (q.config.full_destination if refusal == "full"
                           else q.config.no_agent_destination)
            self._record((now, _EXIT, q.name, call_id, None, {
                "entered": now, "wait": 0.0, "reason": refusal, "destination": destination,
                "at_entry": True}))
            actions.append(Redirect(call_id, q.name, refusal, destination))
            return actions
        self._enter(call_id, q, now, priority, caller, familiar_agent, None, None, actions)
        return actions

    def position(self, call_id: str) -> int | None:
        """The call's place in its queue (1 = next), or None if it is not queued."""
        call = self.calls.get(call_id)
        if call is None or not call.in_queue:
            return None
        return call.queue.position(call)

    def abandon(self, call_id: str, now: float) -> list[Action]:
        """The caller hung up. Unknown or finished calls are ignored (counted once)."""
        self._clock(now)
        call = self.calls.get(call_id)
        if call is None:
            return []
        actions: list[Action] = []
        if call.stage is _CONNECTED:
            self._finish(call, now, actions, _COMPLETE_CALLER, "caller")
        else:
            self._abandon(call, now, actions)
        return actions

    def offer_result(self, call_id: str, agent_id: str, answered: bool,
                     now: float) -> list[Action]:
        """The seat answered (``answered``) or refused/declined an :class:`Offer`.

        A refusal counts as a no-answer (agent goes not ready, ``missed``). An answer to an
        offer already withdrawn returns ``StopRinging(reason="stale")``.
        """
        self._clock(now)
        agent = self._agent(agent_id)
        call = self.calls.get(call_id)
        if call is None or call.stage is not _RINGING or agent not in call.ringing:
            return [StopRinging(call_id, agent_id, "stale")] if answered else []
        actions: list[Action] = []
        if answered:
            self._connect(call, agent, now, actions)
        else:
            self._no_answer(call, agent, now, actions, "declined")
        return actions

    def call_ended(self, call_id: str, now: float, by: str = "caller") -> list[Action]:
        """A connected call ended, hung up ``by`` the caller or the agent.

        A caller hanging up before being connected abandons (as :meth:`abandon`). An agent
        cannot end a call it is not connected to: a ringing seat's refusal is reported with
        :meth:`offer_result`, so ``by="agent"`` on an unconnected call changes nothing.
        """
        if by not in ("caller", "agent"):
            raise ValueError(f"call_ended: by must be 'caller' or 'agent', got {by!r}")
        self._clock(now)
        call = self.calls.get(call_id)
        if call is None:
            return []
        actions: list[Action] = []
        if call.stage is _CONNECTED:
            kind = _COMPLETE_CALLER if by == "caller" else _COMPLETE_AGENT
            self._finish(call, now, actions, kind, by)
        elif by == "caller":
            self._abandon(call, now, actions)
        return actions

    def request_callback(self, call_id: str, now: float) -> list[Action]:
        """The caller asks to be called back: they may leave the line and keep their place.

        The callback is offered to an agent exactly when the caller would have been (same
        key, same lane), so never ahead of earlier callers. Callbacks do not time out.
        """
        self._clock(now)
        call = self._call(call_id)
        if call.stage is _CONNECTED:
            raise TransitionError(f"call {call_id}: already connected")
        if call.callback:
            return []
        call.callback = True
        q = call.queue
        position = q.position(call)
        self._record((now, _CALLBACK, q.name, call_id, None, {
            "entered": call.entered, "wait": now - call.entered, "position": position}))
        return [CallbackAccepted(call_id, q.name, position)]

    def transfer(self, call_id: str, target: str, now: float) -> list[Action]:
        """Blind transfer to a queue (by name) or an agent (by id).

        A connected call ends its session (TRANSFER; the agent goes to wrap-up); a waiting or
        ringing call leaves its queue. The call then enters the target queue (an agent
        transfer re-enters the current queue, offered to that agent first). If the target
        agent is not free or the target queue refuses, :class:`TransferFailed` is returned
        and nothing changes.
        """
        self._clock(now)
        call = self._call(call_id)
        to_agent: Agent | None = None
        if target in self.queues:
            tq = self.queues[target]
            refusal = self._refusal(tq, call)
            if refusal is not None:
                return [TransferFailed(call_id, target, refusal)]
        elif target in self.agents:
            to_agent = self.agents[target]
            tq = call.queue
            if not to_agent.available:
                return [TransferFailed(call_id, target, "agent_unavailable")]
        else:
            raise KeyError(f"transfer target {target!r} is neither a queue nor an agent")
        actions: list[Action] = []
        q = call.queue
        if call.stage is _CONNECTED:
            self._finish(call, now, actions, _TRANSFER, "transfer", target=target)
        else:
            ringing = self._detach(call)
            self._record((now, _TRANSFER, q.name, call_id, None, {
                "entered": call.entered, "wait": now - call.entered, "target": target,
                "talk": 0.0, "hold": 0.0}))
            for agent in ringing:
                self._release_ringing(call, agent, now, actions, "cancelled")
        self._enter(call_id, tq, now, call.priority, call.caller, None, to_agent, q.name,
                    actions, callback=call.callback)
        return actions

    def hold(self, call_id: str, now: float) -> list[Action]:
        """The agent put the connected call on hold."""
        self._clock(now)
        call = self._connected(call_id)
        agent = call.agent
        assert agent is not None
        self._state(agent, _ON_HOLD, now, [], call.queue.name, call_id, "hold")
        call.hold_started = now
        return []

    def resume(self, call_id: str, now: float) -> list[Action]:
        """The agent took the call off hold."""
        self._clock(now)
        call = self._connected(call_id)
        agent = call.agent
        assert agent is not None
        if agent.state is not _ON_HOLD or call.hold_started is None:
            raise TransitionError(f"call {call_id}: not on hold")
        call.hold_total += now - call.hold_started
        call.hold_started = None
        self._state(agent, _ON_CALL, now, [], call.queue.name, call_id, "resume")
        return []

    def reconcile(self, agent_id: str, seat_registered: bool, legs: Iterable[str],
                  now: float) -> list[Action]:
        """Check the agent against the real world and fix what is stuck.

        ``seat_registered``: the seat's phone is registered. ``legs``: call ids of the legs the
        glue sees on the seat (ringing or connected). Fixes: an unregistered seat makes a
        logged-in agent not ready (``unregistered``), restored when it registers again; an
        offer without a ringing leg is withdrawn (the caller keeps their place); a connected
        call without a leg is ended; a leg the core does not know is dropped. Returns the
        actions, including one :class:`Fixed` per correction.
        """
        self._clock(now)
        agent = self._agent(agent_id)
        legs = set(legs)
        actions: list[Action] = []
        before = agent.call  # offers made by this reconcile are not checked against legs
        if not seat_registered:
            if agent.logged_in and agent.reason != UNREGISTERED:
                agent.saved_status = (agent.status, agent.reason)
                self._status(agent, _NOT_READY, UNREGISTERED, now, actions, "reconcile")
                actions.append(Fixed(agent_id, None, "seat not registered: set not ready"))
        elif agent.status is _NOT_READY and agent.reason == UNREGISTERED:
            status, reason = agent.saved_status or (_READY, None)
            agent.saved_status = None
            self._status(agent, status, reason, now, actions, "reconcile")
            actions.append(Fixed(agent_id, None, f"seat registered again: back to {status}"))
        call = agent.call
        if agent.state in (_RESERVED, _ON_CALL, _ON_HOLD) and (call is None or not call.alive):
            agent.call = None  # cannot happen through the API; repaired all the same
            self._state(agent, _IDLE, now, actions, None, None, "reconcile")
            actions.append(Fixed(agent_id, None, "state without a call: set idle"))
        elif call is not None and call is before and call.call_id not in legs:
            if agent.state is _RESERVED:
                self._withdraw_offer(call, agent, now, actions, "cancelled")
                actions.append(Fixed(agent_id, call.call_id, "ringing without a seat leg: "
                                     "offer withdrawn"))
            elif agent.state in (_ON_CALL, _ON_HOLD):
                self._finish(call, now, actions, _COMPLETE_AGENT, "lost_leg")
                actions.append(Fixed(agent_id, call.call_id, "connected without a seat leg: "
                                     "call ended"))
        known = {c.call_id for c in (before, agent.call) if c is not None}
        for leg in sorted(legs):
            if leg not in known:
                actions.append(DropLeg(agent_id, leg))
                actions.append(Fixed(agent_id, leg, "leg unknown to the ACD: dropped"))
        return actions

    # ----------------------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` must be called, or None if nothing is pending."""
        dl = self._deadlines
        while dl:
            _, _, kind, target, gen = dl[0]
            if self._live(kind, target, gen):
                return dl[0][0]
            heapq.heappop(dl)
        return None

    def tick(self, now: float) -> list[Action]:
        """Handle every deadline due at ``now`` (late calls are fine: they catch up)."""
        self._clock(now)
        actions: list[Action] = []
        dl = self._deadlines
        handlers = self._handlers
        while dl and dl[0][0] <= now:
            _, _, kind, target, gen = heapq.heappop(dl)
            if self._live(kind, target, gen):
                handlers[kind](target, now, actions)
        return actions

    @property
    def events(self) -> list[QueueEvent]:
        """The queue events logged since the last :meth:`drain_events`, oldest first."""
        raw = self._raw_events
        if raw:
            self._events.extend([QueueEvent(*r) for r in raw])
            raw.clear()
        return self._events

    def drain_events(self) -> list[QueueEvent]:
        """Take the queue events logged so far (the log restarts empty)."""
        events = self.events
        self._events = []
        return events

    def prune_history(self, now: float) -> None:
        """Forget familiar-agent history older than every queue's lookback."""
        days = max((q.config.familiar_agent.lookback_days for q in self.queues.values()),
                   default=0.0)
        horizon = now - days * DAY
        self._last_served = {c: v for c, v in self._last_served.items() if v[1] >= horizon}

    # ------------------------------------------------------------------------------ lookup

    def _agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise KeyError(f"no agent {agent_id!r}") from None

    def _queue(self, name: str) -> QueueState:
        try:
            return self.queues[name]
        except KeyError:
            raise KeyError(f"no queue {name!r}") from None

    def _call(self, call_id: str) -> Call:
        try:
            return self.calls[call_id]
        except KeyError:
            raise KeyError(f"no call {call_id!r} in any queue") from None

    def _connected(self, call_id: str) -> Call:
        call = self._call(call_id)
        if call.stage is not _CONNECTED:
            raise TransitionError(f"call {call_id}: not connected ({call.stage})")
        return call

    def _clock(self, now: float) -> None:
        if now < self._now:
            raise ClockError(f"time went backwards: {now} < {self._now}")
        self._now = now


    def _at(self, when: float, kind: int, target: object, gen: int = 0) -> None:
        heapq.heappush(self._deadlines, (when, next(self._seq), kind, target, gen))

    @staticmethod
    def _live(kind: int, target, gen: int) -> bool:
        if kind == _RING:
            return target.stage is _RINGING and target.offer_gen == gen and target.alive
        if kind == _WRAP:
            return target.state is _WRAP_UP and target.wrap_gen == gen
        if kind == _REASON:
            return target.status is _NOT_READY and target.status_gen == gen
        if kind == _FAMILIAR:
            return target.in_queue and target.familiar is not None
        if kind == _ANNOUNCE or kind == _CALLBACK_OFFER or kind == _MAX_WAIT:
            return target.in_queue and not target.callback
        return target.in_queue  # _WIDEN

    # --------------------------------------------------------------------- agent machinery

    def _status(self, agent: Agent, status: Status, reason: str | None, now: float,
                actions: list[Action], cause: str) -> None:
        was_available = agent.available
        was_logged_in = agent.logged_in
        previous, previous_reason = agent.status, agent.reason
        agent.change_status(status, reason, now)
        self._record((now, _AGENT_STATUS, None, None, agent.id, {
            "status": status, "reason": reason, "previous": previous,
            "previous_reason": previous_reason, "cause": cause}))
        if was_available and not agent.available:
            self._withdraw(agent)
        if status is not _READY:
            if agent.state is _RESERVED and cause != "no_answer":
                self._withdraw_offer(agent.call, agent, now, actions, "cancelled")  # type: ignore[arg-type]
            self._release_personal(agent, now, actions)
        if was_logged_in != agent.logged_in:
            delta = 1 if agent.logged_in else -1
            for q in agent.queues:
                q.staffed += delta
                if q.staffed == 0 and q.config.no_agent_destination is not None:
                    self._empty_out(q, now, actions)
        if status is _NOT_READY and reason in self.reason_limits:
            self._at(now + self.reason_limits[reason].seconds, _REASON, agent, agent.status_gen)
        if agent.available and not was_available:
            self._dispatch_agent(agent, now, actions)

    def _state(self, agent: Agent, state: State, now: float, actions: list[Action],
               queue: str | None, call_id: str | None, cause: str,
               extra: dict | None = None) -> None:
        previous = agent.state
        agent.change_state(state, now)
        data = {"state": state, "previous": previous, "cause": cause}
        if extra:
            data.update(extra)
        self._record((now, _AGENT_STATE, queue, call_id, agent.id, data))
        if agent.status is _READY:  # free = ready and idle; a state change never stays idle
            if previous is _IDLE:
                self._withdraw(agent)
            elif state is _IDLE:
                self._dispatch_agent(agent, now, actions)

    def _withdraw(self, agent: Agent) -> None:
        """The agent stopped being free: invalidate its entries in every free index."""
        if agent.indexed:
            agent.indexed = False
            agent.index_gen += 1
            for q in agent.queues:
                q.free.discard(agent)

    def _dispatch_agent(self, agent: Agent, now: float, actions: list[Action]) -> None:
        """The agent just became free: give them the best call they may take, or index them."""
        personal = agent.personal
        if personal is not None and personal.live:
            call = personal.head()
            if call is not None:
                personal.leave(call)
                self._offer(call, [agent], now, actions)
                return
        # The best lane head by (−effective priority, arrival, seq), priorities within
        # PRIORITY_EPSILON being equal. A lane entry is the call's static key
        # (entered/aging − priority, entered, seq) + (index_gen, call), so
        # −effective priority = entry[0] − now/aging.
        best = None
        best_score = 0.0
        for q in agent.queues:
            aging = q.aging
            for lane in q.main_lanes if q.expert_skill is None else q.lanes_for(agent):
                if not lane.live:
                    continue
                entry = lane.first()
                score = entry[0] - now / aging if aging else entry[0]
                if best is None or score < best_score - PRIORITY_EPSILON or (
                        score <= best_score + PRIORITY_EPSILON and entry[1:3] < best[1:3]):
                    best, best_score = entry, score
        if best is not None:
            call = best[4]
            call.lane.leave(call)
            self._offer(call, [agent], now, actions)
            return
        agent.indexed = True
        for q in agent.queues:
            q.free.add(agent)

    def _release_personal(self, agent: Agent, now: float, actions: list[Action]) -> None:
        """The familiar agent left ready: their callers go back to the queue's strategy."""
        personal = agent.personal
        if personal is None or not personal.live:
            return
        for call in personal.calls():
            personal.leave(call)
            call.familiar = None
            self._dispatch_call(call, now, actions)

    def _end_wrap(self, agent: Agent, now: float, actions: list[Action], cause: str) -> None:
        info = agent.last_wrap or {}
        agent.last_wrap = None
        seconds = now - agent.state_since
        agent.wrap_time += seconds
        agent.wrap_gen += 1
        agent.idle_since = now
        self._state(agent, _IDLE, now, actions, info.get("queue"), info.get("call_id"), cause,
                    {"wrap": seconds, "entered": info.get("entered")})

    # ---------------------------------------------------------------------- call machinery

    def _refusal(self, q: QueueState, call: Call | None) -> str | None:
        cfg = q.config
        if cfg.max_length is not None:
            length = len(q.calls) - (1 if call is not None and call.in_queue
                                     and call.queue is q else 0)
            if length >= cfg.max_length:
                return "full"
        if q.staffed == 0 and cfg.no_agent_destination is not None:
            return "no_agent"
        return None

    def _enter(self, call_id: str, q: QueueState, now: float, priority: int,
               caller: str | None, familiar_id: str | None, direct: Agent | None,
               transfer_from: str | None, actions: list[Action], callback: bool = False) -> Call:
        cfg = q.config
        seq = next(self._seq)
        call = Call(call_id, q, priority, caller, now, seq,
                    call_key(priority, now, seq, q.aging))
        call.direct = direct
        call.callback = callback  # a transferred callback place stays a callback
        self.calls[call_id] = call
        position = q.add_call(call)
        call.entry_position = position
        familiar = self._familiar_for(q, call, familiar_id, now) if direct is None else None
        self._record((now, _ENTER, q.name, call_id, None, {
            "entered": now, "position": position, "priority": priority, "caller": caller,
            "familiar": familiar.id if familiar is not None else None,
            "transfer_from": transfer_from}))
        actions.append(Queued(call_id, q.name, position, q.est_wait(position)))
        if cfg.max_wait is not None:
            self._at(now + cfg.max_wait, _MAX_WAIT, call)
        if cfg.announcements.interval is not None:
            self._at(now + cfg.announcements.interval, _ANNOUNCE, call)
        if cfg.callback.offer_after is not None:
            self._at(now + cfg.callback.offer_after, _CALLBACK_OFFER, call)
        if q.expert_skill is not None:
            ex = cfg.expert
            call.threshold = ex.start_level
            if ex.start_level > ex.min_level:
                self._at(now + ex.step_seconds, _WIDEN, call)
        if familiar is not None:
            call.familiar = familiar
            call.familiar_until = now + cfg.familiar_agent.try_first
            self._at(call.familiar_until, _FAMILIAR, call)
        self._dispatch_call(call, now, actions)
        return call

    def _familiar_for(self, q: QueueState, call: Call, familiar_id: str | None,
                      now: float) -> Agent | None:
        fa = q.config.familiar_agent
        if not fa.enabled:
            return None
        if familiar_id is None and call.caller is not None:
            last = self._last_served.get(call.caller)
            if last is not None and now - last[1] <= fa.lookback_days * DAY:
                familiar_id = last[0]
        agent = q.members.get(familiar_id) if familiar_id is not None else None
        if agent is None or agent.status is not _READY:
            return None
        return agent

    def _dispatch_call(self, call: Call, now: float, actions: list[Action]) -> None:
        """The call (waiting, in no lane) looks for an agent, else joins its lane."""
        q = call.queue
        direct = call.direct
        if direct is not None:
            call.direct = None
            if direct.available:
                self._offer(call, [direct], now, actions)
                return
        familiar = call.familiar
        if familiar is not None:
            if familiar.status is _READY and now <= call.familiar_until:
                if familiar.available:
                    self._offer(call, [familiar], now, actions)
                    return
                if now < call.familiar_until:
                    if familiar.personal is None:
                        familiar.personal = Lane()
                    familiar.personal.push(call)
                    return
            call.familiar = None
        if q.ring_all:
            agents = q.free.take_all()
            if agents:
                self._offer(call, agents, now, actions)
                return
        else:
            agent = q.free.best()
            if agent is not None and (q.expert_skill is None
                                      or agent.skills.get(q.expert_skill, 0) >= call.threshold):
                self._offer(call, [agent], now, actions)
                return
        if q.expert_skill is None:
            q.main_lanes[0].push(call)
        else:
            q.lanes[call.threshold].push(call)

    def _offer(self, call: Call, agents: list[Agent], now: float, actions: list[Action]) -> None:
        q = call.queue
        call.stage = _RINGING
        call.offer_gen += 1
        call.offered_at = now
        call.ringing = agents
        ring_timeout = q.config.ring_timeout
        round_robin = q.round_robin
        for agent in agents:
            agent.call = call
            agent.offers += 1
            if round_robin:
                q.last_offer[agent.id] = next(self._seq)
            self._state(agent, _RESERVED, now, actions, q.name, call.call_id, "offer")
            self._record((now, _OFFER, q.name, call.call_id, agent.id, {
                "entered": call.entered, "ring_timeout": ring_timeout, "callback": call.callback}))
            actions.append(Offer(call.call_id, agent.id, q.name, agent.seat, ring_timeout,
                                 call.callback))
        self._at(now + ring_timeout, _RING, call, call.offer_gen)

    def _connect(self, call: Call, agent: Agent, now: float, actions: list[Action]) -> None:
        q = call.queue
        others = [a for a in call.ringing if a is not agent]
        call.ringing = []
        call.stage = _CONNECTED
        call.agent = agent
        call.connected_at = now
        q.remove_call(call)
        call.in_queue = False
        self._state(agent, _ON_CALL, now, actions, q.name, call.call_id, "answer")
        self._record((now, _CONNECT, q.name, call.call_id, agent.id, {
            "entered": call.entered, "wait": now - call.entered, "ring": now - call.offered_at,
            "callback": call.callback}))
        actions.append(Connect(call.call_id, agent.id, q.name, agent.seat, call.callback))
        if call.caller is not None:
            self._last_served[call.caller] = (agent.id, now)
        for other in others:
            self._release_ringing(call, other, now, actions, "answered_elsewhere")

    def _no_answer(self, call: Call, agent: Agent, now: float, actions: list[Action],
                   cause: str) -> None:
        q = call.queue
        call.ringing.remove(agent)
        agent.no_answers += 1
        self._record((now, _RING_NO_ANSWER, q.name, call.call_id, agent.id, {
            "entered": call.entered, "ring": now - call.offered_at, "cause": cause}))
        if cause == "timeout":
            actions.append(StopRinging(call.call_id, agent.id, "no_answer"))
        agent.call = None
        # not ready first, so that going idle does not make the agent free
        self._status(agent, _NOT_READY, MISSED, now, actions, "no_answer")
        self._state(agent, _IDLE, now, actions, q.name, call.call_id, "no_answer")
        if not call.ringing:
            self._requeue(call, now, actions)

    def _release_ringing(self, call: Call, agent: Agent, now: float, actions: list[Action],
                         reason: str) -> None:
        """Stop ringing one seat for the call; the agent goes idle (free if still ready)."""
        actions.append(StopRinging(call.call_id, agent.id, reason))
        agent.call = None
        self._state(agent, _IDLE, now, actions, call.queue.name, call.call_id, reason)

    def _withdraw_offer(self, call: Call, agent: Agent, now: float, actions: list[Action],
                        reason: str) -> None:
        call.ringing.remove(agent)
        self._release_ringing(call, agent, now, actions, reason)
        if not call.ringing and call.stage is _RINGING:
            self._requeue(call, now, actions)

    def _requeue(self, call: Call, now: float, actions: list[Action]) -> None:
        """Nobody took the offer: the call waits again with its original place."""
        call.stage = _WAITING
        if call.expired:
            self._timeout(call, now, actions)
        else:
            self._dispatch_call(call, now, actions)

    def _detach(self, call: Call) -> list[Agent]:
        """Take the call out of its lane and queue and end its session; returns the agents
        still ringing for it (the caller releases them)."""
        if call.lane is not None:
            call.lane.leave(call)
        ringing = call.ringing
        call.ringing = []
        call.queue.remove_call(call)
        call.in_queue = False
        call.alive = False
        del self.calls[call.call_id]
        return ringing

    def _abandon(self, call: Call, now: float, actions: list[Action]) -> None:
        q = call.queue
        position = q.position(call)
        stage = call.stage
        was_callback = call.callback
        ringing = self._detach(call)
        if was_callback:
            self._record((now, _EXIT, q.name, call.call_id, None, {
                "entered": call.entered, "wait": now - call.entered,
                "reason": "callback_cancelled", "destination": None, "at_entry": False}))
        else:
            self._record((now, _ABANDON, q.name, call.call_id, None, {
                "entered": call.entered, "wait": now - call.entered, "position": position,
                "entry_position": call.entry_position, "stage": stage}))
        for agent in ringing:
            self._release_ringing(call, agent, now, actions, "abandon")

    def _timeout(self, call: Call, now: float, actions: list[Action]) -> None:
        q = call.queue
        position = q.position(call)
        self._detach(call)
        destination = q.config.timeout_destination
        self._record((now, _TIMEOUT, q.name, call.call_id, None, {
            "entered": call.entered, "wait": now - call.entered, "position": position,
            "entry_position": call.entry_position, "destination": destination}))
        actions.append(Timeout(call.call_id, q.name, destination))

    def _empty_out(self, q: QueueState, now: float, actions: list[Action]) -> None:
        """The last member logged out: waiting callers leave for ``no_agent_destination``."""
        destination = q.config.no_agent_destination
        for call in [c for c in q.calls.values() if not c.callback and c.stage is _WAITING]:
            self._detach(call)
            self._record((now, _EXIT, q.name, call.call_id, None, {
                "entered": call.entered, "wait": now - call.entered, "reason": "no_agent",
                "destination": destination, "at_entry": False}))
            actions.append(Redirect(call.call_id, q.name, "no_agent", destination))

    def _finish(self, call: Call, now: float, actions: list[Action], kind: EventKind,
                cause: str, **extra: object) -> None:
        """A connected call's session ends (hangup, lost leg, transfer): the agent moves on."""
        agent = call.agent
        assert agent is not None
        q = call.queue
        hold = call.hold_total
        if call.hold_started is not None:
            hold += now - call.hold_started
        talk = now - call.connected_at - hold
        call.alive = False
        del self.calls[call.call_id]
        agent.calls_handled += 1
        agent.talk_time += talk
        agent.hold_time += hold
        agent.last_call_end = now
        agent.call = None
        self._record((now, kind, q.name, call.call_id, agent.id, {
            "entered": call.entered, "wait": call.connected_at - call.entered, "talk": talk,
            "hold": hold, "callback": call.callback, "cause": cause, **extra}))
        wrap = q.config.wrap_up
        q.note_handled(talk + hold + wrap)
        if wrap > 0:
            agent.last_wrap = {"queue": q.name, "call_id": call.call_id, "entered": call.entered}
            agent.wrap_gen += 1
            self._state(agent, _WRAP_UP, now, actions, q.name, call.call_id, cause)
            self._at(now + wrap, _WRAP, agent, agent.wrap_gen)
        else:
            agent.idle_since = now
            self._state(agent, _IDLE, now, actions, q.name, call.call_id, cause)

    # ---------------------------------------------------------------------------- deadlines

    def _on_ring_timeout(self, call: Call, now: float, actions: list[Action]) -> None:
        for agent in list(call.ringing):
            self._no_answer(call, agent, now, actions, "timeout")

    def _on_wrap_end(self, agent: Agent, now: float, actions: list[Action]) -> None:
        self._end_wrap(agent, now, actions, "timer")

    def _on_reason_limit(self, agent: Agent, now: float, actions: list[Action]) -> None:
        reason = agent.reason
        limit = self.reason_limits.get(reason)  # type: ignore[arg-type]
        if limit is None:
            return
        actions.append(StatusLimitExceeded(agent.id, reason, agent.status_since,  # type: ignore[arg-type]
                                           limit.seconds, limit.then))
        if limit.then == "ready":
            self._status(agent, _READY, None, now, actions, "limit")
        elif limit.then == "logout":
            self._status(agent, _LOGGED_OUT, None, now, actions, "limit")

    def _on_familiar_end(self, call: Call, now: float, actions: list[Action]) -> None:
        familiar = call.familiar
        call.familiar = None
        if call.stage is _WAITING and familiar is not None and call.lane is familiar.personal:
            familiar.personal.leave(call)  # type: ignore[union-attr]
            self._dispatch_call(call, now, actions)

    def _on_widen(self, call: Call, now: float, actions: list[Action]) -> None:
        ex = call.queue.config.expert
        threshold = expert_threshold(now - call.entered, ex.start_level, ex.step_seconds,
                                     ex.min_level)
        if threshold < call.threshold:
            call.threshold = threshold
            if call.stage is _WAITING and call.lane is not None and call.familiar is None:
                call.lane.leave(call)
                self._dispatch_call(call, now, actions)
        if threshold > ex.min_level:
            steps = ex.start_level - threshold + 1
            self._at(call.entered + steps * ex.step_seconds, _WIDEN, call)

    def _on_max_wait(self, call: Call, now: float, actions: list[Action]) -> None:
        if call.stage is _RINGING:
            call.expired = True  # let the ring finish; a no-answer then times out
        else:
            self._timeout(call, now, actions)

    def _on_announce(self, call: Call, now: float, actions: list[Action]) -> None:
        q = call.queue
        if call.stage is _WAITING:
            position = q.position(call)
            actions.append(Announce(call.call_id, q.name, position, q.est_wait(position)))
        self._at(now + q.config.announcements.interval, _ANNOUNCE, call)  # type: ignore[operator]

    def _on_callback_offer(self, call: Call, now: float, actions: list[Action]) -> None:
        q = call.queue
        actions.append(OfferCallback(call.call_id, q.name, q.config.callback.key))
