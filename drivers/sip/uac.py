"""The engine's SIP user-agent client as a plain object: the legs the engine places itself.

:class:`Uac` keeps the client transactions and dialogs of engine-originated calls (the B2BUA's
outbound leg to an agent's seat) and the OPTIONS keepalives sent to registered seats. Like
:class:`~drivers.sip.uas.Uas` it does no I/O and reads no clock: the transport shell hands it
each datagram that belongs to it with the current time, calls :meth:`Uac.tick` for the
timers, and sends the :class:`~drivers.sip.uas.Send` events it returns.

An outbound leg (:meth:`Uac.invite`): INVITE with the engine's SDP offer
(:func:`~drivers.sip.sdp.make_offer`), retransmitted over UDP at T1, 2·T1, 4·T1 … (Timer A)
until a response arrives, given up after 64·T1 (Timer B → :class:`LegFailed` with 408).
1xx → :class:`LegRinging`; 2xx → ACK (a new transaction, resent for every retransmitted 2xx),
the answer read with :func:`~drivers.sip.sdp.accept_answer` and :class:`LegAnswered` with the
:class:`~drivers.sip.sdp.MediaPlan`; 3xx–6xx → ACK on the INVITE's branch and
:class:`LegFailed`. :meth:`Uac.cancel` before the answer sends CANCEL (once a provisional
response has come, as RFC 3261 §9.1 asks; before that it waits for one or for Timer B); a 2xx
crossing the CANCEL is ACKed and the leg ended with BYE. In the dialog: :meth:`Uac.bye`, BYE
from the far end (200 and :class:`LegEnded`), :meth:`Uac.hold` / :meth:`Uac.resume` send a
re-INVITE with ``sendonly`` / ``sendrecv`` (:class:`LegReinvited` with the new plan, or
:class:`LegReinviteFailed`), a re-INVITE from the far end is answered from the leg's current
description (its own 200 resent when the re-INVITE is retransmitted), OPTIONS in the dialog
gets 200, anything else 405. Non-INVITE requests (BYE, CANCEL, OPTIONS) are retransmitted at
T1 doubling up to T2 (Timer E) and given up after 64·T1 (Timer F).

OPTIONS keepalive (:meth:`Uac.options`): one out-of-dialog OPTIONS transaction per probe;
any final response means the phone is alive (:class:`OptionsResult` ``alive=True`` with the
status), no response within ``timeout`` means it is not.

Nothing here decides *whom* to call: the shell only calls :meth:`invite` for targets the
engine allows (a registered seat's binding, a configured URI; see docs/sip.md, toll fraud).
"""

from __future__ import annotations

import enum
import itertools
import re
import secrets
from dataclasses import dataclass, field

from drivers.sip.message import (
    Headers,
    ParseError,
    Request,
    Response,
    parse,
    parse_sip_uri,
    response_to,
    screen_request,
)
from drivers.sip.sdp import (
    Direction,
    MediaPlan,
    OfferRejected,
    SdpError,
    Session,
    accept_answer,
    make_offer,
    parse_sdp,
    serialize_sdp,
)
from drivers.sip.uas import ALLOW, T1, T2, Address, Send

TIMER_B = 64 * T1  # INVITE client transaction timeout
TIMER_F = 64 * T1  # non-INVITE client transaction timeout
_CALL_ID = re.compile(rb"^(?:Call-ID|i)[ \t]*:[ \t]*([^\r\n]+?)[ \t]*\r?$", re.I | re.M)
_DISPLAY_SAFE = re.compile(r"[^0-9A-Za-z+*#.\-_]")


class LegState(enum.StrEnum):
    CALLING = "calling"  # INVITE sent, nothing heard yet
    RINGING = "ringing"  # a provisional response came
    CONFIRMED = "confirmed"  # 2xx received and ACKed
    ENDED = "ended"


@dataclass(slots=True)
class LegRinging:
    """A provisional response (180/183) to the leg's INVITE."""

    leg: UacLeg
    status: int


@dataclass(slots=True)
class LegAnswered:
    """The far end answered (2xx, ACK sent): start the media with ``plan``."""

    leg: UacLeg
    plan: MediaPlan


@dataclass(slots=True)
class LegFailed:
    """The leg never got answered: a 3xx–6xx final response (487 after CANCEL), 408 when
    nothing came (Timer B), 488 when the answer could not be used (the leg is then ended
    with BYE)."""

    leg: UacLeg
    status: int
    reason: str


@dataclass(slots=True)
class LegEnded:
    """An answered leg ended: ``bye`` from the far end, or ``timeout`` (our BYE unanswered)."""

    leg: UacLeg
    why: str


@dataclass(slots=True)
class LegReinvited:
    """A re-INVITE (ours or the far end's) changed the leg's media: apply ``plan``."""

    leg: UacLeg
    plan: MediaPlan


@dataclass(slots=True)
class LegReinviteFailed:
    """Our re-INVITE got a final error response or none: the media stays as it was."""

    leg: UacLeg
    status: int


@dataclass(slots=True)
class OptionsResult:
    """The outcome of one OPTIONS probe: any final response means the phone is alive."""

    key: str
    alive: bool
    status: int  # 0 when nothing came


UacEvent = (
    Send
    | LegRinging
    | LegAnswered
    | LegFailed
    | LegEnded
    | LegReinvited
    | LegReinviteFailed
    | OptionsResult
)


@dataclass(slots=True, eq=False)
class _ClientTx:
    """One client transaction: the request bytes and its retransmission timers."""

    method: str
    branch: str
    data: bytes
    address: Address
    resend_at: float
    interval: float
    give_up_at: float
    leg: UacLeg | None = None
    key: str = ""  # OPTIONS probe key
    retransmit: bool = True  # INVITE stops retransmitting once a provisional arrives
    done: bool = False


@dataclass(slots=True, eq=False)
class UacLeg:
    """One outbound call: dialog identifiers, the offer made, the plan agreed."""

    call_id: str
    request_uri: str
    target: Address  # where every request of the dialog is sent (NAT-aware)
    local_tag: str
    from_value: str
    to_value: str
    offer: Session
    state: LegState = LegState.CALLING
    cseq: int = 1
    invite_cseq: int = 1
    remote_tag: str | None = None
    remote_uri: str = ""  # the far end's Contact: Request-URI of in-dialog requests
    remote_cseq: int = -1
    plan: MediaPlan | None = None
    answer: Session | None = None
    ack: bytes = b""  # the ACK of the 2xx, resent when the 2xx is retransmitted
    cancel_wanted: bool = False
    cancelled: bool = False
    invite_tx: _ClientTx | None = None
    reinvite_tx: _ClientTx | None = None
    pending_offer: Session | None = None
    last_reinvite_reply: bytes = b""
    data: dict[str, object] = field(default_factory=dict)  # the shell's per-leg data


class Uac:
    """Client transactions and dialogs of the legs one SIP endpoint places."""

    def __init__(self, host: str, port: int, *, user_agent: str = "hotline-95598") -> None:
        self.host = host
        self.port = port
        self.user_agent = user_agent
        self.legs: dict[str, UacLeg] = {}  # SIP Call-ID -> leg
        self._tx: dict[str, _ClientTx] = {}  # branch -> transaction
        self._ids = itertools.count(1)

    # --- which datagrams belong here --------------------------------------------------------
    def claims(self, data: bytes) -> bool:
        """A response, or a request in a dialog this UAC placed (cheap: no full parse)."""
        if data.startswith(b"SIP/2.0 "):
            return True
        if not self.legs:
            return False
        match = _CALL_ID.search(data[: data.find(b"\r\n\r\n") + 2 if b"\r\n\r\n" in data else None])
        return bool(match) and match.group(1).decode("utf-8", "replace") in self.legs

    # --- the engine's side --------------------------------------------------------------------
    def invite(
        self,
        request_uri: str,
        target: Address,
        offer: Session,
        now: float,
        *,
        to_uri: str | None = None,
        caller: str = "",
        from_user: str = "95598",
    ) -> tuple[UacLeg, list[UacEvent]]:
        """Place a leg: INVITE ``request_uri`` sent to ``target`` with ``offer``."""
        uri = parse_sip_uri(request_uri)  # raises ParseError for a bad URI
        if uri.scheme not in ("sip", "sips"):
            raise ParseError(f"cannot call a {uri.scheme}: URI")
        display = _DISPLAY_SAFE.sub("", caller)[:32]
        name = f'"{display}" ' if display else ""
        leg = UacLeg(
            call_id=f"{secrets.token_hex(10)}@{self.host}",
            request_uri=request_uri,
            target=target,
            local_tag=self._tag(),
            from_value=f"{name}<sip:{from_user}@{self.host}:{self.port}>",
            to_value=f"<{to_uri or request_uri}>",
            offer=offer,
        )
        self.legs[leg.call_id] = leg
        body = serialize_sdp(offer)
        data, branch = self._request(leg, "INVITE", leg.cseq, body=body)
        tx = self._start_tx("INVITE", branch, data, target, now, leg=leg)
        leg.invite_tx = tx
        return leg, [Send(data, target)]

    def cancel(self, leg: UacLeg, now: float) -> list[UacEvent]:
        """Give up an unanswered leg (ring timeout, caller gone). Answered: BYE instead."""
        if leg.state is LegState.CONFIRMED:
            return self.bye(leg, now)
        if leg.state is LegState.ENDED or leg.cancel_wanted:
            return []
        leg.cancel_wanted = True
        if leg.state is LegState.RINGING:
            return self._send_cancel(leg, now)
        return []  # CANCEL goes out with the first provisional response (RFC 3261 §9.1)

    def bye(self, leg: UacLeg, now: float) -> list[UacEvent]:
        """End an answered leg (cancel one not answered yet)."""
        if leg.state is not LegState.CONFIRMED:
            return self.cancel(leg, now)
        leg.state = LegState.ENDED
        leg.cseq += 1
        data, branch = self._request(leg, "BYE", leg.cseq, in_dialog=True)
        self._start_tx("BYE", branch, data, leg.target, now, leg=None)
        self.legs.pop(leg.call_id, None)
        return [Send(data, leg.target)]

    def hold(self, leg: UacLeg, now: float) -> list[UacEvent]:
        """re-INVITE with ``sendonly``: the engine holds the far end."""
        return self._reinvite(leg, Direction.SENDONLY, now)

    def resume(self, leg: UacLeg, now: float) -> list[UacEvent]:
        """re-INVITE with ``sendrecv``."""
        return self._reinvite(leg, Direction.SENDRECV, now)

    def options(
        self, key: str, request_uri: str, target: Address, now: float, *, timeout: float = TIMER_F
    ) -> list[UacEvent]:
        """An OPTIONS probe (keepalive); :class:`OptionsResult` with ``key`` comes later."""
        branch = self._branch()
        headers = Headers()
        headers.add("Via", f"SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:95598@{self.host}:{self.port}>;tag={self._tag()}")
        headers.add("To", f"<{request_uri}>")
        headers.add("Call-ID", f"{secrets.token_hex(10)}@{self.host}")
        headers.add("CSeq", "1 OPTIONS")
        headers.add("User-Agent", self.user_agent)
        headers.add("Accept", "application/sdp")
        data = bytes(Request(headers, b"", "OPTIONS", request_uri))
        tx = self._start_tx("OPTIONS", branch, data, target, now, leg=None)
        tx.key = key
        tx.give_up_at = now + timeout
        return [Send(data, target)]

    # --- input --------------------------------------------------------------------------------
    def receive(self, data: bytes, source: Address, now: float) -> list[UacEvent]:
        """Events caused by one datagram :meth:`claims` took. Never raises for peer input."""
        try:
            message = parse(data)
        except ParseError:
            return []
        try:
            if isinstance(message, Response):
                return self._response(message, now)
            return self._request_in(message, source, now)
        except (ParseError, ValueError):
            return []

    def tick(self, now: float) -> list[UacEvent]:
        """Timers A/E (retransmit) and B/F (give up)."""
        out: list[UacEvent] = []
        for branch, tx in list(self._tx.items()):
            if tx.done:
                self._tx.pop(branch, None)
                continue
            if now >= tx.give_up_at:
                self._tx.pop(branch, None)
                tx.done = True
                out.extend(self._timed_out(tx, now))
                continue
            if tx.retransmit and now >= tx.resend_at:
                out.append(Send(tx.data, tx.address))
                tx.interval = tx.interval * 2 if tx.method == "INVITE" else min(2 * tx.interval, T2)
                tx.resend_at = now + tx.interval
        return out

    @property
    def next_deadline(self) -> float | None:
        times = [
            min(tx.give_up_at, tx.resend_at) if tx.retransmit else tx.give_up_at
            for tx in self._tx.values()
            if not tx.done
        ]
        return min(times) if times else None

    # --- responses ----------------------------------------------------------------------------
    def _response(self, response: Response, now: float) -> list[UacEvent]:
        branch = response.top_via.branch or ""
        method = response.cseq.method
        tx = self._tx.get(f"{branch}/cancel" if method == "CANCEL" else branch)
        if tx is not None and tx.method != method:
            tx = None
        status = response.status
        if tx is None:
            # a 2xx retransmitted after its transaction ended: ACK it again
            leg = self.legs.get(response.call_id or "")
            if leg is not None and 200 <= status < 300 and response.cseq.method == "INVITE":
                if leg.ack and response.cseq.seq == leg.invite_cseq:
                    return [Send(leg.ack, leg.target)]
            return []
        if tx.method == "INVITE":
            assert tx.leg is not None
            if tx.leg.reinvite_tx is tx:
                return self._reinvite_response(tx.leg, tx, response, now)
            return self._invite_response(tx.leg, tx, response, now)
        if status < 200:
            tx.retransmit = tx.method != "INVITE" and tx.retransmit
            return []
        tx.done = True
        self._tx.pop(f"{branch}/cancel" if method == "CANCEL" else branch, None)
        if tx.method == "OPTIONS":
            return [OptionsResult(tx.key, True, status)]
        return []  # BYE, CANCEL: nothing more to do

    def _invite_response(
        self, leg: UacLeg, tx: _ClientTx, response: Response, now: float
    ) -> list[UacEvent]:
        status = response.status
        if status < 200:
            tx.retransmit = False  # Timer A stops once the far end is proceeding
            if status == 100:
                return []
            out: list[UacEvent] = []
            if leg.state is LegState.CALLING:
                leg.state = LegState.RINGING
                if leg.cancel_wanted:
                    return self._send_cancel(leg, now)
                out.append(LegRinging(leg, status))
            return out
        if status >= 300:
            tx.done = True
            self._tx.pop(tx.branch, None)
            ack = self._ack_for_failure(leg, tx, response)
            was_cancelled = leg.cancelled or leg.cancel_wanted
            self._end(leg)
            out = [Send(ack, leg.target)]
            if leg.state is not LegState.CONFIRMED:
                reason = response.reason or "failed"
                if was_cancelled and status == 487:
                    reason = "cancelled"
                out.append(LegFailed(leg, status, reason))
            return out
        # 2xx: the dialog is confirmed; the transaction ends, the ACK is our own
        tx.done = True
        self._tx.pop(tx.branch, None)
        if leg.state is LegState.CONFIRMED:
            return [Send(leg.ack, leg.target)] if leg.ack else []
        if leg.state is LegState.ENDED:
            return []
        leg.remote_tag = response.to.tag
        leg.to_value = response.headers.get("to") or leg.to_value
        leg.remote_uri = _contact_uri(response) or leg.request_uri
        leg.ack = self._ack_for_2xx(leg)
        leg.state = LegState.CONFIRMED
        out = [Send(leg.ack, leg.target)]
        if leg.cancel_wanted:  # the 2xx crossed our CANCEL: end the call at once
            out.extend(self.bye(leg, now))
            out.append(LegFailed(leg, 487, "cancelled"))
            return out
        try:
            leg.answer = parse_sdp(response.body)
            leg.plan = accept_answer(leg.offer, leg.answer)
        except (SdpError, OfferRejected) as exc:
            out.extend(self.bye(leg, now))
            out.append(LegFailed(leg, 488, f"unusable answer: {getattr(exc, 'reason', exc)}"))
            return out
        out.append(LegAnswered(leg, leg.plan))
        return out

    def _reinvite_response(
        self, leg: UacLeg, tx: _ClientTx, response: Response, now: float
    ) -> list[UacEvent]:
        status = response.status
        if status < 200:
            tx.retransmit = False
            return []
        tx.done = True
        self._tx.pop(tx.branch, None)
        leg.reinvite_tx = None
        offer, leg.pending_offer = leg.pending_offer, None
        if status >= 300:
            ack = self._ack_for_failure(leg, tx, response)
            return [Send(ack, leg.target), LegReinviteFailed(leg, status)]
        ack, _ = self._request(leg, "ACK", tx_cseq(tx), in_dialog=True)
        out: list[UacEvent] = [Send(ack, leg.target)]
        if offer is None or leg.state is not LegState.CONFIRMED:
            return out
        try:
            answer = parse_sdp(response.body)
            plan = accept_answer(offer, answer)
        except (SdpError, OfferRejected):
            out.append(LegReinviteFailed(leg, 488))
            return out
        leg.offer, leg.answer, leg.plan = offer, answer, plan
        out.append(LegReinvited(leg, plan))
        return out

    # --- requests from the far end --------------------------------------------------------------
    def _request_in(self, request: Request, source: Address, now: float) -> list[UacEvent]:
        leg = self.legs.get(request.call_id or "")
        if leg is None:
            return []
        if request.method == "ACK":
            return []
        rejection = screen_request(request)
        if rejection is not None:
            return [Send(bytes(response_to(request, rejection.status, rejection.reason)), source)]
        if request.to.tag != leg.local_tag or leg.state is not LegState.CONFIRMED:
            reply = response_to(request, 481, "Call/Transaction Does Not Exist")
            return [self._reply(reply, source)]
        seq = request.cseq.seq
        if request.method == "INVITE" and seq == leg.remote_cseq and leg.last_reinvite_reply:
            return [Send(leg.last_reinvite_reply, source)]
        if seq <= leg.remote_cseq:
            return [self._reply(response_to(request, 500, "Out of Order CSeq"), source)]
        leg.remote_cseq = seq
        if request.method == "BYE":
            self._end(leg)
            return [self._reply(response_to(request, 200, "OK"), source), LegEnded(leg, "bye")]
        if request.method == "OPTIONS":
            reply = response_to(request, 200, "OK")
            reply.headers.add("Allow", ALLOW)
            return [self._reply(reply, source)]
        if request.method == "INVITE":
            return self._reinvite_in(leg, request, source)
        reply = response_to(request, 405, "Method Not Allowed")
        reply.headers.add("Allow", ALLOW)
        return [self._reply(reply, source)]

    def _reinvite_in(self, leg: UacLeg, request: Request, source: Address) -> list[UacEvent]:
        """The far end holds or resumes: answer from the engine's side of the leg."""
        from drivers.sip.sdp import answer_offer

        current = leg.offer
        port = current.media[0].port if current.media else 0
        try:
            offer = parse_sdp(request.body) if request.body else None
            if offer is None:
                answer, plan = current, None
            else:
                answer, plan = answer_offer(
                    offer,
                    local_address=self.host,
                    local_port=port,
                    session_id=current.session_id,
                    session_version=current.session_version + 1,
                )
        except (SdpError, OfferRejected) as exc:
            reply = response_to(request, 488, "Not Acceptable Here")
            reply.headers.add("Warning", f'399 hotline "{getattr(exc, "reason", "bad offer")}"')
            leg.last_reinvite_reply = self._bytes(reply)
            return [Send(leg.last_reinvite_reply, source)]
        ok = response_to(request, 200, "OK")
        ok.headers.add("Contact", f"<sip:95598@{self.host}:{self.port}>")
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = serialize_sdp(answer)
        leg.last_reinvite_reply = self._bytes(ok)
        out: list[UacEvent] = [Send(leg.last_reinvite_reply, source)]
        if plan is not None:
            leg.offer, leg.plan = answer, plan
            out.append(LegReinvited(leg, plan))
        return out

    # --- helpers ------------------------------------------------------------------------------
    def _reinvite(self, leg: UacLeg, direction: Direction, now: float) -> list[UacEvent]:
        if leg.state is not LegState.CONFIRMED or leg.reinvite_tx is not None:
            return []
        current = leg.offer
        port = current.media[0].port if current.media else 0
        codecs = (leg.plan.codec,) if leg.plan is not None else ("PCMA", "PCMU")
        event_pt = leg.plan.event_payload_type if leg.plan is not None else None
        offer = make_offer(
            local_address=self.host,
            local_port=port,
            session_id=current.session_id,
            session_version=current.session_version + 1,
            codecs=codecs,
            event_payload_type=event_pt,
            direction=direction,
        )
        leg.cseq += 1
        body = serialize_sdp(offer)
        data, branch = self._request(leg, "INVITE", leg.cseq, body=body, in_dialog=True)
        leg.pending_offer = offer
        leg.reinvite_tx = self._start_tx("INVITE", branch, data, leg.target, now, leg=leg)
        return [Send(data, leg.target)]

    def _send_cancel(self, leg: UacLeg, now: float) -> list[UacEvent]:
        tx = leg.invite_tx
        if tx is None or tx.done:
            return []
        leg.cancelled = True
        headers = Headers()
        headers.add("Via", f"SIP/2.0/UDP {self.host}:{self.port};branch={tx.branch};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"{leg.from_value};tag={leg.local_tag}")
        headers.add("To", leg.to_value)
        headers.add("Call-ID", leg.call_id)
        headers.add("CSeq", f"{leg.invite_cseq} CANCEL")
        headers.add("User-Agent", self.user_agent)
        data = bytes(Request(headers, b"", "CANCEL", leg.request_uri))
        # the CANCEL's own transaction shares the INVITE's branch; key it apart
        cancel = _ClientTx("CANCEL", tx.branch, data, leg.target, now + T1, T1, now + TIMER_F)
        self._tx[f"{tx.branch}/cancel"] = cancel
        return [Send(data, leg.target)]

    def _timed_out(self, tx: _ClientTx, now: float) -> list[UacEvent]:
        leg = tx.leg
        if tx.method == "OPTIONS":
            return [OptionsResult(tx.key, False, 0)]
        if tx.method == "INVITE" and leg is not None:
            if leg.reinvite_tx is tx:
                leg.reinvite_tx = leg.pending_offer = None
                return [LegReinviteFailed(leg, 408)]
            if leg.state in (LegState.CALLING, LegState.RINGING):
                self._end(leg)
                return [LegFailed(leg, 408, "no final response")]
        if tx.method == "CANCEL" and leg is None:
            # no answer to the CANCEL either: the INVITE's Timer B will end the leg
            return []
        return []

    def _start_tx(
        self,
        method: str,
        branch: str,
        data: bytes,
        address: Address,
        now: float,
        *,
        leg: UacLeg | None,
    ) -> _ClientTx:
        give_up = TIMER_B if method == "INVITE" else TIMER_F
        tx = _ClientTx(method, branch, data, address, now + T1, T1, now + give_up, leg=leg)
        self._tx[branch] = tx
        return tx

    def _request(
        self, leg: UacLeg, method: str, cseq: int, *, body: bytes = b"", in_dialog: bool = False
    ) -> tuple[bytes, str]:
        branch = self._branch()
        headers = Headers()
        headers.add("Via", f"SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"{leg.from_value};tag={leg.local_tag}")
        headers.add("To", leg.to_value)
        headers.add("Call-ID", leg.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if method == "INVITE":
            headers.add("Contact", f"<sip:95598@{self.host}:{self.port}>")
            headers.add("Allow", ALLOW)
        headers.add("User-Agent", self.user_agent)
        if body:
            headers.add("Content-Type", "application/sdp")
        uri = leg.remote_uri if in_dialog and leg.remote_uri else leg.request_uri
        return bytes(Request(headers, body, method, uri)), branch

    def _ack_for_2xx(self, leg: UacLeg) -> bytes:
        data, _ = self._request(leg, "ACK", leg.invite_cseq, in_dialog=True)
        return data

    def _ack_for_failure(self, leg: UacLeg, tx: _ClientTx, response: Response) -> bytes:
        """ACK of a 3xx–6xx: same branch and Request-URI as the INVITE (RFC 3261 §17.1.1.3)."""
        headers = Headers()
        headers.add("Via", f"SIP/2.0/UDP {self.host}:{self.port};branch={tx.branch};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"{leg.from_value};tag={leg.local_tag}")
        headers.add("To", response.headers.get("to") or leg.to_value)
        headers.add("Call-ID", leg.call_id)
        headers.add("CSeq", f"{response.cseq.seq} ACK")
        uri = leg.request_uri if tx is leg.invite_tx else (leg.remote_uri or leg.request_uri)
        return bytes(Request(headers, b"", "ACK", uri))

    def _end(self, leg: UacLeg) -> None:
        leg.state = LegState.ENDED
        self.legs.pop(leg.call_id, None)

    def _reply(self, response: Response, address: Address) -> Send:
        return Send(self._bytes(response), address)

    def _bytes(self, response: Response) -> bytes:
        response.headers.add("Server", self.user_agent)
        return bytes(response)

    def _branch(self) -> str:
        return f"z9hG4bK{secrets.token_hex(8)}"

    def _tag(self) -> str:
        return f"{secrets.token_hex(4)}{next(self._ids):x}"


def tx_cseq(tx: _ClientTx) -> int:
    """The CSeq number of a transaction's request (for the ACK of a re-INVITE's 2xx)."""
    match = re.search(rb"\r\nCSeq: (\d+) ", tx.data)
    return int(match.group(1)) if match else 0


def _contact_uri(response: Response) -> str | None:
    try:
        contacts = response.contacts
    except ParseError:
        return None
    if contacts and contacts[0].uri.startswith("sip"):
        return contacts[0].uri
    return None
