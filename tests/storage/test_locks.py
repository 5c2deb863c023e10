"""The clock lock: one holder at a time on PostgreSQL, handed over when the holder lets go or its
connection dies; always granted on SQLite, which is single-process by design."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from storage.db import Database
from storage.locks import AdvisoryLock, holder_pid, lock_key


@pytest.fixture
async def other(db: Database) -> AsyncIterator[Database]:
    """A second process's view of the same database: its own engine and connections."""
    second = Database(db.url, pool_size=2)
    yield second
    await second.dispose()


async def kill_holder(db: Database, name: str) -> None:
    """What PostgreSQL sees when the holding process is killed: its connection goes away."""
    pid = await holder_pid(db, name)
    assert pid is not None
    async with db.engine.connect() as conn:
        # the timeout makes the call wait until the server process has exited and released its locks
        assert (await conn.execute(text("SELECT pg_terminate_backend(:pid, 30000)"), {"pid": pid})).scalar() is True


def test_the_key_is_a_stable_signed_64_bit_number_per_name() -> None:
    assert lock_key("cadence:clock") == lock_key("cadence:clock")
    assert lock_key("cadence:clock") != lock_key("cadence:other")
    assert -(2**63) <= lock_key("cadence:clock") < 2**63


async def test_one_holder_at_a_time_and_a_release_hands_it_over(db: Database, other: Database) -> None:
    first, second = AdvisoryLock(db, "test:clock"), AdvisoryLock(other, "test:clock")
    try:
        assert await first.try_hold() is True
        if not db.is_postgres:  # SQLite: nobody to elect, everyone is granted
            assert await second.try_hold() is True
            assert await holder_pid(db, "test:clock") is None
            return
        assert await second.try_hold() is False
        assert await first.try_hold() is True  # confirming does not stack or lose it
        assert await second.try_hold() is False
        await first.release()
        assert first.held is False
        assert await second.try_hold() is True
        assert await first.try_hold() is False
    finally:
        await first.release()
        await second.release()


async def test_a_holder_whose_connection_died_loses_the_lock_to_the_next_asker(db: Database, other: Database) -> None:
    if not db.is_postgres:
        pytest.skip("SQLite has no lock to lose: the embedded default is one process")
    first, second = AdvisoryLock(db, "test:clock"), AdvisoryLock(other, "test:clock")
    try:
        assert await first.try_hold() is True
        assert await second.try_hold() is False
        assert await holder_pid(db, "test:other") is None
        await kill_holder(db, "test:clock")
        assert await second.try_hold() is True  # on its next heartbeat
        assert await first.try_hold() is False  # the old holder notices and does not think it leads
        assert first.held is False and second.held is True
        assert await holder_pid(db, "test:clock") is not None
    finally:
        await first.release()
        await second.release()


async def test_different_names_are_different_locks(db: Database, other: Database) -> None:
    clock, other_lock = AdvisoryLock(db, "test:clock"), AdvisoryLock(other, "test:other")
    try:
        assert await clock.try_hold() is True
        assert await other_lock.try_hold() is True
    finally:
        await clock.release()
        await other_lock.release()
