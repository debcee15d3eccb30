"""The contact centre: the ACD core driven by the engine's loop, seats on the board's stations.

:class:`ContactCenter` owns an :class:`acd.matcher.Acd` built from the queue and agent
definitions (:mod:`hotline.queue_config`) and carries out the actions it returns:

- ``Offer`` → ring the agent's seat (a station line of the simulated board); the agent's far
  end going off-hook is reported with ``offer_result(answered=True)``;
- ``Connect`` → the waiting caller hears the agent's id (报工号, "工号幺零零幺为您服务", read
  digit by digit by :mod:`ivr.speech.readout`), then caller and seat are bridged
  (:meth:`drivers.channel.Channel.bridge`) until either side hangs up → ``call_ended``;
- ``StopRinging`` → the seat's leg is dropped (ring timeout, abandon, ring-all elsewhere…);
- ``Timeout`` / ``Redirect`` → the flow's transfer step ends with ``timeout`` / ``no_agent`` /
  ``full`` and the flow goes on (voice message);
- ``Announce`` → the caller's position is read out between the waiting prompts.

Queued callback (``callback: {offer_after, key}`` in the queue file): after ``offer_after``
seconds the waiting caller hears "如需回电请按一" in every round; pressing the key asks the core
to ``request_callback`` (the callback keeps the caller's place, never ahead of earlier
callers), the caller hears that the callback is registered and the transfer step ends with
``callback``. When the core offers that place to an agent (``Offer(callback=True)``) the seat
rings with the caller's number; once the agent answers (``Connect(callback=True)``) the
caller is dialled on a free trunk (:meth:`SimBoard.dial`), hears 报工号 on answer and is
bridged with the agent; no answer within :data:`CALLBACK_RING_SECONDS` ends the callback. The
result is published as ``queue.callback_result`` (``result``: ``answered`` / ``no_answer`` /
``failed``, ``number``, ``line``), which the queue log stores as ``CALLBACK_RESULT``.

When the agent hangs up first and the queue has a ``survey`` flow, the caller is moved to it
(满意度: "满意请按一…"; the flow stores the score with ``surveys.store``) before the transfer
step returns; the survey flow ends the call.

While queued, a caller hears the queue's waiting prompt and a short synthesized melody in a
loop. The core's timers are driven by one loop timer set to ``Acd.next_deadline()`` after
every batch of actions (no polling). Queue events are drained after every batch and
published on the bus as ``queue.<kind>`` (``queue.enter``, ``queue.offer``,
``queue.ring_no_answer``, ``queue.connect``, ``queue.abandon``, ``queue.agent_status``…);
``queue.screen_pop`` carries what the flow handed over (IVR path, keys, variables) for the
seat that rings. The last :data:`RECENT_EVENTS` queue events stay in ``recent_events`` (the
live log, in the core's clock); the durable log is :mod:`hotline.services.queue_log`.

State reconciliation: a seat's phone going out of service (the board's ``line.service``
notice, :meth:`SimBoard.set_in_service`) makes the contact centre call
:meth:`Acd.reconcile` for the agent at that seat with ``seat_registered=False``: the agent is
set not ready (``unregistered``) and a call ringing there is withdrawn and re-offered, the
caller keeping their place; back in service, the agent's status is restored. Every
:data:`RECONCILE_SECONDS` a loop timer (not a polling loop of its own: one ``call_later``)
audits the agents the core believes are reserved or on a call against the seat legs that
still exist, and frees an agent whose leg has vanished. Each fix is logged
(``queue.reconciled``) and published on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from acd.agents import UNREGISTERED, Agent, Status, TransitionError
from acd.events import (
    Action,
    Announce,
    CallbackAccepted,
    Connect,
    DropLeg,
    Fixed,
    Offer,
    OfferCallback,
    Queued,
    QueueEvent,
    Redirect,
    StopRinging,
    Timeout,
    TransferFailed,
)
from acd.matcher import Acd
from drivers.channel import Channel, Playable, Reason, Result
from drivers.clock import DeadlineTimer
from drivers.media.tones import sine
from hotline.bus import Bus
from hotline.queue_config import ContactCenterDefinition, QueueDefinition
from hotline.seats import SeatDirectory, check_seat, is_sip_seat
from ivr.ports import Speech, TransferResult
from ivr.speech.readout import say

log = structlog.get_logger(__name__)

DEFAULT_AGENT_ANNOUNCEMENT = "工号{agent_id}为您服务。"
RECENT_EVENTS = 10_000
CALLBACK_RING_SECONDS = 30.0  # how long a called-back caller's phone rings
CALLBACK_CONFIRM = "已为您登记回电，我们将按您排队的先后顺序给您回电，请挂机。"
KEY_WORDS = {
    **dict(zip("0123456789", "零一二三四五六七八九", strict=True)),
    "*": "星号",
    "#": "井号",
}
MUSIC_PROMPT_ID = "queue.music"
RECONCILE_SECONDS = 30.0  # the audit of agents' states against the seats' legs
CONSULT_REASON = "consult"  # the not-ready reason of an agent being consulted
CONSULT_RING_SECONDS = 30.0  # how long a consulted agent's seat rings
BUSY_STATES = ("reserved", "on_call", "on_hold")


def hold_music(seconds_per_note: float = 0.4, dbm0: float = -24.0) -> Playable:
    """A quiet pentatonic phrase (about 6 s) played between waiting prompts."""
    notes = [523, 587, 659, 784, 880, 784, 659, 587, 523, 659, 784, 659, 587, 523, 0]
    ms = seconds_per_note * 1000
    parts = [sine(f, ms, dbm0) if f else np.zeros(int(ms * 8), np.int16) for f in notes]
    return Playable(
        np.concatenate(parts), text="（等待音乐）", prompt_id=MUSIC_PROMPT_ID, kind="tone"
    )


@dataclass(eq=False)
class _Waiting:
    """A caller handed to a queue by a flow's transfer step."""

    channel: Channel
    queue: QueueDefinition
    decided: asyncio.Future[Any]  # TransferResult, or (agent_id, seat leg) on Connect
    announcements: deque[str] = field(default_factory=deque)
    data: dict[str, Any] = field(default_factory=dict)  # what the flow hands to the agent
    agent_id: str | None = None  # set once connected
    callback_key: str | None = None  # set once the core offers a callback
    held: bool = False  # the agent put the caller on hold (music; the seat hears silence)
    transfer_to: str | None = None  # the agent transferred the caller (queue or agent id)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # an agent's command arrived


@dataclass(eq=False)
class _Consult:
    """An agent consulting another agent while their caller is on hold."""

    call_id: str
    agent_id: str  # who consults
    target: str  # the agent consulted
    leg: Channel  # the consulted agent's seat leg
    previous: tuple[Any, str | None]  # the consulted agent's status and reason before
    answered: asyncio.Future[bool]  # True: the consulted agent picked up; False: gone
    unsubscribe: Callable[[], None]
    task: asyncio.Task[Any] | None = None


@dataclass(eq=False)
class _Callback:
    """A caller who left the line to be called back; their place is kept by the core."""

    call_id: str
    number: str
    queue: str
    data: dict[str, Any] = field(default_factory=dict)
    agent_id: str | None = None  # set once an agent answered the callback offer


class CallControlError(RuntimeError):
    """An agent's call command that does not fit the call's state (not on a call, not held…)."""


class ContactCenter:
    """Queues and seats of one engine (see the module docstring)."""

    def __init__(
        self,
        definition: ContactCenterDefinition,
        board: Any,
        speech: Speech,
        bus: Bus,
        *,
        agent_announcement: str = DEFAULT_AGENT_ANNOUNCEMENT,
        rng: random.Random | None = None,
        run_flow: Callable[[Channel, str], Awaitable[Any]] | None = None,
    ) -> None:
        self.definition = definition
        self.queues = definition.queues
        self.board = board
        self.seats = SeatDirectory(board)  # station lines; SIP seats once the endpoint is up
        self.speech = speech
        self.bus = bus
        self.agent_announcement = agent_announcement
        self.run_flow = run_flow  # runs a flow (the survey) on a caller's channel
        self.acd = Acd(rng=rng or random.Random(0))
        for queue in definition.queues.values():
            self.acd.add_queue(queue.config)
        for seated in definition.agents.values():
            self.acd.add_agent(seated.to_agent())
        self.music = hold_music()
        self._waiting: dict[str, _Waiting] = {}
        self._legs: dict[tuple[str, str], Channel] = {}  # (call id, agent id) -> seat leg
        self._callbacks: dict[str, _Callback] = {}  # call id -> caller waiting for a callback
        self._pending: deque[Action] = deque()
        self._applying = False
        self._timer = DeadlineTimer(self._on_timer)  # at the core's next deadline
        self._last_now = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = False
        self._audit: asyncio.TimerHandle | None = None
        self.recent_events: deque[QueueEvent] = deque(maxlen=RECENT_EVENTS)
        self._unsubscribe_service = bus.subscribe("line.service", self._on_line_service)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, *, login: Iterable[str] = ()) -> None:
        """Bind to the running loop and log in ``login`` (agent ids), ready."""
        self._loop = asyncio.get_running_loop()
        self._last_now = self._loop.time()
        for agent_id in login:
            self.login(agent_id)
        self._audit = self._loop.call_later(RECONCILE_SECONDS, self._on_audit)

    async def stop(self) -> None:
        self._stopped = True
        if callable(self._unsubscribe_service):
            self._unsubscribe_service()
        if self._audit is not None:
            self._audit.cancel()
            self._audit = None
        self._timer.cancel()
        for leg in list(self._legs.values()):
            await leg.hangup()
        self._legs.clear()
        for task in list(self._tasks):
            task.cancel()

    def prompt_texts(self) -> dict[str, str]:
        """Prompt id → text of what waiting callers hear, for warming the prompt cache."""
        texts = {f"queue.{q.name}.waiting": q.waiting_prompt for q in self.queues.values()}
        for q in self.queues.values():
            if q.config.callback.offer_after is not None:
                texts[f"queue.{q.name}.callback"] = _callback_offer_text(q.config.callback.key)
        texts["queue.callback_confirm"] = CALLBACK_CONFIRM
        return texts

    # --- agents (the Python API behind the engine's agent control) ----------------------------
    def agent(self, agent_id: str) -> Agent:
        agent = self.acd.agents.get(agent_id)
        if agent is None:
            raise KeyError(f"no agent {agent_id!r} (known: {', '.join(sorted(self.acd.agents))})")
        return agent

    def login(
        self,
        agent_id: str,
        *,
        ready: bool = True,
        reason: str | None = None,
        seat: str | None = None,
    ) -> None:
        """Log in at the agents.yaml seat, or at ``seat`` (``s2``, ``sip:1001``) instead."""
        agent = self.agent(agent_id)
        if seat is not None and seat != agent.seat:
            check_seat(seat)
            if agent.logged_in:
                raise TransitionError(f"agent {agent_id}: already logged in ({agent.status})")
            taken = [a.id for a in self.acd.agents.values() if a.seat == seat and a.logged_in]
            if taken:
                raise ValueError(f"seat {seat} is taken by agent {taken[0]}")
            agent.seat = seat
        status = Status.READY if ready else Status.NOT_READY
        self._apply(
            self.acd.login(agent_id, self._now(), status, None if ready else reason or "busy")
        )
        if is_sip_seat(agent.seat) and not self.seats.in_service(agent.seat):
            # the softphone is not registered (yet): not ready until it is
            legs = self._live_legs(agent_id)
            self._apply(self.acd.reconcile(agent_id, False, legs, self._now()))

    def logout(self, agent_id: str) -> None:
        self.agent(agent_id)
        self._apply(self.acd.logout(agent_id, self._now()))

    def set_ready(self, agent_id: str) -> None:
        self.agent(agent_id)
        self._apply(self.acd.set_status(agent_id, Status.READY, None, self._now()))

    def set_not_ready(self, agent_id: str, reason: str = "busy") -> None:
        self.agent(agent_id)
        self._apply(self.acd.set_status(agent_id, Status.NOT_READY, reason, self._now()))

    def end_wrap_up(self, agent_id: str) -> None:
        self.agent(agent_id)
        self._apply(self.acd.wrap_up_done(agent_id, self._now()))

    # --- the flow's transfer step ------------------------------------------------------------
    async def transfer(
        self, channel: Channel, queue: str, *, priority: int = 0, data: dict[str, Any] | None = None
    ) -> TransferResult:
        """Queue the caller; return when they come back to the flow (or hang up)."""
        definition = self.queues.get(queue)
        if definition is None:
            log.warning("queue.unknown", queue=queue)
            return TransferResult("no_agent", {"queue": queue, "reason": "no such queue"})
        if channel.hung_up:
            return TransferResult("hangup", {"queue": queue})
        assert self._loop is not None, "start the contact center first"
        call_id = channel.call_id
        waiting = _Waiting(channel, definition, self._loop.create_future(), data=dict(data or {}))
        self._waiting[call_id] = waiting

        def on_event(event: Any) -> None:
            called_back = call_id in self._callbacks
            if event.kind == "hangup" and waiting.agent_id is None and not called_back:
                self._apply(self.acd.abandon(call_id, self._now()))
                if not waiting.decided.done():
                    waiting.decided.set_result(TransferResult("hangup", {"queue": queue}))

        unsubscribe = channel.subscribe(on_event)
        try:
            self._apply(
                self.acd.enqueue(
                    call_id, queue, self._now(), priority=priority, caller=channel.caller or None
                )
            )
            decision = await self._await_decision(waiting)
            if isinstance(decision, TransferResult):
                if decision.status == "callback" and not channel.hung_up:
                    prompt = await self.speech.prompt("queue.callback_confirm", CALLBACK_CONFIRM)
                    await channel.play([prompt])
                return decision
            agent_id, leg = decision
            return await self._talk(waiting, agent_id, leg)
        finally:
            unsubscribe()
            self._waiting.pop(call_id, None)
            if (
                call_id in self.acd.calls
                and waiting.agent_id is None
                and call_id not in self._callbacks
            ):
                self._apply(self.acd.abandon(call_id, self._now()))

    async def _hold(self, waiting: _Waiting) -> None:
        """Waiting prompt, position announcements and music, in a loop until decided."""
        channel, queue = waiting.channel, waiting.queue
        while not channel.hung_up and not waiting.decided.done():
            items = []
            while waiting.announcements:
                items.append(await self.speech.readout(waiting.announcements.popleft()))
            items.append(
                await self.speech.prompt(f"queue.{queue.name}.waiting", queue.waiting_prompt)
            )
            key = waiting.callback_key
            if key is not None:
                text = _callback_offer_text(key)
                items.append(await self.speech.prompt(f"queue.{queue.name}.callback", text))
            items.append(self.music)
            result = await channel.play(items, barge_in="any" if key else "")
            if result.reason in (Reason.HANGUP, Reason.STOPPED):
                return
            if key is not None and result.reason == Reason.DIGIT:
                pressed = await channel.collect(
                    max_digits=1, terminators="", first_timeout=0.5, inter_timeout=0.5
                )
                if pressed.digits[:1] == key and self._request_callback(waiting):
                    return
                channel.clear_digits()

    async def _talk(self, waiting: _Waiting, agent_id: str, leg: Channel) -> TransferResult:
        """报工号, then caller and seat talk until one hangs up.

        Meanwhile the agent may put the caller on hold (:meth:`hold` / :meth:`resume`), hang
        up (:meth:`hangup`) or transfer the caller (:meth:`transfer_call`): the caller then
        waits again (prompt and music) and talks with the next agent in this same loop.
        """
        channel, call_id = waiting.channel, waiting.channel.call_id
        while True:
            info = {"queue": waiting.queue.name, "agent_id": agent_id, "seat": leg.line}
            result = None
            try:
                if waiting.queue.announce_agent and self.agent_announcement:
                    text = self.agent_announcement.format(agent_id=say("digits", agent_id))
                    await channel.play([await self.speech.readout(text)])
                result = await self._converse(waiting, leg)
            finally:
                transferred = waiting.transfer_to is not None
                if agent_id in self._consults_of():  # the call ended while consulting
                    self._end_consult(agent_id, "call_ended")
                by = "agent" if leg.hung_up and not channel.hung_up else "caller"
                self._legs.pop((call_id, agent_id), None)
                if not transferred:
                    self._apply(self.acd.call_ended(call_id, self._now(), by=by))
                if not leg.hung_up:
                    await leg.hangup()
            if transferred:
                target, waiting.transfer_to = waiting.transfer_to, None
                self.bus.publish(
                    "queue.call_finished", call_id, **info, ended_by="transfer", target=target
                )
                decision = await self._await_decision(waiting)
                if isinstance(decision, TransferResult):
                    if decision.status == "callback" and not channel.hung_up:
                        confirm = CALLBACK_CONFIRM
                        prompt = await self.speech.prompt("queue.callback_confirm", confirm)
                        await channel.play([prompt])
                    return decision
                agent_id, leg = decision
                continue
            reason = str(result.reason) if result is not None else "stopped"
            self.bus.publish("queue.call_finished", call_id, **info, ended_by=by, reason=reason)
            survey = waiting.queue.survey
            if by == "agent" and survey and not channel.hung_up:
                if self.run_flow is None:
                    log.warning("queue.survey_not_run", call_id=call_id, flow=survey)
                else:
                    await self.run_flow(channel, survey)
                    return TransferResult("connected", {**info, "ended_by": by, "survey": survey})
            return TransferResult("connected", {**info, "ended_by": by})

    async def _await_decision(self, waiting: _Waiting) -> Any:
        """The caller waits (prompt, announcements, music) until the core decides."""
        if not waiting.decided.done():
            hold = asyncio.create_task(self._hold(waiting), name=f"hold {waiting.channel.call_id}")
            try:
                await asyncio.shield(waiting.decided)
            finally:
                hold.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await hold
        return waiting.decided.result()

    async def _converse(self, waiting: _Waiting, leg: Channel) -> Any:
        """Bridge caller and seat; on hold the caller hears music and the seat silence.

        Returns the bridge's result when either side hung up, or when the agent transferred
        the caller (``waiting.transfer_to`` set).
        """
        channel = waiting.channel

        def on_leg(event: Any) -> None:
            if event.kind == "hangup":
                waiting.wake.set()

        unsubscribe = leg.subscribe(on_leg)
        try:
            while True:
                waiting.wake.clear()
                if channel.hung_up or leg.hung_up:
                    return _hung_up_result(channel, leg)
                if waiting.transfer_to is not None:
                    return None
                if waiting.held:
                    work = asyncio.ensure_future(self._music_on_hold(channel))
                else:
                    work = asyncio.ensure_future(channel.bridge(leg))
                woken = asyncio.ensure_future(waiting.wake.wait())
                try:
                    await asyncio.wait({work, woken}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
                if not work.done():  # a command (or the seat's hangup while on hold)
                    if not channel.hung_up:
                        await channel.stop()
                    if not work.done():
                        work.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await work
                    continue
                result = work.result()
                if result.reason == Reason.HANGUP or channel.hung_up or leg.hung_up:
                    return result
                # stopped or max_time without a command: go round (bridge again)
        finally:
            if callable(unsubscribe):
                unsubscribe()

    async def _music_on_hold(self, channel: Channel) -> Any:
        """The contact centre's music, again and again, until stopped or the caller leaves."""
        while True:
            result = await channel.play([self.music])
            if result.reason in (Reason.HANGUP, Reason.STOPPED):
                return result

    # --- what an agent does with the call (the agent control API builds on these) --------------
    def _talking(self, agent_id: str) -> _Waiting:
        self.agent(agent_id)
        for waiting in self._waiting.values():
            if waiting.agent_id == agent_id and not waiting.channel.hung_up:
                return waiting
        if any(cb.agent_id == agent_id for cb in self._callbacks.values()):
            raise CallControlError(f"agent {agent_id} is on a callback: only hangup is possible")
        raise CallControlError(f"agent {agent_id} is not talking with a caller")

    def current_call(self, agent_id: str) -> dict[str, Any] | None:
        """The call the agent is ringing with or talking to (None: no call)."""
        if str(self.agent(agent_id).state) not in BUSY_STATES:
            return None  # e.g. a transferred call whose old leg is still being dropped
        for (call_id, a), leg in self._legs.items():
            if a != agent_id:
                continue
            waiting = self._waiting.get(call_id)
            callback = self._callbacks.get(call_id)
            connected = self._connected(call_id, agent_id)
            caller = waiting.channel.caller if waiting else callback.number if callback else ""
            return {
                "call_id": call_id,
                "caller": caller,
                "queue": waiting.queue.name if waiting else callback.queue if callback else None,
                "connected": connected,
                "held": bool(waiting and waiting.held and connected),
                "callback": callback is not None,
                "seat_leg": leg.channel_id if hasattr(leg, "channel_id") else None,
            }
        return None

    def hold(self, agent_id: str) -> str:
        """The caller hears the hold music, the seat silence; returns the call id."""
        waiting = self._talking(agent_id)
        if waiting.held:
            raise CallControlError(f"agent {agent_id}: the caller is already on hold")
        call_id = waiting.channel.call_id
        self._apply(self.acd.hold(call_id, self._now()))
        waiting.held = True
        waiting.wake.set()
        log.info("queue.hold", call_id=call_id, agent_id=agent_id)
        return call_id

    def resume(self, agent_id: str) -> str:
        """Take the caller off hold: caller and seat are bridged again; returns the call id."""
        waiting = self._talking(agent_id)
        if not waiting.held:
            raise CallControlError(f"agent {agent_id}: the caller is not on hold")
        call_id = waiting.channel.call_id
        self._apply(self.acd.resume(call_id, self._now()))
        waiting.held = False
        waiting.wake.set()
        log.info("queue.resume", call_id=call_id, agent_id=agent_id)
        return call_id

    def transfer_call(self, agent_id: str, target: str) -> str:
        """Blind transfer of the agent's caller to a queue (by name) or an agent (by id).

        The agent's leg is dropped and the agent goes to wrap-up (TRANSFER in the queue log);
        the caller waits in the target queue (an agent: the current queue, offered to that
        agent first) and talks with whoever answers. Raises :class:`KeyError` for an unknown
        target and :class:`CallControlError` when the core refuses (agent not free, queue
        full…), in which case the call goes on unchanged. Returns the call id.
        """
        waiting = self._talking(agent_id)
        if target == agent_id:
            raise CallControlError(f"agent {agent_id} cannot transfer a call to themselves")
        if target not in self.queues and target not in self.acd.agents:
            raise KeyError(f"transfer target {target!r} is neither a queue nor an agent")
        assert self._loop is not None
        call_id = waiting.channel.call_id
        previous = waiting.decided
        waiting.decided = self._loop.create_future()
        actions = self.acd.transfer(call_id, target, self._now())
        refused = [a for a in actions if isinstance(a, TransferFailed)]
        if refused:
            waiting.decided = previous
            raise CallControlError(f"transfer to {target} refused: {refused[0].reason}")
        waiting.held = False
        waiting.agent_id = None
        waiting.transfer_to = target
        if target in self.queues:
            waiting.queue = self.queues[target]
        waiting.wake.set()
        log.info("queue.transfer", call_id=call_id, agent_id=agent_id, target=target)
        self._apply(actions)
        return call_id

    # --- consultative transfer -----------------------------------------------------------------
    def consult(self, agent_id: str, target: str) -> str:
        """The agent consults another agent before handing the caller over.

        The caller is put on hold (music), the target agent is set not ready (``consult``) so
        that the core offers them nothing else, and their seat rings with the consulting
        agent's id as caller ID; once answered the two agents talk. Then
        :meth:`complete_consult` hands the caller over (a transfer to the target agent) or
        :meth:`cancel_consult` takes the caller back. Returns the call id.
        """
        waiting = self._talking(agent_id)
        if agent_id in self._consults_of():
            raise CallControlError(f"agent {agent_id} is already consulting")
        if target == agent_id:
            raise CallControlError(f"agent {agent_id} cannot consult themselves")
        other = self.agent(target)
        if not other.available:
            raise CallControlError(
                f"agent {target} is not free to consult ({other.status}, {other.state})"
            )
        call_id = waiting.channel.call_id
        seat_leg = self._legs.get((call_id, agent_id))
        if seat_leg is None:
            raise CallControlError(f"agent {agent_id} has no seat leg on call {call_id}")
        if not waiting.held:
            self.hold(agent_id)
        previous = (other.status, other.reason)
        self._apply(self.acd.set_status(target, Status.NOT_READY, CONSULT_REASON, self._now()))
        try:
            leg = self.seats.ring(other.seat, caller=agent_id)
        except (KeyError, ValueError, RuntimeError) as exc:
            self._restore_status(target, previous)
            raise CallControlError(f"the seat of agent {target} cannot ring: {exc}") from exc
        assert self._loop is not None
        answered = self._loop.create_future()

        def on_event(event: Any) -> None:  # subscribed now: the answer may come at once
            if event.kind in ("answer", "hangup") and not answered.done():
                answered.set_result(event.kind == "answer")

        unsubscribe = leg.subscribe(on_event)
        consult = _Consult(call_id, agent_id, target, leg, previous, answered, unsubscribe)
        self._consults_of()[agent_id] = consult
        consult.task = self._loop.create_task(self._run_consult(consult, seat_leg))
        log.info("queue.consult", call_id=call_id, agent_id=agent_id, target=target)
        self.bus.publish(
            "queue.consult", call_id, agent_id=agent_id, target=target, stage="ringing"
        )
        return call_id

    async def complete_consult(self, agent_id: str) -> str:
        """Hand the caller over to the consulted agent: their consultation leg is dropped and
        their seat rings with the caller (a transfer to that agent: TRANSFER logged, this
        agent to wrap-up). If the core gave the consulted agent another caller in the same
        instant, :class:`CallControlError` says so and the caller stays on hold here."""
        consult = self._end_consult(agent_id, "completed", restore=False, hang_up=False)
        if not consult.leg.hung_up:
            await consult.leg.hangup()  # the seat must be free to ring with the caller
        target = consult.target
        self._restore_status(target, consult.previous)
        if not self.agent(target).available:
            raise CallControlError(
                f"agent {target} took another call meanwhile; the caller is still on hold"
            )
        return self.transfer_call(agent_id, target)

    def cancel_consult(self, agent_id: str) -> str:
        """Drop the consultation and take the caller back (off hold)."""
        consult = self._end_consult(agent_id, "cancelled")
        return self.resume(agent_id) if self._talking(agent_id).held else consult.call_id

    def _consults_of(self) -> dict[str, _Consult]:
        consults = getattr(self, "_consults", None)
        if consults is None:
            consults = self._consults = {}
        return consults

    def _end_consult(
        self, agent_id: str, reason: str, *, restore: bool = True, hang_up: bool = True
    ) -> _Consult:
        consult = self._consults_of().pop(agent_id, None)
        if consult is None:
            raise CallControlError(f"agent {agent_id} is not consulting anyone")
        consult.unsubscribe()
        if consult.task is not None and not consult.task.done():
            consult.task.cancel()
        if hang_up and not consult.leg.hung_up:
            self._spawn(consult.leg.hangup())
        if restore:
            self._restore_status(consult.target, consult.previous)
        log.info("queue.consult_ended", call_id=consult.call_id, agent_id=agent_id,
                 target=consult.target, reason=reason)
        self.bus.publish("queue.consult", consult.call_id, agent_id=agent_id,
                         target=consult.target, stage=reason)
        return consult

    def _restore_status(self, agent_id: str, previous: tuple[Any, str | None]) -> None:
        agent = self.agent(agent_id)
        if agent.status is Status.NOT_READY and agent.reason == CONSULT_REASON:
            status, reason = previous
            self._apply(self.acd.set_status(agent_id, status, reason, self._now()))
        elif agent.saved_status is not None and agent.saved_status[1] == CONSULT_REASON:
            # the seat's phone went away meanwhile: come back to the status before the consult
            agent.saved_status = previous

    async def _run_consult(self, consult: _Consult, seat_leg: Channel) -> None:
        """Ring the consulted seat; once answered, bridge the two agents until one leaves."""
        try:
            async with asyncio.timeout(CONSULT_RING_SECONDS):
                picked_up = await consult.answered
        except TimeoutError:
            picked_up = False
        finally:
            consult.unsubscribe()
        if picked_up and not seat_leg.hung_up:
            self.bus.publish("queue.consult", consult.call_id, agent_id=consult.agent_id,
                             target=consult.target, stage="talking")
            await consult.leg.bridge(seat_leg)
        # the consulted agent hung up or never answered: the caller stays on hold here
        if self._consults_of().get(consult.agent_id) is consult:
            consult.task = None
            self._end_consult(consult.agent_id, "no_answer" if not picked_up else "hung_up")

    async def hangup(self, agent_id: str, *, settle: float = 2.0) -> str:
        """The agent hangs up: a connected call ends (by the agent), a ringing one is declined.

        Returns the call id once the call is over for the agent (at most ``settle`` seconds).
        """
        self.agent(agent_id)
        found = next(((c, leg) for (c, a), leg in self._legs.items() if a == agent_id), None)
        if found is None:
            raise CallControlError(f"agent {agent_id} has no call to hang up")
        call_id, leg = found
        assert self._loop is not None
        finished = self._loop.create_future()

        def on_finished(event: Any) -> None:
            if event.call_id == call_id and not finished.done():
                finished.set_result(None)

        connected = self._connected(call_id, agent_id)
        unsubscribe = self.bus.subscribe("queue.call_finished", on_finished)
        try:
            waiting = self._waiting.get(call_id)
            if waiting is not None:
                waiting.wake.set()
            if not leg.hung_up:
                await leg.hangup()
            log.info("queue.agent_hangup", call_id=call_id, agent_id=agent_id)
            if connected:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(settle):
                        await finished
        finally:
            unsubscribe()
        return call_id

    # --- seats -------------------------------------------------------------------------------
    def _ring_seat(self, offer: Offer) -> None:
        waiting = self._waiting.get(offer.call_id)
        callback = self._callbacks.get(offer.call_id)
        caller = waiting.channel.caller if waiting else callback.number if callback else ""
        try:
            leg = self.seats.ring(offer.seat, caller=caller)
        except (KeyError, ValueError, RuntimeError) as exc:
            log.warning(
                "queue.seat_unavailable", agent_id=offer.agent_id, seat=offer.seat, error=str(exc)
            )
            self._pending.extend(
                self.acd.offer_result(offer.call_id, offer.agent_id, False, self._now())
            )
            return
        key = (offer.call_id, offer.agent_id)
        self._legs[key] = leg

        def on_event(event: Any) -> None:
            if self._legs.get(key) is not leg:
                return
            if event.kind == "answer":
                self._apply(self.acd.offer_result(offer.call_id, offer.agent_id, True, self._now()))
            elif event.kind == "hangup":
                w = self._waiting.get(offer.call_id)
                cb = self._callbacks.get(offer.call_id)
                connected = (w is not None and w.agent_id == offer.agent_id) or (
                    cb is not None and cb.agent_id == offer.agent_id
                )
                if not connected:  # connected: the bridge reports it
                    self._legs.pop(key, None)
                    self._apply(
                        self.acd.offer_result(offer.call_id, offer.agent_id, False, self._now())
                    )

        leg.subscribe(on_event)
        # what the agent's desktop shows while the seat rings (the CTI screen-pop)
        self.bus.publish(
            "queue.screen_pop",
            offer.call_id,
            agent_id=offer.agent_id,
            seat=offer.seat,
            queue=offer.queue,
            caller=caller,
            **(waiting.data if waiting else callback.data if callback else {}),
            callback=offer.callback,
        )

    # --- state reconciliation -----------------------------------------------------------------
    def _seat_agents(self, seat: str) -> list[str]:
        return [a.id for a in self.acd.agents.values() if a.seat == seat]

    def _seat_in_service(self, seat: str) -> bool:
        return self.seats.in_service(seat)

    def _live_legs(self, agent_id: str) -> list[str]:
        """Call ids of the agent's seat legs the contact centre still holds (a leg that has
        just hung up stays until its bridge or ring handler has reported it)."""
        return [c for (c, a) in self._legs if a == agent_id]

    def _on_line_service(self, event: Any) -> None:
        """A seat's phone was unplugged or plugged back in."""
        if self._loop is None or self._stopped:
            return
        seat, in_service = event.data.get("line"), bool(event.data.get("in_service"))
        for agent_id in self._seat_agents(seat):
            if in_service:
                legs = self._live_legs(agent_id)
                self._apply(self.acd.reconcile(agent_id, True, legs, self._now()))
                continue
            # the phone is gone: a ringing leg goes with it (the board ends it next); the
            # connected call ends through its bridge
            ringing = [
                (c, a)
                for (c, a) in self._legs
                if a == agent_id and not self._connected(c, agent_id)
            ]
            dropped = [self._legs.pop(key) for key in ringing]
            legs = self._live_legs(agent_id)
            self._apply(self.acd.reconcile(agent_id, False, legs, self._now()))
            for leg in dropped:
                if not leg.hung_up:
                    self._spawn(leg.hangup())

    def _connected(self, call_id: str, agent_id: str) -> bool:
        w, cb = self._waiting.get(call_id), self._callbacks.get(call_id)
        return (w is not None and w.agent_id == agent_id) or (
            cb is not None and cb.agent_id == agent_id
        )

    def reconcile_all(self) -> None:
        """Audit: agents reserved or on a call against their seats' legs and phones."""
        if self._loop is None:
            return
        for agent in list(self.acd.agents.values()):
            registered = self._seat_in_service(agent.seat)
            unregistered = agent.reason == UNREGISTERED
            if str(agent.state) in BUSY_STATES or registered == unregistered:
                legs = self._live_legs(agent.id)
                self._apply(self.acd.reconcile(agent.id, registered, legs, self._now()))

    def _on_audit(self) -> None:
        self._audit = None
        if self._stopped or self._loop is None:
            return
        try:
            self.reconcile_all()
        finally:
            self._audit = self._loop.call_later(RECONCILE_SECONDS, self._on_audit)

    # --- queued callback -----------------------------------------------------------------------
    def _request_callback(self, waiting: _Waiting) -> bool:
        """The waiting caller pressed the callback key: keep their place, let them hang up."""
        channel, call_id = waiting.channel, waiting.channel.call_id
        if call_id not in self.acd.calls or waiting.decided.done():
            return False
        try:
            actions = self.acd.request_callback(call_id, self._now())
        except TransitionError:  # an agent answered meanwhile
            return False
        self._callbacks[call_id] = _Callback(
            call_id, channel.caller, waiting.queue.name, data=dict(waiting.data)
        )
        position = next((a.position for a in actions if isinstance(a, CallbackAccepted)), None)
        self._apply(actions)
        if not waiting.decided.done():
            waiting.decided.set_result(
                TransferResult("callback", {"queue": waiting.queue.name, "position": position})
            )
        return True

    async def _call_back(self, callback: _Callback, agent_id: str, leg: Channel) -> None:
        """The agent took the callback: dial the caller on a free trunk and bridge them."""
        call_id, result, by = callback.call_id, "failed", "caller"
        info: dict[str, Any] = {"queue": callback.queue, "agent_id": agent_id}
        out: Channel | None = None
        try:
            try:
                if self.board is None:
                    raise RuntimeError("no trunk to dial out on (the board is not enabled)")
                out = self.board.dial(callback.number, caller=leg.called or "")
            except (RuntimeError, ValueError) as exc:
                log.warning("queue.callback_dial_failed", call_id=call_id, error=str(exc))
            if out is not None:
                info["line"] = out.line
                if await _answered(out, leg, CALLBACK_RING_SECONDS):
                    result = "answered"
                    self.bus.publish(
                        "queue.callback_result",
                        call_id,
                        **info,
                        result=result,
                        number=callback.number,
                        callback_call_id=out.call_id,
                    )
                    queue = self.queues[callback.queue]
                    if queue.announce_agent and self.agent_announcement:
                        text = self.agent_announcement.format(agent_id=say("digits", agent_id))
                        await out.play([await self.speech.readout(text)])
                    await out.bridge(leg)
                    by = "agent" if leg.hung_up and not out.hung_up else "caller"
                elif leg.hung_up:
                    result, by = "agent_hung_up", "agent"
                else:
                    result = "no_answer"
        finally:
            self._callbacks.pop(call_id, None)
            self._legs.pop((call_id, agent_id), None)
            if result != "answered":
                self.bus.publish(
                    "queue.callback_result", call_id, **info, result=result, number=callback.number
                )
            self._apply(self.acd.call_ended(call_id, self._now(), by=by))
            for channel in (out, leg):
                if channel is not None and not channel.hung_up:
                    await channel.hangup()
            self.bus.publish("queue.call_finished", call_id, **info, ended_by=by, callback=result)

    def _drop_leg(self, call_id: str, agent_id: str) -> None:
        leg = self._legs.pop((call_id, agent_id), None)
        if leg is not None and not leg.hung_up:
            self._spawn(leg.hangup())

    # --- carrying out the core's actions -------------------------------------------------------
    def _now(self) -> float:
        assert self._loop is not None
        self._last_now = max(self._last_now, self._loop.time())
        return self._last_now

    def _apply(self, actions: list[Action]) -> None:
        self._pending.extend(actions)
        if self._applying:
            return
        self._applying = True
        try:
            while self._pending:
                self._carry_out(self._pending.popleft())
        finally:
            self._applying = False
            self._publish_events()
            self._schedule()

    def _carry_out(self, action: Action) -> None:
        if isinstance(action, Offer):
            self._ring_seat(action)
        elif isinstance(action, StopRinging):
            self._drop_leg(action.call_id, action.agent_id)
        elif isinstance(action, Connect) and action.callback:
            callback = self._callbacks.get(action.call_id)
            leg = self._legs.get((action.call_id, action.agent_id))
            if callback is None or leg is None:
                log.warning("queue.callback_lost", call_id=action.call_id, agent_id=action.agent_id)
                self._pending.extend(self.acd.call_ended(action.call_id, self._now(), by="caller"))
                self._drop_leg(action.call_id, action.agent_id)
                return
            callback.agent_id = action.agent_id
            self._spawn(self._call_back(callback, action.agent_id, leg))
        elif isinstance(action, Connect):
            waiting = self._waiting.get(action.call_id)
            leg = self._legs.get((action.call_id, action.agent_id))
            if waiting is None or leg is None or waiting.decided.done():
                log.warning("queue.connect_lost", call_id=action.call_id, agent_id=action.agent_id)
                self._pending.extend(self.acd.call_ended(action.call_id, self._now(), by="caller"))
                self._drop_leg(action.call_id, action.agent_id)
                return
            waiting.agent_id = action.agent_id
            waiting.decided.set_result((action.agent_id, leg))
        elif isinstance(action, (Timeout, Redirect)):
            waiting = self._waiting.get(action.call_id)
            status = "timeout" if isinstance(action, Timeout) else action.reason
            if waiting is not None and not waiting.decided.done():
                waiting.decided.set_result(
                    TransferResult(
                        status, {"queue": action.queue, "destination": action.destination}
                    )
                )
        elif isinstance(action, OfferCallback):
            waiting = self._waiting.get(action.call_id)
            # only a number the network vouches for is ever dialled back (toll fraud), and
            # only where there is a trunk to dial it on
            if (
                waiting is not None
                and self.board is not None
                and waiting.channel.caller
                and waiting.channel.caller_verified
            ):
                waiting.callback_key = action.key
        elif isinstance(action, Announce):
            waiting = self._waiting.get(action.call_id)
            if waiting is not None:
                waiting.announcements.append(_position_text(action.position, action.est_wait))
        elif isinstance(action, DropLeg):
            for call_id, agent_id in list(self._legs):
                if agent_id == action.agent_id and call_id == action.call_id:
                    self._drop_leg(call_id, agent_id)
        elif isinstance(action, Fixed):
            fix = {"agent_id": action.agent_id, "fix": action.what}
            log.warning("queue.reconciled", call_id=action.call_id, **fix)
            self.bus.publish(
                "queue.reconciled", action.call_id, agent_id=action.agent_id, fix=action.what
            )
        elif not isinstance(action, (Queued, CallbackAccepted)):
            log.info("queue.action_not_handled", action=type(action).__name__)

    def _publish_events(self) -> None:
        for event in self.acd.drain_events():
            self.recent_events.append(event)
            self.bus.publish(
                f"queue.{event.kind.value.lower()}",
                event.call_id,
                queue=event.queue,
                agent_id=event.agent_id,
                **event.data,
            )

    def _schedule(self) -> None:
        """One loop timer at the core's next deadline."""
        self._timer.set(self._loop, None if self._stopped else self.acd.next_deadline())

    def _on_timer(self, deadline: float) -> None:
        self._last_now = max(self._now(), deadline)
        self._apply(self.acd.tick(self._last_now))

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _position_text(position: int, est_wait: float | None) -> str:
    ahead = position - 1
    text = f"您前面还有{say('integer', ahead)}位客户在等待" if ahead > 0 else "您是下一位"
    if est_wait:
        minutes = max(1, round(est_wait / 60))
        text += f"，预计等待{say('integer', minutes)}分钟"
    return text + "，请您耐心等待。"


def _hung_up_result(channel: Channel, leg: Channel) -> Result:
    """The bridge's ending when one side left while nothing was bridged (on hold)."""
    gone = channel if channel.hung_up else leg
    cause = gone.hangup_cause
    return Result(
        Reason.HANGUP,
        detail={"cause": str(cause) if cause else "", "hung_up": getattr(gone, "channel_id", "")},
    )


def _callback_offer_text(key: str) -> str:
    return f"如需回电请按{KEY_WORDS.get(key, key)}。"


async def _answered(out: Channel, agent_leg: Channel, seconds: float) -> bool:
    """Wait for the dialled caller to pick up (False: no answer, or the agent hung up)."""
    done = asyncio.get_running_loop().create_future()

    def on_event(event: Any) -> None:
        if not done.done() and event.kind in ("answer", "hangup"):
            done.set_result(event.kind == "answer")

    unsubscribe = [out.subscribe(on_event), agent_leg.subscribe(on_event)]
    try:
        async with asyncio.timeout(seconds):
            return bool(await done)
    except TimeoutError:
        return False
    finally:
        for stop in unsubscribe:
            if callable(stop):
                stop()
