"""``hotline seat password`` / ``hotline seat list``: seat SIP credentials from a shell."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

from drivers.sip.digest import compute_ha1
from hotline.seat_cli import read_password
from hotline.services.sip_seats import REALM, load_credentials
from hotline.store.db import open_database


def hotline(root: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    config = root / "hotline.yaml"
    config.write_text(f"database_url: sqlite+aiosqlite:///{root}/var/seats.db\n")
    return subprocess.run(
        [sys.executable, "-m", "hotline.cli", "--config", str(config), "seat", *args],
        cwd=root,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def stored(root: Path) -> dict:
    async def read() -> dict:
        db = await open_database(f"sqlite+aiosqlite:///{root}/var/seats.db")
        try:
            return await load_credentials(db)
        finally:
            await db.close()

    return asyncio.run(read())


def test_password_from_stdin_is_stored_as_ha1_only(tmp_path: Path) -> None:
    done = hotline(tmp_path, "password", "1001", "--password-stdin", stdin="s3cret-seat-pw\n")
    assert done.returncode == 0, done.stderr
    assert "seat 1001: SIP password set" in done.stdout
    credential = stored(tmp_path)["1001"]
    assert credential.realm == REALM
    assert credential.ha1 == {
        "MD5": compute_ha1("1001", REALM, "s3cret-seat-pw", "MD5"),
        "SHA-256": compute_ha1("1001", REALM, "s3cret-seat-pw", "SHA-256"),
    }
    assert b"s3cret-seat-pw" not in (tmp_path / "var" / "seats.db").read_bytes()
    # a second call changes it
    again = hotline(tmp_path, "password", "1001", "--password-stdin", stdin="another-pw-95598\n")
    assert again.returncode == 0
    assert stored(tmp_path)["1001"].ha1["MD5"] == compute_ha1("1001", REALM, "another-pw-95598")


def test_list_shows_seats_without_secrets(tmp_path: Path) -> None:
    assert hotline(tmp_path, "list").stdout.strip() == "no seat has SIP credentials"
    for user in ("1002", "1001"):
        hotline(tmp_path, "password", user, "--password-stdin", stdin=f"pw-of-{user}-x\n")
    listing = hotline(tmp_path, "list")
    assert listing.returncode == 0
    rows = [line.split() for line in listing.stdout.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [("1001", REALM), ("1002", REALM)]
    ha1 = stored(tmp_path)["1001"].ha1["MD5"]
    assert ha1 not in listing.stdout and "pw-of" not in listing.stdout


def test_bad_password_or_user_is_refused_with_a_reason(tmp_path: Path) -> None:
    short = hotline(tmp_path, "password", "1001", "--password-stdin", stdin="short\n")
    assert short.returncode == 1
    assert "password for seat 1001 must have at least 8 characters" in short.stderr
    bad_user = hotline(tmp_path, "password", "10 01", "--password-stdin", stdin="long-enough\n")
    assert bad_user.returncode == 1 and "seat user name must be" in bad_user.stderr
    assert stored(tmp_path) == {}
    usage = hotline(tmp_path, "password")
    assert usage.returncode == 2


def test_interactive_entry_must_match_twice() -> None:
    args = argparse.Namespace(user="1001", password_stdin=False)
    answers = iter(["first-password", "other-password"])
    assert read_password(args, ask=lambda prompt: next(answers)) is None
    answers = iter(["same-password", "same-password"])
    assert read_password(args, ask=lambda prompt: next(answers)) == "same-password"
