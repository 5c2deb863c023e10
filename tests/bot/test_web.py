"""The HTTP server's own routes and middlewares, on `cadence run`'s real server (`start_chat`) serving Slack
and Teams (the Emulator's no-auth mode, against the fake Bot Connector): liveness, readiness, the body
limit on every route, and /metrics with known counts — deliveries from the database, the ack latency of
Slack and Teams requests, and the 429s the platforms answered."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.app import CadenceApp, ChatService, start_chat
from bot.settings import Settings
from bot.web import MAX_BODY, create_web_app
from cadences.catalog import build_router
from storage.db import Database
from storage.models import Base, Delivery, Occurrence
from support.fake_slack import FakeSlack
from support.slack_app import SIGNING_SECRET, payload, sign
from support.teams_bot import TeamsFake, apply_teams_engagement, channel_message, link_tenant


@dataclass
class Served:
    world: Any
    service: ChatService
    slack: FakeSlack
    teams: TeamsFake
    http: aiohttp.ClientSession

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.service.url + path) as response:
            return response.status, await response.text()

    async def slack_command(self, text: str) -> int:
        form = payload("slash_command") | {"command": "/deal", "text": text, "user_id": "U0JORDAN"}
        body = urlencode(form)
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body, int(time.time()))}
        async with self.http.post(self.service.url + "/slack/events", data=body, headers=headers) as response:
            return response.status

    async def teams_message(self, who: str, text: str, n: int) -> int:
        body = channel_message(who, text, service_url=self.teams.service_url, activity_id=f"17640099{n:05d}")
        async with self.http.post(self.service.url + "/api/messages", json=body) as response:
            return response.status


@pytest.fixture
async def served(world: Any, tmp_path: Path) -> AsyncIterator[Served]:
    await apply_teams_engagement(world, tmp_path)
    async with FakeSlack.for_testco() as slack, TeamsFake() as teams:
        settings = Settings(
            database_url=world.db.url,
            slack_bot_token=slack.token,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=slack.api_url,
            teams_emulator=True,
        )
        app = CadenceApp(settings=settings, db=world.db, clock=world.clock, router=build_router())
        service = await start_chat(app, host="127.0.0.1", port=0, run_scheduler=False)
        try:
            async with aiohttp.ClientSession() as http:
                yield Served(world, service, slack, teams, http)
        finally:
            await service.stop()


async def row_counts(db: Database) -> dict[str, int]:
    async with db.session() as session:
        return {
            table.name: int((await session.execute(select(func.count()).select_from(table))).scalar_one())
            for table in Base.metadata.sorted_tables
        }


# --- liveness and readiness --------------------------------------------------------------------------------


async def test_healthz_says_the_process_is_up_even_when_the_database_is_behind(tmp_path: Path) -> None:
    empty = Database(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    try:
        async with TestClient(TestServer(create_web_app(empty))) as client:
            response = await client.get("/healthz")
            assert response.status == 200 and await response.json() == {"status": "ok"}
            assert (await client.post("/slack/events", data="x")).status in (404, 405)  # no Slack app: no route
    finally:
        await empty.dispose()


async def test_readyz_is_ok_on_a_migrated_database(db: Database) -> None:
    async with TestClient(TestServer(create_web_app(db))) as client:
        response = await client.get("/readyz")
        assert response.status == 200 and await response.json() == {"status": "ok"}


async def test_readyz_is_503_with_the_reason_when_the_database_is_behind(tmp_path: Path) -> None:
    empty = Database(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    try:
        async with TestClient(TestServer(create_web_app(empty))) as client:
            response = await client.get("/readyz")
            assert response.status == 503
            assert await response.json() == {
                "status": "unavailable",
                "reason": "the database is not at the newest migration (run `cadence db upgrade`)",
            }
    finally:
        await empty.dispose()


async def test_readyz_is_503_when_the_database_does_not_answer() -> None:
    nowhere = Database("postgresql+asyncpg://cadence@127.0.0.1:9/cadence")  # the discard port: refused
    try:
        async with TestClient(TestServer(create_web_app(nowhere))) as client:
            response = await client.get("/readyz")
            assert response.status == 503
            assert await response.json() == {"status": "unavailable", "reason": "the database is unreachable"}
            metrics = await (await client.get("/metrics")).text()
            assert "cadence_database_up 0" in metrics and "cadence_deliveries{" not in metrics
    finally:
        await nowhere.dispose()


# --- the body limit ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/slack/events", "/api/messages", "/healthz", "/readyz", "/metrics", "/nothing"])
async def test_a_body_over_one_mib_is_refused_with_413_on_every_route(served: Served, path: str) -> None:
    before = await row_counts(served.world.db)
    big = b"x" * (MAX_BODY + 1)
    async with served.http.post(served.service.url + path, data=big, headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 413
    assert await row_counts(served.world.db) == before
    assert served.slack.calls == [] and served.teams.requests == []


@pytest.mark.parametrize("path", ["/slack/events", "/api/messages"])
async def test_a_body_without_a_length_is_cut_off_at_the_limit_too(served: Served, path: str) -> None:
    before = await row_counts(served.world.db)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"{" * 65536

    async with served.http.post(
        served.service.url + path, data=chunks(), headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 413
    assert await row_counts(served.world.db) == before
    assert served.slack.calls == [] and served.teams.requests == []


async def test_a_body_of_exactly_the_limit_is_read_and_judged_on_its_signature(served: Served) -> None:
    body = "x" * MAX_BODY
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body, int(time.time()) - 600)}
    async with served.http.post(served.service.url + "/slack/events", data=body, headers=headers) as r:
        assert r.status == 401  # read in full, then refused as too old: the limit is not off by one


# --- metrics -----------------------------------------------------------------------------------------------


def samples(text: str) -> dict[str, float]:
    """`name{labels} value` lines of an exposition, keyed by `name{labels}`."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            found[key] = float(value)
    return found


async def add_deliveries(world: Any, ritual: str, statuses: list[str]) -> None:
    """One occurrence of `ritual` with a delivery per status (recipients person:1, person:2, ...)."""
    now = world.clock.now()
    async with world.db.write() as session:
        occurrence = Occurrence(
            engagement_id=world.engagement.id,
            ritual=ritual,
            period=f"test-{ritual}",
            due_at=now,
            status="planned",
            created_at=now,
        )
        session.add(occurrence)
        await session.flush()
        for i, status in enumerate(statuses, start=1):
            session.add(
                Delivery(
                    key=f"{ritual}/{i}",
                    occurrence_id=occurrence.id,
                    engagement_id=world.engagement.id,
                    recipient=f"person:{i}",
                    purpose="test",
                    status=status,
                    not_before=now + timedelta(minutes=i),
                )
            )


async def test_metrics_count_deliveries_by_ritual_and_status_from_the_database(served: Served) -> None:
    await add_deliveries(served.world, "pipeline_review", ["sent", "sent", "failed", "pending"])
    await add_deliveries(served.world, "digest", ["sent", "skipped", "sending", "pending", "pending"])
    status, text = await served.get("/metrics")
    assert status == 200
    found = samples(text)
    assert {k: v for k, v in found.items() if k.startswith("cadence_deliveries{")} == {
        'cadence_deliveries{ritual="digest",status="pending"}': 2,
        'cadence_deliveries{ritual="digest",status="sending"}': 1,
        'cadence_deliveries{ritual="digest",status="sent"}': 1,
        'cadence_deliveries{ritual="digest",status="skipped"}': 1,
        'cadence_deliveries{ritual="pipeline_review",status="failed"}': 1,
        'cadence_deliveries{ritual="pipeline_review",status="pending"}': 1,
        'cadence_deliveries{ritual="pipeline_review",status="sent"}': 2,
    }
    assert found["cadence_deliveries_pending"] == 4  # 1 + 2 pending, 1 sending
    assert found["cadence_database_up"] == 1
    assert abs(found["process_start_time_seconds"] - time.time()) < 600
    assert "# TYPE cadence_request_duration_seconds histogram" in text


async def test_metrics_time_each_slack_and_teams_request(served: Served) -> None:
    assert await served.slack_command("list") == 200
    assert await served.slack_command("list") == 200
    assert await served.teams_message("jordan", "deal list", 1) == 200
    await served.service.deps.background.drain()  # type: ignore[union-attr]
    found = samples((await served.get("/metrics"))[1])
    assert found['cadence_request_duration_seconds_count{platform="slack"}'] == 2
    assert found['cadence_request_duration_seconds_count{platform="teams"}'] == 1
    assert found['cadence_request_duration_seconds_bucket{platform="slack",le="+Inf"}'] == 2
    assert 0 < found['cadence_request_duration_seconds_sum{platform="slack"}'] < 6
    buckets = [v for k, v in found.items() if k.startswith('cadence_request_duration_seconds_bucket{platform="slack"')]
    assert buckets == sorted(buckets)  # cumulative
    assert not any(k.startswith("cadence_request_duration_seconds_count{platform") and "healthz" in k for k in found)


async def test_metrics_count_the_429s_slack_and_teams_answered(served: Served) -> None:
    served.slack.rate_limit("auth.test", retry_after=0)  # Bolt's first call, on the first request
    assert await served.slack_command("list") == 200
    await link_tenant(served.world, served.teams.service_url)
    await served.service.ports.refresh()
    served.teams.rate_limit("send", retry_after=0, times=2)  # the review post, retried by the port
    assert await served.teams_message("dana", "pipeline start", 2) == 200
    found = samples((await served.get("/metrics"))[1])
    assert found['cadence_platform_rate_limited_total{platform="slack"}'] == 1
    assert found['cadence_platform_rate_limited_total{platform="teams"}'] == 2
    assert len(served.slack.calls_to("auth.test")) == 2  # refused once, then answered
    assert any("Pipeline review" in json.dumps(a.body) for a in served.teams.activities)


def test_label_values_are_escaped_in_the_exposition() -> None:
    from bot.metrics import Metrics
    from storage.delivery_stats import DeliveryCount

    text = Metrics(started_at=1.5).exposition([DeliveryCount('we"ird\\ri\ntual', "sent", 3)])
    assert 'cadence_deliveries{ritual="we\\"ird\\\\ri\\ntual",status="sent"} 3' in text
    assert "process_start_time_seconds 1.5" in text
    assert re.search(r"^cadence_deliveries_pending 0$", text, re.M)
