"""Advisory locks: how N bot processes sharing one PostgreSQL agree that one of them runs the clock.

A PostgreSQL session-level advisory lock belongs to the connection that took it, so `AdvisoryLock` holds
it on a connection of its own for the life of the process. When the process dies — a deploy, `kill -9`,
the OOM killer — its connection closes and PostgreSQL releases the lock at once; when the whole machine
dies, the TCP keepalives set on that connection let the server notice within about half a minute. No
lease table to tune, no home-made cluster protocol: every other process simply asks again on its next
heartbeat (`pg_try_advisory_lock`, which never waits) and one of them gets it.

The lock never guards correctness. Occurrences are unique inserts, planning locks its row and
deliveries are claimed with leases, so two processes that both believed they held the lock (a network
blip between a lost connection and the next check) would still not double a message; the lock only
spares the others the redundant work and gives the cluster one clock.

SQLite is the embedded, single-process default: there is nobody to elect, so the lock is always
granted. (Two processes pointed at one SQLite file would both tick; the database still arbitrates, as
above, so that is merely redundant.)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from storage.db import Database

log = logging.getLogger(__name__)

KEEPALIVE_IDLE_SECONDS = 10
KEEPALIVE_INTERVAL_SECONDS = 5
KEEPALIVE_COUNT = 3


def lock_key(name: str) -> int:
    """The 64-bit key PostgreSQL locks on, derived from a readable name so every process computes the
    same one (advisory locks are per database, so two Cadence databases in one cluster never collide)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class AdvisoryLock:
    """A named session-level advisory lock held on a dedicated connection (PostgreSQL), or a lock that
    is always granted (SQLite). Not safe for concurrent use by two tasks: one owner calls it in turn."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        self.key = lock_key(name)
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None
        self._held = False

    @property
    def held(self) -> bool:
        """Whether this process held the lock at the last `try_hold` (it may have died since)."""
        return self._held

    async def try_hold(self) -> bool:
        """Take the lock when it is free, or confirm it is still ours; True when this process holds it
        afterwards. Never waits for another holder. A held lock whose connection has died is gone (the
        server released it): it is forgotten and taken again if it is free. Errors reaching the database
        to take the lock propagate; the caller treats them as "not holding"."""
        if not self.db.is_postgres:
            self._held = True
            return True
        if self._held and self._conn is not None:
            try:
                await self._conn.execute(text("SELECT 1"))
                return True
            except (SQLAlchemyError, OSError):
                log.warning("lost the connection holding the %s lock; it is released", self.name)
                await self._close()
        conn = await self._connect()
        try:
            granted = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key})).scalar())
        except (SQLAlchemyError, OSError):
            await self._close()  # a dead connection is not reused: the next heartbeat connects afresh
            raise
        if granted:
            log.info("holding the %s lock", self.name)
            self._held = True
        return granted

    async def release(self) -> None:
        """Let go of the lock now (a clean shutdown), so another process takes over on its next heartbeat
        instead of when this process exits."""
        await self._close()

    async def _connect(self) -> AsyncConnection:
        if self._conn is None:
            self._engine = create_async_engine(self.db.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            try:
                self._conn = await self._engine.connect()
                # Server-side keepalives: a holder on a machine that vanished (no FIN, no RST) is detected
                # in about idle + interval * count seconds instead of the kernel default of two hours.
                await self._conn.execute(text(f"SET tcp_keepalives_idle = {KEEPALIVE_IDLE_SECONDS}"))
                await self._conn.execute(text(f"SET tcp_keepalives_interval = {KEEPALIVE_INTERVAL_SECONDS}"))
                await self._conn.execute(text(f"SET tcp_keepalives_count = {KEEPALIVE_COUNT}"))
            except BaseException:
                await self._close()
                raise
        return self._conn

    async def _close(self) -> None:
        conn, engine = self._conn, self._engine
        self._conn = self._engine = None
        self._held = False
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError, OSError):
                await conn.close()
        if engine is not None:
            await engine.dispose()


async def holder_pid(db: Database, name: str) -> int | None:
    """The PostgreSQL server process (backend pid) holding the lock `name`, or None when nobody holds it
    (always None on SQLite): so an operator can ask "who runs the clock?" (join pg_stat_activity for the
    client address) and a test can end the holder's connection as a `kill -9` would."""
    if not db.is_postgres:
        return None
    key = lock_key(name)
    stmt = text(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
    )
    async with db.engine.connect() as conn:
        pid = (await conn.execute(stmt, {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF})).scalar()
    return None if pid is None else int(pid)
