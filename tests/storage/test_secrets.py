"""Chat tokens at rest: sealed with CADENCE_SECRET_KEY in the database, the token itself everywhere else;
marked development plaintext without a key; refused in production without one; keys rotated with
`reseal`; and migration 0005 applied and reverted on SQLite and PostgreSQL with tokens in place."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Text, inspect, select, text, type_coerce
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from storage import chat_workspaces
from storage.db import Database, alembic_config
from storage.models import ChatWorkspace
from storage.secrets import (
    DEV_PLAINTEXT,
    ENVIRONMENT_ENV,
    SEALED,
    SECRET_KEY_ENV,
    SecretKeyError,
    _warn_unsealed,
    new_key,
    parse_keys,
    seal,
    stored_form,
    unseal,
)

TOKEN = "xoxb-1111-2222-abcdefABCDEF"
NOW = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = new_key()
    monkeypatch.setenv(SECRET_KEY_ENV, value)
    monkeypatch.delenv(ENVIRONMENT_ENV, raising=False)
    return value


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    monkeypatch.delenv(ENVIRONMENT_ENV, raising=False)
    _warn_unsealed.cache_clear()


async def install(db: Database, workspace: str = "T0TEST", token: str | None = TOKEN) -> None:
    async with db.write() as session:
        await chat_workspaces.save_install(session, "slack", workspace, installed_at=NOW, bot_token=token)


async def raw_tokens(db: Database) -> list[str]:
    async with db.session() as session:
        return [stored for _platform, _workspace, stored in await chat_workspaces.stored_tokens(session)]


async def read_token(db: Database, workspace: str = "T0TEST") -> str | None:
    async with db.session() as session:
        row = await chat_workspaces.workspace(session, "slack", workspace)
    assert row is not None
    return row.bot_token


# --- the stored forms --------------------------------------------------------------------------------


def test_sealing_is_randomised_and_opens_to_the_token(key: str) -> None:
    first, second = seal(TOKEN), seal(TOKEN)
    assert first.startswith(SEALED) and second.startswith(SEALED) and first != second
    assert TOKEN not in first and "xoxb" not in first
    assert unseal(first) == unseal(second) == TOKEN
    assert stored_form(first) == "sealed"


def test_a_value_from_before_encryption_is_read_as_it_is(key: str) -> None:
    assert unseal(TOKEN) == TOKEN and stored_form(TOKEN) == "legacy-plaintext"


def test_without_a_key_in_development_the_token_is_marked_and_a_warning_logged_once(
    no_key: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="storage.secrets"):
        assert seal(TOKEN) == DEV_PLAINTEXT + TOKEN
        assert seal(TOKEN) == DEV_PLAINTEXT + TOKEN
    warnings = [r for r in caplog.records if r.name == "storage.secrets"]
    assert len(warnings) == 1 and "UNENCRYPTED" in warnings[0].getMessage()
    assert TOKEN not in caplog.text
    assert unseal(DEV_PLAINTEXT + TOKEN) == TOKEN and stored_form(DEV_PLAINTEXT + TOKEN) == "dev-plaintext"


def test_production_refuses_to_store_a_token_without_a_key(no_key: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT_ENV, "production")
    with pytest.raises(SecretKeyError, match="cannot be stored in production"):
        seal(TOKEN)


def test_a_sealed_token_needs_its_key(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sealed = seal(TOKEN)
    monkeypatch.setenv(SECRET_KEY_ENV, new_key())
    with pytest.raises(SecretKeyError, match="encrypted with a key that is not in CADENCE_SECRET_KEY"):
        unseal(sealed)
    monkeypatch.delenv(SECRET_KEY_ENV)
    with pytest.raises(SecretKeyError, match="CADENCE_SECRET_KEY is not set"):
        unseal(sealed)


def test_a_malformed_key_is_named_by_its_position() -> None:
    with pytest.raises(SecretKeyError, match="key 2 of CADENCE_SECRET_KEY is not a valid key"):
        parse_keys(f"{new_key()},not-a-key")


# --- through the ORM, on both databases ---------------------------------------------------------------


async def test_the_database_holds_only_the_sealed_form_and_the_code_sees_the_token(db: Database, key: str) -> None:
    await install(db)
    [stored] = await raw_tokens(db)
    assert stored.startswith(SEALED) and TOKEN not in stored
    assert await read_token(db) == TOKEN
    async with db.session() as session:  # nothing else in the row carries it either
        dumped = " ".join(str(v) for v in (await session.execute(text("select * from chat_workspace"))).one())
    assert TOKEN not in dumped


async def test_an_uninstall_deletes_the_token(db: Database, key: str) -> None:
    await install(db)
    async with db.write() as session:
        await chat_workspaces.uninstall(session, "slack", "T0TEST")
    assert await raw_tokens(db) == [] and await read_token(db) is None


async def test_rotation_seals_again_under_the_new_key_and_the_old_one_can_go(
    db: Database, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await install(db)
    await install(db, "T0OTHER", "xoxb-other-token")
    newer = new_key()
    monkeypatch.setenv(SECRET_KEY_ENV, f"{newer},{key}")
    assert await read_token(db) == TOKEN  # the old key still opens what it sealed
    async with db.write() as session:
        assert await chat_workspaces.reseal_tokens(session) == 2
    monkeypatch.setenv(SECRET_KEY_ENV, newer)
    assert await read_token(db) == TOKEN and await read_token(db, "T0OTHER") == "xoxb-other-token"


async def test_reseal_encrypts_tokens_stored_before_there_was_a_key(
    db: Database, no_key: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    await install(db)
    assert await raw_tokens(db) == [DEV_PLAINTEXT + TOKEN]
    monkeypatch.setenv(SECRET_KEY_ENV, new_key())
    async with db.write() as session:
        await chat_workspaces.reseal_tokens(session)
    [stored] = await raw_tokens(db)
    assert stored.startswith(SEALED) and await read_token(db) == TOKEN


# --- migration 0005 with tokens in place, on both databases ----------------------------------------------


async def _migrate(db: Database, action: str, revision: str) -> None:
    cfg = alembic_config(db.url)

    def run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        getattr(command, action)(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database with no schema at all (PostgreSQL: a database of its own, dropped afterwards)."""
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path}/migrations.db")
        yield database
        await database.dispose()
        return
    server: str = request.getfixturevalue("pg_url")  # skips (or, in CI, fails) without PostgreSQL
    name = f"cadence_mig_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    database = Database(server.rsplit("/", 1)[0] + "/" + name, pool_size=2)
    try:
        yield database
    finally:
        await database.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_migration_0005_keeps_old_tokens_readable_and_reverts_to_clear_text(empty_db: Database, key: str) -> None:
    await _migrate(empty_db, "upgrade", "0004")
    async with empty_db.engine.begin() as conn:  # what the previous version wrote: the token in clear
        await conn.execute(
            text(
                "insert into chat_workspace (platform, workspace_id, bot_token, scopes, installed_at, active) "
                "values ('slack', 'T0OLD', :token, '', :at, :active)"
            ),
            {"token": TOKEN, "at": NOW if empty_db.is_postgres else NOW.replace(tzinfo=None), "active": True},
        )
    await _migrate(empty_db, "upgrade", "head")
    assert "command_rate" in await _tables(empty_db)
    assert await raw_tokens(empty_db) == [TOKEN]  # untouched: an old process may still be reading it
    assert await read_token(empty_db, "T0OLD") == TOKEN
    async with empty_db.write() as session:
        await chat_workspaces.reseal_tokens(session)
    [sealed] = await raw_tokens(empty_db)
    assert sealed.startswith(SEALED)

    await _migrate(empty_db, "downgrade", "0004")
    assert "command_rate" not in await _tables(empty_db)
    async with empty_db.engine.connect() as conn:
        assert (await conn.execute(text("select bot_token from chat_workspace"))).scalar_one() == TOKEN
    await _migrate(empty_db, "upgrade", "head")
    assert await empty_db.migrations_current()
    async with empty_db.session() as session:  # a fresh upgrade leaves the clear token for `reseal` again
        raw = type_coerce(ChatWorkspace.bot_token, Text)
        assert (await session.execute(select(raw))).scalar_one() == TOKEN
