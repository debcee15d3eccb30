"""Registration of the engine at an upstream SIP trunk or PBX, as a plain object without I/O.

Some sites receive 95598 from a PBX or an operator's SIP trunk that expects the engine to
register (RFC 3261 §10) before it routes calls to it. :class:`TrunkRegistration` is the client
side of that for one trunk: datagrams and ``now`` go in, datagrams to send and
:class:`TrunkEvent` reports come out; the I/O shell (:mod:`drivers.sip.trunk_client`) owns the
socket and the timer.

* REGISTER with the engine's Contact (``sip:<contact_user>@<engine host>:<port>``); all
  REGISTERs of one trunk share Call-ID and From tag, the CSeq grows (RFC 3261 §10.2).
* Digest client authentication for 401 and 407 (:class:`DigestClient`): MD5 and SHA-256
  (SHA-256 preferred when both are offered, RFC 8760), ``qop=auth`` with a fresh ``cnonce``
  and the nonce count growing per nonce, RFC 2069 answers when no qop is offered; ``opaque``
  echoed. A challenge after credentials were sent (and not marked ``stale``) is a wrong
  password: reported as ``auth_failed`` and retried only after the backoff.
* Retransmission over UDP as a non-INVITE client transaction: Timer E (T1 doubling to T2,
  T2 once a provisional response came), Timer F (no final response within 64·T1: failure).
* Refresh before expiry: at ``min(80 % of the granted interval, granted − 30 s)``, never
  earlier than half of it. The granted interval is the ``expires`` of the engine's Contact in
  the 200 OK, else its Expires header, else what was asked.
* 423 Interval Too Brief: ask again at once with the registrar's ``Min-Expires``.
* Failures (timeout, 4xx–6xx, wrong password) retry after a backoff doubling from
  ``retry_base`` up to ``retry_max`` (at least a 503's ``Retry-After``); a binding that was
  granted stays counted until its expiry passes.
* :meth:`TrunkRegistration.stop` unregisters (``Expires: 0`` for the engine's Contact).

Why not aiosipua's ``Registration`` (0.7.1), which the design first named for this: it is not a
plain object — it schedules its refreshes as asyncio tasks on its own, reads no ``now``, and
sends through aiosipua's UAC and transport, which assert an ``asyncio.DatagramTransport``
(uvloop's transport is refused on Python 3.11) and parse with aiosipua's lax parser
(docs/sip.md). It also stops at the first failure (no backoff, no retry after a timeout) and
does not retransmit the REGISTER itself. A client REGISTER is small, so it is written here
with every timer testable directly (``tests/test_sip_trunk.py``).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.sip.digest import DigestError, _parse_auth_params, compute_ha1, compute_response
from drivers.sip.message import Headers, ParseError, Request, Response, parse_sip_uri
from drivers.sip.uas import ALLOW, T1, T2, Send

Address = tuple[str, int]

ALGORITHM_PREFERENCE = ("SHA-256", "MD5")
MAX_CHALLENGE_ROUNDS = 2  # credentials sent per attempt before a challenge means "wrong password"


class TrunkError(ValueError):
    """Trunk settings that cannot be used (bad registrar address, missing password …)."""


class TrunkState(enum.StrEnum):
    IDLE = "idle"  # not started
    REGISTERING = "registering"  # a REGISTER is in flight
    REGISTERED = "registered"  # bound; a refresh is scheduled
    WAITING = "waiting"  # the last attempt failed; retrying after the backoff
    UNREGISTERING = "unregistering"  # REGISTER with Expires: 0 in flight
    STOPPED = "stopped"


@dataclass(slots=True)
class TrunkEvent:
    """Something the shell should log: ``registered``, ``refreshed``, ``auth_failed``,
    ``failed`` (with ``status`` 408 for a timeout), ``unregistered``, ``unregister_failed``."""

    trunk: str
    kind: str
    status: int = 0
    reason: str = ""
    expires: int = 0  # granted interval (registered, refreshed)
    retry_in: float = 0.0  # seconds until the next attempt (failures)


Output = Send | TrunkEvent


def parse_host_port(text: str, default_port: int = 5060) -> Address:
    """``host:port`` (or ``host``) → address; a clear :class:`TrunkError` otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = text.strip(), str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TrunkError(f"registrar must be host:port, got {text!r}")
    return host, int(port)


# --- digest client ----------------------------------------------------------------------------
@dataclass(slots=True)
class Challenge:
    """One ``WWW-Authenticate`` / ``Proxy-Authenticate`` Digest challenge."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> Challenge:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"challenge scheme {scheme[:20]!r} is not Digest")
    fields = _parse_auth_params(rest)
    if "nonce" not in fields or "realm" not in fields:
        raise DigestError("Digest challenge lacks realm or nonce")
    algorithm = fields.get("algorithm", "MD5")
    algorithm = {"md5": "MD5", "sha-256": "SHA-256"}.get(algorithm.lower(), algorithm)
    qop = tuple(q.strip().lower() for q in fields.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=fields["realm"],
        nonce=fields["nonce"],
        algorithm=algorithm,
        qop=qop,
        opaque=fields.get("opaque"),
        stale=fields.get("stale", "").lower() == "true",
    )


def pick_challenge(values: list[str]) -> Challenge | None:
    """The challenge to answer: SHA-256 before MD5; unusable ones are skipped."""
    usable: list[Challenge] = []
    for value in values:
        try:
            challenge = parse_challenge(value)
        except DigestError:
            continue
        if challenge.algorithm in ALGORITHM_PREFERENCE and (
            not challenge.qop or "auth" in challenge.qop
        ):
            usable.append(challenge)
    usable.sort(key=lambda c: ALGORITHM_PREFERENCE.index(c.algorithm))
    return usable[0] if usable else None


class DigestClient:
    """Answers Digest challenges for one user; counts ``nc`` per nonce."""

    def __init__(
        self,
        username: str,
        password: str,
        *,
        cnonce: Callable[[], str] = lambda: secrets.token_hex(8),
    ) -> None:
        self.username = username
        self.password = password
        self._cnonce = cnonce
        self._counts: dict[str, int] = {}

    def authorization(self, challenge: Challenge, *, method: str, uri: str) -> str:
        """The ``Authorization`` (or ``Proxy-Authorization``) value answering ``challenge``."""
        ha1 = compute_ha1(self.username, challenge.realm, self.password, challenge.algorithm)
        parts = [
            f'username="{_q(self.username)}"',
            f'realm="{_q(challenge.realm)}"',
            f'nonce="{_q(challenge.nonce)}"',
            f'uri="{_q(uri)}"',
        ]
        qop, nc, cnonce = None, "", ""
        if "auth" in challenge.qop:
            if len(self._counts) > 16:  # only the newest nonces matter
                self._counts.clear()
            count = self._counts.get(challenge.nonce, 0) + 1
            self._counts[challenge.nonce] = count
            qop, nc, cnonce = "auth", f"{count:08x}", self._cnonce()
        response = compute_response(
            ha1,
            method=method,
            uri=uri,
            nonce=challenge.nonce,
            algorithm=challenge.algorithm,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
        )
        parts.append(f'response="{response}"')
        if qop is not None:
            parts += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        parts.append(f"algorithm={challenge.algorithm}")
        if challenge.opaque is not None:
            parts.append(f'opaque="{_q(challenge.opaque)}"')
        return "Digest " + ", ".join(parts)


def _q(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# --- the registration -------------------------------------------------------------------------
@dataclass(slots=True)
class _Transaction:
    """The REGISTER in flight (one non-INVITE client transaction)."""

    branch: str
    cseq: int
    data: bytes
    expires: int
    resend_at: float
    interval: float
    give_up_at: float


@dataclass(slots=True)
class TrunkRegistration:
    """The engine's registration at one trunk (see the module docstring)."""

    name: str
    registrar: Address  # where REGISTERs are sent
    user: str  # the address-of-record's user (To/From)
    password: str
    contact: Address  # the engine's SIP endpoint as the trunk should reach it
    domain: str = ""  # AOR and Request-URI domain; "" → the registrar's host
    contact_user: str = ""  # "" → user
    auth_user: str = ""  # "" → user
    expires: int = 600
    user_agent: str = "hotline-95598"
    retry_base: float = 5.0
    retry_max: float = 300.0
    cnonce: Callable[[], str] = field(default=lambda: secrets.token_hex(8))

    state: TrunkState = TrunkState.IDLE
    call_id: str = ""
    granted: int = 0  # interval of the binding in force (0: none)
    expires_at: float = 0.0  # when that binding lapses at the registrar
    refresh_at: float | None = None
    retry_at: float | None = None
    failures: int = 0  # consecutive failed attempts
    last_status: int = 0
    last_reason: str = ""
    registrations: int = 0  # successful REGISTERs (first + refreshes)
    _cseq: int = 0
    _from_tag: str = ""
    _pending: _Transaction | None = None
    _rounds: int = 0  # credentials sent in the current attempt
    _interval_retries: int = 0
    _digest: DigestClient | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise TrunkError("a trunk needs a name")
        if not self.user:
            raise TrunkError(f"trunk {self.name}: user is missing")
        if not 0 <= self.expires <= 2**31 - 1:
            raise TrunkError(f"trunk {self.name}: expires must be a number of seconds")
        self.domain = self.domain or self.registrar[0]
        self.contact_user = self.contact_user or self.user
        self.auth_user = self.auth_user or self.user
        self.call_id = f"{secrets.token_hex(10)}@{self.contact[0]}"
        self._from_tag = secrets.token_hex(6)
        self._digest = DigestClient(self.auth_user, self.password, cnonce=self.cnonce)

    # --- identities ------------------------------------------------------------------------
    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    @property
    def request_uri(self) -> str:
        return f"sip:{self.domain}"

    @property
    def contact_uri(self) -> str:
        host, port = self.contact
        return f"sip:{self.contact_user}@{host}:{port}"

    def registered(self, now: float) -> bool:
        """Whether the registrar holds a binding of the engine now (as far as known)."""
        return self.granted > 0 and now < self.expires_at

    # --- inputs ----------------------------------------------------------------------------
    def start(self, now: float) -> list[Output]:
        """Send the first REGISTER."""
        if self.state is not TrunkState.IDLE:
            return []
        return self._attempt(now)

    def stop(self, now: float) -> list[Output]:
        """Unregister (``Expires: 0``) when a binding may exist; nothing to send otherwise."""
        if self.state in (TrunkState.STOPPED, TrunkState.UNREGISTERING):
            return []
        was_bound = self.granted > 0 or self._pending is not None
        self.refresh_at = self.retry_at = None
        if not was_bound:
            self.state = TrunkState.STOPPED
            self._pending = None
            return []
        self.state = TrunkState.UNREGISTERING
        self._rounds = 0
        return [self._send_register(0, now)]

    def owns(self, response: Response) -> bool:
        return response.call_id == self.call_id

    def receive(self, response: Response, now: float) -> list[Output]:
        """A response to one of this trunk's REGISTERs (others are ignored)."""
        pending = self._pending
        if pending is None or response.call_id != self.call_id:
            return []
        try:
            cseq = response.cseq
            branch = response.top_via.branch
        except ParseError:
            return []
        if cseq.method != "REGISTER" or cseq.seq != pending.cseq or branch != pending.branch:
            return []  # a late answer to an earlier REGISTER
        status = response.status
        if status < 200:
            pending.interval = T2  # Proceeding: retransmit every T2 (RFC 3261 §17.1.2.2)
            pending.resend_at = now + T2
            return []
        self._pending = None
        self.last_status, self.last_reason = status, response.reason
        if status in (401, 407):
            return self._challenged(response, pending, now)
        if status == 423 and self._interval_retries < 2:
            return self._too_brief(response, pending, now)
        if 200 <= status < 300:
            return self._accepted(response, pending, now)
        retry_after = _retry_after(response) if status in (500, 503) else 0
        return self._failed(status, response.reason, now, retry_after=retry_after)

    def tick(self, now: float) -> list[Output]:
        """Timers E/F of the REGISTER in flight, the refresh and the retry after a failure."""
        pending = self._pending
        if pending is not None:
            if now >= pending.give_up_at:
                self._pending = None
                return self._failed(408, "no response from the registrar", now)
            if now >= pending.resend_at:
                pending.interval = min(2 * pending.interval, T2)
                pending.resend_at = now + pending.interval
                return [Send(pending.data, self.registrar)]
            return []
        if self.state is TrunkState.REGISTERED and self.refresh_at is not None:
            if now >= self.refresh_at:
                return self._attempt(now)
        elif self.state is TrunkState.WAITING and self.retry_at is not None:
            if now >= self.retry_at:
                return self._attempt(now)
        return []

    def next_wakeup(self) -> float | None:
        """When :meth:`tick` has something to do next (None: nothing scheduled)."""
        if self._pending is not None:
            return min(self._pending.resend_at, self._pending.give_up_at)
        if self.state is TrunkState.REGISTERED:
            return self.refresh_at
        if self.state is TrunkState.WAITING:
            return self.retry_at
        return None

    def status(self, now: float) -> dict[str, object]:
        """What an operator needs to see about the trunk."""
        return {
            "name": self.name,
            "state": str(self.state),
            "registered": self.registered(now),
            "aor": self.aor,
            "contact": self.contact_uri,
            "registrar": f"{self.registrar[0]}:{self.registrar[1]}",
            "expires_in": max(0, round(self.expires_at - now)) if self.granted else 0,
            "failures": self.failures,
            "last_status": self.last_status,
            "last_reason": self.last_reason,
        }

    # --- steps -----------------------------------------------------------------------------
    def _attempt(self, now: float) -> list[Output]:
        self.state = TrunkState.REGISTERING
        self.refresh_at = self.retry_at = None
        self._rounds = 0
        self._interval_retries = 0
        return [self._send_register(self.expires, now)]

    def _challenged(self, response: Response, pending: _Transaction, now: float) -> list[Output]:
        header = "www-authenticate" if response.status == 401 else "proxy-authenticate"
        challenge = pick_challenge(response.headers.lines(header))
        if challenge is None:
            return self._failed(
                response.status, f"{response.reason} (no usable Digest challenge)", now
            )
        if self._rounds >= MAX_CHALLENGE_ROUNDS or (self._rounds > 0 and not challenge.stale):
            if self.state is TrunkState.UNREGISTERING:
                return self._unregister_done(now, ok=False, reason="credentials refused")
            return self._failed(
                response.status,
                f"registrar refused the credentials of user {self.auth_user}"
                f" (realm {challenge.realm!r})",
                now,
                auth=True,
            )
        self._rounds += 1
        assert self._digest is not None
        value = self._digest.authorization(challenge, method="REGISTER", uri=self.request_uri)
        name = "Authorization" if response.status == 401 else "Proxy-Authorization"
        return [self._send_register(pending.expires, now, auth=(name, value))]

    def _too_brief(self, response: Response, pending: _Transaction, now: float) -> list[Output]:
        raw = (response.headers.get("min-expires") or "").strip()
        if (
            not raw.isdigit()
            or int(raw) <= pending.expires
            or self.state is not TrunkState.REGISTERING
        ):
            return self._failed(423, f"{response.reason} (Min-Expires {raw or 'missing'})", now)
        self._interval_retries += 1
        self.expires = int(raw)
        self._rounds = 0
        return [self._send_register(self.expires, now)]

    def _accepted(self, response: Response, pending: _Transaction, now: float) -> list[Output]:
        if self.state is TrunkState.UNREGISTERING:
            return self._unregister_done(now, ok=True)
        granted = self._granted(response, pending.expires)
        if granted <= 0:
            return self._failed(response.status, "registrar granted no binding", now)
        first = self.granted == 0 or now >= self.expires_at
        self.granted = granted
        self.expires_at = now + granted
        self.refresh_at = now + max(granted / 2, min(granted * 0.8, granted - 30))
        self.state = TrunkState.REGISTERED
        self.failures = 0
        self.registrations += 1
        kind = "registered" if first else "refreshed"
        return [TrunkEvent(self.name, kind, response.status, response.reason, expires=granted)]

    def _granted(self, response: Response, asked: int) -> int:
        """The Contact's ``expires`` for the engine's Contact, else Expires, else what we asked."""
        try:
            contacts = response.contacts
        except ParseError:
            contacts = []
        mine = parse_sip_uri(self.contact_uri)
        for contact in contacts:
            try:
                uri = parse_sip_uri(contact.uri)
            except ParseError:
                continue
            same = (uri.user, uri.host, uri.port or 5060) == (mine.user, mine.host, mine.port)
            value = contact.params.get("expires")
            if same and value is not None and value.strip().isdigit():
                return int(value)
        try:
            header = response.expires
        except ParseError:
            header = None
        return header if header is not None else asked

    def _failed(
        self,
        status: int,
        reason: str,
        now: float,
        *,
        retry_after: int = 0,
        auth: bool = False,
    ) -> list[Output]:
        self.last_status, self.last_reason = status, reason
        if self.state is TrunkState.UNREGISTERING:
            return self._unregister_done(now, ok=False, reason=f"{status} {reason}")
        self.failures += 1
        delay = min(self.retry_max, self.retry_base * 2 ** (self.failures - 1))
        delay = max(delay, float(retry_after))
        if self.registered(now):  # keep the binding alive: retry before it lapses if we can
            delay = min(delay, max(1.0, (self.expires_at - now) / 2))
        self.state = TrunkState.WAITING
        self.retry_at = now + delay
        kind = "auth_failed" if auth else "failed"
        return [TrunkEvent(self.name, kind, status, reason, retry_in=delay)]

    def _unregister_done(self, now: float, *, ok: bool, reason: str = "") -> list[Output]:
        self.state = TrunkState.STOPPED
        self.granted = 0
        self.expires_at = 0.0
        self._pending = None
        kind = "unregistered" if ok else "unregister_failed"
        return [TrunkEvent(self.name, kind, self.last_status, reason or self.last_reason)]

    def _send_register(
        self, expires: int, now: float, *, auth: tuple[str, str] | None = None
    ) -> Send:
        self._cseq += 1
        branch = f"z9hG4bK{secrets.token_hex(8)}"
        host, port = self.contact
        headers = Headers()
        headers.add("Via", f"SIP/2.0/UDP {host}:{port};branch={branch};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{self.aor}>;tag={self._from_tag}")
        headers.add("To", f"<{self.aor}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self._cseq} REGISTER")
        headers.add("Contact", f"<{self.contact_uri}>")
        headers.add("Expires", str(expires))
        headers.add("Allow", ALLOW)
        headers.add("User-Agent", self.user_agent)
        if auth is not None:
            headers.add(*auth)
        data = bytes(Request(headers, b"", "REGISTER", self.request_uri))
        self._pending = _Transaction(
            branch=branch,
            cseq=self._cseq,
            data=data,
            expires=expires,
            resend_at=now + T1,
            interval=T1,
            give_up_at=now + 64 * T1,
        )
        return Send(data, self.registrar)


def _retry_after(response: Response) -> int:
    value = (response.headers.get("retry-after") or "").split(";")[0].strip()
    return min(int(value), 3600) if value.isdigit() else 0
