"""The SIP endpoint's outbound side: legs the engine places, and the watch over agent seats.

:class:`OutboundCalls` is the I/O half of the B2BUA's outbound leg around the plain
:class:`~drivers.sip.uac.Uac`. It belongs to a :class:`~drivers.sip.transport.SipEndpoint`,
which hands it every datagram the UAC claims (responses, requests in dialogs the engine
placed). :meth:`OutboundCalls.dial_seat` rings a registered agent seat;
:meth:`OutboundCalls.dial_uri` calls a SIP URI listed in ``sip.outbound_allowed``. Both return
an :class:`~drivers.sip.channel.OutboundSipChannel` at once: its RTP port is bound and the
INVITE sent by a task; the far end's 200 starts the media (the seat leg is not recorded on
its own: the caller's leg records both sides) and emits ``answer``.

Toll fraud: these two methods are the only way the SIP driver places a call. Nothing a
request from the network carries reaches them — incoming INVITEs go to flows only; the seat
to ring comes from the ACD (an agent's seat in ``agents.yaml`` or a login), and the target
address from that seat's own authenticated registration. A URI outside the allow-list raises
:class:`DialRefused`.

Seat watch: every ``keepalive_interval`` seconds each registered binding gets an OPTIONS
(any answer means alive); ``keepalive_failures`` probes in a row without one remove the
binding (``sip.keepalive_failed``). Whenever the set of registered seats changes — REGISTER,
unregister, a binding lapsing (a timer at the earliest expiry), a failed keepalive —
``on_seat(seat, registered, reason)`` is called once per seat that changed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from drivers.channel import HangupCause
from drivers.clock import DeadlineTimer
from drivers.sip.channel import OutboundSipChannel
from drivers.sip.media import MediaError
from drivers.sip.message import ParseError, parse_sip_uri
from drivers.sip.sdp import Direction, make_offer
from drivers.sip.uac import (
    LegAnswered,
    LegEnded,
    LegFailed,
    LegReinvited,
    LegReinviteFailed,
    LegRinging,
    OptionsResult,
    Uac,
    UacEvent,
)
from drivers.sip.uas import Send

log = structlog.get_logger(__name__)

KEEPALIVE_INTERVAL = 30.0
KEEPALIVE_FAILURES = 3
KEEPALIVE_TIMEOUT = 8.0  # seconds an OPTIONS probe waits for any answer
_FAILED_CAUSES = {487: HangupCause.CANCELLED, 408: HangupCause.CANCELLED}


class DialRefused(RuntimeError):
    """The engine may not call this target (not a registered seat, not an allowed URI)."""


def uri_key(uri: str) -> tuple[str, str, str, int]:
    """What identifies a SIP URI for the allow-list: scheme, user, host, port."""
    parsed = parse_sip_uri(uri)
    if parsed.scheme not in ("sip", "sips") or not parsed.host:
        raise ParseError(f"{uri!r} is not a sip: URI with a host")
    port = parsed.port or (5061 if parsed.scheme == "sips" else 5060)
    return parsed.scheme, parsed.user or "", parsed.host.lower(), port


class OutboundCalls:
    """Outbound legs and the seat watch of one endpoint (see the module doc)."""

    def __init__(
        self,
        endpoint: Any,
        *,
        allowed: Iterable[str] = (),
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        keepalive_failures: int = KEEPALIVE_FAILURES,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        on_seat: Callable[[str, bool, str], None] | None = None,
    ) -> None:
        self.allowed: dict[tuple[str, str, str, int], str] = {}
        for uri in allowed:
            try:
                self.allowed[uri_key(uri)] = uri
            except ParseError as exc:
                raise ValueError(f"sip.outbound_allowed: {exc.reason}") from exc
        if keepalive_interval <= 0 or keepalive_failures < 1 or keepalive_timeout <= 0:
            raise ValueError("sip keepalive: interval and timeout must be > 0, failures >= 1")
        self.endpoint = endpoint
        self.keepalive_interval = keepalive_interval
        self.keepalive_failures = keepalive_failures
        self.keepalive_timeout = keepalive_timeout
        self.on_seat = on_seat
        self.uac: Uac | None = None
        self.dialled = 0  # legs placed since start (what the toll-fraud test counts)
        self.seats_up: set[str] = set()
        self._misses: dict[str, int] = {}  # "seat\ncontact" -> keepalives missed in a row
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer = DeadlineTimer(self._on_timer)  # the UAC's next retransmission/timeout
        self._keepalive: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, host: str, port: int) -> None:
        self._loop = asyncio.get_running_loop()
        self.uac = Uac(host, port)
        if self.endpoint.registrar is not None:
            self._keepalive = self._loop.call_later(self.keepalive_interval, self._on_keepalive)

    def stop(self) -> None:
        self._timer.cancel()
        for handle in (self._keepalive, self._expiry):
            if handle is not None:
                handle.cancel()
        self._keepalive = self._expiry = None
        for task in list(self._tasks):
            task.cancel()

    # --- input from the endpoint --------------------------------------------------------------
    def claims(self, data: bytes) -> bool:
        return self.uac is not None and self.uac.claims(data)

    def receive(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.uac is not None and self._loop is not None
        self._handle(self.uac.receive(data, addr, self._loop.time()))

    # --- placing legs -------------------------------------------------------------------------
    def dial_seat(self, seat: str, *, caller: str = "") -> OutboundSipChannel:
        """Ring the registered phone of agent seat ``seat`` (the registrar's user name)."""
        registrar = self.endpoint.registrar
        if registrar is None or self._loop is None:
            raise DialRefused(f"seat sip:{seat}: this endpoint has no registrar")
        binding = registrar.contact_for(seat, self._loop.time())
        if binding is None:
            raise DialRefused(f"seat sip:{seat} is not registered")
        to_uri = f"sip:{seat}@{self.endpoint.host}"
        channel = OutboundSipChannel(self.endpoint, caller=caller, called=seat, line=f"sip:{seat}")
        self._place(channel, binding.contact, binding.target, to_uri, caller)
        log.info(
            "sip.dial_seat",
            call_id=channel.call_id,
            seat=seat,
            contact=binding.contact,
            target=f"{binding.target[0]}:{binding.target[1]}",
        )
        return channel

    def dial_uri(self, uri: str, *, caller: str = "") -> OutboundSipChannel:
        """Call ``uri``, which must be listed in ``sip.outbound_allowed``."""
        try:
            key = uri_key(uri)
        except ParseError as exc:
            raise DialRefused(f"cannot dial {uri!r}: {exc.reason}") from exc
        if key not in self.allowed:
            log.warning("sip.dial_refused", uri=uri)
            raise DialRefused(f"{uri} is not in sip.outbound_allowed")
        _, user, host, port = key
        channel = OutboundSipChannel(self.endpoint, caller=caller, called=user, line="sip-out")
        self._place(channel, uri, (host, port), uri, caller)
        log.info("sip.dial_uri", call_id=channel.call_id, uri=uri)
        return channel

    def _place(
        self,
        channel: OutboundSipChannel,
        request_uri: str,
        target: tuple[str, int],
        to_uri: str,
        caller: str,
    ) -> None:
        self.dialled += 1
        self.endpoint.channels[channel.call_id] = channel
        self._spawn(self._invite(channel, request_uri, target, to_uri, caller))

    async def _invite(
        self,
        channel: OutboundSipChannel,
        request_uri: str,
        target: tuple[str, int],
        to_uri: str,
        caller: str,
    ) -> None:
        assert self.uac is not None and self._loop is not None
        media = self.endpoint.media
        try:
            stream = await media.open(channel)
        except MediaError as exc:
            log.error("sip.no_rtp_port", call_id=channel.call_id, error=str(exc))
            self._release(channel)
            channel.ended(HangupCause.ERROR)
            return
        if channel.hung_up:  # hung up while the port was being bound: nothing was sent
            media.close(stream)
            self._release(channel)
            return
        channel.stream = stream
        offer = make_offer(
            local_address=self.endpoint.host,
            local_port=stream.port,
            session_id=secrets.randbits(31),
        )
        leg, events = self.uac.invite(
            request_uri, target, offer, self._loop.time(), to_uri=to_uri, caller=caller
        )
        leg.data["channel"] = channel
        channel.leg = leg
        self._handle(events)

    # --- the engine's side of a placed leg ----------------------------------------------------
    def hangup(self, channel: OutboundSipChannel) -> None:
        """CANCEL (not answered) or BYE (answered); the media stops at once."""
        assert self._loop is not None
        leg = channel.leg
        self._release(channel)
        if leg is not None and self.uac is not None:
            self._handle(self.uac.cancel(leg, self._loop.time()))

    def reinvite(self, channel: OutboundSipChannel, *, hold: bool) -> None:
        assert self.uac is not None and self._loop is not None
        if channel.leg is None:
            return
        now = self._loop.time()
        events = self.uac.hold(channel.leg, now) if hold else self.uac.resume(channel.leg, now)
        self._handle(events)

    # --- UAC events ---------------------------------------------------------------------------
    def _handle(self, events: list[UacEvent]) -> None:
        for event in events:
            if isinstance(event, Send):
                self.endpoint.send(event.data, event.address)
                continue
            if isinstance(event, OptionsResult):
                self._keepalive_result(event)
                continue
            channel = event.leg.data.get("channel")
            if not isinstance(channel, OutboundSipChannel):
                continue
            if isinstance(event, LegRinging):
                channel.far_end_ringing()
            elif isinstance(event, LegAnswered):
                if channel.hung_up or channel.stream is None:
                    continue
                self.endpoint.media.start(channel.stream, event.plan, record=False)
                log.info("sip.leg_answered", call_id=channel.call_id, codec=event.plan.codec)
                channel.far_end_answered()
            elif isinstance(event, LegFailed):
                log.info(
                    "sip.leg_failed",
                    call_id=channel.call_id,
                    status=event.status,
                    reason=event.reason,
                )
                self._release(channel)
                channel.ended(_FAILED_CAUSES.get(event.status, HangupCause.ERROR))
            elif isinstance(event, LegEnded):
                log.info("sip.leg_ended", call_id=channel.call_id, why=event.why)
                self._release(channel)
                channel.ended(HangupCause.REMOTE_BYE)
            elif isinstance(event, LegReinvited):
                channel.on_hold = event.plan.direction is not Direction.SENDRECV
                if channel.stream is not None:
                    channel.stream.update(event.plan)
                log.info(
                    "sip.leg_reinvited",
                    call_id=channel.call_id,
                    direction=str(event.plan.direction),
                )
            elif isinstance(event, LegReinviteFailed):
                log.warning("sip.leg_reinvite_failed", call_id=channel.call_id, status=event.status)
        self._arm()

    def _release(self, channel: OutboundSipChannel) -> None:
        self.endpoint.channels.pop(channel.call_id, None)
        if channel.stream is not None:
            self.endpoint.media.close(channel.stream)

    def _arm(self) -> None:
        """One loop timer at the UAC's next retransmission or timeout."""
        if self.uac is not None and self._loop is not None:
            self._timer.set(self._loop, self.uac.next_deadline)

    def _on_timer(self, _deadline: float) -> None:
        assert self.uac is not None and self._loop is not None
        try:
            self._handle(self.uac.tick(self._loop.time()))
        except Exception:
            log.exception("sip.uac_timer_failed")
            self._arm()

    # --- seat watch ---------------------------------------------------------------------------
    def registrations_changed(self, reason: str = "register") -> None:
        """Compare the registered seats with the last known set; report what changed."""
        registrar = self.endpoint.registrar
        if registrar is None or self._loop is None:
            return
        now = self._loop.time()
        current = set(registrar.seats(now))  # drops lapsed bindings
        for seat in sorted(current - self.seats_up):
            self._report(seat, True, "registered")
        for seat in sorted(self.seats_up - current):
            self._report(seat, False, reason)
        self.seats_up = current
        live = {f"{b.seat}\n{b.contact}" for s in current for b in registrar.lookup(s, now)}
        for key in set(self._misses) - live:
            del self._misses[key]
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        expiries = [b.expires_at for s in current for b in registrar.lookup(s, now)]
        if expiries:
            self._expiry = self._loop.call_at(min(expiries) + 0.001, self._on_expiry)

    def _on_expiry(self) -> None:
        self._expiry = None
        self.registrations_changed("expired")

    def _report(self, seat: str, registered: bool, reason: str) -> None:
        log.info("sip.seat_state", seat=seat, registered=registered, reason=reason)
        if self.on_seat is not None:
            try:
                self.on_seat(seat, registered, reason)
            except Exception:
                log.exception("sip.seat_state_handler_failed", seat=seat)

    def _on_keepalive(self) -> None:
        """OPTIONS to every registered binding (bounded by the registrar's bindings)."""
        assert self._loop is not None
        self._keepalive = self._loop.call_later(self.keepalive_interval, self._on_keepalive)
        registrar = self.endpoint.registrar
        if registrar is None or self.uac is None:
            return
        now = self._loop.time()
        events: list[UacEvent] = []
        for seat in registrar.seats(now):
            for binding in registrar.lookup(seat, now):
                key = f"{seat}\n{binding.contact}"
                events.extend(
                    self.uac.options(
                        key, binding.contact, binding.target, now, timeout=self.keepalive_timeout
                    )
                )
        self._handle(events)

    def _keepalive_result(self, result: OptionsResult) -> None:
        seat, _, contact = result.key.partition("\n")
        if result.alive:
            self._misses.pop(result.key, None)
            return
        misses = self._misses.get(result.key, 0) + 1
        self._misses[result.key] = misses
        log.warning("sip.keepalive_missed", seat=seat, contact=contact, missed=misses)
        if misses >= self.keepalive_failures:
            del self._misses[result.key]
            registrar = self.endpoint.registrar
            if registrar is not None and registrar.remove(seat, contact) is not None:
                log.warning("sip.keepalive_failed", seat=seat, contact=contact, missed=misses)
                self.registrations_changed("keepalive")

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
