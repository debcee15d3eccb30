"""Routing strategies: which free agent a queue's call goes to, and in which order calls go.

A strategy is an *ordering* of a queue's free agents, kept in that queue's free-agent index
(:class:`FreeAgents`, a :class:`SortedFront` keyed by the strategy; :class:`RandomFreeAgents`
for random).
Keys only change while an agent is busy, so the key computed when the agent becomes free stays
right until it is taken. Smaller key = offered first:

==================  ====================================================================
longest_idle        (idle_since, add order) — idle since the end of the last wrap-up, or
                    login (Asterisk ``leastrecent``, FreeSWITCH ``longest-idle-agent``)
round_robin         (last offer from this queue, add order) — agents take turns; one who
                    was busy at their turn is first when free (least recently offered)
fewest_calls        (calls handled, idle_since, add order)
least_talk_time     (talk seconds, idle_since, add order)
linear              (order, add order) — top-down: the first listed free agent always
random              uniform among the free members (seeded ``random.Random`` passed in)
ring_all            every free member rings; the first to answer wins
expert              (−level in the queue's expert skill, idle_since, add order), and a call
                    accepts only agents at or above its *threshold* level, which starts at
                    ``start_level`` and drops by one every ``step_seconds`` of waiting down
                    to ``min_level`` (best level first, widening as the wait grows)
==================  ====================================================================

Two overlays apply to every strategy: the *familiar agent* (the agent who last served the
caller is tried first for ``try_first`` seconds, see :mod:`acd.matcher`) and *caller priority
with aging*: calls are ordered by effective priority ``priority + wait / aging`` (higher
first), then by arrival. Within one queue all calls age at the same rate, so that order equals
the order of the static key ``entered / aging − priority`` (:func:`call_key`) and needs no
re-sorting as time passes: a normal call that waited ``aging × Δp`` seconds ties with a new
call of priority ``+Δp``, which is why VIP calls cannot starve the others.
"""

from __future__ import annotations

import enum
import random
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from math import floor as _floor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acd.agents import Agent


class Strategy(enum.StrEnum):
    LONGEST_IDLE = "longest_idle"
    ROUND_ROBIN = "round_robin"
    FEWEST_CALLS = "fewest_calls"
    LEAST_TALK_TIME = "least_talk_time"
    LINEAR = "linear"
    RANDOM = "random"
    RING_ALL = "ring_all"
    EXPERT = "expert"


AgentKey = Callable[["Agent"], tuple]


def agent_key(strategy: Strategy, *, expert_skill: str | None = None,
              last_offer: dict[str, int] | None = None) -> AgentKey:
    """The key function ordering a queue's free agents under ``strategy`` (smaller first).

    The agent's unique add order is appended by the index, so keys never tie.
    """
    if strategy is Strategy.LONGEST_IDLE:
        return lambda a: (a.idle_since,)
    if strategy is Strategy.ROUND_ROBIN:
        if last_offer is None:
            raise ValueError("round robin needs the queue's last-offer table")
        return lambda a: (last_offer.get(a.id, 0),)
    if strategy is Strategy.FEWEST_CALLS:
        return lambda a: (a.calls_handled, a.idle_since)
    if strategy is Strategy.LEAST_TALK_TIME:
        return lambda a: (a.talk_time, a.idle_since)
    if strategy is Strategy.LINEAR or strategy is Strategy.RING_ALL:
        return lambda a: (a.order if a.order is not None else a.seq,)
    if strategy is Strategy.EXPERT:
        if not expert_skill:
            raise ValueError("expert strategy needs a skill")
        skill = expert_skill
        return lambda a: (-a.skills.get(skill, 0), a.idle_since)
    raise ValueError(f"no key for strategy {strategy}")


class SortedFront:
    """Entries kept sorted and consumed from the front, with lazy deletion.

    An entry is ``(key..., gen, item)`` where ``item.index_gen`` equals ``gen`` while the entry
    is live; bumping ``item.index_gen`` kills every entry of the item at once. ``start``
    indexes the first entry not yet consumed. Items mostly arrive in key order (new calls of a
    queue, agents freed in time order), so inserting is usually an append; otherwise a binary
    search and a pointer shift (memmove). Stale entries are skipped at the front, and the list
    is compacted when more than half of it is stale.

    Built for tens of thousands of entries, most of them cold in the CPU cache:

    - the first key component of every entry is also kept unboxed in a typed array
      (``k1s``, parallel to ``items``). An insertion in the middle (a caller going back to
      their place, a widening window, an agent with a better key) binary-searches that
      contiguous array — a few cache lines — instead of comparing ~log₂ n tuples scattered
      over the heap, each a pointer chase to a separate tuple and float object; the tuples
      are compared only among entries whose first component is equal;
    - the first live entry is kept on the index object itself (``head``: the entry,
      ``item``: its item, or None): routing compares the heads of several lanes and takes
      one without walking a list or reading the items' generations. The head is updated when
      an entry sorts before it and, when its item leaves, by scanning forward to the next
      live entry (each stale entry is skipped once).

    insert: O(1) append / O(log n) + shift; head: O(1); removal: O(1) amortised.
    """

    __slots__ = ("items", "k1s", "start", "live", "head", "item")

    def __init__(self) -> None:
        self.items: list[tuple] = []
        self.k1s = array("d")
        self.start = 0
        self.live = 0
        self.head: tuple | None = None  # the first live entry
        self.item = None  # its item

    def insert(self, entry: tuple) -> None:
        items = self.items
        k1 = entry[0]
        if self.start == len(items):
            items.clear()
            del self.k1s[:]
            self.start = 0
            items.append(entry)
            self.k1s.append(k1)
        elif self.k1s[-1] < k1 or (self.k1s[-1] == k1 and items[-1] < entry):
            items.append(entry)
            self.k1s.append(k1)
        else:
            k1s = self.k1s
            i = bisect_left(k1s, k1, self.start)
            if i < len(k1s) and k1s[i] == k1:  # equal first components: compare the tuples
                i = bisect_left(items, entry, i, bisect_right(k1s, k1, i))
            items.insert(i, entry)
            k1s.insert(i, k1)
        self.live += 1
        head = self.head
        if head is None or entry < head:
            self.head = entry
            self.item = entry[-1]

    def removed(self, item: object) -> None:
        """``item``'s entry went stale (its ``index_gen`` was bumped)."""
        self.live -= 1
        if len(self.items) - self.start > 2 * self.live + 32:
            live = [e for e in self.items[self.start:] if e[-2] == e[-1].index_gen]
            self.items = live
            self.k1s = array("d", [e[0] for e in live])
            self.start = 0
        if item is self.item:
            self._next_head()

    def _next_head(self) -> None:
        items = self.items
        i = self.start
        n = len(items)
        while i < n:
            e = items[i]
            if e[-2] == e[-1].index_gen:
                self.head = e
                self.item = e[-1]
                break
            items[i] = None  # type: ignore[call-overload]  # consumed: free it while cached
            i += 1
        else:
            self.head = self.item = None
        if i > 64 and 2 * i > n:
            del items[:i]
            del self.k1s[:i]
            i = 0
        self.start = i

    def live_entries(self) -> list[tuple]:
        return [e for e in self.items[self.start:] if e[-2] == e[-1].index_gen]


class FreeAgents(SortedFront):
    """A queue's free agents ordered by the strategy key (a :class:`SortedFront`).

    An entry is ``key + (agent.seq, agent.index_gen, agent)``; the Acd bumps the agent's
    ``index_gen`` when it stops being free, which retires its entries in all its queues.
    """

    __slots__ = ("_key",)

    def __init__(self, key: AgentKey) -> None:
        super().__init__()
        self._key = key

    def add(self, agent: Agent) -> None:
        self.insert(self._key(agent) + (agent.seq, agent.index_gen, agent))

    def discard(self, agent: Agent) -> None:
        """The agent stopped being free (its ``index_gen`` was already bumped)."""
        self.removed(agent)

    def best(self) -> Agent | None:
        return self.item

    def take_all(self) -> list[Agent]:
        """Every free agent, best first (for ring-all). The caller reserves them all (each
        then reports its :meth:`discard`)."""
        agents = [e[-1] for e in self.live_entries()]
        self.items = []
        self.k1s = array("d")
        self.start = 0
        self.head = self.item = None
        return agents

    def __len__(self) -> int:
        return self.live


class RandomFreeAgents:
    """A queue's free agents for the random strategy: uniform choice in O(1).

    A list plus a position map (swap-with-last removal): add, discard and best are O(1).
    """

    __slots__ = ("_agents", "_pos", "_rng")

    def __init__(self, rng: random.Random) -> None:
        self._agents: list[Agent] = []
        self._pos: dict[str, int] = {}
        self._rng = rng

    @property
    def live(self) -> int:
        return len(self._agents)

    def add(self, agent: Agent) -> None:
        self._pos[agent.id] = len(self._agents)
        self._agents.append(agent)

    def discard(self, agent: Agent) -> None:
        i = self._pos.pop(agent.id)
        last = self._agents.pop()
        if last is not agent:
            self._agents[i] = last
            self._pos[last.id] = i

    def best(self) -> Agent | None:
        if not self._agents:
            return None
        return self._agents[self._rng.randrange(len(self._agents))]

    def take_all(self) -> list[Agent]:
        return list(self._agents)

    def __len__(self) -> int:
        return len(self._agents)


# Effective priorities closer than this count as equal (the earlier caller then goes first).
# It absorbs floating-point rounding: without it, two callers whose priority + wait/aging tie
# exactly could be ordered either way. 10⁻⁶ of a level is 60 µs of waiting at aging = 60 s.
PRIORITY_EPSILON = 1e-6


def call_key(priority: int, entered: float, seq: int, aging: float | None) -> tuple:
    """Static ordering key of a waiting call within its queue (smaller = served first).

    With aging, ``entered / aging − priority`` orders calls exactly as the effective priority
    ``priority + (now − entered) / aging`` does at any ``now`` (the ``now / aging`` term is
    common to all calls of the queue). It is rounded to a multiple of
    :data:`PRIORITY_EPSILON` (``floor(x·10⁶ + ½)``: the same grid as ``round(x, 6)`` at a
    fifth of its cost), so that exact ties stay ties; ties go to the earlier arrival, then
    to ``seq``.
    """
    if aging:
        first = _floor((entered / aging - priority) * _PER_EPSILON + 0.5) / _PER_EPSILON
    else:
        first = -float(priority)
    return (first, entered, seq)


_PER_EPSILON = 1e6  # 1 / PRIORITY_EPSILON


def effective_priority(priority: int, entered: float, now: float, aging: float | None) -> float:
    """``priority + wait / aging`` (just ``priority`` without aging)."""
    if aging:
        return priority + (now - entered) / aging
    return float(priority)


def expert_threshold(waited: float, start_level: int, step_seconds: float, min_level: int) -> int:
    """The lowest agent level a call accepts after waiting ``waited`` seconds."""
    steps = int(waited // step_seconds) if step_seconds > 0 else start_level
    return max(min_level, start_level - steps)
