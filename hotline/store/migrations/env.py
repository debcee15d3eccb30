"""Alembic environment of the hotline store.

Two ways in:

- :meth:`hotline.store.db.Database.upgrade` builds the configuration in code and hands over an
  open connection (``config.attributes["connection"]``); migrations run on it.
- The ``alembic`` command line (``alembic -c hotline/store/alembic.ini upgrade head``) connects
  by URL: ``config.attributes["url"]``, else ``$HOTLINE_DB_URL``, else ``sqlalchemy.url`` from
  the ini file, else the embedded default ``sqlite+aiosqlite:///var/hotline.db``.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from hotline.store.db import Database
from hotline.store.models import Base, UtcDateTime

DEFAULT_URL = "sqlite+aiosqlite:///var/hotline.db"

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.file_config.has_section("loggers"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    return (
        config.attributes.get("url")
        or os.environ.get("HOTLINE_DB_URL")
        or config.get_main_option("sqlalchemy.url")
        or DEFAULT_URL
    )


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Write :class:`UtcDateTime` columns as plain ``sa.DateTime(timezone=True)``."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**options: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_item=_render_item,
        **options,
    )


def _run_on(connection: Connection) -> None:
    # SQLite cannot ALTER most things: later migrations use batch mode (copy-and-move).
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


async def _run_by_url(url: str) -> None:
    db = Database(url)
    try:
        async with db.engine.connect() as connection:
            await connection.run_sync(_run_on)
            await connection.commit()
    finally:
        await db.close()


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (``alembic upgrade head --sql``)."""
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
    else:
        asyncio.run(_run_by_url(_url()))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
