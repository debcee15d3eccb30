"""What the ACD core emits: queue events for the log, actions for the glue.

Every :class:`~acd.matcher.Acd` method returns a list of *actions* (things the asyncio glue must
do to the outside world: ring a seat, stop ringing, bridge, play an announcement, send the
caller to another flow) and appends :class:`QueueEvent` records to ``Acd.events`` (what
happened, for the durable queue log, the bus and :mod:`acd.stats`). Both are plain values.

Queue event kinds and the keys of their ``data`` (times in seconds; ``entered`` is when the
call entered this queue, which is how a call is attributed to a reporting interval):

===============  =========================================================================
ENTER            entered, position, priority, caller, familiar, transfer_from
OFFER            entered, ring_timeout, callback                       (agent_id set)
RING_NO_ANSWER   entered, ring, cause ("timeout" | "declined")         (agent_id set)
CONNECT          entered, wait, ring, callback                         (agent_id set)
ABANDON          entered, wait, position, entry_position, stage ("waiting" | "ringing")
TIMEOUT          entered, wait, position, entry_position, destination
EXIT             entered, wait, reason, destination, at_entry (True: never entered)
CALLBACK         entered, wait, position   (caller left the line, keeps the place)
COMPLETE_CALLER  entered, wait, talk, hold, callback  (caller hung up; agent_id set)
COMPLETE_AGENT   entered, wait, talk, hold, callback, cause  (agent hung up or lost leg)
TRANSFER         entered, wait, target, talk, hold  (agent_id set if it was connected)
AGENT_STATUS     status, reason, previous, previous_reason, cause   (queue, call_id None)
AGENT_STATE      state, previous, cause; ``wrap`` (seconds) when a wrap-up ends
===============  =========================================================================

A call's life in one queue (a *session*) starts with ENTER and ends with exactly one of
CONNECT→COMPLETE_*/TRANSFER, ABANDON, TIMEOUT, EXIT or TRANSFER. A transfer into a queue (or
to an agent) starts a new session with its own ENTER.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class EventKind(enum.StrEnum):
    """Kinds of :class:`QueueEvent` (names follow Asterisk's queue_log where one exists)."""

    ENTER = "ENTER"
    OFFER = "OFFER"
    RING_NO_ANSWER = "RING_NO_ANSWER"
    CONNECT = "CONNECT"
    ABANDON = "ABANDON"
    TIMEOUT = "TIMEOUT"
    EXIT = "EXIT"
    CALLBACK = "CALLBACK"
    COMPLETE_CALLER = "COMPLETE_CALLER"
    COMPLETE_AGENT = "COMPLETE_AGENT"
    TRANSFER = "TRANSFER"
    AGENT_STATUS = "AGENT_STATUS"
    AGENT_STATE = "AGENT_STATE"


@dataclass(slots=True)
class QueueEvent:
    """One line of the queue log."""

    time: float
    kind: EventKind
    queue: str | None
    call_id: str | None
    agent_id: str | None
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the kind as its string value)."""
        return {
            "time": self.time,
            "kind": self.kind.value,
            "queue": self.queue,
            "call_id": self.call_id,
            "agent_id": self.agent_id,
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QueueEvent:
        return cls(
            float(d["time"]),
            EventKind(d["kind"]),
            d.get("queue"),
            d.get("call_id"),
            d.get("agent_id"),
            dict(d.get("data") or {}),
        )


# ---------------------------------------------------------------------------------- actions


class Action:
    """Base of everything the core asks the glue to do. Actions are values: do not mutate."""

    __slots__ = ()


@dataclass(slots=True)
class Queued(Action):
    """The call is in the queue at ``position`` (1 = next); ``est_wait`` seconds, or None."""

    call_id: str
    queue: str
    position: int
    est_wait: float | None


@dataclass(slots=True)
class Redirect(Action):
    """The call leaves the queue without an agent: send it to ``destination``.

    ``reason`` is ``"full"`` (max_length reached; the call never entered) or ``"no_agent"``
    (no member logged in). ``destination`` is a flow id or queue name from the queue config, or
    None when the config names none (the flow continues with its own default).
    """

    call_id: str
    queue: str
    reason: str
    destination: str | None


@dataclass(slots=True)
class Timeout(Action):
    """The call waited ``max_wait``: take it out of the queue and send it to ``destination``."""

    call_id: str
    queue: str
    destination: str | None


@dataclass(slots=True)
class Offer(Action):
    """The agent is reserved for this call: ring ``seat``; report back with ``offer_result``.

    ``callback`` True means the caller is not on the line: once the seat answers, the glue
    dials the caller back from it.
    """

    call_id: str
    agent_id: str
    queue: str
    seat: str
    ring_timeout: float
    callback: bool = False


@dataclass(slots=True)
class StopRinging(Action):
    """Stop ringing ``agent_id``'s seat for this call (and drop the seat leg if it answered).

    ``reason``: ``"answered_elsewhere"`` (ring-all), ``"abandon"``, ``"no_answer"``,
    ``"cancelled"`` (the agent left ready / logged out / reconcile) or ``"stale"`` (the seat
    answered an offer the core had already withdrawn).
    """

    call_id: str
    agent_id: str
    reason: str


@dataclass(slots=True)
class Connect(Action):
    """Bridge the caller with the agent's seat (for a callback: dial the caller from it)."""

    call_id: str
    agent_id: str
    queue: str
    seat: str
    callback: bool = False


@dataclass(slots=True)
class Announce(Action):
    """Tell the waiting caller their position and estimated wait (seconds, or None)."""

    call_id: str
    queue: str
    position: int
    est_wait: float | None


@dataclass(slots=True)
class OfferCallback(Action):
    """Offer the waiting caller a callback: "press ``key`` to be called back"."""

    call_id: str
    queue: str
    key: str


@dataclass(slots=True)
class CallbackAccepted(Action):
    """The caller may hang up; the callback keeps place ``position`` in the queue."""

    call_id: str
    queue: str
    position: int


@dataclass(slots=True)
class TransferFailed(Action):
    """A transfer could not start (``agent_unavailable``, ``full``, ``no_agent``); the call
    stays where it was."""

    call_id: str
    target: str
    reason: str


@dataclass(slots=True)
class StatusLimitExceeded(Action):
    """An agent stayed not-ready for ``reason`` longer than its limit (e.g. 休息 rest).

    ``then`` says what the core did about it: ``"alert"`` (nothing: tell the supervisor),
    ``"ready"`` (forced back to ready) or ``"logout"`` (forced out).
    """

    agent_id: str
    reason: str
    since: float
    limit: float
    then: str


@dataclass(slots=True)
class DropLeg(Action):
    """Hang up a leg on the agent's seat that belongs to no call the core knows of."""

    agent_id: str
    call_id: str


@dataclass(slots=True)
class Fixed(Action):
    """What :meth:`~acd.matcher.Acd.reconcile` corrected, for the log and the supervisor."""

    agent_id: str
    call_id: str | None
    what: str
