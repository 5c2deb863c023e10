"""Shared fixtures: a fresh database per test on SQLite *and* PostgreSQL, an injected clock, and a
network guard so no test can reach Slack or Microsoft by accident."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cadences.clock import ManualClock
from storage.db import Database
from storage.models import Base
from support.engagements import SMALL, apply_file
from support.worlds import EngineWorld, World

PG_ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# In CI every property test draws the same examples each run (seeded from the test itself), so a build is
# red only for a change, never for a new random draw; on a developer's machine they keep exploring, and a
# counterexample found there becomes an explicit case (as in tests/bot/teams/test_render.py).
settings.register_profile("ci", derandomize=True, print_blob=True)
if IN_CI:
    settings.load_profile("ci")
T = TypeVar("T")
SHARED = Path(__file__).resolve().parents[1].parent / "shared"

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
        raise RuntimeError(f"tests may not connect to {address!r}: use a local fake")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network_no_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("SLACK_", "MicrosoftApp", "MICROSOFT_APP")) or name in (
            "DATABASE_URL",
            "CADENCE_ENGAGEMENT",
        ):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    yield


async def _pg_available() -> str | None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("select 1"))
        return None
    except Exception as exc:  # any failure to connect means "no PostgreSQL here"
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc.__class__.__name__}"
    finally:
        await engine.dispose()


def run_aside(coro: Coroutine[Any, Any, T]) -> T:
    """Run session set-up on its own loop in a thread, so it works whether or not a loop is running."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def bench_backend(request: pytest.FixtureRequest) -> str:
    """The database a benchmark smoke test (tests/bench/) runs its script on. PostgreSQL is measured when a
    server answers on 127.0.0.1:5432; otherwise skipped with the reason (in CI, where .ci/run starts the
    server, its absence fails the test)."""
    if request.param == "postgresql" and (reason := run_aside(_pg_available())):
        if IN_CI:
            pytest.fail(f"{reason} (CI must run the PostgreSQL benchmarks; .ci/run starts the server)")
        pytest.skip(reason)
    return str(request.param)


async def _migrate(url: str) -> None:
    db = Database(url)
    await db.upgrade()
    if db.dialect == "sqlite":
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    await db.dispose()


async def _admin(sql: str) -> None:
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(sql))
    await admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    run_aside(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    reason = run_aside(_pg_available())
    if reason:
        if IN_CI:
            pytest.fail(f"{reason} (CI must run the PostgreSQL tests; .ci/run starts the server)")
        pytest.skip(reason)
    name = f"cadence_test_{uuid.uuid4().hex[:10]}"
    run_aside(_admin(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    run_aside(_migrate(url))
    yield url
    run_aside(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate(db: Database) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database: a copy of a migrated SQLite file, or a truncated PostgreSQL database."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "cadence.db"
        shutil.copy(template, path)
        database = Database(f"sqlite+aiosqlite:///{path}")
    else:
        database = Database(request.getfixturevalue("pg_url"), pool_size=5)
        await _truncate(database)
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> ManualClock:
    """Tuesday 2026-11-24 10:00 in Los Angeles (the example engagement's zone)."""
    return ManualClock(datetime(2026, 11, 24, 18, 0, tzinfo=UTC))


@pytest.fixture
async def world(db: Database, clock: ManualClock) -> World:
    engagement = await apply_file(db, SMALL, clock.now())
    return World(db, clock, engagement)


@pytest.fixture
async def engine_world(db: Database, clock: ManualClock) -> EngineWorld:
    engagement = await apply_file(db, SMALL, clock.now())
    return EngineWorld(db, clock, engagement)
