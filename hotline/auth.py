"""Bearer tokens and login throttling of the agent control API, as plain objects.

:class:`TokenStore` hands out random tokens (``secrets.token_urlsafe``, 256 bits) that expire
after ``ttl`` seconds and are revoked by logout. Tokens live **in memory only**, keyed by
their SHA-256, so neither a memory dump of the table nor a log line holds a usable token, and
a restart of the engine logs every desktop out. The table is bounded (``max_tokens``; the
oldest is dropped first).

:class:`LoginThrottle` counts failed logins per user name and per source address in a
sliding window; after ``max_failures`` the key is locked out for ``lockout`` seconds (a
successful login clears the user's count). Its table is bounded too, so a flood of made-up
user names cannot grow it without limit.

Both take ``now`` (seconds, any monotonic clock) on every call and do no I/O.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class Session(Generic[T]):
    user: T
    expires: float


class TokenStore(Generic[T]):
    """Random expiring bearer tokens for logged-in users (see the module docstring)."""

    def __init__(self, ttl: float = 8 * 3600, *, max_tokens: int = 10_000) -> None:
        if ttl <= 0:
            raise ValueError(f"token ttl must be positive, got {ttl}")
        self.ttl = ttl
        self.max_tokens = max_tokens
        self._sessions: OrderedDict[str, Session[T]] = OrderedDict()

    def issue(self, user: T, now: float) -> str:
        token = secrets.token_urlsafe(32)
        self._sessions[_digest(token)] = Session(user, now + self.ttl)
        while len(self._sessions) > self.max_tokens:
            self._sessions.popitem(last=False)
        return token

    def user(self, token: str, now: float) -> T | None:
        """The user of a valid token; None when unknown, revoked or expired."""
        key = _digest(token)
        session = self._sessions.get(key)
        if session is None:
            return None
        if now >= session.expires:
            del self._sessions[key]
            return None
        return session.user

    def revoke(self, token: str) -> bool:
        return self._sessions.pop(_digest(token), None) is not None

    def __len__(self) -> int:
        return len(self._sessions)


class LoginThrottle:
    """Failed logins per key in a window; too many lock the key out for a while."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 300.0,
        lockout: float = 300.0,
        max_keys: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked: dict[str, float] = {}

    def locked_for(self, key: str, now: float) -> float:
        """Seconds the key stays locked (0: it may try)."""
        until = self._locked.get(key)
        if until is None:
            return 0.0
        if now >= until:
            del self._locked[key]
            return 0.0
        return until - now

    def failed(self, key: str, now: float) -> bool:
        """Count a failure; True when this one locks the key out."""
        times = self._failures.pop(key, None) or deque()
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        self._failures[key] = times  # most recent last
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)
        if len(times) >= self.max_failures:
            self._failures.pop(key, None)
            self._locked[key] = now + self.lockout
            if len(self._locked) > self.max_keys:
                for stale in [k for k, t in self._locked.items() if t <= now]:
                    del self._locked[stale]
            return True
        return False

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
