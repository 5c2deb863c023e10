"""The operations side of the command line, run as a person runs it (a subprocess): production refuses to
start without the secret key in one line, keys are made and tokens resealed, and logs come out as JSON
lines when asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from storage import chat_workspaces
from storage.db import Database
from storage.secrets import DEV_PLAINTEXT, SEALED, SECRET_KEY_ENV

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)


def cadence(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CADENCE_", "LOG_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=180,
    )


@pytest.mark.parametrize(
    "env",
    [
        {"CADENCE_ENV": "production"},
        {
            "DATABASE_URL": "postgresql+asyncpg://cadence@127.0.0.1:9/cadence",  # never reached: refused before
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_SIGNING_SECRET": "s",
        },
    ],
    ids=["CADENCE_ENV", "postgresql-with-chat"],
)
def test_production_refuses_to_start_without_the_secret_key_in_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    result = cadence("db", "upgrade", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("cadence: error: CADENCE_SECRET_KEY is not set")
    assert "cadence secrets new-key" in result.stderr
    assert not (tmp_path / "cadence.db").exists()  # refused before touching anything


def test_a_malformed_key_is_refused_in_one_line(tmp_path: Path) -> None:
    result = cadence("db", "upgrade", cwd=tmp_path, env={SECRET_KEY_ENV: "too-short"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "key 1 of CADENCE_SECRET_KEY is not a valid key" in result.stderr


def test_production_with_a_key_starts(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    result = cadence("db", "upgrade", cwd=tmp_path, env={"CADENCE_ENV": "production", SECRET_KEY_ENV: key})
    assert result.returncode == 0, result.stderr


async def test_new_key_then_reseal_encrypts_the_tokens_stored_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = cadence("secrets", "new-key", cwd=tmp_path)
    assert made.returncode == 0
    key = made.stdout.strip()
    Fernet(key.encode())  # a valid key
    url = f"sqlite+aiosqlite:///{tmp_path}/cadence.db"
    assert cadence("--database-url", url, "db", "upgrade", cwd=tmp_path).returncode == 0
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    db = Database(url)
    try:
        async with db.write() as session:
            await chat_workspaces.save_install(session, "slack", "T0TEST", installed_at=NOW, bot_token="xoxb-9")
        async with db.session() as session:
            assert [t for *_, t in await chat_workspaces.stored_tokens(session)] == [DEV_PLAINTEXT + "xoxb-9"]

        refused = cadence("--database-url", url, "secrets", "reseal", cwd=tmp_path)
        assert refused.returncode == 2 and "set CADENCE_SECRET_KEY first" in refused.stderr
        done = cadence("--database-url", url, "secrets", "reseal", cwd=tmp_path, env={SECRET_KEY_ENV: key})
        assert done.returncode == 0 and done.stdout.strip() == (
            "Resealed 1 stored chat token with the first key of CADENCE_SECRET_KEY."
        )
        async with db.session() as session:
            [(_, _, stored)] = await chat_workspaces.stored_tokens(session)
        assert stored.startswith(SEALED) and Fernet(key.encode()).decrypt(stored[len(SEALED) :].encode()) == b"xoxb-9"
    finally:
        await db.dispose()


def test_log_format_json_writes_one_object_per_line(tmp_path: Path) -> None:
    result = cadence("db", "upgrade", cwd=tmp_path, env={"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines, "alembic logs each migration at INFO"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys() and line["level"] == "INFO"
    assert any(line["logger"].startswith("alembic") and "0005" in line["message"] for line in lines)


def test_an_unknown_log_format_is_one_line(tmp_path: Path) -> None:
    result = cadence("db", "upgrade", cwd=tmp_path, env={"LOG_FORMAT": "xml"})
    assert result.returncode == 2 and result.stderr == "cadence: error: LOG_FORMAT 'xml' is not 'text' or 'json'\n"
