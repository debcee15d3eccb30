"""Queues: their configuration, and the per-queue structures holding waiting calls.

:class:`QueueConfig` is what an operator edits (strategy, required skills, limits, timers,
service-level thresholds, familiar-agent, expert widening, callback and announcement options,
destinations). Destinations are flow ids or queue names kept as strings; checking that they
exist belongs to the application's config validation.

:class:`QueueState` is the Acd's runtime view of one queue:

- ``members``: agents whose skills meet the queue's minimum levels (computed when agents or
  queues are added, never during routing);
- ``free``: the free-agent index ordered by the strategy (:mod:`acd.strategies`);
- ``lanes``: waiting calls in service order (:class:`Lane`, a sorted list consumed from the
  front, with its first call kept on the lane object) by :func:`~acd.strategies.call_key`.
  Ordinary queues have one lane; expert queues have one lane per threshold level, so an agent
  of level *L* looks only at the heads of lanes with threshold ≤ *L* (at most 10);
- ``ranks``: the keys of every call in the queue (waiting, ringing, or holding a callback
  place) in order, unboxed in typed arrays (:class:`Ranks`), giving positions by binary
  search. An arrival that sorts last is appended and serving the first
  call advances ``ranks.start``, both O(1); other changes are a binary search and a pointer
  shift;
- ``calls``: the same calls by id, in arrival order (the first one has waited longest).

A :class:`Call` is one call's *session* in one queue (a transfer starts a new session).
"""

from __future__ import annotations

import enum
import random
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from acd.agents import MAX_LEVEL, MIN_LEVEL
from acd.strategies import FreeAgents, RandomFreeAgents, Strategy, agent_key

if TYPE_CHECKING:
    from acd.agents import Agent


# ------------------------------------------------------------------------------ configuration


@dataclass(frozen=True, slots=True)
class FamiliarAgent:
    """Try the agent who last served this caller (within ``lookback_days``) first, for
    ``try_first`` seconds, before the queue's own strategy takes over."""

    enabled: bool = False
    lookback_days: float = 7.0
    try_first: float = 20.0

    def __post_init__(self) -> None:
        if self.lookback_days < 0 or self.try_first < 0:
            raise ValueError("familiar agent: lookback_days and try_first must be >= 0")


@dataclass(frozen=True, slots=True)
class ExpertWidening:
    """For the expert strategy: a call first accepts only agents at ``start_level`` in
    ``skill`` (default: the queue's first required skill), one level lower every
    ``step_seconds`` of waiting, down to ``min_level``."""

    skill: str | None = None
    start_level: int = MAX_LEVEL
    step_seconds: float = 10.0
    min_level: int = MIN_LEVEL

    def __post_init__(self) -> None:
        if not (MIN_LEVEL <= self.min_level <= self.start_level <= MAX_LEVEL):
            raise ValueError(
                f"expert widening: need 1 <= min_level <= start_level <= 10, "
                f"got {self.min_level}..{self.start_level}"
            )
        if self.step_seconds <= 0:
            raise ValueError("expert widening: step_seconds must be positive")


@dataclass(frozen=True, slots=True)
class CallbackOffer:
    """After ``offer_after`` seconds of waiting (None: never), offer "press ``key`` for a
    callback"; a callback keeps the caller's place in the queue."""

    offer_after: float | None = None
    key: str = "1"

    def __post_init__(self) -> None:
        if self.offer_after is not None and self.offer_after < 0:
            raise ValueError("callback offer_after must be >= 0")


@dataclass(frozen=True, slots=True)
class Announcements:
    """Announce position and estimated wait every ``interval`` seconds (None: never).

    The estimate is ``position × handle time / logged-in members``; the handle time is a
    running average of the queue's calls, starting from ``initial_handle_time``.
    """

    interval: float | None = None
    initial_handle_time: float = 180.0

    def __post_init__(self) -> None:
        if self.interval is not None and self.interval <= 0:
            raise ValueError("announcement interval must be positive")


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """One queue as configured. Times are in seconds; None disables a limit."""

    name: str
    strategy: Strategy = Strategy.LONGEST_IDLE
    skills: dict[str, int] = field(default_factory=dict)  # skill -> minimum level
    max_wait: float | None = None
    max_length: int | None = None
    ring_timeout: float = 15.0
    wrap_up: float = 0.0
    service_level_threshold: float = 20.0  # T
    short_abandon: float = 5.0  # S
    priority_aging: float | None = 60.0  # seconds of waiting worth one priority level
    familiar_agent: FamiliarAgent = FamiliarAgent()
    expert: ExpertWidening = ExpertWidening()
    callback: CallbackOffer = CallbackOffer()
    announcements: Announcements = Announcements()
    timeout_destination: str | None = None
    no_agent_destination: str | None = None  # set: calls leave when no member is logged in
    full_destination: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("queue name must not be empty")
        object.__setattr__(self, "strategy", Strategy(self.strategy))
        for skill, level in self.skills.items():
            if not (isinstance(level, int) and MIN_LEVEL <= level <= MAX_LEVEL):
                raise ValueError(f"queue {self.name}: skill {skill!r} minimum level must be 1-10")
        for label, value in (("max_wait", self.max_wait), ("priority_aging", self.priority_aging)):
            if value is not None and value <= 0:
                raise ValueError(f"queue {self.name}: {label} must be positive or None")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"queue {self.name}: max_length must be >= 1 or None")
        if self.ring_timeout <= 0:
            raise ValueError(f"queue {self.name}: ring_timeout must be positive")
        if self.wrap_up < 0 or self.service_level_threshold < 0 or self.short_abandon < 0:
            raise ValueError(f"queue {self.name}: wrap_up, T and S must be >= 0")
        if self.strategy is Strategy.EXPERT and self.expert_skill is None:
            raise ValueError(f"queue {self.name}: expert strategy needs a skill")

    @property
    def expert_skill(self) -> str | None:
        if self.expert.skill:
            return self.expert.skill
        return next(iter(self.skills), None)


# ---------------------------------------------------------------------------------- runtime


class Stage(enum.StrEnum):
    """Where a call's queue session is."""

    WAITING = "waiting"  # in a lane (or holding a callback place)
    RINGING = "ringing"  # offered to one agent (or several, ring-all)
    CONNECTED = "connected"


@dataclass(slots=True, eq=False)
class Call:
    """One call's session in one queue."""

    call_id: str
    queue: QueueState
    priority: int
    caller: str | None
    entered: float
    seq: int
    key: tuple
    entry_position: int = 0
    stage: Stage = Stage.WAITING
    in_queue: bool = True  # False once connected or gone: its queue timers are void
    alive: bool = True  # False once the session ended
    callback: bool = False  # the caller left the line and waits for a callback
    lane: Lane | None = None
    threshold: int = 0  # expert: lowest agent level accepted now
    familiar: Agent | None = None  # tried first until familiar_until
    familiar_until: float = 0.0
    direct: Agent | None = None  # a transfer to this agent
    ringing: list[Agent] = field(default_factory=list)
    offer_gen: int = 0
    ring_timer: list | None = None  # the ring timeout's timer entry while ringing
    offered_at: float = 0.0
    expired: bool = False  # max_wait passed while ringing
    agent: Agent | None = None
    connected_at: float = 0.0
    hold_started: float | None = None
    hold_total: float = 0.0


INF = float("inf")


class LaneHeads:
    """The head of every queue lane of an Acd, by lane id: its first key component unboxed
    in a typed array (``k1``; ``inf`` for an empty lane), the queue's ``aging`` (0.0:
    none), and the lane itself (``lanes``).

    An agent becoming free compares the heads of all the lanes it may take from (3 queues:
    3 lanes, up to 11 per expert queue). Reading ``k1`` and ``aging`` here touches a few
    cache lines that every routing event uses, instead of a queue object, a lane object, an
    entry tuple and a float per lane, each likely cold with 50,000 calls waiting; only the
    winning lane — and, when two heads are within ``PRIORITY_EPSILON``, the tied lanes'
    entries for the arrival order — is read.
    """

    __slots__ = ("k1", "aging", "lanes", "_free")

    def __init__(self) -> None:
        self.k1 = array("d")
        self.aging = array("d")
        self.lanes: list[Lane | None] = []
        self._free: list[int] = []

    def new(self, lane: Lane, aging: float | None) -> int:
        if self._free:
            lid = self._free.pop()
            self.lanes[lid] = lane
            self.k1[lid] = INF
            self.aging[lid] = aging or 0.0
            return lid
        self.lanes.append(lane)
        self.k1.append(INF)
        self.aging.append(aging or 0.0)
        return len(self.lanes) - 1

    def release(self, lid: int) -> None:
        self.lanes[lid] = None
        self.k1[lid] = INF
        self._free.append(lid)


class Lane:
    """Waiting calls in service order: a sorted list consumed from the front.

    An entry is ``call.key + (call,)``, the key being ``(entered / aging − priority, entered,
    seq)``. Calls of a queue mostly arrive in key order, so a new call is appended; a
    higher-priority call, or one going back to its place after a no-answer, is inserted by
    binary search. The first key component of every entry is also kept unboxed in a typed
    array (``k1s``): the binary search reads that contiguous array — a few cache lines —
    instead of ~log₂ n tuples scattered over the heap (each a likely cache miss with 50,000
    callers waiting); tuples are compared only among equal first components.

    Removal is eager: serving the first call advances ``start`` (O(1)); a call leaving from
    the middle (abandon, timeout, a widening window) is found by the same binary search and
    deleted (a memmove). So the front is always a live call: ``item`` (the first call) and
    ``head`` (its entry) are kept on the lane object, and a queue lane also publishes its
    head key in the Acd's :class:`LaneHeads` (``lid``: its index there; -1 for a familiar
    agent's personal lane), where routing compares lane heads.
    """

    __slots__ = ("items", "k1s", "start", "head", "item", "heads", "lid")

    def __init__(self, heads: LaneHeads | None = None, aging: float | None = None) -> None:
        self.items: list[tuple] = []
        self.k1s = array("d")
        self.start = 0
        self.head: tuple | None = None  # the first entry
        self.item: Call | None = None  # its call
        self.heads = heads
        self.lid = -1 if heads is None else heads.new(self, aging)

    def _publish(self) -> None:
        """Copy the head's first key component into the LaneHeads (from ``k1s``: unboxed)."""
        heads = self.heads
        if heads is not None:
            heads.k1[self.lid] = INF if self.head is None else self.k1s[self.start]

    @property
    def live(self) -> int:
        return len(self.items) - self.start

    def push(self, call: Call) -> None:
        call.lane = self
        entry = call.key + (call,)
        items = self.items
        k1 = entry[0]
        if self.start == len(items):  # empty
            items.clear()
            del self.k1s[:]
            self.start = 0
            items.append(entry)
            self.k1s.append(k1)
        # compare the unboxed first components; the tuples (likely cold) only when equal
        elif (last := self.k1s[-1]) < k1 or (last == k1 and items[-1] < entry):
            items.append(entry)
            self.k1s.append(k1)
            return  # behind the head
        elif self.start and ((first := self.k1s[self.start]) > k1 or (
                first == k1 and entry < self.head)):  # type: ignore[operator]
            # before the first call (e.g. back to its place after a no-answer): the slot
            # just consumed in front of it is free, no memmove
            self.start -= 1
            items[self.start] = entry
            self.k1s[self.start] = k1
        else:
            # (a list.insert moves pointers with one memmove; shifting a slice instead would
            # copy it and touch the reference count of every call moved)
            i = self._index(entry)
            items.insert(i, entry)
            self.k1s.insert(i, k1)
            if i != self.start:
                return  # behind the head
        self.head = entry
        self.item = call
        if self.heads is not None:
            self._publish()

    def _index(self, entry: tuple) -> int:
        k1s, k1 = self.k1s, entry[0]
        i = bisect_left(k1s, k1, self.start)
        if i < len(k1s) and k1s[i] == k1:  # equal first components: compare the tuples
            i = bisect_left(self.items, entry, i, bisect_right(k1s, k1, i))
        return i

    def leave(self, call: Call) -> None:
        call.lane = None
        if call is self.item:
            self.drop_head()
        else:
            items = self.items
            i = self._index(call.key + (call,))
            assert items[i][-1] is call
            del items[i]
            del self.k1s[i]

    def drop_head(self) -> None:
        """Consume the first entry (``leave`` of the first call; for a familiar agent's
        personal lane, also an entry whose call has moved on, see ``Acd._dispatch_agent``)."""
        items, start = self.items, self.start
        items[start] = None  # free the entry now, while it is in the cache
        start += 1
        if start > 64 and 2 * start > len(items):
            del items[:start]
            del self.k1s[:start]
            start = 0
        self.start = start
        if start < len(items):
            head = items[start]
            self.head, self.item = head, head[-1]
        else:
            self.head = self.item = None
        if self.heads is not None:
            self._publish()

    def calls(self) -> list[Call]:
        """The calls, in service order."""
        return [e[-1] for e in self.items[self.start:]]


class Ranks:
    """The order of all of a queue's calls, for positions: ``(k1, seq)`` of each call's key,
    sorted, unboxed in two typed arrays.

    A call's key is ``(entered / aging − priority, entered, seq)``; ``seq`` grows with
    ``entered`` (the clock never goes back), so ``(k1, seq)`` sorts exactly as the key. A
    position is a binary search over the contiguous ``k1`` array (then over ``seq`` among
    equal ``k1``): a few cache lines, where a list of key tuples would chase a pointer to a
    separate tuple and float at each step — each a likely cache miss with 50,000 callers
    waiting. Appending (the usual arrival) and serving the first call (``start`` advances)
    are O(1); other changes are a binary search and a memmove.
    """

    __slots__ = ("k1", "seqs", "start")

    def __init__(self) -> None:
        self.k1 = array("d")
        self.seqs = array("q")
        self.start = 0

    def __len__(self) -> int:
        return len(self.seqs) - self.start

    def _index(self, k1: float, seq: int) -> int:
        a = self.k1
        lo = bisect_left(a, k1, self.start)
        if lo < len(a) and a[lo] == k1:
            lo = bisect_left(self.seqs, seq, lo, bisect_right(a, k1, lo))
        return lo

    def add(self, k1: float, seq: int) -> int:
        """Insert; returns the position (1 = first)."""
        a, seqs = self.k1, self.seqs
        n = len(seqs)
        if n == self.start or a[-1] < k1 or (a[-1] == k1 and seqs[-1] < seq):
            a.append(k1)
            seqs.append(seq)
            return n + 1 - self.start
        i = self._index(k1, seq)
        a.insert(i, k1)
        seqs.insert(i, seq)
        return i + 1 - self.start

    def remove(self, k1: float, seq: int) -> int:
        """Remove; returns the position it had."""
        start = self.start
        seqs = self.seqs
        if seqs[start] == seq:  # the usual case: the first in line is served
            start += 1
            if start > 64 and 2 * start > len(seqs):
                del self.k1[:start]
                del seqs[:start]
                start = 0
            self.start = start
            return 1
        i = self._index(k1, seq)
        del self.k1[i]
        del seqs[i]
        return i + 1 - start

    def position(self, k1: float, seq: int) -> int:
        return self._index(k1, seq) + 1 - self.start

    def seqs_in_order(self) -> list[int]:
        return list(self.seqs[self.start:])


class QueueState:
    """The Acd's runtime view of one queue (see the module docstring)."""

    __slots__ = ("config", "name", "strategy", "expert_skill", "aging", "ring_all",
                 "round_robin", "members", "last_offer", "free", "lanes", "main_lanes",
                 "lanes_upto", "ranks", "calls", "staffed", "handle_time")

    def __init__(self, config: QueueConfig, rng: random.Random,
                 heads: LaneHeads | None = None) -> None:
        self.config = config
        self.name = config.name
        self.strategy = config.strategy
        self.expert_skill = config.expert_skill if config.strategy is Strategy.EXPERT else None
        self.aging = config.priority_aging
        self.ring_all = config.strategy is Strategy.RING_ALL
        self.round_robin = config.strategy is Strategy.ROUND_ROBIN
        self.members: dict[str, Agent] = {}
        self.last_offer: dict[str, int] = {}  # round robin: agent id -> offer sequence
        self.free: FreeAgents | RandomFreeAgents
        if config.strategy is Strategy.RANDOM:
            self.free = RandomFreeAgents(rng)
        else:
            self.free = FreeAgents(
                agent_key(config.strategy, expert_skill=self.expert_skill,
                          last_offer=self.last_offer)
            )
        # ordinary queues: one lane; expert queues: lanes[threshold] for thresholds 0-10
        self.lanes: list[Lane] = [Lane(heads, self.aging) for _ in range(
            1 if self.expert_skill is None else MAX_LEVEL + 1)]
        self.main_lanes: list[Lane] = self.lanes[:1]
        # expert: the lanes an agent of each level may take from (built once, not per event)
        self.lanes_upto: list[list[Lane]] = [self.lanes[:level + 1] for level in
                                              range(len(self.lanes))]
        self.ranks = Ranks()  # the queue's calls in order, for positions
        self.calls: dict[str, Call] = {}
        self.staffed = 0  # members logged in
        self.handle_time = config.announcements.initial_handle_time

    def lanes_for(self, agent: Agent) -> list[Lane]:
        """Lanes whose calls this member may take (expert: thresholds up to its level)."""
        if self.expert_skill is None:
            return self.main_lanes
        return self.lanes_upto[agent.skills.get(self.expert_skill, 0)]

    @property
    def waiting(self) -> int:
        """Calls in this queue's lanes (not those in a familiar agent's personal lane)."""
        return sum(lane.live for lane in self.lanes)

    def add_call(self, call: Call) -> int:
        """Put the call in the queue's order; returns its position (1 = next)."""
        self.calls[call.call_id] = call
        return self.ranks.add(call.key[0], call.seq)

    def remove_call(self, call: Call) -> int:
        """Take the call out of the queue's order; returns the position it had."""
        del self.calls[call.call_id]
        return self.ranks.remove(call.key[0], call.seq)

    def position(self, call: Call) -> int:
        return self.ranks.position(call.key[0], call.seq)

    def order(self) -> list[tuple]:
        """The keys of the queue's calls, in order (for checks and displays)."""
        by_seq = {c.seq: c.key for c in self.calls.values()}
        return [by_seq[s] for s in self.ranks.seqs_in_order()]

    def longest_waiting(self) -> Call | None:
        """The call that entered first among those on the line (not callback places)."""
        for call in self.calls.values():
            if not call.callback:
                return call
        return None

    def est_wait(self, position: int) -> float | None:
        if self.staffed == 0:
            return None
        return position * self.handle_time / self.staffed

    def note_handled(self, seconds: float) -> None:
        """Feed a finished call's handle time into the running average (EWMA, α = 0.1)."""
        self.handle_time += 0.1 * (seconds - self.handle_time)

