"""The seat directory: where an agent's seat is, and how to ring it.

An agent sits at a *seat*, named in ``agents.yaml`` or at login:

- ``s1``, ``s2`` … — a station line of the simulated board (an analog desk phone);
- ``sip:1001`` — a SIP softphone registered to the engine as seat user ``1001`` (the
  ``sip_seats`` credentials; see docs/sip.md).

:class:`SeatDirectory` is what the contact centre asks: :meth:`SeatDirectory.ring` returns the
seat's leg (a :class:`~drivers.channel.Channel` that emits ``answer`` when the agent picks up
and ``hangup`` when it goes away), :meth:`SeatDirectory.in_service` whether the seat's phone
is there (plugged in / registered now). Ringing a seat that cannot ring raises
:class:`SeatUnavailable` (a ``RuntimeError``), which the contact centre reports as a refused
offer. The SIP endpoint is attached once it has started (:attr:`SeatDirectory.sip`).
"""

from __future__ import annotations

import re
from typing import Any

from drivers.channel import Channel

SIP_PREFIX = "sip:"
_STATION = re.compile(r"^s[1-9][0-9]*$")
_SIP_SEAT = re.compile(r"^sip:[0-9A-Za-z._\-]{1,32}$")


class SeatUnavailable(RuntimeError):
    """The seat cannot ring now (no such line, phone not registered, no SIP endpoint)."""


def is_seat(seat: object) -> bool:
    """``seat`` names a station line (``s1``) or a SIP seat (``sip:1001``)."""
    return isinstance(seat, str) and bool(_STATION.match(seat) or _SIP_SEAT.match(seat))


def check_seat(seat: str) -> str:
    """``seat`` if it names a station line (``s1``) or a SIP seat (``sip:1001``).

    Anything else raises ValueError."""
    if not is_seat(seat):
        raise ValueError(
            f"seat {seat!r}: a seat is a station line of the board (s1, s2 …) or a registered"
            " SIP seat (sip:1001)"
        )
    return seat


def is_sip_seat(seat: str) -> bool:
    return seat.startswith(SIP_PREFIX)


class SeatDirectory:
    """Rings seats on the board or over SIP (see the module doc)."""

    def __init__(self, board: Any, sip: Any = None) -> None:
        self.board = board
        self.sip = sip  # drivers.sip.transport.SipEndpoint once started

    def ring(self, seat: str, *, caller: str = "") -> Channel:
        if is_sip_seat(seat):
            if self.sip is None:
                raise SeatUnavailable(f"seat {seat}: SIP is not enabled")
            try:
                return self.sip.dial_seat(seat[len(SIP_PREFIX) :], caller=caller)
            except RuntimeError as exc:  # DialRefused: not registered
                raise SeatUnavailable(str(exc)) from exc
        if self.board is None:
            raise SeatUnavailable(f"seat {seat}: the board is not enabled")
        return self.board.ring_station(seat, caller=caller)

    def in_service(self, seat: str) -> bool:
        """The seat's phone is there: a plugged-in station line, a registered SIP seat."""
        if is_sip_seat(seat):
            return self.sip is not None and seat[len(SIP_PREFIX) :] in self.sip.outbound.seats_up
        try:
            return bool(self.board.line(seat).in_service)
        except (KeyError, AttributeError):
            return False
