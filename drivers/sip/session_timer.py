"""SIP session timers (RFC 4028) for the engine's UAS: negotiation as plain functions.

A caller (or a proxy on its path) that offers ``Session-Expires`` asks for the dialog to be
refreshed by a re-INVITE or UPDATE at least every interval, so that a call whose far end
vanished without a BYE does not hold a line forever. :func:`negotiate` reads the request's
``Session-Expires``, ``Min-SE`` and ``Supported``/``Require`` and decides:

* no ``Session-Expires``: no session timer (None);
* an interval below the engine's minimum (:data:`MIN_SE`, 90 s, the RFC's smallest) is
  refused with ``422 Session Interval Too Small`` and ``Min-SE`` (:class:`SessionTimerRejected`);
* otherwise the interval is accepted as offered, with the refresher the request names, else
  the caller (``uac``) when it supports ``timer``; a caller without ``timer`` support cannot
  refresh, so the engine does (``uas``) by sending UPDATEs at half the interval.

:func:`response_headers` are the headers of the 2xx. :func:`expiry` is when the engine ends a
call that was not refreshed: the interval minus ``min(32 s, interval/3)`` after the last
refresh (RFC 4028 §10). Every time is passed in; the UAS (:mod:`drivers.sip.uas`) keeps the
timers per call.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.sip.message import Request

MIN_SE = 90  # seconds; RFC 4028 §4: Min-SE is never below 90 s


@dataclass(slots=True, frozen=True)
class SessionTimer:
    """The session timer agreed for a dialog."""

    interval: int  # seconds
    refresher: str  # "uac": the caller refreshes; "uas": the engine does
    uac_supports: bool  # the caller said Supported/Require: timer (→ Require: timer in the 2xx)


class SessionTimerRejected(ValueError):
    """A request the engine must refuse: 422 (interval too small) or 400 (malformed)."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


def _delta(value: str, name: str) -> tuple[int, dict[str, str]]:
    head, *params = [part.strip() for part in value.split(";")]
    if not head.isdigit() or len(head) > 10:
        raise SessionTimerRejected(400, f"Bad {name} {value[:30]!r}")
    fields: dict[str, str] = {}
    for param in params:
        key, _, val = param.partition("=")
        fields[key.strip().lower()] = val.strip().lower()
    return int(head), fields


def negotiate(request: Request, *, min_se: int = MIN_SE) -> SessionTimer | None:
    """The session timer for the 2xx answering ``request`` (an INVITE or UPDATE)."""
    value = request.headers.get("session-expires")
    if value is None:
        return None
    interval, params = _delta(value, "Session-Expires")
    theirs = request.headers.get("min-se")
    floor = min_se
    if theirs is not None:
        floor = max(floor, _delta(theirs, "Min-SE")[0])
    if interval < min_se:
        raise SessionTimerRejected(422, "Session Interval Too Small", (("Min-SE", str(floor)),))
    tags = {t.lower() for t in request.headers.values("supported")}
    tags |= {t.lower() for t in request.headers.values("require")}
    supports = "timer" in tags
    asked = params.get("refresher")
    if not supports:
        refresher = "uas"  # the caller cannot refresh; RFC 4028 §9
    elif asked in ("uac", "uas"):
        refresher = asked
    else:
        refresher = "uac"
    return SessionTimer(interval, refresher, supports)


def response_headers(timer: SessionTimer) -> list[tuple[str, str]]:
    """Headers of the 2xx that accepts ``timer``."""
    headers = [("Session-Expires", f"{timer.interval};refresher={timer.refresher}")]
    if timer.uac_supports:
        headers.append(("Require", "timer"))
    return headers


def expiry(timer: SessionTimer, refreshed_at: float) -> float:
    """When the engine sends BYE if no refresh comes (RFC 4028 §10)."""
    return refreshed_at + timer.interval - min(32.0, timer.interval / 3)


def refresh_due(timer: SessionTimer, refreshed_at: float) -> float:
    """When the engine refreshes, when it is the refresher (half the interval)."""
    return refreshed_at + timer.interval / 2
