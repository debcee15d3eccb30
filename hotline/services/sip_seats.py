"""SIP credentials of agent seats: set a seat's password, load the credentials for the registrar.

:func:`set_seat_password` stores only HA1 = H(user:realm:password) for MD5 and SHA-256
(:class:`~hotline.store.models.SipSeat`). :func:`load_credentials` reads every seat into
:class:`~drivers.sip.digest.Credential` objects keyed by user name, which the SIP registrar
looks up without touching the database.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select

from drivers.sip.digest import Credential, DigestAuthenticator, NonceIssuer, compute_ha1
from drivers.sip.registrar import Registrar
from hotline.store.db import Database
from hotline.store.models import SipSeat, utc_now

REALM = "hotline-95598"
DEMO_SEATS = ("1001", "1002", "1003", "1004")
DEMO_PASSWORD = "demo-95598"  # demo data only; see docs/sip.md


class SeatError(ValueError):
    """A seat user name or password that cannot be stored."""


async def set_seat_password(
    db: Database, username: str, password: str, *, realm: str = REALM
) -> None:
    """Create the seat or replace its credentials."""
    if not username or not username.isalnum() or len(username) > 32:
        raise SeatError(f"seat user name must be 1-32 letters or digits, got {username!r}")
    if len(password) < 8:
        raise SeatError(f"password for seat {username} must have at least 8 characters")
    md5 = compute_ha1(username, realm, password, "MD5")
    sha256 = compute_ha1(username, realm, password, "SHA-256")
    async with db.session() as session:
        seat = await session.scalar(select(SipSeat).where(SipSeat.username == username))
        if seat is None:
            seat = SipSeat(username=username, realm=realm, ha1_md5=md5, ha1_sha256=sha256)
            session.add(seat)
        else:
            seat.realm, seat.ha1_md5, seat.ha1_sha256 = realm, md5, sha256
            seat.updated_at = utc_now()
        await session.commit()


async def list_seats(db: Database) -> list[SipSeat]:
    """Every seat with SIP credentials, by user name (for listing; HA1 values included)."""
    async with db.session() as session:
        return list((await session.scalars(select(SipSeat).order_by(SipSeat.username))).all())


async def load_credentials(db: Database) -> dict[str, Credential]:
    """Every seat's credentials, by user name."""
    async with db.session() as session:
        seats = (await session.scalars(select(SipSeat))).all()
    return {
        s.username: Credential(s.username, s.realm, {"MD5": s.ha1_md5, "SHA-256": s.ha1_sha256})
        for s in seats
    }


async def ensure_demo_seats(db: Database) -> bool:
    """Give the demo agents' seats the demo password; False when seats exist already."""
    async with db.session() as session:
        if await session.scalar(select(SipSeat.id).limit(1)) is not None:
            return False
    for username in DEMO_SEATS:
        await set_seat_password(db, username, DEMO_PASSWORD)
    return True


async def seat_registrar(
    db: Database, *, realm: str = REALM, algorithms: tuple[str, ...] = ("SHA-256", "MD5")
) -> Registrar:
    """A registrar for the SIP endpoint, checking digests against the stored seats.

    ``algorithms``: the digest challenges offered, in order (``sip.digest_algorithms``;
    baresip 1.0 gives up on a REGISTER challenged with anything but MD5).

    The credentials are read once here; :func:`reload_credentials` picks up later changes.
    """
    credentials = await load_credentials(db)
    authenticator = DigestAuthenticator(
        realm=realm,
        lookup=credentials.get,
        nonces=NonceIssuer(secrets.token_bytes(32)),
        algorithms=algorithms,
    )
    return Registrar(authenticator)


async def reload_credentials(db: Database, registrar: Registrar) -> None:
    """Make a running registrar see the seats as they are stored now."""
    assert registrar.authenticator is not None
    registrar.authenticator.lookup = (await load_credentials(db)).get
