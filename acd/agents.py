"""Agents: who they are, what they chose (status) and what the engine is doing with them (state).

An agent's **status** is the agent's own choice, set from the desktop:

- ``logged_out``;
- ``ready`` — give me calls;
- ``not_ready`` with a reason: ``busy`` (示忙), ``rest`` (休息, time-limited: see
  :class:`ReasonLimit`), or one the core sets itself: ``missed`` (an offer rang out unanswered)
  and ``unregistered`` (the seat's phone went away, see ``Acd.reconcile``).

The **state** is what the engine is doing with the agent, independent of the status:
``idle``, ``reserved`` (a call is ringing the seat), ``on_call``, ``on_hold``, ``wrap_up``.
An agent who logs out during a call stays ``on_call`` until it ends. An agent is *available*
(may be offered a call) only when ready **and** idle.

Both are changed only along :data:`STATUS_TRANSITIONS` / :data:`STATE_TRANSITIONS`; anything
else raises :class:`TransitionError`. The :class:`~acd.matcher.Acd` is the only writer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acd.queues import Call, Lane, QueueState

MIN_LEVEL = 1
MAX_LEVEL = 10

# Not-ready reasons. Agents may use any string; these are the ones the core knows.
BUSY = "busy"  # 示忙
REST = "rest"  # 休息
MISSED = "missed"  # set by the core: an offer rang out unanswered
UNREGISTERED = "unregistered"  # set by reconcile: the seat's phone is not registered

REASON_LABELS = {BUSY: "示忙", REST: "休息", MISSED: "未接", UNREGISTERED: "话机离线"}


class Status(enum.StrEnum):
    """What the agent chose."""

    LOGGED_OUT = "logged_out"
    READY = "ready"
    NOT_READY = "not_ready"


class State(enum.StrEnum):
    """What the engine is doing with the agent."""

    IDLE = "idle"
    RESERVED = "reserved"  # ringing the seat for one call
    ON_CALL = "on_call"
    ON_HOLD = "on_hold"
    WRAP_UP = "wrap_up"


STATUS_TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.LOGGED_OUT: frozenset({Status.READY, Status.NOT_READY}),
    Status.READY: frozenset({Status.NOT_READY, Status.LOGGED_OUT}),
    Status.NOT_READY: frozenset({Status.READY, Status.NOT_READY, Status.LOGGED_OUT}),
}

STATE_TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.RESERVED}),
    State.RESERVED: frozenset({State.IDLE, State.ON_CALL}),  # no answer / withdrawn; answered
    State.ON_CALL: frozenset({State.ON_HOLD, State.WRAP_UP, State.IDLE}),
    State.ON_HOLD: frozenset({State.ON_CALL, State.WRAP_UP, State.IDLE}),
    State.WRAP_UP: frozenset({State.IDLE}),
}

CONTACT_STATES = frozenset({State.RESERVED, State.ON_CALL, State.ON_HOLD, State.WRAP_UP})

# Enum members bound once: ``Status.READY`` is a descriptor lookup (~0.1 µs) in CPython 3.11.
_READY = Status.READY
_LOGGED_OUT = Status.LOGGED_OUT
_NOT_READY = Status.NOT_READY
_IDLE = State.IDLE


class TransitionError(ValueError):
    """An agent status or state change that the transition tables do not allow."""


@dataclass(frozen=True, slots=True)
class ReasonLimit:
    """How long an agent may stay not-ready for one reason, and what happens then.

    ``then``: ``"alert"`` (only report it), ``"ready"`` (force ready) or ``"logout"``.
    """

    seconds: float
    then: str = "alert"

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError(f"reason limit must be positive, got {self.seconds}")
        if self.then not in ("alert", "ready", "logout"):
            raise ValueError(f"reason limit 'then' must be alert/ready/logout, got {self.then!r}")


@dataclass(slots=True, eq=False)
class Agent:
    """An agent: identity and skills (given), status/state and counters (kept by the Acd).

    ``skills`` maps a skill name to a level 1–10 (10 = expert). ``order`` ranks the agent for
    the linear strategy (lower first; agents without one follow in the order they were added).
    """

    id: str
    name: str = ""
    skills: dict[str, int] = field(default_factory=dict)
    seat: str = ""
    order: int | None = None

    # status and state (read-only outside the Acd)
    status: Status = field(default=Status.LOGGED_OUT, init=False)
    reason: str | None = field(default=None, init=False)
    status_since: float = field(default=0.0, init=False)
    state: State = field(default=State.IDLE, init=False)
    state_since: float = field(default=0.0, init=False)
    call: Call | None = field(default=None, init=False, repr=False)  # reserved for / on

    # counters
    calls_handled: int = field(default=0, init=False)
    talk_time: float = field(default=0.0, init=False)
    hold_time: float = field(default=0.0, init=False)
    wrap_time: float = field(default=0.0, init=False)
    offers: int = field(default=0, init=False)
    no_answers: int = field(default=0, init=False)
    last_call_end: float | None = field(default=None, init=False)
    idle_since: float = field(default=0.0, init=False)  # end of last wrap-up, or login

    # index bookkeeping, owned by the Acd
    seq: int = field(default=0, init=False, repr=False)  # add order, unique
    queues: list[QueueState] = field(default_factory=list, init=False, repr=False)
    indexed: bool = field(default=False, init=False, repr=False)  # in free-agent indexes
    index_gen: int = field(default=0, init=False, repr=False)  # free-index entries
    status_gen: int = field(default=0, init=False, repr=False)
    wrap_gen: int = field(default=0, init=False, repr=False)
    personal: Lane | None = field(default=None, init=False, repr=False)  # familiar calls
    lane_ids: list[int] = field(default_factory=list, init=False, repr=False)  # see LaneHeads
    saved_status: tuple[Status, str | None] | None = field(default=None, init=False, repr=False)
    last_wrap: dict[str, Any] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("agent id must not be empty")
        for skill, level in self.skills.items():
            if not (isinstance(level, int) and MIN_LEVEL <= level <= MAX_LEVEL):
                raise ValueError(
                    f"agent {self.id}: skill {skill!r} level must be 1-10, got {level!r}"
                )

    @property
    def available(self) -> bool:
        """Ready and idle: may be offered a call."""
        return self.status is _READY and self.state is _IDLE

    @property
    def logged_in(self) -> bool:
        return self.status is not _LOGGED_OUT

    def level(self, skill: str) -> int:
        """The agent's level in ``skill`` (0 if the agent lacks it)."""
        return self.skills.get(skill, 0)

    def qualifies(self, required: dict[str, int]) -> bool:
        """Has every required skill at or above its minimum level."""
        skills = self.skills
        return all(skills.get(s, 0) >= lvl for s, lvl in required.items())

    def change_status(self, status: Status, reason: str | None, now: float) -> None:
        """Move to ``status`` (validated); not-ready needs a reason, the others take none."""
        if status not in STATUS_TRANSITIONS[self.status]:
            allowed = ", ".join(sorted(STATUS_TRANSITIONS[self.status]))
            raise TransitionError(
                f"agent {self.id}: status {self.status} -> {status} not allowed "
                f"(from {self.status}: {allowed})"
            )
        if status is _NOT_READY:
            if not reason:
                raise TransitionError(f"agent {self.id}: not_ready needs a reason")
        elif reason is not None:
            raise TransitionError(f"agent {self.id}: status {status} takes no reason")
        self.status = status
        self.reason = reason
        self.status_since = now
        self.status_gen += 1

    def change_state(self, state: State, now: float) -> None:
        """Move to ``state`` (validated)."""
        if state not in STATE_TRANSITIONS[self.state]:
            allowed = ", ".join(sorted(STATE_TRANSITIONS[self.state]))
            raise TransitionError(
                f"agent {self.id}: state {self.state} -> {state} not allowed "
                f"(from {self.state}: {allowed})"
            )
        self.state = state
        self.state_since = now
