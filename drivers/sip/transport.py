"""The SIP endpoint's I/O shell: a UDP socket feeding the plain :class:`~drivers.sip.uas.Uas`.

:class:`SipEndpoint` binds ``host:port`` (port 0: any free port, see :attr:`port`), hands every
datagram to the UAS with the loop's time, sends what it returns, and turns its call events
into :class:`~drivers.sip.channel.SipChannel` objects for the engine (``on_incoming``). Answering
binds the call's RTP port in the :class:`~drivers.sip.media.MediaPlane`, builds the SDP answer
(:func:`~drivers.sip.sdp.answer_offer`) and starts the stream on the shared media clock. A
timer runs the UAS's Timer G/H while a 200 OK waits for its ACK. A re-INVITE's new plan
(hold: the engine stops sending RTP; resume: it sends again) goes to the call's stream.
Nothing a peer sends can stop the endpoint: every datagram is handled inside its own ``try``.

Calls from any source may only reach flows. The engine's own outbound legs (the B2BUA's leg
to a registered agent seat, or a URI in ``sip.outbound_allowed``) and the OPTIONS keepalive
of registered seats live in :class:`~drivers.sip.outbound.OutboundCalls` (``outbound``),
which gets every response and every request in a dialog the engine placed. New INVITEs
and REGISTERs are rate-limited per source address (503 + Retry-After, see
:mod:`drivers.sip.ratelimit`); a source going over its limit is logged once per window.
With a :class:`~drivers.sip.registrar.Registrar`, REGISTERs that pass the limiter go to it
(digest challenge, bindings of agent seats, lockout of sources guessing passwords); without
one they are answered 405. Every registration, refusal and lockout is logged.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable
from typing import Any

import structlog

from drivers.channel import HangupCause, HungUp
from drivers.sip.channel import SipChannel
from drivers.sip.media import MediaError, MediaPlane
from drivers.sip.outbound import OutboundCalls
from drivers.sip.ratelimit import SourceLimiter
from drivers.sip.registrar import Registrar
from drivers.sip.sdp import OfferRejected, answer_offer, serialize_sdp
from drivers.sip.trunk_client import TrunkClient
from drivers.sip.uas import (
    T1,
    CallGone,
    Event,
    Limited,
    NewCall,
    Registered,
    Reinvited,
    Send,
    Uas,
    UasCall,
)

log = structlog.get_logger(__name__)

_GONE_CAUSES = {
    "bye": HangupCause.REMOTE_BYE,
    "cancelled": HangupCause.CANCELLED,
    "no_ack": HangupCause.ERROR,
    "session_expired": HangupCause.SESSION_EXPIRED,
}
_call_numbers = itertools.count(1)


class SipEndpointError(RuntimeError):
    """The SIP socket cannot be opened."""


class _SipProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.endpoint.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and the like
        log.debug("sip.socket_error", error=str(exc))


class SipEndpoint:
    """One UDP SIP endpoint of the engine (UAS only)."""

    def __init__(
        self,
        media: MediaPlane,
        *,
        host: str = "127.0.0.1",
        port: int = 5060,
        on_incoming: Callable[[SipChannel], None],
        answer_after: float = 0.5,
        name: str = "sip",
        invite_limit: SourceLimiter | None = None,
        register_limit: SourceLimiter | None = None,
        registrar: Registrar | None = None,
        outbound_allowed: tuple[str, ...] | list[str] = (),
        keepalive_interval: float = 30.0,
        keepalive_failures: int = 3,
        on_seat: Callable[[str, bool, str], None] | None = None,
        telephone_event: bool = True,
    ) -> None:
        self.registrar = registrar
        self.telephone_event = telephone_event  # False: answers omit it, keys come in-band
        self.trunks: TrunkClient | None = None  # registrations at upstream trunks (trunk.py)
        self.outbound = OutboundCalls(
            self,
            allowed=outbound_allowed,
            keepalive_interval=keepalive_interval,
            keepalive_failures=keepalive_failures,
            on_seat=on_seat,
        )
        self.invite_limit = invite_limit
        self.register_limit = register_limit
        self.media = media
        self.host = host
        self.port = port
        self.on_incoming = on_incoming
        self.answer_after = answer_after
        self.name = name
        self.uas: Uas | None = None
        self.channels: dict[str, SipChannel] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.malformed = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: _SipProtocol(self), local_addr=(self.host, self.port)
            )
        except OSError as exc:
            raise SipEndpointError(
                f"cannot listen for SIP on udp {self.host}:{self.port}: {exc.strerror or exc}"
                " (set sip.port to a free port, or 0 for any)"
            ) from exc
        self._transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]
        self.uas = Uas(
            self.host,
            self.port,
            invite_limit=self.invite_limit,
            register_limit=self.register_limit,
            registrar=self.registrar,
            telephone_event=self.telephone_event,
        )
        self.outbound.start(self.host, self.port)
        log.info("sip.listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        for channel in list(self.channels.values()):
            await channel.hangup()
        if self.trunks is not None:
            await self.trunks.stop()  # unregister while the socket is still open
        self.outbound.stop()
        self.media.stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def call_id_for(self, call: UasCall) -> str:
        return f"{self.name}-{next(_call_numbers):06d}-{secrets.token_hex(3)}"

    # --- input -------------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.uas is not None and self._loop is not None
        try:
            if self.trunks is not None and self.trunks.claims(data):
                return  # a registrar's answer to a trunk REGISTER
            if self.outbound.claims(data):  # responses, requests in dialogs the engine placed
                self.outbound.receive(data, addr)
                return
            self._handle(self.uas.receive(data, addr, self._loop.time()))
        except Exception:  # never let one datagram harm the endpoint or other calls
            self.malformed += 1
            log.exception("sip.datagram_failed", source=f"{addr[0]}:{addr[1]}", size=len(data))

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Send):
                if self._transport is not None:
                    self._transport.sendto(event.data, event.address)
            elif isinstance(event, NewCall):
                channel = SipChannel(self, event.call)
                event.call.data["channel"] = channel
                self.channels[channel.call_id] = channel
                log.info(
                    "sip.invite",
                    call_id=channel.call_id,
                    sip_call_id=event.call.call_id,
                    caller=channel.caller,
                    called=channel.called,
                )
                self.on_incoming(channel)
            elif isinstance(event, Limited):
                log.warning(
                    "sip.rate_limited",
                    source=f"{event.source[0]}:{event.source[1]}",
                    method=event.method,
                    retry_after=event.retry_after,
                    refused=event.refused,
                )
            elif isinstance(event, Registered):
                _log_register(event)
                if event.result.response.status == 200:
                    self.outbound.registrations_changed("unregistered")
            elif isinstance(event, Reinvited):
                channel = event.call.data.get("channel")  # type: ignore[assignment]
                if isinstance(channel, SipChannel) and channel.stream is not None:
                    channel.stream.update(event.plan)
                    log.info(
                        "sip.reinvite",
                        call_id=channel.call_id,
                        direction=str(event.plan.direction),
                        codec=event.plan.codec,
                    )
            elif isinstance(event, CallGone):
                channel = event.call.data.get("channel")  # type: ignore[assignment]
                if isinstance(channel, SipChannel):
                    self._release(channel)
                    channel.ended(_GONE_CAUSES[event.why])
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self.uas is None or self._loop is None:
            return
        if self.uas.waiting_for_ack:  # Timer G/H: every T1/2 while a 200 waits for its ACK
            due = self._loop.time() + T1 / 2
        else:  # session timers (RFC 4028): the earliest refresh or expiry
            due = self.uas.next_session_timer()
            if due is None:
                return
            due += 0.01  # never before the deadline
        if self._timer is not None:
            if self._timer.when() <= due:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        assert self.uas is not None and self._loop is not None
        try:
            self._handle(self.uas.tick(self._loop.time()))
        except Exception:
            log.exception("sip.timer_failed")

    # --- the engine's side -------------------------------------------------------------
    def send(self, data: bytes, address: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, address)

    def dial_seat(self, seat: str, *, caller: str = "") -> Any:
        """Ring a registered agent seat (see :meth:`OutboundCalls.dial_seat`)."""
        return self.outbound.dial_seat(seat, caller=caller)

    def dial(self, uri: str, *, caller: str = "") -> Any:
        """Call a URI of ``sip.outbound_allowed`` (see :meth:`OutboundCalls.dial_uri`)."""
        return self.outbound.dial_uri(uri, caller=caller)

    async def answer(self, channel: SipChannel) -> None:
        """Bind the call's RTP port, send 200 OK with the SDP answer, start the media."""
        assert self.uas is not None and self._loop is not None
        call = channel.call
        try:
            stream = await self.media.open(channel)
        except MediaError as exc:
            log.error("sip.no_rtp_port", call_id=channel.call_id, error=str(exc))
            self._handle(self.uas.reject(call, 503, "Service Unavailable"))
            self._release(channel)
            channel.ended(HangupCause.ERROR)
            raise HungUp(HangupCause.ERROR) from exc
        if channel.hung_up:  # cancelled while the port was being bound
            self.media.close(stream)
            raise HungUp(channel.hangup_cause or HangupCause.CANCELLED)
        try:
            answer, plan = answer_offer(
                call.offer,
                local_address=self.host,
                local_port=stream.port,
                session_id=secrets.randbits(31),
                telephone_event=self.telephone_event,
            )
        except OfferRejected as exc:  # checked at INVITE time already; kept for safety
            self.media.close(stream)
            self._handle(self.uas.reject(call, 488, "Not Acceptable Here"))
            self._release(channel)
            channel.ended(HangupCause.ERROR)
            raise HungUp(HangupCause.ERROR) from exc
        channel.stream = stream
        self.media.start(stream, plan)
        self._handle(self.uas.answer(call, serialize_sdp(answer), self._loop.time(), plan=plan))
        log.info(
            "sip.answered",
            call_id=channel.call_id,
            codec=plan.codec,
            rtp_port=stream.port,
            dtmf="rfc4733" if plan.event_payload_type is not None else "in-band",
        )

    def engine_hangs_up(self, channel: SipChannel) -> None:
        """The engine ends the call: BYE (or 480 before answer), media stopped."""
        assert self.uas is not None
        self._release(channel)
        self._handle(self.uas.hangup(channel.call))

    def _release(self, channel: SipChannel) -> None:
        self.channels.pop(channel.call_id, None)
        if channel.stream is not None:
            self.media.close(channel.stream)


def _log_register(event: Registered) -> None:
    result = event.result
    status = result.response.status
    source = f"{event.source[0]}:{event.source[1]}"
    auth = result.auth
    if status == 200:
        for binding in result.added:
            log.info(
                "sip.registered",
                seat=binding.seat,
                contact=binding.contact,
                expires_at=binding.expires_at,
                source=source,
            )
        for binding in result.removed:
            log.info("sip.unregistered", seat=binding.seat, contact=binding.contact, source=source)
    elif status == 403:
        log.warning("sip.register_forbidden", source=source, reason=auth.reason if auth else "")
    elif auth is not None and auth.counted_failure:
        log.warning("sip.register_auth_failed", source=source, reason=auth.reason)
    elif status != 401:
        log.info("sip.register_refused", source=source, status=status)
