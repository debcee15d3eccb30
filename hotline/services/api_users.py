"""Users of the agent control API: salted password hashes, roles, the demo users.

Passwords are hashed with scrypt from the standard library (:func:`hashlib.scrypt`): a
memory-hard key derivation function, salted per user, which is what a password store needs,
so no extra library (bcrypt, argon2) has to be installed and kept up to date. A stored hash
reads ``scrypt$N$r$p$salt$hash`` (salt and hash in hex) so its cost can be raised later
without invalidating existing ones. Hashing takes tens of milliseconds on purpose: callers in
the event loop run it in an executor (:func:`check_password`).

Roles: ``agent`` (acts only as its ``agent_id``) and ``supervisor`` (any agent, queue
figures). Demo users, created on an empty table when the engine runs with demo data: agents
``1001``-``1004`` with password ``agent-95598`` and ``supervisor`` with ``super-95598``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from hotline.store.db import Database
from hotline.store.models import ApiUser, utc_now

ROLES = ("agent", "supervisor")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~16 MiB and ~50 ms per hash
DEMO_AGENTS = ("1001", "1002", "1003", "1004")
DEMO_AGENT_PASSWORD = "agent-95598"  # demo data only; see docs/agent_api.md
DEMO_SUPERVISOR = "supervisor"
DEMO_SUPERVISOR_PASSWORD = "super-95598"
_USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class UserError(ValueError):
    """A user name, role or password that cannot be stored."""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: str  # agent | supervisor
    agent_id: str | None
    enabled: bool = True

    def may_act_for(self, agent_id: str) -> bool:
        return self.role == "supervisor" or self.agent_id == agent_id


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(digest) // 2,
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


async def set_user(
    db: Database, username: str, password: str, role: str, agent_id: str | None = None
) -> None:
    """Create the user or replace their password, role and agent."""
    if not _USERNAME.match(username or ""):
        raise UserError(f"user name must be 1-32 letters, digits, '_', '.', '-', got {username!r}")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "agent" and not agent_id:
        raise UserError(f"user {username}: an agent user needs the agent id they act as")
    if len(password) < 8:
        raise UserError(f"password for {username} must have at least 8 characters")
    hashed = await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
    async with db.session() as session:
        user = await session.scalar(select(ApiUser).where(ApiUser.username == username))
        if user is None:
            session.add(
                ApiUser(username=username, password_hash=hashed, role=role, agent_id=agent_id)
            )
        else:
            user.password_hash, user.role, user.agent_id = hashed, role, agent_id
            user.enabled, user.updated_at = True, utc_now()
        await session.commit()


async def check_password(db: Database, username: str, password: str) -> User | None:
    """The user if ``password`` is theirs and they are enabled; None otherwise.

    An unknown user costs a hash too, so timing does not tell which user names exist.
    """
    async with db.session() as session:
        row = await session.scalar(select(ApiUser).where(ApiUser.username == username))
    stored = row.password_hash if row is not None else _DUMMY_HASH
    loop = asyncio.get_running_loop()
    ok = await loop.run_in_executor(None, verify_password, password, stored)
    if row is None or not ok or not row.enabled:
        return None
    return User(row.username, row.role, row.agent_id, row.enabled)


async def ensure_demo_users(db: Database) -> bool:
    """Create the demo users on an empty table; False when users exist already."""
    async with db.session() as session:
        if await session.scalar(select(ApiUser.id).limit(1)) is not None:
            return False
    for agent_id in DEMO_AGENTS:
        await set_user(db, agent_id, DEMO_AGENT_PASSWORD, "agent", agent_id)
    await set_user(db, DEMO_SUPERVISOR, DEMO_SUPERVISOR_PASSWORD, "supervisor")
    return True


_DUMMY_HASH = hash_password(secrets.token_hex(8), salt=b"\0" * 16)
