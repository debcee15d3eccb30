"""The engine's SIP user-agent server as a plain object: datagrams in, datagrams and events out.

:class:`Uas` keeps the INVITE server transactions and dialogs of the calls that reach the
engine over UDP. It does no I/O and reads no clock: the transport shell feeds it each
datagram with its source address and the current time, calls :meth:`Uas.tick` for the
timers, and sends what comes back.

Why not aiosipua's transaction layer: it assumes it owns the socket and parses with its own
lax parser (see docs/sip.md), and on Python 3.11 it rejects uvloop's datagram transport. The
UAS side the engine needs — INVITE/ACK/CANCEL/BYE/OPTIONS over UDP, with the 2xx retransmitted
until ACK (RFC 3261 §13.3.1.4, Timers G and H) — is small enough to keep here, where every
step is tested directly with ``now`` passed in (``tests/test_sip_uas.py``).

Flow of a call: INVITE → 100 Trying, then (offer acceptable) 180 Ringing and a
:class:`NewCall` event, or 488 when no codec is common. The shell answers with
:meth:`Uas.answer` (200 OK + SDP, retransmitted until ACK), or :meth:`Uas.reject`. CANCEL
before the 200 → 200 for the CANCEL, 487 for the INVITE and :class:`CallGone` (``cancelled``).
BYE from the far end → 200 and :class:`CallGone` (``bye``). :meth:`Uas.hangup` sends BYE.
Malformed requests get the 400 of :func:`~drivers.sip.message.error_response` or are dropped.

A re-INVITE in a confirmed dialog (hold and resume, RFC 3264 §8.4) is answered here: the new
offer is answered on the call's RTP port with the next SDP version (``sendonly`` → ``recvonly``,
``inactive`` → ``inactive``, ``sendrecv`` → ``sendrecv``), the 200 is retransmitted until its
ACK like the first one, and :class:`Reinvited` tells the shell the new :class:`MediaPlan`. An
unacceptable new offer gets 488 and leaves the call as it was; a re-INVITE while a 200 still
waits for its ACK gets 491; an old CSeq gets 500.

Session timers (RFC 4028, :mod:`drivers.sip.session_timer`): an INVITE with
``Session-Expires`` gets it back in the 200 (``refresher=uac`` unless it asks otherwise or
cannot refresh; 422 with ``Min-SE`` below 90 s). Refreshes arrive as re-INVITEs or UPDATEs
(UPDATE with an SDP offer is answered like a re-INVITE, without one it gets a plain 200); a
session not refreshed in time ends with BYE and :class:`CallGone` (``session_expired``).
When the engine is the refresher it sends UPDATE (no SDP) at half the interval, retransmitted
as a non-INVITE client transaction; 481 or no answer ends the call.

Flood protection: new INVITEs and REGISTERs are counted per source address by a
:class:`~drivers.sip.ratelimit.SourceLimiter` each; over the limit the request gets 503 with
``Retry-After`` before any other work is done, and :class:`Limited` (once per source and log
window) tells the shell to log it. Retransmissions and in-dialog requests are not counted.
"""

from __future__ import annotations

import enum
import itertools
import secrets
from dataclasses import dataclass, field

from drivers.sip.message import (
    Headers,
    ParseError,
    Request,
    Response,
    error_response,
    parse,
    parse_sip_uri,
    response_to,
    screen_request,
)
from drivers.sip.ratelimit import SourceLimiter
from drivers.sip.registrar import RegisterResult, Registrar
from drivers.sip.sdp import (
    MediaPlan,
    OfferRejected,
    SdpError,
    Session,
    answer_offer,
    parse_sdp,
    serialize_sdp,
)
from drivers.sip.session_timer import (
    SessionTimer,
    SessionTimerRejected,
    expiry,
    negotiate,
    refresh_due,
    response_headers,
)

T1 = 0.5  # RFC 3261 timer values (seconds)
T2 = 4.0
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE"

Address = tuple[str, int]


class CallState(enum.StrEnum):
    RINGING = "ringing"  # 180 sent, waiting for the engine to answer
    ANSWERED = "answered"  # 200 sent, waiting for ACK
    CONFIRMED = "confirmed"  # ACK received
    ENDED = "ended"


@dataclass(slots=True)
class Send:
    """A datagram for the shell to send."""

    data: bytes
    address: Address


@dataclass(slots=True)
class NewCall:
    """An acceptable INVITE: the shell makes a channel and answers (or rejects) it."""

    call: UasCall


@dataclass(slots=True)
class CallGone:
    """A call ended by the far end (``bye``), before answer (``cancelled``), without ACK
    (``no_ack``; the UAS sent BYE) or without session refresh (``session_expired``; BYE sent)."""

    call: UasCall
    why: str


@dataclass(slots=True)
class Reinvited:
    """A re-INVITE changed the call's media (hold, resume): the shell applies ``plan``."""

    call: UasCall
    plan: MediaPlan


@dataclass(slots=True)
class Limited:
    """A source went over its rate limit (reported once per log window): the shell logs it."""

    source: Address
    method: str
    retry_after: int
    refused: int  # refusals since the previous report, this one included


@dataclass(slots=True)
class Registered:
    """A REGISTER was decided by the registrar (any status): the shell logs it."""

    source: Address
    result: RegisterResult


Event = Send | NewCall | CallGone | Reinvited | Limited | Registered

INVITE_RATE, INVITE_BURST = 50.0, 100  # per source address: new calls per second, burst
REGISTER_RATE, REGISTER_BURST = 5.0, 20


@dataclass(slots=True, eq=False)
class UasCall:
    """One incoming call: its INVITE, dialog identifiers and where to reach the caller."""

    call_id: str
    invite: Request
    source: Address
    offer: Session
    caller: str
    called: str
    to_tag: str
    state: CallState = CallState.RINGING
    last_response: bytes = b""  # resent when the INVITE is retransmitted
    local_cseq: int = 0
    remote_target: Address | None = None
    ok: bytes = b""  # the 200 OK, retransmitted until ACK
    resend_at: float = 0.0
    interval: float = T1
    give_up_at: float = 0.0
    data: dict[str, object] = field(default_factory=dict)  # the shell's per-call data
    remote_cseq: int = 0  # highest CSeq of the caller's requests in the dialog
    local_sdp: Session | None = None  # the engine's last answer (port, session id, version)
    plan: MediaPlan | None = None  # the media plan in force
    timer: SessionTimer | None = None  # RFC 4028 session timer, when the caller asked for one
    session_ends_at: float | None = None  # BYE then, unless a refresh comes first
    refresh_at: float | None = None  # the engine refreshes then (refresher=uas)
    update: _Pending | None = None  # the engine's UPDATE in flight
    last_update: tuple[int, bytes] | None = None  # (CSeq, response) of the caller's last UPDATE


@dataclass(slots=True)
class _Pending:
    """A request the engine sent in a dialog, retransmitted until answered (Timers E/F)."""

    cseq: int
    data: bytes
    resend_at: float
    interval: float
    give_up_at: float


class Uas:
    """INVITE server transactions and dialogs for the calls of one SIP endpoint."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        user_agent: str = "hotline-95598",
        invite_limit: SourceLimiter | None = None,
        register_limit: SourceLimiter | None = None,
        registrar: Registrar | None = None,
        telephone_event: bool = True,
    ) -> None:
        self.host = host
        self.telephone_event = telephone_event  # RFC 4733 accepted in answers (else in-band)
        self.registrar = registrar  # None: REGISTER is answered 405
        self.port = port
        self.user_agent = user_agent
        self.limits = {
            "INVITE": SourceLimiter(INVITE_RATE, INVITE_BURST)
            if invite_limit is None
            else invite_limit,
            "REGISTER": SourceLimiter(REGISTER_RATE, REGISTER_BURST)
            if register_limit is None
            else register_limit,
        }
        self.calls: dict[str, UasCall] = {}
        self._timed: dict[str, UasCall] = {}  # calls with a session timer running
        self._ids = itertools.count(1)

    # --- input -------------------------------------------------------------------------
    def receive(self, data: bytes, source: Address, now: float) -> list[Event]:
        """Events caused by one datagram. Never raises for anything a peer can send."""
        try:
            message = parse(data)
        except ParseError as exc:
            reply = error_response(data, exc)
            return [Send(reply, source)] if reply is not None else []
        if isinstance(message, Response):
            return self._response(message, now)  # our UPDATE's answer; BYE's: nothing to do
        rejection = screen_request(message)
        if rejection is not None:
            if message.method == "ACK":
                return []
            response = response_to(message, rejection.status, rejection.reason)
            for name, value in rejection.headers:
                response.headers.add(name, value)
            return [self._send(response, source)]
        try:
            return self._request(message, source, now)
        except (ParseError, ValueError) as exc:  # a header only read now turned out bad
            if message.method == "ACK":
                return []
            reason = exc.reason if isinstance(exc, ParseError) else str(exc)
            return [self._send(response_to(message, 400, reason[:100] or "Bad Request"), source)]

    def _request(self, request: Request, source: Address, now: float) -> list[Event]:
        method = request.method
        limiter = self.limits.get(method)
        if limiter is not None and not self._known(request):
            verdict = limiter.check(source[0], now)
            if not verdict.allowed:
                response = response_to(request, 503, "Service Unavailable")
                response.headers.add("Retry-After", str(verdict.retry_after))
                out: list[Event] = [self._send(response, source)]
                if verdict.report:
                    out.append(
                        Limited(source, method, verdict.retry_after, verdict.refused_since_report)
                    )
                return out
        if method == "INVITE":
            return self._invite(request, source, now)
        if method == "ACK":
            return self._ack(request, now)
        if method == "CANCEL":
            return self._cancel(request, source)
        if method == "BYE":
            return self._bye(request, source)
        if method == "UPDATE":
            return self._update(request, source, now)
        if method == "OPTIONS":
            response = response_to(request, 200, "OK", self._tag())
            response.headers.add("Allow", ALLOW)
            response.headers.add("Accept", "application/sdp")
            return [self._send(response, source)]
        if method == "REGISTER" and self.registrar is not None:
            result = self.registrar.handle_register(request, source=source, now=now)
            return [self._send(result.response, source), Registered(source, result)]
        response = response_to(request, 405, "Method Not Allowed")
        response.headers.add("Allow", ALLOW)
        return [self._send(response, source)]

    def _known(self, request: Request) -> bool:
        """An INVITE of a call the UAS already has (retransmission, re-INVITE): not counted."""
        return request.method == "INVITE" and (
            request.to.tag is not None or (request.call_id or "") in self.calls
        )

    def _invite(self, request: Request, source: Address, now: float) -> list[Event]:
        call_id = request.call_id or ""
        existing = self.calls.get(call_id)
        if existing is not None:
            if request.to.tag is None and existing.last_response:
                return [Send(existing.last_response, source)]  # a retransmitted INVITE
            if request.to.tag == existing.to_tag:
                return self._reinvite(existing, request, source, now)
            return [
                self._send(response_to(request, 481, "Call/Transaction Does Not Exist"), source)
            ]
        if request.to.tag is not None:
            return [
                self._send(response_to(request, 481, "Call/Transaction Does Not Exist"), source)
            ]
        out: list[Event] = [self._send(response_to(request, 100, "Trying"), source)]
        try:
            timer = negotiate(request)
        except SessionTimerRejected as exc:
            out.append(self._refuse(request, exc, source, to_tag=self._tag()))
            return out
        try:
            offer = parse_sdp(request.body)
            answer_offer(offer, local_address=self.host, local_port=0, session_id=0)
        except (SdpError, OfferRejected) as exc:
            reason = getattr(exc, "reason", str(exc))
            response = response_to(request, 488, "Not Acceptable Here", self._tag())
            response.headers.add("Warning", f'399 hotline "{_quote(reason)}"')
            out.append(self._send(response, source))
            return out
        called = parse_sip_uri(request.uri).user or "" if request.uri.startswith("sip") else ""
        caller_uri = request.from_.uri
        caller = parse_sip_uri(caller_uri).user or "" if caller_uri.startswith("sip") else ""
        call = UasCall(call_id, request, source, offer, caller, called, self._tag())
        call.remote_cseq = request.cseq.seq
        call.timer = timer
        call.remote_target = _contact_address(request, source)
        ringing = response_to(request, 180, "Ringing", call.to_tag)
        call.last_response = self._bytes(ringing, contact=True)
        self.calls[call_id] = call
        out.append(Send(call.last_response, source))
        out.append(NewCall(call))
        return out

    def _reinvite(
        self, call: UasCall, request: Request, source: Address, now: float
    ) -> list[Event]:
        """A new offer in the dialog: hold, resume or a codec change (RFC 3261 §14.2)."""
        cseq = request.cseq.seq
        if cseq == call.remote_cseq and call.last_response:
            return [Send(call.last_response, source)]  # the re-INVITE retransmitted
        if cseq < call.remote_cseq:
            return [self._send(response_to(request, 500, "Out of Order CSeq"), source)]
        if call.state is not CallState.CONFIRMED or call.local_sdp is None:
            response = response_to(request, 491, "Request Pending")
            return [self._send(response, source)]
        try:
            timer = negotiate(request)
        except SessionTimerRejected as exc:
            call.remote_cseq = cseq
            call.last_response = bytes(self._refuse(request, exc, source).data)
            return [Send(call.last_response, source)]
        call.remote_cseq = cseq
        out: list[Event] = [self._send(response_to(request, 100, "Trying"), source)]
        current = call.local_sdp
        if request.body:
            try:
                offer, answer, plan = self._answer_again(call, request.body)
            except (SdpError, OfferRejected) as exc:
                reason = getattr(exc, "reason", str(exc))
                response = response_to(request, 488, "Not Acceptable Here")
                response.headers.add("Warning", f'399 hotline "{_quote(reason)}"')
                call.last_response = self._bytes(response)
                out.append(Send(call.last_response, source))
                return out
            call.offer, call.local_sdp, call.plan = offer, answer, plan
            out.append(Reinvited(call, plan))
        else:  # no offer: the 200 carries the engine's current description as the offer
            answer = current
        ok = response_to(request, 200, "OK", call.to_tag)
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = serialize_sdp(answer)
        call.timer = timer
        self._refreshed(call, ok, now)
        call.ok = call.last_response = self._bytes(ok, contact=True)
        call.state = CallState.ANSWERED
        call.interval = T1
        call.resend_at = now + T1
        call.give_up_at = now + 64 * T1
        call.remote_target = _contact_address(request, call.remote_target or source)
        out.insert(1, Send(call.ok, source))
        return out

    def _ack(self, request: Request, now: float) -> list[Event]:
        call = self.calls.get(request.call_id or "")
        if call is not None and call.state is CallState.ANSWERED:
            call.state = CallState.CONFIRMED
            call.ok = b""
        return []  # ACKs of 3xx-6xx and stray ACKs are absorbed

    def _cancel(self, request: Request, source: Address) -> list[Event]:
        call = self.calls.get(request.call_id or "")
        if call is None or call.invite.top_via.branch != request.top_via.branch:
            return [
                self._send(response_to(request, 481, "Call/Transaction Does Not Exist"), source)
            ]
        out: list[Event] = [self._send(response_to(request, 200, "OK", call.to_tag), source)]
        if call.state is CallState.RINGING:
            terminated = response_to(call.invite, 487, "Request Terminated", call.to_tag)
            out.append(self._send(terminated, call.source))
            self._end(call)
            out.append(CallGone(call, "cancelled"))
        return out

    def _bye(self, request: Request, source: Address) -> list[Event]:
        call = self.calls.get(request.call_id or "")
        if call is None or call.state is CallState.RINGING:
            return [
                self._send(response_to(request, 481, "Call/Transaction Does Not Exist"), source)
            ]
        self._end(call)
        return [self._send(response_to(request, 200, "OK"), source), CallGone(call, "bye")]

    # --- the engine's side -----------------------------------------------------------------
    def answer(
        self, call: UasCall, sdp: bytes, now: float, *, plan: MediaPlan | None = None
    ) -> list[Event]:
        """200 OK with the SDP answer, retransmitted by :meth:`tick` until the ACK."""
        if call.state is not CallState.RINGING:
            return []
        try:
            call.local_sdp = parse_sdp(sdp)
        except SdpError:
            call.local_sdp = None  # a re-INVITE then gets 491: nothing to answer it from
        call.plan = plan
        ok = response_to(call.invite, 200, "OK", call.to_tag)
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = sdp
        self._refreshed(call, ok, now)
        call.ok = call.last_response = self._bytes(ok, contact=True)
        call.state = CallState.ANSWERED
        call.interval = T1
        call.resend_at = now + T1
        call.give_up_at = now + 64 * T1
        return [Send(call.ok, call.source)]

    def reject(self, call: UasCall, status: int, reason: str) -> list[Event]:
        """A final error response before answer (e.g. 480 when no flow takes the call)."""
        if call.state is not CallState.RINGING:
            return []
        response = response_to(call.invite, status, reason, call.to_tag)
        self._end(call)
        return [self._send(response, call.source)]

    def hangup(self, call: UasCall) -> list[Event]:
        """The engine ends the call: BYE once answered, 480 before."""
        if call.state is CallState.RINGING:
            return self.reject(call, 480, "Temporarily Unavailable")
        if call.state is CallState.ENDED:
            return []
        self._end(call)
        return [Send(self._bye_request(call), call.remote_target or call.source)]

    def tick(self, now: float) -> list[Event]:
        """Timer G (resend the 200 at T1, 2·T1 … T2) and Timer H (no ACK after 64·T1: BYE)."""
        out: list[Event] = []
        for call in list(self.calls.values()):
            if call.session_ends_at is not None or call.refresh_at is not None or call.update:
                out.extend(self._session_tick(call, now))
                if call.state is CallState.ENDED:
                    continue
            if call.state is not CallState.ANSWERED:
                continue
            if now >= call.give_up_at:
                out.extend(self.hangup(call))
                out.append(CallGone(call, "no_ack"))
                continue
            if now < call.resend_at:
                continue
            out.append(Send(call.ok, call.source))
            call.interval = min(2 * call.interval, T2)
            call.resend_at = now + call.interval
        return out

    @property
    def waiting_for_ack(self) -> bool:
        return any(c.state is CallState.ANSWERED for c in self.calls.values())

    def next_session_timer(self) -> float | None:
        """The earliest session-timer deadline of any call (None: none running)."""
        times = [
            t
            for c in self._timed.values()
            for t in (
                c.session_ends_at,
                c.refresh_at,
                min(c.update.resend_at, c.update.give_up_at) if c.update else None,
            )
            if t is not None
        ]
        return min(times, default=None)

    # --- session timers (RFC 4028) -----------------------------------------------------------
    def _refreshed(self, call: UasCall, ok: Response, now: float) -> None:
        """A 2xx refreshes the session: its headers, and the timers restart from ``now``."""
        timer = call.timer
        if timer is None:
            call.session_ends_at = call.refresh_at = None
            self._timed.pop(call.call_id, None)
            return
        self._timed[call.call_id] = call
        ok.headers.add("Supported", "timer")
        for name, value in response_headers(timer):
            ok.headers.add(name, value)
        call.session_ends_at = expiry(timer, now)
        call.refresh_at = refresh_due(timer, now) if timer.refresher == "uas" else None

    def _session_tick(self, call: UasCall, now: float) -> list[Event]:
        pending = call.update
        if call.session_ends_at is not None and now >= call.session_ends_at:
            return [*self.hangup(call), CallGone(call, "session_expired")]
        if pending is not None:
            if now >= pending.give_up_at:  # Timer F: the caller is gone
                return [*self.hangup(call), CallGone(call, "session_expired")]
            if now >= pending.resend_at:
                pending.interval = min(2 * pending.interval, T2)
                pending.resend_at = now + pending.interval
                return [Send(pending.data, call.remote_target or call.source)]
            return []
        if call.refresh_at is not None and now >= call.refresh_at:
            if call.state is not CallState.CONFIRMED:
                call.refresh_at = now + T1  # an offer/answer is still open: try again shortly
                return []
            call.refresh_at = None
            assert call.timer is not None
            extra = [
                ("Session-Expires", f"{call.timer.interval};refresher=uas"),
                ("Supported", "timer"),
            ]
            data = self._dialog_request(call, "UPDATE", extra)
            call.update = _Pending(call.local_cseq, data, now + T1, T1, now + 64 * T1)
            return [Send(data, call.remote_target or call.source)]
        return []

    def _response(self, response: Response, now: float) -> list[Event]:
        call = self.calls.get(response.call_id or "")
        if call is None or call.update is None:
            return []
        try:
            cseq = response.cseq
        except ParseError:
            return []
        if cseq.method != "UPDATE" or cseq.seq != call.update.cseq or response.status < 200:
            return []
        call.update = None
        if 200 <= response.status < 300:
            timer = call.timer
            try:
                granted = negotiate(Request(response.headers, b"", "UPDATE", ""))
            except SessionTimerRejected:
                granted = None
            if timer is not None and granted is not None:
                call.timer = SessionTimer(granted.interval, "uas", timer.uac_supports)
            if call.timer is not None:
                call.session_ends_at = expiry(call.timer, now)
                call.refresh_at = refresh_due(call.timer, now)
            return []
        if response.status in (408, 481):  # the dialog is gone at the far end
            return [*self.hangup(call), CallGone(call, "session_expired")]
        return []  # e.g. 405/501: the session runs on until it expires

    def _update(self, request: Request, source: Address, now: float) -> list[Event]:
        """UPDATE in a dialog (RFC 3311): a session refresh, with or without a new offer."""
        call = self.calls.get(request.call_id or "")
        if call is None or request.to.tag != call.to_tag:
            return [
                self._send(response_to(request, 481, "Call/Transaction Does Not Exist"), source)
            ]
        cseq = request.cseq.seq
        if call.last_update is not None and call.last_update[0] == cseq:
            return [Send(call.last_update[1], source)]  # the UPDATE retransmitted
        if cseq < call.remote_cseq:
            return [self._send(response_to(request, 500, "Out of Order CSeq"), source)]
        call.remote_cseq = cseq
        out: list[Event] = []
        try:
            timer = negotiate(request)
        except SessionTimerRejected as exc:
            refusal = self._refuse(request, exc, source)
            call.last_update = (cseq, refusal.data)
            return [refusal]
        ok = response_to(request, 200, "OK", call.to_tag)
        if request.body:
            if call.state is not CallState.CONFIRMED or call.local_sdp is None:
                refusal = self._send(response_to(request, 491, "Request Pending"), source)
                call.last_update = (cseq, refusal.data)
                return [refusal]
            try:
                offer, answer, plan = self._answer_again(call, request.body)
            except (SdpError, OfferRejected) as exc:
                response = response_to(request, 488, "Not Acceptable Here")
                response.headers.add("Warning", f'399 hotline "{_quote(_reason(exc))}"')
                data = self._bytes(response)
                call.last_update = (cseq, data)
                return [Send(data, source)]
            call.offer, call.local_sdp, call.plan = offer, answer, plan
            ok.headers.add("Content-Type", "application/sdp")
            ok.body = serialize_sdp(answer)
            out.append(Reinvited(call, plan))
        if call.state is not CallState.RINGING:
            call.timer = timer
            self._refreshed(call, ok, now)
        data = self._bytes(ok, contact=True)
        call.last_update = (cseq, data)
        return [Send(data, source), *out]

    def _answer_again(self, call: UasCall, body: bytes) -> tuple[Session, Session, MediaPlan]:
        """Answer a new offer in the dialog on the call's RTP port, next SDP version."""
        current = call.local_sdp
        assert current is not None
        offer = parse_sdp(body)
        answer, plan = answer_offer(
            offer,
            local_address=self.host,
            local_port=current.media[0].port if current.media else 0,
            session_id=current.session_id,
            session_version=current.session_version + 1,
            telephone_event=self.telephone_event,
        )
        return offer, answer, plan

    def _refuse(
        self, request: Request, exc: SessionTimerRejected, source: Address, to_tag: str = ""
    ) -> Send:
        response = response_to(request, exc.status, exc.reason, to_tag or None)
        for name, value in exc.headers:
            response.headers.add(name, value)
        return self._send(response, source)

    # --- helpers -----------------------------------------------------------------------------
    def _end(self, call: UasCall) -> None:
        call.state = CallState.ENDED
        call.ok = b""
        call.session_ends_at = call.refresh_at = None
        call.update = None
        self._timed.pop(call.call_id, None)
        self.calls.pop(call.call_id, None)

    def _bye_request(self, call: UasCall) -> bytes:
        return self._dialog_request(call, "BYE")

    def _dialog_request(
        self, call: UasCall, method: str, extra: list[tuple[str, str]] | None = None
    ) -> bytes:
        """A request of the engine's in the call's dialog (BYE, UPDATE)."""
        invite = call.invite
        call.local_cseq += 1
        host, port = call.remote_target or call.source
        headers = Headers()
        headers.add(
            "Via", f"SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(8)}"
        )
        headers.add("Max-Forwards", "70")
        to_value = invite.headers.get("to") or ""
        headers.add("From", f"{to_value};tag={call.to_tag}")
        headers.add("To", invite.headers.get("from") or "")
        headers.add("Call-ID", call.call_id)
        headers.add("CSeq", f"{call.local_cseq} {method}")
        headers.add("User-Agent", self.user_agent)
        if method != "BYE":
            headers.add("Contact", f"<sip:95598@{self.host}:{self.port}>")
        for name, value in extra or []:
            headers.add(name, value)
        contact = invite.contacts[0].uri if invite.headers.get("contact") else f"sip:{host}:{port}"
        return bytes(Request(headers, b"", method, contact))

    def _send(self, response: Response, address: Address) -> Send:
        return Send(self._bytes(response), address)

    def _bytes(self, response: Response, *, contact: bool = False) -> bytes:
        if contact:
            response.headers.add("Contact", f"<sip:95598@{self.host}:{self.port}>")
            response.headers.add("Allow", ALLOW)
        response.headers.add("Server", self.user_agent)
        return bytes(response)

    def _tag(self) -> str:
        return f"{secrets.token_hex(4)}{next(self._ids):x}"


def _contact_address(request: Request, source: Address) -> Address:
    """Where in-dialog requests go: the Contact's host and port, else the packet's source."""
    try:
        contacts = request.contacts
        if contacts and contacts[0].uri.startswith("sip"):
            uri = parse_sip_uri(contacts[0].uri)
            return (uri.host, uri.port or 5060)
    except ParseError:
        pass
    return source


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", exc))


def _quote(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")[:120]
