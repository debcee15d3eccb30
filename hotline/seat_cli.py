"""``hotline seat …``: SIP credentials of agent seats, set from a shell (docs/sip.md).

::

    hotline seat password 1001                     # asks twice, without echo
    printf '%s\\n' "$PW" | hotline seat password 1001 --password-stdin
    hotline seat list                              # user, realm, last change; never secrets

The password is turned into HA1 for MD5 and SHA-256 (:func:`~hotline.services.sip_seats.
set_seat_password`) and only those are stored, in the database of the configuration
(``--config`` or ``HOTLINE_CONFIG``). A running engine reads the seats when it starts:
restart it for a change to take effect.

Exit status: 0 done, 1 refused (too short, bad user name, the two entries differ), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any, TextIO

EXIT_REFUSED = 1


def add_seat_commands(sub: Any) -> None:
    """Add ``seat password`` and ``seat list`` to the ``hotline`` parser."""
    seat = sub.add_parser("seat", help="SIP credentials of agent seats").add_subparsers(
        metavar="ACTION"
    )
    password = seat.add_parser("password", help="set (or create) a seat's SIP password")
    password.add_argument("user", help="the seat's SIP user name, e.g. 1001")
    password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (for scripts)",
    )
    password.set_defaults(handler=_cmd_password)
    listing = seat.add_parser("list", help="list the seats that have SIP credentials")
    listing.set_defaults(handler=_cmd_list)


def read_password(
    args: argparse.Namespace, stdin: TextIO | None = None, ask: Any = getpass.getpass
) -> str | None:
    """The new password from stdin or asked twice; None (with a message) when they differ."""
    if args.password_stdin:
        return (stdin or sys.stdin).readline().rstrip("\r\n")
    first = ask(f"New SIP password for seat {args.user}: ")
    if first != ask("Again: "):
        print("hotline: the two passwords differ; nothing changed", file=sys.stderr)
        return None
    return first


def _cmd_password(args: argparse.Namespace) -> int:
    from hotline.cli import _config
    from hotline.services.sip_seats import SeatError, set_seat_password

    config = _config(args)
    password = read_password(args)
    if password is None:
        return EXIT_REFUSED

    async def store(db: Any) -> None:
        await set_seat_password(db, args.user, password)

    try:
        _with_database(config, store)
    except SeatError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"seat {args.user}: SIP password set (stored as MD5 and SHA-256 HA1 only)")
    print("restart the engine for it to take effect")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from hotline.cli import _config
    from hotline.services.sip_seats import list_seats

    config = _config(args)
    seats = _with_database(config, list_seats)
    if not seats:
        print("no seat has SIP credentials")
        return 0
    print(f"{'user':<12} {'realm':<20} changed (UTC)")
    for seat in seats:
        changed = seat.updated_at.strftime("%Y-%m-%d %H:%M:%S") if seat.updated_at else "-"
        print(f"{seat.username:<12} {seat.realm:<20} {changed}")
    return 0


def _with_database(config: Any, action: Any) -> Any:
    from hotline.store.db import open_database

    async def run() -> Any:
        db = await open_database(config.database)
        try:
            return await action(db)
        finally:
            await db.close()

    return asyncio.run(run())
