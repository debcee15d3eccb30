"""Server-side HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760).

* Credentials are stored as HA1 = H(username:realm:password) per algorithm
  (:meth:`Credential.from_password`), so the store never needs the plain password.
* Nonces are stateless: issue time, a random part and an HMAC over both with the server
  secret. An expired but genuine nonce is *stale* (the phone retries with the new nonce
  without asking its user); a forged one is invalid. Nonce counts are remembered per nonce so
  a replayed ``nc`` is refused.
* :meth:`DigestAuthenticator.verify` takes the request's method, Request-URI, Authorization
  value, source address and ``now``, and returns an :class:`AuthDecision`: accepted, or the
  status (401 with fresh challenges, 403 while the source is locked out) and the reason.
  Failed attempts are counted per source; too many within the window lock the source out.
  MD5 with qop=auth is always offered, SHA-256 first where configured; RFC 2069 answers
  without qop (pyVoIP 1.6 sends them) are accepted unless ``require_qop`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

ALGORITHMS: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}


class DigestError(ValueError):
    """An Authorization value this module cannot use (wrong scheme, missing fields …)."""


def digest_hash(algorithm: str, text: str) -> str:
    try:
        return ALGORITHMS[algorithm](text.encode("utf-8")).hexdigest()
    except KeyError:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}") from None


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    return digest_hash(algorithm, f"{username}:{realm}:{password}")


def compute_response(
    ha1: str,
    *,
    method: str,
    uri: str,
    nonce: str,
    algorithm: str = "MD5",
    qop: str | None = "auth",
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The request-digest a client must send (RFC 7616 §3.4.1; RFC 2069 when qop is None)."""
    ha2 = digest_hash(algorithm, f"{method}:{uri}")
    if qop is None:
        return digest_hash(algorithm, f"{ha1}:{nonce}:{ha2}")
    return digest_hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


@dataclass(slots=True, frozen=True)
class Credential:
    """What the store keeps for one seat: its user name, realm and HA1 per algorithm."""

    username: str
    realm: str
    ha1: dict[str, str]

    @classmethod
    def from_password(
        cls,
        username: str,
        realm: str,
        password: str,
        algorithms: tuple[str, ...] = ("MD5", "SHA-256"),
    ) -> Credential:
        return cls(
            username, realm, {a: compute_ha1(username, realm, password, a) for a in algorithms}
        )


@dataclass(slots=True, frozen=True)
class DigestResponse:
    """The fields of an ``Authorization: Digest …`` header."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str = ""
    cnonce: str = ""
    opaque: str | None = None


def parse_authorization(value: str) -> DigestResponse:
    """Parse an Authorization / Proxy-Authorization value of the Digest scheme."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"authorization scheme {scheme[:20]!r} is not Digest")
    fields = _parse_auth_params(rest)
    missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in fields]
    if missing:
        raise DigestError(f"Digest authorization lacks {', '.join(missing)}")
    qop = fields.get("qop")
    if qop is not None and ("nc" not in fields or "cnonce" not in fields):
        raise DigestError("qop given without nc and cnonce")
    algorithm = fields.get("algorithm", "MD5")
    algorithm = {"md5": "MD5", "sha-256": "SHA-256"}.get(algorithm.lower(), algorithm)
    return DigestResponse(
        username=fields["username"],
        realm=fields["realm"],
        nonce=fields["nonce"],
        uri=fields["uri"],
        response=fields["response"].lower(),
        algorithm=algorithm,
        qop=qop,
        nc=fields.get("nc", ""),
        cnonce=fields.get("cnonce", ""),
        opaque=fields.get("opaque"),
    )


def _without_params(uri: str) -> str:
    """A URI without its parameters and headers: pyVoIP 1.6 adds ``;transport=UDP`` to the
    digest uri only, so the digest uri and Request-URI may differ in parameters alone."""
    return uri.split("?", 1)[0].split(";", 1)[0]


def _parse_auth_params(text: str) -> dict[str, str]:
    """``name=token`` / ``name="quoted"`` pairs separated by commas."""
    fields: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise DigestError(f"malformed auth parameter {text[i : i + 30]!r}")
        name = text[i:eq].strip().lower()
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            out: list[str] = []
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(text[i])
                i += 1
            if i >= n:
                raise DigestError(f"unterminated quoted value for {name!r}")
            value = "".join(out)
            i += 1
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
        if not name or name in fields:
            raise DigestError(f"empty or repeated auth parameter {name!r}")
        fields[name] = value
    return fields


# --------------------------------------------------------------------------- nonces


class NonceCheck:
    VALID = "valid"
    STALE = "stale"
    INVALID = "invalid"


@dataclass(slots=True)
class NonceIssuer:
    """Stateless nonces: ``<issued hex>.<random hex>.<hmac>``, valid for ``lifetime`` seconds."""

    secret: bytes
    lifetime: float = 300.0
    random_bytes: Callable[[int], bytes] = os.urandom

    def issue(self, now: float) -> str:
        body = f"{int(now):x}.{self.random_bytes(8).hex()}"
        return f"{body}.{self._mac(body)}"

    def check(self, nonce: str, now: float) -> str:
        body, _, mac = nonce.rpartition(".")
        issued_text = body.partition(".")[0]
        try:
            issued = int(issued_text, 16)
        except ValueError:
            return NonceCheck.INVALID
        if not hmac.compare_digest(mac, self._mac(body)) or issued > now + 1:
            return NonceCheck.INVALID
        return NonceCheck.STALE if now - issued > self.lifetime else NonceCheck.VALID

    def _mac(self, body: str) -> str:
        return hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()[:32]


# --------------------------------------------------------------------------- authenticator


@dataclass(slots=True, frozen=True)
class AuthDecision:
    """Outcome of checking a request's credentials."""

    accepted: bool
    status: int = 200  # 401: challenge, 403: locked out
    reason: str = ""
    username: str | None = None
    challenges: tuple[str, ...] = ()  # WWW-Authenticate values to send with a 401
    counted_failure: bool = False


@dataclass(slots=True)
class _SourceRecord:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


@dataclass(slots=True)
class DigestAuthenticator:
    """Challenges and verifies Digest credentials for one realm."""

    realm: str
    lookup: Callable[[str], Credential | None]
    nonces: NonceIssuer
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")  # offered, in order of preference
    require_qop: bool = False
    max_failures: int = 5
    failure_window: float = 60.0
    lockout: float = 300.0
    _sources: dict[str, _SourceRecord] = field(default_factory=dict)
    _nonce_counts: dict[str, int] = field(default_factory=dict)

    def challenges(self, now: float, *, stale: bool = False) -> tuple[str, ...]:
        nonce = self.nonces.issue(now)
        extra = ", stale=true" if stale else ""
        return tuple(
            f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={algorithm}, '
            f'qop="auth"{extra}'
            for algorithm in self.algorithms
        )

    def locked(self, source: str, now: float) -> bool:
        record = self._sources.get(source)
        return record is not None and record.locked_until > now

    def verify(
        self,
        *,
        method: str,
        request_uri: str,
        authorization: str | None,
        source: str,
        now: float,
    ) -> AuthDecision:
        if self.locked(source, now):
            return AuthDecision(False, 403, f"source {source} locked out after failed attempts")
        if authorization is None:
            return self._challenge(now, "no credentials")
        try:
            answer = parse_authorization(authorization)
        except DigestError as exc:
            return self._fail(source, now, str(exc))
        if answer.realm != self.realm:
            return self._fail(source, now, f"realm {answer.realm!r} is not {self.realm!r}")
        if answer.algorithm not in self.algorithms:
            return self._fail(source, now, f"algorithm {answer.algorithm} not offered")
        if answer.qop is None and self.require_qop:
            return self._fail(source, now, "qop=auth required")
        if answer.qop not in (None, "auth"):
            return self._fail(source, now, f"qop {answer.qop!r} not offered")
        if _without_params(answer.uri) != _without_params(request_uri):
            return self._fail(source, now, f"digest uri {answer.uri!r} is not the Request-URI")
        check = self.nonces.check(answer.nonce, now)
        if check == NonceCheck.INVALID:
            return self._fail(source, now, "nonce not issued here")
        credential = self.lookup(answer.username)
        ha1 = credential.ha1.get(answer.algorithm) if credential else None
        if credential is None or ha1 is None or credential.realm != self.realm:
            return self._fail(source, now, f"unknown user {answer.username!r}")
        expected = compute_response(
            ha1,
            method=method,
            uri=answer.uri,
            nonce=answer.nonce,
            algorithm=answer.algorithm,
            qop=answer.qop,
            nc=answer.nc,
            cnonce=answer.cnonce,
        )
        if not hmac.compare_digest(expected, answer.response):
            return self._fail(source, now, f"wrong password for {answer.username!r}")
        if check == NonceCheck.STALE:  # right password, old nonce: retry silently
            return self._challenge(now, "stale nonce", stale=True)
        if answer.qop is not None:
            try:
                count = int(answer.nc, 16)
            except ValueError:
                return self._fail(source, now, f"bad nonce count {answer.nc!r}")
            if count <= self._nonce_counts.get(answer.nonce, 0):
                return self._fail(source, now, f"nonce count {answer.nc} replayed")
            self._nonce_counts[answer.nonce] = count
        self._sources.pop(source, None)
        return AuthDecision(True, 200, "authenticated", answer.username)

    def forget_expired(self, now: float) -> None:
        """Drop nonce counts of expired nonces and lockouts that are over."""
        self._nonce_counts = {
            n: c
            for n, c in self._nonce_counts.items()
            if self.nonces.check(n, now) == NonceCheck.VALID
        }
        self._sources = {
            s: r
            for s, r in self._sources.items()
            if r.locked_until > now or (r.failures and r.failures[-1] > now - self.failure_window)
        }

    def _challenge(self, now: float, reason: str, *, stale: bool = False) -> AuthDecision:
        return AuthDecision(False, 401, reason, challenges=self.challenges(now, stale=stale))

    def _fail(self, source: str, now: float, reason: str) -> AuthDecision:
        record = self._sources.setdefault(source, _SourceRecord())
        record.failures.append(now)
        while record.failures and record.failures[0] <= now - self.failure_window:
            record.failures.popleft()
        if len(record.failures) >= self.max_failures:
            record.locked_until = now + self.lockout
            record.failures.clear()
            return AuthDecision(
                False,
                403,
                f"{reason}; source {source} locked out for {self.lockout:.0f} s",
                counted_failure=True,
            )
        decision = self._challenge(now, reason)
        return AuthDecision(
            False, 401, reason, challenges=decision.challenges, counted_failure=True
        )
