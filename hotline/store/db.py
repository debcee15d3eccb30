"""The engine's database handle: async engine, sessions, SQLite tuning and migrations.

Any SQLAlchemy async URL works (``sqlite+aiosqlite:///var/hotline.db`` embedded by default,
``postgresql+asyncpg://user:pw@host/db`` for a shared server). The schema is owned by the
Alembic migrations in :mod:`hotline.store.migrations`; :meth:`Database.upgrade` applies them.

SQLite crash safety: every connection runs ``journal_mode=WAL`` and ``synchronous=NORMAL``.
In WAL mode a commit appends the transaction to the ``-wal`` file with an ordinary ``write()``
before it returns; the file is fsynced only at checkpoints. A *process* crash (kill -9, an
exception that takes the engine down) cannot lose a committed transaction, because the data
already sits in the operating system's page cache and reaches disk without the process. Only a
power cut or kernel crash before the next checkpoint can roll back the most recent commits —
and even then the database stays consistent (WAL frames are checksummed, a torn tail is
ignored on recovery). ``synchronous=FULL`` would close that window at the cost of an fsync per
commit; the CDR writer commits several times per call, so NORMAL is the right trade here.
``foreign_keys=ON`` enforces references, and ``busy_timeout`` makes a writer wait for another
connection's write lock instead of failing at once.

A utility's own billing database is opened with ``read_only=True`` (see docs/storage.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code (works from an installed package).

    With ``connection`` the migrations run on it (used by :meth:`Database.upgrade`); otherwise
    ``env.py`` connects to ``url``.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    config.attributes["connection"] = connection
    return config


def _sqlite_pragmas(read_only: bool) -> Callable[[Any, Any], None]:
    statements = [
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    ]
    if read_only:
        statements.append("PRAGMA query_only=ON")

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()

    return on_connect


def _read_only_session(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:  # PostgreSQL and MySQL: every transaction of this connection is read-only
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    finally:
        cursor.close()


class Database:
    """One database the engine reads and writes through async sessions.

    ``read_only=True`` is for a database the engine must never change (a utility's billing
    database): SQLite connections run ``PRAGMA query_only``, other servers open read-only
    transactions, and :meth:`upgrade` refuses.
    """

    def __init__(self, url: str, *, read_only: bool = False, echo: bool = False) -> None:
        self.url = make_url(url)
        self.read_only = read_only
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        database = self.url.database or ""
        if self.is_sqlite and database not in ("", ":memory:") and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_async_engine(self.url, echo=echo)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas(read_only))
        elif read_only:
            event.listen(self.engine.sync_engine, "connect", _read_only_session)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    async def upgrade(self, revision: str = "head") -> None:
        """Apply the Alembic migrations up to ``revision`` (idempotent)."""
        if self.read_only:
            raise RuntimeError(f"{self!r} is read-only: its schema is not ours to migrate")
        async with self.engine.begin() as connection:
            await connection.run_sync(self._upgrade_sync, revision)
        log.info("db.upgraded", url=self.url.render_as_string(hide_password=True), to=revision)

    @staticmethod
    def _upgrade_sync(connection: Connection, revision: str) -> None:
        command.upgrade(alembic_config(connection=connection), revision)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; commit explicitly, anything uncommitted is rolled back on exit."""
        async with self._sessions() as session:
            yield session

    async def close(self) -> None:
        await self.engine.dispose()


async def open_database(url: str) -> Database:
    """A migrated :class:`Database` for ``url``, ready to use."""
    db = Database(url)
    try:
        await db.upgrade()
    except BaseException:
        await db.close()
        raise
    return db
