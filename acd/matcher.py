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
serves, F = distinct timer delays). They are built for 50,000 waiting calls and 10,000
agents, where the cost of an event is dominated by cache and TLB misses, not by
instructions: each event should read as few cold objects as possible.

- The free-agent indexes are :class:`~acd.strategies.SortedFront` lists (kept sorted,
  consumed from the front, lazy deletion through a generation counter since an agent sits in
  several queues' indexes, compacted when half stale).
- The lanes of waiting calls are :class:`~acd.queues.Lane` lists with eager deletion: the
  front is always a live call.
- Both keep the first entry on the index object (``head``/``item``); queue lanes also
  publish their head's first key component into :class:`~acd.queues.LaneHeads` (typed
  arrays by lane id), so comparing the heads of an agent's lanes (``Agent.lane_ids``) reads
  no queue, lane or entry object. Both keep the first key component of every entry unboxed
  in a typed array, so an insertion in the middle binary-searches contiguous memory instead
  of tuples scattered over the heap, and tuples are compared only on equal components.
- Consumed entries are released as they are consumed (while in the cache); a call going
  back before the head of its lane takes the consumed slot in front (no memmove).
- Most insertions sort last (calls arrive in time order, agents are freed in time order)
  and are appends; the rest are a binary search and a pointer shift (memmove).
- Queue events are recorded flat into one list (no tuple or dict per event on the routing
  path) and decoded when ``events`` is read.

=====================  ===================================================  ===============
structure              what                                                 cost
=====================  ===================================================  ===============
``QueueState.free``    free members by strategy key (random strategy: a     first O(1),
                       list + position map, uniform choice in O(1))         insert O(1)(*)
``QueueState.lanes``   waiting calls by (entered/aging − priority,          head O(1),
                       entered, seq); expert queues: one lane per           insert O(1)(*)
                       threshold level 0–10
``Agent.personal``     calls waiting for this agent as familiar agent       same
``QueueState.ranks``   (k1, seq) of all the queue's calls, sorted, in two   O(1)(*) at the
                       typed arrays → position by binary search             ends, O(log n)
``Acd._fifos``         timers at now + a configured delay: one FIFO per     O(1) + O(log F)
                       delay (sorted by construction); ``_heads``, a heap
                       of each FIFO's first timer (and of a timer that
                       would not sort last in its FIFO)
=====================  ===================================================  ===============

(*) amortised, for an append or a removal at the front; an out-of-order insertion or a removal
from the middle costs O(log n) comparisons in a typed array plus a memmove of up to n
pointers.

Call arrival: the queue's best free agent is the head of ``free`` (expert: if its level
reaches the call's threshold): O(1). Agent becomes free: compare the head of its personal
lane and of the lanes of its k queues by effective priority (expert queues: only lanes with
threshold ≤ the agent's level): O(k); with no call, insert it into k free indexes. An agent
stops being free: O(k) (one generation bump, k live counters). Ring-all: O(r) for r seats.
A window widening moves one call to another lane and retries it: O(log n). Timers: O(1) to
set, O(log F) to fire; an answered offer's ring timeout is cancelled in place and dropped
when due without reading the call.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
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
from acd.queues import INF as _INF
from acd.queues import Call, Lane, LaneHeads, QueueConfig, QueueState, Stage
from acd.strategies import PRIORITY_EPSILON, call_key, expert_threshold

# deadline kinds
_RING, _WRAP, _REASON, _FAMILIAR, _WIDEN, _MAX_WAIT, _ANNOUNCE, _CALLBACK_OFFER = range(8)
_VOID = -1  # a cancelled timer (an answered offer's ring timeout)

DAY = 86400.0
FAMILIAR_LIMIT = 200_000  # callers the familiar-agent memory keeps (about 20 MB)

# Enum members bound once: ``Status.READY`` is a descriptor lookup (~0.1 µs) in CPython 3.11.
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


# The event log is recorded flat: one list, each event as a layout number, time, queue,
# call id, agent id, then the values of its data keys (the layout says which), so that
# recording an event on the routing path allocates no tuple or dict (each would be fresh,
# cold memory). ``events`` decodes them into QueueEvent objects.
_LAYOUTS: list[tuple[EventKind, tuple[str, ...]]] = [
    (EventKind.ENTER, ("entered", "position", "priority", "caller", "familiar", "transfer_from")),
    (EventKind.OFFER, ("entered", "ring_timeout", "callback")),
    (EventKind.CONNECT, ("entered", "wait", "ring", "callback")),
    (EventKind.RING_NO_ANSWER, ("entered", "ring", "cause")),
    (EventKind.ABANDON, ("entered", "wait", "position", "entry_position", "stage")),
    (EventKind.TIMEOUT, ("entered", "wait", "position", "entry_position", "destination")),
    (EventKind.EXIT, ("entered", "wait", "reason", "destination", "at_entry")),
    (EventKind.CALLBACK, ("entered", "wait", "position")),
    (EventKind.TRANSFER, ("entered", "wait", "target", "talk", "hold")),  # before connect
    (EventKind.COMPLETE_CALLER, ("entered", "wait", "talk", "hold", "callback", "cause")),
    (EventKind.COMPLETE_AGENT, ("entered", "wait", "talk", "hold", "callback", "cause")),
    (EventKind.TRANSFER, ("entered", "wait", "talk", "hold", "callback", "cause", "target")),
    (EventKind.AGENT_STATUS, ("status", "reason", "previous", "previous_reason", "cause")),
    (EventKind.AGENT_STATE, ("state", "previous", "cause")),
    (EventKind.AGENT_STATE, ("state", "previous", "cause", "wrap", "entered")),  # wrap-up end
]
(_L_ENTER, _L_OFFER, _L_CONNECT, _L_NO_ANSWER, _L_ABANDON, _L_TIMEOUT, _L_EXIT, _L_CALLBACK,
 _L_TRANSFER, _L_COMPLETE_CALLER, _L_COMPLETE_AGENT, _L_TRANSFERRED, _L_STATUS, _L_STATE,
 _L_STATE_WRAP) = range(len(_LAYOUTS))


def _decode(flat: list) -> list[QueueEvent]:
    """The flat log as QueueEvent objects."""
    events = []
    i, n = 0, len(flat)
    while i < n:
        kind, keys = _LAYOUTS[flat[i]]
        j = i + 5 + len(keys)
        events.append(QueueEvent(flat[i + 1], kind, flat[i + 2], flat[i + 3], flat[i + 4],
                                 dict(zip(keys, flat[i + 5:j], strict=True))))
        i = j
    return events


class ClockError(ValueError):
    """``now`` went backwards: the glue must pass a monotonic clock."""


class Acd:
    """Automatic call distribution over any number of queues and agents (see module doc).

    ``rng`` drives the random strategy (pass a seeded ``random.Random`` for reproducible
    runs). ``reason_limits`` caps not-ready reasons, by default 休息 (``rest``) at 15 min
    with an alert. ``familiar_limit`` bounds the familiar-agent memory (callers remembered;
    the least recently served are forgotten first).
    """

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        reason_limits: dict[str, ReasonLimit] | None = None,
        familiar_limit: int = FAMILIAR_LIMIT,
    ) -> None:
        if familiar_limit < 1:
            raise ValueError(f"familiar_limit must be >= 1, got {familiar_limit}")
        self.queues: dict[str, QueueState] = {}
        self.agents: dict[str, Agent] = {}
        self.calls: dict[str, Call] = {}  # live sessions by call id
        # queue events are recorded flat (see _LAYOUTS) and become QueueEvent objects when
        # read, which keeps building log objects off the routing path
        self._raw_events: list = []
        self._record = self._raw_events.extend
        self._events: list[QueueEvent] = []
        self.reason_limits = (
            {REST: ReasonLimit(900.0)} if reason_limits is None else dict(reason_limits)
        )
        self._rng = rng if rng is not None else random.Random(0)
        # Timers are "now + a configured delay" (ring timeout, wrap-up, max wait,
        # announcements, callback offer, familiar window, widening steps, reason limits): each
        # distinct delay has a FIFO, which stays sorted because the clock never goes back
        # (a timer that would not sort last in its FIFO, e.g. a widening step re-armed by a
        # late tick, goes to the heap on its own). _heads is a heap of each non-empty FIFO's
        # first entry — a handful of entries, warm in the cache — instead of one heap of every
        # timer, whose O(log n) sifts read cold entries at every pop.
        self._lane_heads = LaneHeads()  # the head key of every queue lane
        self._fifos: dict[float, deque[list]] = {}
        self._heads: list[tuple] = []  # (when, seq, fifo, None) | (when, seq, None, entry)
        self._seq = itertools.count(1)
        self._agent_seq = itertools.count(1)
        self._now = float("-inf")
        # familiar-agent memory: caller -> (agent id, time), least recently served first
        self._last_served: dict[str, tuple[str, float]] = {}
        self.familiar_limit = familiar_limit
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
        q = QueueState(config, self._rng, self._lane_heads)
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
            agent.lane_ids = self._lane_ids(agent)
        for lane in q.lanes:
            self._lane_heads.release(lane.lid)
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
        agent.lane_ids = []
        del self.agents[agent_id]

    def _join(self, agent: Agent, q: QueueState) -> None:
        q.members[agent.id] = agent
        agent.queues.append(q)
        agent.lane_ids = self._lane_ids(agent)
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
        if status.__class__ is not Status:
            status = Status(status)  # a plain string (~0.4 µs: avoided for members)
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
        if status.__class__ is not Status:
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
            self._record((_L_EXIT, now, q.name, call_id, None,
                          now, 0.0, refusal, destination, True))
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
            self._finish(call, now, actions, _L_COMPLETE_CALLER, "caller")
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
            layout = _L_COMPLETE_CALLER if by == "caller" else _L_COMPLETE_AGENT
            self._finish(call, now, actions, layout, by)
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
        self._record((_L_CALLBACK, now, q.name, call_id, None,
                      call.entered, now - call.entered, position))
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
            self._finish(call, now, actions, _L_TRANSFERRED, "transfer", target)
        else:
            ringing, _ = self._detach(call)
            self._record((_L_TRANSFER, now, q.name, call_id, None,
                          call.entered, now - call.entered, target, 0.0, 0.0))
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
                self._finish(call, now, actions, _L_COMPLETE_AGENT, "lost_leg")
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
        heads = self._heads
        live = self._live
        while heads:
            top = heads[0]
            _, _, kind, target, gen = top[3] if top[2] is None else top[2][0]
            if live(kind, target, gen):
                return top[0]
            self._pop_timer()
        return None

    def tick(self, now: float) -> list[Action]:
        """Handle every deadline due at ``now`` (late calls are fine: they catch up)."""
        self._clock(now)
        actions: list[Action] = []
        heads = self._heads
        handlers = self._handlers
        live = self._live
        while heads and heads[0][0] <= now:
            _, _, kind, target, gen = self._pop_timer()
            if live(kind, target, gen):
                handlers[kind](target, now, actions)
        return actions

    def _pop_timer(self) -> tuple:
        heads = self._heads
        _, _, fifo, entry = heads[0]
        if fifo is None:
            heapq.heappop(heads)
            return entry
        entry = fifo.popleft()
        if fifo:
            following = fifo[0]
            heapq.heapreplace(heads, (following[0], following[1], fifo, None))
        else:
            heapq.heappop(heads)
        return entry

    @property
    def events(self) -> list[QueueEvent]:
        """The queue events logged since the last :meth:`drain_events`, oldest first."""
        raw = self._raw_events
        if raw:
            self._events.extend(_decode(raw))
            raw.clear()
        return self._events

    def drain_events(self) -> list[QueueEvent]:
        """Take the queue events logged so far (the log restarts empty)."""
        events = self.events
        self._events = []
        return events

    def remember_served(self, caller: str, agent_id: str, when: float) -> None:
        """Seed the familiar-agent memory: ``agent_id`` served ``caller`` at ``when`` (core
        clock; may be before the first event, e.g. read back from the stored queue log).
        Ignored if the core already knows a later service of that caller."""
        last = self._last_served.get(caller)
        if last is None or last[1] <= when:
            self._served(caller, agent_id, when)

    def last_served(self, caller: str) -> tuple[str, float] | None:
        """``(agent id, time)`` of the last service of ``caller`` the core remembers."""
        return self._last_served.get(caller)

    def _served(self, caller: str, agent_id: str, when: float) -> None:
        memory = self._last_served
        memory.pop(caller, None)  # re-inserted last: the dict stays in time order
        memory[caller] = (agent_id, when)
        if len(memory) > self.familiar_limit:
            del memory[next(iter(memory))]

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


    def _after(self, now: float, delay: float, kind: int, target: object, gen: int = 0) -> list:
        """A timer at ``now + delay``; returns its entry ``[when, seq, kind, target, gen]``
        (setting the kind to ``_VOID`` cancels it)."""
        return self._timer(now + delay, delay, kind, target, gen)

    def _timer(self, when: float, fifo_key: float, kind: int, target: object,
               gen: int = 0) -> list:
        """A timer at ``when``, appended to the FIFO ``fifo_key`` (timers of one delay) if it
        sorts last there, which is the rule; else a timer of its own in the heap."""
        entry = [when, next(self._seq), kind, target, gen]
        fifo = self._fifos.get(fifo_key)
        if fifo is None:
            fifo = self._fifos[fifo_key] = deque()
        if not fifo:
            heapq.heappush(self._heads, (when, entry[1], fifo, None))
            fifo.append(entry)
        elif fifo[-1][0] <= when:
            fifo.append(entry)
        else:
            heapq.heappush(self._heads, (when, entry[1], None, entry))
        return entry

    @staticmethod
    def _live(kind: int, target, gen: int) -> bool:
        if kind == _VOID:
            return False
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
        self._record((_L_STATUS, now, None, None, agent.id,
                      status, reason, previous, previous_reason, cause))
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
            self._after(now, self.reason_limits[reason].seconds, _REASON, agent,
                        agent.status_gen)
        if agent.available and not was_available:
            self._dispatch_agent(agent, now, actions)

    def _state(self, agent: Agent, state: State, now: float, actions: list[Action],
               queue: str | None, call_id: str | None, cause: str,
               wrap: tuple[float, float | None] | None = None) -> None:
        previous = agent.state
        agent.change_state(state, now)
        if wrap is None:
            self._record((_L_STATE, now, queue, call_id, agent.id, state, previous, cause))
        else:
            self._record((_L_STATE_WRAP, now, queue, call_id, agent.id, state, previous, cause)
                         + wrap)
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

    @staticmethod
    def _lane_ids(agent: Agent) -> list[int]:
        """The lanes the agent may take calls from (expert queues: up to its level)."""
        return [lane.lid for q in agent.queues for lane in q.lanes_for(agent)]

    def _dispatch_agent(self, agent: Agent, now: float, actions: list[Action]) -> None:
        """The agent just became free: give them the best call they may take, or index them."""
        personal = agent.personal
        if personal is not None:
            # callers waiting for this agent as their familiar agent; an entry whose call
            # has moved on (its familiar window ended) is stale and dropped here
            while (call := personal.item) is not None:
                if call.lane is personal:
                    personal.leave(call)
                    self._offer(call, [agent], now, actions)
                    return
                personal.drop_head()
        # The best lane head by (−effective priority, arrival, seq), priorities within
        # PRIORITY_EPSILON being equal. Lane heads are the calls' static keys
        # (entered/aging − priority, entered, seq), so −effective priority = k1 − now/aging;
        # they are read from the LaneHeads arrays, not from the lanes (see LaneHeads).
        heads = self._lane_heads
        hk1, haging, lanes = heads.k1, heads.aging, heads.lanes
        best_lid = -1
        best_score = 0.0
        for lid in agent.lane_ids:
            k1 = hk1[lid]
            if k1 == _INF:
                continue
            aging = haging[lid]
            score = k1 - now / aging if aging else k1
            if best_lid < 0 or score < best_score - PRIORITY_EPSILON or (
                    score <= best_score + PRIORITY_EPSILON
                    and lanes[lid].head[1:3] < lanes[best_lid].head[1:3]):  # type: ignore
                best_lid, best_score = lid, score
        best = None if best_lid < 0 else heads.lanes[best_lid].item  # type: ignore[union-attr]
        if best is not None:
            best.lane.leave(best)
            self._offer(best, [agent], now, actions)
            return
        agent.indexed = True
        for q in agent.queues:
            q.free.add(agent)

    def _release_personal(self, agent: Agent, now: float, actions: list[Action]) -> None:
        """The familiar agent left ready: their callers go back to the queue's strategy."""
        personal = agent.personal
        if personal is None:
            return
        agent.personal = None  # with any stale entries
        for call in personal.calls():
            if call.lane is personal:
                call.lane = None
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
                    (seconds, info.get("entered")))

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
        self._record((_L_ENTER, now, q.name, call_id, None, now, position, priority, caller,
                      familiar.id if familiar is not None else None, transfer_from))
        actions.append(Queued(call_id, q.name, position, q.est_wait(position)))
        if cfg.max_wait is not None:
            self._after(now, cfg.max_wait, _MAX_WAIT, call)
        if cfg.announcements.interval is not None:
            self._after(now, cfg.announcements.interval, _ANNOUNCE, call)
        if cfg.callback.offer_after is not None:
            self._after(now, cfg.callback.offer_after, _CALLBACK_OFFER, call)
        if q.expert_skill is not None:
            ex = cfg.expert
            call.threshold = ex.start_level
            if ex.start_level > ex.min_level:
                self._after(now, ex.step_seconds, _WIDEN, call)
        if familiar is not None:
            call.familiar = familiar
            call.familiar_until = self._after(now, cfg.familiar_agent.try_first, _FAMILIAR,
                                              call)[0]
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
            self._record((_L_OFFER, now, q.name, call.call_id, agent.id,
                          call.entered, ring_timeout, call.callback))
            actions.append(Offer(call.call_id, agent.id, q.name, agent.seat, ring_timeout,
                                 call.callback))
        call.ring_timer = self._after(now, ring_timeout, _RING, call, call.offer_gen)

    def _connect(self, call: Call, agent: Agent, now: float, actions: list[Action]) -> None:
        q = call.queue
        others = [a for a in call.ringing if a is not agent]
        call.ringing = []
        call.stage = _CONNECTED
        call.agent = agent
        call.connected_at = now
        q.remove_call(call)
        call.in_queue = False
        call.ring_timer[2] = _VOID  # type: ignore[index]  # dropped when due, call unread
        call.ring_timer = None
        self._state(agent, _ON_CALL, now, actions, q.name, call.call_id, "answer")
        self._record((_L_CONNECT, now, q.name, call.call_id, agent.id, call.entered,
                      now - call.entered, now - call.offered_at, call.callback))
        actions.append(Connect(call.call_id, agent.id, q.name, agent.seat, call.callback))
        if call.caller is not None:
            self._served(call.caller, agent.id, now)
        for other in others:
            self._release_ringing(call, other, now, actions, "answered_elsewhere")

    def _no_answer(self, call: Call, agent: Agent, now: float, actions: list[Action],
                   cause: str) -> None:
        q = call.queue
        call.ringing.remove(agent)
        agent.no_answers += 1
        self._record((_L_NO_ANSWER, now, q.name, call.call_id, agent.id,
                      call.entered, now - call.offered_at, cause))
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

    def _detach(self, call: Call) -> tuple[list[Agent], int]:
        """Take the call out of its lane and queue and end its session; returns the agents
        still ringing for it (the caller releases them) and the position it had."""
        if call.lane is not None:
            call.lane.leave(call)
        ringing = call.ringing
        call.ringing = []
        position = call.queue.remove_call(call)
        call.in_queue = False
        call.alive = False
        del self.calls[call.call_id]
        return ringing, position

    def _abandon(self, call: Call, now: float, actions: list[Action]) -> None:
        q = call.queue
        stage = call.stage
        ringing, position = self._detach(call)
        if call.callback:
            self._record((_L_EXIT, now, q.name, call.call_id, None, call.entered,
                          now - call.entered, "callback_cancelled", None, False))
        else:
            self._record((_L_ABANDON, now, q.name, call.call_id, None, call.entered,
                          now - call.entered, position, call.entry_position, stage))
        for agent in ringing:
            self._release_ringing(call, agent, now, actions, "abandon")

    def _timeout(self, call: Call, now: float, actions: list[Action]) -> None:
        q = call.queue
        _, position = self._detach(call)
        destination = q.config.timeout_destination
        self._record((_L_TIMEOUT, now, q.name, call.call_id, None, call.entered,
                      now - call.entered, position, call.entry_position, destination))
        actions.append(Timeout(call.call_id, q.name, destination))

    def _empty_out(self, q: QueueState, now: float, actions: list[Action]) -> None:
        """The last member logged out: waiting callers leave for ``no_agent_destination``."""
        destination = q.config.no_agent_destination
        for call in [c for c in q.calls.values() if not c.callback and c.stage is _WAITING]:
            self._detach(call)
            self._record((_L_EXIT, now, q.name, call.call_id, None, call.entered,
                          now - call.entered, "no_agent", destination, False))
            actions.append(Redirect(call.call_id, q.name, "no_agent", destination))

    def _finish(self, call: Call, now: float, actions: list[Action], layout: int,
                cause: str, target: str | None = None) -> None:
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
        self._record((layout, now, q.name, call.call_id, agent.id, call.entered,
                      call.connected_at - call.entered, talk, hold, call.callback, cause))
        if layout == _L_TRANSFERRED:
            self._record((target,))
        wrap = q.config.wrap_up
        q.note_handled(talk + hold + wrap)
        if wrap > 0:
            agent.last_wrap = {"queue": q.name, "call_id": call.call_id, "entered": call.entered}
            agent.wrap_gen += 1
            self._state(agent, _WRAP_UP, now, actions, q.name, call.call_id, cause)
            self._after(now, wrap, _WRAP, agent, agent.wrap_gen)
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
        call.familiar = None
        if call.stage is _WAITING and call.lane is not None:
            # it waits in the familiar agent's personal lane (the only lane a call with a
            # familiar agent can be in): leave it without reading that agent or lane — the
            # entry goes stale and is dropped when the agent is next free
            call.lane = None
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
            self._timer(call.entered + steps * ex.step_seconds, ex.step_seconds, _WIDEN, call)

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
        self._after(now, q.config.announcements.interval, _ANNOUNCE, call)  # type: ignore[arg-type]

    def _on_callback_offer(self, call: Call, now: float, actions: list[Action]) -> None:
        q = call.queue
        actions.append(OfferCallback(call.call_id, q.name, q.config.callback.key))
