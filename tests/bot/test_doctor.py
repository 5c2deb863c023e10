"""`cadence doctor` against the fake Slack Web API (which, like Slack, reports a token's scopes in the
`x-oauth-scopes` header): a healthy deployment passes with exit 0; every kind of mistake is named with
its fix and exit 1; and the command itself, run as a person runs it, prints the same report."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import update

from bot.doctor import Report, diagnose
from bot.settings import Settings
from bot.slack.installations import BOT_SCOPES
from storage import chat_workspaces
from storage.db import Database
from storage.models import Engagement, Person
from storage.secrets import SECRET_KEY_ENV, new_key
from support.fake_slack import FakeSlack
from support.slack_app import SIGNING_SECRET

ROOT = Path(__file__).resolve().parents[2]
APP_ID = "00000000-0000-4000-8000-00000000b07a"


class ScopedSlack(FakeSlack):
    """The fake, answering every successful call with the token's scopes as Slack does."""

    def __init__(self, scopes: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scopes = scopes

    async def _api(self, request: web.Request) -> web.StreamResponse:
        response = await super()._api(request)
        response.headers["x-oauth-scopes"] = ",".join(self.scopes)
        return response


@pytest.fixture
async def slack() -> AsyncIterator[ScopedSlack]:
    async with ScopedSlack(list(BOT_SCOPES)) as fake:
        yield fake


def settings_for(world: Any, slack: FakeSlack, **overrides: Any) -> Settings:
    values = {
        "database_url": world.db.url,
        "slack_bot_token": slack.token,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": slack.api_url,
        "secret_key": new_key(),
    }
    return Settings(**{**values, **overrides})


async def link(world: Any) -> None:
    async with world.db.write() as session:
        await chat_workspaces.link(session, "slack", "T0TEST", world.engagement.id, now=world.clock.now())


def lines(report: Report, level: str) -> list[str]:
    return [f.text for f in report.findings if f.level == level]


async def test_a_healthy_deployment_passes(world: Any, slack: ScopedSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(world, slack)
    monkeypatch.setenv(SECRET_KEY_ENV, settings.secret_key or "")
    await link(world)
    report = await diagnose(settings, world.db)
    assert lines(report, "problem") == [] and lines(report, "warning") == []
    assert report.exit_code == 0
    shown = report.render()
    assert "✓ Slack configured; " in shown  # development mode on SQLite, production on PostgreSQL
    assert "✓ CADENCE_SECRET_KEY is set: chat tokens are stored encrypted" in shown
    assert "✓ SLACK_BOT_TOKEN works for Testco (T0TEST) as cadence" in shown
    assert "Engagement acme-test\n  ✓ America/Los_Angeles; 5 people, all reachable" in shown
    assert shown.endswith("Everything checked is fine.\n")
    assert [c.method for c in slack.calls] == ["auth.test"]


async def test_configuration_mistakes_are_named_with_their_fix(world: Any, slack: ScopedSlack) -> None:
    settings = settings_for(
        world,
        slack,
        slack_signing_secret=None,
        slack_client_id="1111.2222",
        secret_key="not-a-key",
        teams_app_id="my-bot",
        teams_app_type="SingleTenant",
        log_format="xml",
    )
    report = await diagnose(settings, world.db)
    assert lines(report, "problem") == [
        "key 1 of CADENCE_SECRET_KEY is not a valid key (32 url-safe base64 bytes); make one with "
        "`cadence secrets new-key`",
        "only one of SLACK_CLIENT_ID and SLACK_CLIENT_SECRET is set",
        "SLACK_SIGNING_SECRET is not set, so Slack's requests cannot be verified",
        "LOG_FORMAT 'xml' is not 'text' or 'json'",
        "MicrosoftAppId is not a GUID",
        "MicrosoftAppPassword is not set",
        "SingleTenant needs MicrosoftAppTenantId",
    ]
    assert report.exit_code == 1
    shown = report.render()
    assert "  ✗ SLACK_SIGNING_SECRET is not set" in shown
    assert "      fix: copy the Signing Secret (Basic Information → App Credentials)" in shown
    assert "✓ Teams configured; " in shown  # Slack is not: without its signing secret `cadence run` won't serve it
    assert lines(report, "warning") == ["not linked to Teams yet"]
    assert shown.endswith("7 problems, 1 warning: fix the ✗ lines, then run `cadence doctor` again.\n")


async def test_production_without_a_key_and_tokens_in_clear_are_problems(
    world: Any, slack: ScopedSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    async with world.db.write() as session:  # stored by a development run without a key
        await chat_workspaces.save_install(
            session, "slack", "T0TEST", installed_at=world.clock.now(), bot_token=slack.token
        )
    report = await diagnose(settings_for(world, slack, secret_key=None, environment="production"), world.db)
    problems = lines(report, "problem")
    assert problems[0].startswith("CADENCE_SECRET_KEY is not set, and production mode")
    assert "1 chat token stored unencrypted in production" in problems
    assert "✓ the token of Slack workspace T0TEST works for Testco (T0TEST) as cadence" in report.render()


async def test_slack_tokens_are_checked_against_slack_and_the_manifest_scopes(world: Any) -> None:
    granted = [s for s in BOT_SCOPES if s not in ("files:write", "users:read.email")] + ["admin"]
    async with ScopedSlack(granted) as slack:
        refused = settings_for(world, slack, slack_bot_token="xoxb-revoked")
        assert lines(await diagnose(refused, world.db), "problem") == ["Slack refused SLACK_BOT_TOKEN: invalid_auth"]
        report = await diagnose(settings_for(world, slack), world.db)
    assert lines(report, "problem") == [
        "SLACK_BOT_TOKEN lacks scopes manifest.yaml asks for: files:write, users:read.email"
    ]
    assert "SLACK_BOT_TOKEN has scopes manifest.yaml does not ask for: admin" in lines(report, "warning")


async def test_slack_out_of_reach_is_a_problem(world: Any) -> None:
    settings = Settings(
        database_url=world.db.url,
        slack_bot_token="xoxb-1",
        slack_signing_secret="s",
        slack_api_url="http://127.0.0.1:9/api/",
        secret_key=new_key(),
    )
    [problem] = lines(await diagnose(settings, world.db), "problem")
    assert problem.startswith("could not reach Slack at http://127.0.0.1:9/api/ with SLACK_BOT_TOKEN")


async def test_engagement_mistakes_are_found(world: Any, slack: ScopedSlack) -> None:
    await link(world)
    async with world.db.write() as session:
        engagement = await session.get(Engagement, world.engagement.id)
        assert engagement is not None
        stored = dict(engagement.settings)
        stored["pipeline_review"] = {**stored["pipeline_review"], "time": "02:30"}
        await session.execute(update(Engagement).where(Engagement.id == engagement.id).values(settings=stored))
        session.add_all(
            [
                Person(engagement_id=engagement.id, key="lee", name="Lee", role="rep", timezone="Mars/Olympus"),
                Person(engagement_id=engagement.id, key="kim", name="Kim", role="rep", email="kim@testco.example"),
            ]
        )
    report = await diagnose(settings_for(world, slack), world.db)
    assert lines(report, "problem") == [
        "stored ritual settings: pipeline_review.time: 02:30 is not allowed: rituals between 02:00 and 03:00 local "
        "time can be skipped or doubled by daylight-saving changes",
        "lee's time zone 'Mars/Olympus' is not an IANA zone",
        "no Slack id and no email for: lee",
    ]
    assert lines(report, "warning") == ["no Slack id yet for: kim (looked up by email)"]


async def test_a_database_behind_is_a_problem_and_nothing_is_upgraded(tmp_path: Path, slack: ScopedSlack) -> None:
    empty = Database(f"sqlite+aiosqlite:///{tmp_path}/behind.db")
    try:
        settings = Settings(database_url=empty.url, secret_key=new_key())
        report = await diagnose(settings, empty)
        assert lines(report, "problem") == [f"{empty.url} is not at the newest migration"]
        assert not await empty.migrations_current()
    finally:
        await empty.dispose()


async def test_the_command_prints_the_report_and_exits_1(world: Any, slack: ScopedSlack) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CADENCE_", "LOG_"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": world.db.url,
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_API_URL": slack.api_url,
        SECRET_KEY_ENV: new_key(),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "doctor", env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    text = out.decode()
    assert process.returncode == 1
    assert "  ✗ SLACK_SIGNING_SECRET is not set, so Slack's requests cannot be verified" in text
    assert "  ✓ SLACK_BOT_TOKEN works for Testco (T0TEST) as cadence" in text
    assert text.endswith("1 problem, 0 warnings: fix the ✗ lines, then run `cadence doctor` again.\n")
