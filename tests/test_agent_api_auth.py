"""Tokens, login throttling and password hashes of the agent control API (no I/O but SQLite)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hotline.auth import LoginThrottle, TokenStore
from hotline.services.api_users import (
    User,
    UserError,
    check_password,
    ensure_demo_users,
    hash_password,
    set_user,
    verify_password,
)
from hotline.store.db import Database


def test_tokens_expire_are_revoked_and_the_table_is_bounded() -> None:
    store: TokenStore[str] = TokenStore(ttl=60, max_tokens=3)
    token = store.issue("1001", now=0)
    assert len(token) >= 40 and store.user(token, 59.9) == "1001"
    assert store.user(token, 60) is None  # expired
    again = store.issue("1001", now=100)
    assert again != token and store.revoke(again) and store.user(again, 101) is None
    assert not store.revoke(again)
    tokens = [store.issue(f"u{i}", now=200) for i in range(4)]
    assert store.user(tokens[0], 201) is None  # the oldest was dropped
    assert [store.user(t, 201) for t in tokens[1:]] == ["u1", "u2", "u3"]
    assert store.user("made-up", 201) is None
    with pytest.raises(ValueError):
        TokenStore(ttl=0)


def test_throttle_locks_out_after_failures_in_the_window_then_lets_in_again() -> None:
    throttle = LoginThrottle(max_failures=3, window=60, lockout=300)
    assert not throttle.failed("1001", 0) and not throttle.failed("1001", 10)
    assert throttle.locked_for("1001", 11) == 0
    assert throttle.failed("1001", 20)  # the third within 60 s locks
    assert throttle.locked_for("1001", 21) == pytest.approx(299)
    assert throttle.locked_for("1002", 21) == 0  # other keys are not affected
    assert throttle.locked_for("1001", 320) == 0
    # failures spread wider than the window never lock; a success clears the count
    assert not any(throttle.failed("1003", t) for t in (0, 70, 140, 210))
    throttle.failed("1004", 0)
    throttle.failed("1004", 1)
    throttle.succeeded("1004")
    assert not throttle.failed("1004", 2)


def test_throttle_table_is_bounded() -> None:
    throttle = LoginThrottle(max_failures=2, max_keys=100)
    for i in range(1000):
        throttle.failed(f"user{i}", 0)
    assert len(throttle._failures) <= 100


def test_password_hashes_are_salted_scrypt_and_verify() -> None:
    one, two = hash_password("agent-95598"), hash_password("agent-95598")
    assert one != two and one.startswith("scrypt$16384$8$1$")
    assert "agent-95598" not in one
    assert verify_password("agent-95598", one) and verify_password("agent-95598", two)
    assert not verify_password("agent-95599", one)
    assert not verify_password("agent-95598", "md5$abc") and not verify_password("x", "garbage")


def test_users_are_stored_checked_and_refused_with_reasons(tmp_path: Path) -> None:
    async def go() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path}/users.db")
        await db.upgrade()
        try:
            assert await ensure_demo_users(db)
            assert not await ensure_demo_users(db)  # only on an empty table
            assert await check_password(db, "1001", "agent-95598") == User("1001", "agent", "1001")
            boss = await check_password(db, "supervisor", "super-95598")
            assert boss is not None and boss.may_act_for("1003") and boss.role == "supervisor"
            agent = await check_password(db, "1002", "agent-95598")
            assert agent is not None and agent.may_act_for("1002") and not agent.may_act_for("1001")
            assert await check_password(db, "1001", "wrong") is None
            assert await check_password(db, "nobody", "agent-95598") is None
            await set_user(db, "1001", "new-password-1", "agent", "1001")
            assert await check_password(db, "1001", "agent-95598") is None
            assert await check_password(db, "1001", "new-password-1") is not None
            with pytest.raises(UserError, match="at least 8"):
                await set_user(db, "1005", "short", "agent", "1005")
            with pytest.raises(UserError, match="role"):
                await set_user(db, "1005", "long-enough", "admin")
            with pytest.raises(UserError, match="agent id"):
                await set_user(db, "1005", "long-enough", "agent")
            with pytest.raises(UserError, match="user name"):
                await set_user(db, "bad name!", "long-enough", "supervisor")
        finally:
            await db.close()

    asyncio.run(go())
