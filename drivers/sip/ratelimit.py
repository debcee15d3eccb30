"""Per-source rate limits for the SIP endpoint (flood protection), as plain objects.

:class:`TokenBucket` is one source's allowance: ``rate`` requests per second on average, up to
``burst`` at once; ``now`` is always passed in. :class:`SourceLimiter` keeps one bucket per
source address in a table bounded by ``max_sources``: when it is full the source seen least
recently is evicted (it starts again with a full bucket, which only ever errs on the side of
letting a request through), so a flood from many addresses cannot grow memory without bound.

A refused request is answered 503 with ``Retry-After`` (the seconds until a token is back,
rounded up) by the UAS. :attr:`Verdict.report` is set on the first refusal of a source in each
``log_window`` seconds, with the refusals counted since the previous report, so the shell
logs a flood once per window instead of once per packet.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


class RateLimitError(ValueError):
    """A limit that cannot work (a rate or burst that is not positive)."""


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored; one token per request."""

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        if rate <= 0 or burst < 1:
            raise RateLimitError(f"rate {rate}/s and burst {burst} must be > 0 and ≥ 1")
        return cls(rate, burst, burst, now)

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def retry_after(self) -> int:
        """Whole seconds until the next token (at least 1)."""
        return max(1, math.ceil((1 - self.tokens) / self.rate))


@dataclass(slots=True, frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0
    report: bool = False  # the first refusal of this source in the log window
    refused_since_report: int = 0  # refusals since the previous report, this one included


@dataclass(slots=True)
class _Source:
    bucket: TokenBucket
    reported_at: float = -math.inf
    refused: int = 0


class SourceLimiter:
    """A token bucket per source address, in a table of at most ``max_sources`` entries."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_sources: int = 10_000,
        log_window: float = 60.0,
    ) -> None:
        TokenBucket.full(rate, burst, 0.0)  # validates
        if max_sources < 1:
            raise RateLimitError(f"max_sources {max_sources} must be ≥ 1")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self.log_window = log_window
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._sources)

    def check(self, source: str, now: float) -> Verdict:
        """Whether a request from ``source`` may be served now."""
        entry = self._sources.get(source)
        if entry is None:
            if len(self._sources) >= self.max_sources:
                self._sources.popitem(last=False)
                self.evicted += 1
            entry = self._sources[source] = _Source(TokenBucket.full(self.rate, self.burst, now))
        else:
            self._sources.move_to_end(source)
        if entry.bucket.take(now):
            return Verdict(True)
        entry.refused += 1
        if now - entry.reported_at >= self.log_window:
            refused, entry.refused, entry.reported_at = entry.refused, 0, now
            return Verdict(False, entry.bucket.retry_after(), True, refused)
        return Verdict(False, entry.bucket.retry_after())
