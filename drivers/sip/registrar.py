"""Registrar for agent seats: REGISTER decisions and the bindings table (RFC 3261 §10.3).

:meth:`Registrar.handle_register` takes a parsed REGISTER, the address it came from and
``now`` and returns a :class:`RegisterResult`: the response to send (401 challenge, 403,
423 Interval Too Brief, 200 listing the seat's current contacts with their expiry, …) and
the bindings added, refreshed or removed. A seat is the user part of the To URI, and only the
user who authenticated may register it.

NAT: each binding keeps the address and port the REGISTER came from; when that differs from
the Contact (a phone behind NAT writes its private address there), :attr:`Binding.target` is
the source address, which is where requests to the seat must go. The response's top Via gets
``received``/``rport`` (RFC 3581). Expiry is driven by ``now`` passed in: :meth:`expire`
returns the bindings that lapsed so the ACD can take the seat out of service.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from drivers.sip.digest import AuthDecision, DigestAuthenticator
from drivers.sip.message import (
    NameAddr,
    ParseError,
    Request,
    Response,
    parse_sip_uri,
    response_to,
    split_list,
    stamp_source,
)

MAX_DELTA_SECONDS = 2**32 - 1


@dataclass(slots=True)
class Binding:
    """One registered contact of a seat."""

    seat: str
    contact: str  # Contact URI as registered
    expires_at: float
    call_id: str
    cseq: int
    source_host: str
    source_port: int
    transport: str = "UDP"
    q: float = 1.0
    params: dict[str, str | None] = field(default_factory=dict)  # Contact header parameters
    registered_at: float = 0.0

    @property
    def behind_nat(self) -> bool:
        """The Contact does not name the address the REGISTER came from."""
        try:
            uri = parse_sip_uri(self.contact)
        except ParseError:
            return True
        port = uri.port or (5061 if uri.scheme == "sips" else 5060)
        return (uri.host, port) != (self.source_host.lower(), self.source_port)

    @property
    def target(self) -> tuple[str, int]:
        """Where requests for this contact are sent: the source flow when behind NAT."""
        if self.behind_nat:
            return self.source_host, self.source_port
        uri = parse_sip_uri(self.contact)
        return uri.host, uri.port or 5060

    def remaining(self, now: float) -> int:
        return max(0, round(self.expires_at - now))


@dataclass(slots=True)
class RegisterResult:
    response: Response
    seat: str | None = None
    added: list[Binding] = field(default_factory=list)  # new or refreshed
    removed: list[Binding] = field(default_factory=list)
    auth: AuthDecision | None = None


@dataclass(slots=True)
class Registrar:
    """Bindings of seat contacts, with the REGISTER rules that change them."""

    authenticator: DigestAuthenticator | None  # None: no authentication (closed test rigs only)
    default_expires: int = 3600
    min_expires: int = 60
    max_expires: int = 7200
    max_contacts_per_seat: int = 5
    _bindings: dict[str, dict[str, Binding]] = field(default_factory=dict)  # seat -> contact

    # ------------------------------------------------------------------ REGISTER

    def handle_register(
        self, request: Request, *, source: tuple[str, int], transport: str = "UDP", now: float
    ) -> RegisterResult:
        """Decide on one REGISTER (already passed through ``screen_request``)."""
        if request.method != "REGISTER":
            raise ValueError(f"not a REGISTER: {request.method}")
        host, port = source
        auth: AuthDecision | None = None
        if self.authenticator is not None:
            auth = self.authenticator.verify(
                method=request.method,
                request_uri=request.uri,
                authorization=request.headers.get("authorization"),
                source=host,  # per address: changing the source port must not reset the count
                now=now,
            )
            if not auth.accepted:
                if auth.status == 403:
                    return self._reply(request, source, 403, "Forbidden", auth=auth)
                result = self._reply(request, source, 401, "Unauthorized", auth=auth)
                for challenge in auth.challenges:
                    result.response.headers.add("WWW-Authenticate", challenge)
                return result
        try:
            seat = self._seat_of(request.to)
        except ParseError as exc:
            return self._reply(
                request, source, 404, "Not Found", reason_detail=exc.reason, auth=auth
            )
        if auth is not None and auth.username != seat:
            return self._reply(request, source, 403, "Forbidden", auth=auth)

        try:
            contacts = request.contacts
            header_expires = request.expires
            cseq = request.cseq.seq
        except ParseError as exc:
            return self._reply(
                request, source, 400, "Bad Request", reason_detail=exc.reason, auth=auth
            )
        call_id = request.call_id or ""
        self._drop_expired(seat, now)
        current = self._bindings.setdefault(seat, {})

        if any(c.wildcard for c in contacts):
            if len(contacts) != 1 or header_expires != 0:
                return self._reply(
                    request,
                    source,
                    400,
                    "Bad Request",
                    reason_detail="'*' needs Expires: 0 and no other Contact",
                    auth=auth,
                )
            stale = [b for b in current.values() if b.call_id == call_id and b.cseq >= cseq]
            if stale:
                return self._reply(
                    request,
                    source,
                    500,
                    "Server Internal Error",
                    reason_detail="CSeq not above the binding's",
                    auth=auth,
                )
            removed = list(current.values())
            current.clear()
            return self._ok(request, source, seat, now, removed=removed, auth=auth)

        plan: list[tuple[NameAddr, int]] = []
        for contact in contacts:
            expires = self._expires_of(contact, header_expires)
            if expires is None:
                return self._reply(
                    request,
                    source,
                    400,
                    "Bad Request",
                    reason_detail="bad expires parameter",
                    auth=auth,
                )
            if 0 < expires < self.min_expires:
                result = self._reply(request, source, 423, "Interval Too Brief", auth=auth)
                result.response.headers.add("Min-Expires", str(self.min_expires))
                return result
            existing = current.get(contact.uri)
            if existing and existing.call_id == call_id and existing.cseq >= cseq:
                return self._reply(
                    request,
                    source,
                    500,
                    "Server Internal Error",
                    reason_detail="CSeq not above the binding's",
                    auth=auth,
                )
            plan.append((contact, min(expires, self.max_expires)))

        added: list[Binding] = []
        removed: list[Binding] = []
        for contact, expires in plan:
            if expires == 0:
                gone = current.pop(contact.uri, None)
                if gone:
                    removed.append(gone)
                continue
            previous = current.get(contact.uri)
            binding = Binding(
                seat=seat,
                contact=contact.uri,
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                source_host=host,
                source_port=port,
                transport=transport.upper(),
                q=_q_value(contact),
                params={k: v for k, v in contact.params.items() if k != "expires"},
                registered_at=previous.registered_at if previous else now,
            )
            current[contact.uri] = binding
            added.append(binding)
        if len(current) > self.max_contacts_per_seat:  # keep the newest registrations
            for binding in sorted(current.values(), key=lambda b: b.expires_at)[
                : len(current) - self.max_contacts_per_seat
            ]:
                removed.append(current.pop(binding.contact))
        return self._ok(request, source, seat, now, added=added, removed=removed, auth=auth)

    # ------------------------------------------------------------------ lookups

    def lookup(self, seat: str, now: float) -> list[Binding]:
        """The seat's live bindings, best first (highest q, then most recently registered)."""
        self._drop_expired(seat, now)
        bindings = self._bindings.get(seat, {}).values()
        return sorted(bindings, key=lambda b: (-b.q, -b.expires_at))

    def contact_for(self, seat: str, now: float) -> Binding | None:
        """The binding to ring for a seat now, or None when the seat's phone is not registered."""
        bindings = self.lookup(seat, now)
        return bindings[0] if bindings else None

    def expire(self, now: float) -> list[Binding]:
        """Remove and return every binding whose time is up."""
        lapsed: list[Binding] = []
        for seat in list(self._bindings):
            lapsed.extend(self._drop_expired(seat, now))
        return lapsed

    def remove(self, seat: str, contact: str) -> Binding | None:
        """Drop one binding (e.g. its OPTIONS keepalive went unanswered)."""
        binding = self._bindings.get(seat, {}).pop(contact, None)
        if seat in self._bindings and not self._bindings[seat]:
            del self._bindings[seat]
        return binding

    def seats(self, now: float) -> list[str]:
        self.expire(now)
        return sorted(self._bindings)

    # ------------------------------------------------------------------ helpers

    def _drop_expired(self, seat: str, now: float) -> list[Binding]:
        current = self._bindings.get(seat)
        if current is None:
            return []
        lapsed = [b for b in current.values() if b.expires_at <= now]
        for binding in lapsed:
            del current[binding.contact]
        if not current:
            del self._bindings[seat]
        return lapsed

    @staticmethod
    def _seat_of(to: NameAddr) -> str:
        uri = parse_sip_uri(to.uri)
        if not uri.user:
            raise ParseError(f"no seat in To URI {to.uri!r}")
        return uri.user

    def _expires_of(self, contact: NameAddr, header_expires: int | None) -> int | None:
        raw = contact.params.get("expires")
        if raw is not None:
            if not raw.isdigit():
                return None
            return min(int(raw), MAX_DELTA_SECONDS)
        return header_expires if header_expires is not None else self.default_expires

    def _ok(
        self,
        request: Request,
        source: tuple[str, int],
        seat: str,
        now: float,
        *,
        added: list[Binding] | None = None,
        removed: list[Binding] | None = None,
        auth: AuthDecision | None,
    ) -> RegisterResult:
        result = self._reply(request, source, 200, "OK", auth=auth)
        for binding in self.lookup(seat, now):
            result.response.headers.add(
                "Contact", f"<{binding.contact}>;expires={binding.remaining(now)}"
            )
        result.seat = seat
        result.added = added or []
        result.removed = removed or []
        return result

    @staticmethod
    def _reply(
        request: Request,
        source: tuple[str, int],
        status: int,
        reason: str,
        *,
        reason_detail: str = "",
        auth: AuthDecision | None = None,
    ) -> RegisterResult:
        tag = hashlib.sha1(f"{request.call_id}:{request.headers.get('cseq')}".encode()).hexdigest()[
            :10
        ]
        response = response_to(request, status, reason, to_tag=tag)
        vias = response.headers.lines("via")
        if vias:
            top = stamp_source(request.top_via, *source)
            entries = split_list(vias[0])  # a first line may hold several entries
            response.headers.remove("via")
            response.headers.add("Via", ", ".join([str(top), *entries[1:]]))
            for value in vias[1:]:
                response.headers.add("Via", value)
        if reason_detail:
            response.headers.add(
                "Warning", f'399 engine "{reason_detail.replace(chr(34), chr(39))}"'
            )
        return RegisterResult(response, auth=auth)


def _q_value(contact: NameAddr) -> float:
    try:
        return min(1.0, max(0.0, float(contact.params.get("q") or 1.0)))
    except ValueError:
        return 1.0
