"""Engines and sessions for the embedded SQLite default and production PostgreSQL, with one code path.

SQLite gets WAL (readers never block the writer), a busy timeout (a second writer waits instead of
failing) and foreign keys on, set on every new connection because SQLite forgets pragmas per connection.

Every string the database is sent is made storable first, on both databases alike: U+0000 is taken out
(PostgreSQL can store it in neither text nor jsonb) and a lone surrogate (`\ud9f6` in a malformed JSON
payload: not a character, and not encodable as UTF-8 for either driver) becomes U+FFFD. Both reach us
only in malformed or hostile input, so mending them here keeps the rest of what was sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

DEFAULT_URL = "sqlite+aiosqlite:///./cadence.db"
MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # pysqlite's implicit transactions are off (isolation_level=None), so we say BEGIN ourselves: IMMEDIATE
    # for write units, which take the write lock up front instead of failing to upgrade a stale snapshot.
    mode = "IMMEDIATE" if conn.get_execution_options().get("cadence_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


_SURROGATE = re.compile("[\ud800-\udfff]")
"""A surrogate code point alone in a str (a valid pair is always one astral character in Python)."""


def storable(value: Any) -> Any:
    """`value` with every string in it (in lists, tuples and dicts too) made storable: U+0000 taken out, a
    lone surrogate replaced by U+FFFD."""
    if isinstance(value, str):
        if value.isascii():
            return value.replace("\x00", "") if "\x00" in value else value
        return _SURROGATE.sub("\ufffd", value.replace("\x00", ""))
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(storable(v) for v in value)
    return value


def _storable_json(value: Any) -> str:
    return json.dumps(storable(value))


def _storable_parameters(
    conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> tuple[str, Any]:
    return statement, storable(parameters)


def alembic_config(url: str) -> Config:
    """An Alembic config built in code, so migrations run from an installed package without alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


class Database:
    """Owns the engine and the session factory for one database URL."""

    def __init__(self, url: str = DEFAULT_URL, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            if parsed.database:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, json_serializer=_storable_json, **kwargs)
        event.listen(self.engine.sync_engine, "before_cursor_execute", _storable_parameters, retval=True)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on any exception."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that will write: on SQLite it takes the write lock at BEGIN (so a read-check-write
        is atomic); on PostgreSQL callers lock the rows they change with `SELECT ... FOR UPDATE`."""
        async with self.sessions() as session:
            await session.connection(execution_options={"cadence_write": True})
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    async def upgrade(self) -> None:
        """Bring the schema to the newest migration (run by `cadence db upgrade` and on every start)."""
        cfg = alembic_config(self.url)

        def run(connection: Connection) -> None:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

        async with self.engine.begin() as conn:
            await conn.run_sync(run)

    async def migrations_current(self) -> bool:
        """True when the database is at the newest migration (used by readiness checks and doctor)."""
        head = ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()

        def current(connection: Connection) -> str | None:
            return MigrationContext.configure(connection).get_current_revision()

        async with self.engine.connect() as conn:
            return await conn.run_sync(current) == head

    async def dispose(self) -> None:
        await self.engine.dispose()
