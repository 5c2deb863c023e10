"""The HTTP server's own routes: the health check answers from the database."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from bot.web import create_web_app
from storage.db import Database


async def test_healthz_is_ok_on_a_migrated_database(db: Database) -> None:
    async with TestClient(TestServer(create_web_app(db))) as client:
        response = await client.get("/healthz")
        assert response.status == 200 and await response.json() == {"status": "ok"}
        assert (await client.post("/slack/events", data="x")).status in (404, 405)  # no Slack app: no Slack route


async def test_healthz_is_503_when_the_database_is_behind(tmp_path: object) -> None:
    empty = Database(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    try:
        async with TestClient(TestServer(create_web_app(empty))) as client:
            response = await client.get("/healthz")
            assert response.status == 503 and (await response.json())["database"] == "not at the newest migration"
    finally:
        await empty.dispose()
