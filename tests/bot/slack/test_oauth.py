"""Multi-workspace OAuth: /slack/install → Slack → /slack/oauth_redirect stores the workspace's bot token in
our database; requests from that workspace are then authorized with it, the engine posts with it once
the CRO has linked the engagement, and an uninstall forgets it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from aiohttp import web
from sqlalchemy import select

from bot.slack.installations import BOT_SCOPES
from storage.models import ChatWorkspace, OAuthState
from support.fake_slack import Call, FakeSlack
from support.slack_app import SlackDriver, payload, serve_slack

pytestmark = pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")  # inside slack_sdk

CLIENT_ID = "1111.2222"
CLIENT_SECRET = "oauth-client-secret"
INSTALLED_TOKEN = "xoxb-installed-by-oauth"


class OAuthSlack(FakeSlack):
    """The fake Web API plus `oauth.v2.access`, which authenticates with the app's client id and secret
    (HTTP Basic) rather than a token, and hands out a new bot token for the code."""

    async def _api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["method"] != "oauth.v2.access":
            return await super()._api(request)
        form = dict(await request.post())
        self.calls.append(Call("oauth.v2.access", {k: str(v) for k, v in form.items()}, None, request.method))
        if request.headers.get("Authorization", "").startswith("Basic ") is False or form.get("code") != "good-code":
            return web.json_response({"ok": False, "error": "invalid_code"})
        self.tokens.add(INSTALLED_TOKEN)
        return web.json_response(
            {
                "ok": True,
                "access_token": INSTALLED_TOKEN,
                "token_type": "bot",
                "scope": ",".join(BOT_SCOPES),
                "bot_user_id": self.bot_user_id,
                "app_id": "A0CADENCE",
                "team": {"id": self.team_id, "name": "Testco"},
                "enterprise": None,
                "is_enterprise_install": False,
                "authed_user": {"id": "U0DANA"},
            }
        )


@pytest.fixture
async def slack(world: Any) -> AsyncIterator[SlackDriver]:
    async with (
        OAuthSlack.for_testco() as fake,
        serve_slack(
            world, fake, slack_bot_token=None, slack_client_id=CLIENT_ID, slack_client_secret=CLIENT_SECRET
        ) as driver,
    ):
        yield driver


async def _install(slack: SlackDriver) -> tuple[int, str, str]:
    """Click "Add to Slack", approve, come back: (status of the redirect page, its text, the state)."""
    async with slack.http.get(slack.service.url + "/slack/install", allow_redirects=False) as started:
        assert started.status == 302
        location = urlparse(started.headers["Location"])
        cookie = started.headers["Set-Cookie"].split(";")[0]
    assert location.netloc == "slack.com" and location.path == "/oauth/v2/authorize"
    query = parse_qs(location.query)
    assert query["client_id"] == [CLIENT_ID] and query["scope"] == [",".join(BOT_SCOPES)]
    state = query["state"][0]
    async with slack.http.get(
        slack.service.url + "/slack/oauth_redirect",
        params={"code": "good-code", "state": state},
        headers={"Cookie": cookie},
    ) as finished:
        return finished.status, await finished.text(), state


async def test_install_stores_the_token_and_authorizes_that_workspace(slack: SlackDriver) -> None:
    status, page, _ = await _install(slack)
    assert status == 200 and "Cadence is installed" in page and "/cadence setup" in page
    async with slack.world.db.session() as session:
        row = (await session.execute(select(ChatWorkspace))).scalar_one()
        states = (await session.execute(select(OAuthState))).scalars().all()
    assert (row.workspace_id, row.bot_token, row.installed_by_user_id, row.active) == (
        "T0TEST",
        INSTALLED_TOKEN,
        "U0DANA",
        True,
    )
    assert row.scopes == ",".join(BOT_SCOPES) and row.engagement_id is None and states == []
    await slack.setup("dana")
    assert "Linked this workspace to Testco" in slack.sink.texts("setup")[0]
    await slack.world.say("jordan", '/deal new "Acme" amount=150k close=2026-12-15 stage=discovery')
    await slack.command("dana", "/pipeline", "start")
    await slack.settle()
    posts = slack.fake.calls_to("chat.postMessage")
    assert posts and {call.token for call in posts} == {INSTALLED_TOKEN}


async def test_a_used_or_forged_state_is_refused(slack: SlackDriver) -> None:
    _, _, state = await _install(slack)
    async with slack.http.get(
        slack.service.url + "/slack/oauth_redirect",
        params={"code": "good-code", "state": state},
        headers={"Cookie": f"slack-app-oauth-state={state}"},
    ) as replay:
        assert replay.status == 401 and "expired or was already used" in await replay.text()


async def test_before_install_requests_are_not_authorized_and_after_uninstall_the_token_is_gone(
    slack: SlackDriver,
) -> None:
    await slack.command("jordan", "/deal", "list")
    await slack.settle()
    assert "reinstall" in slack.sink.texts("jordan")[0].lower()
    await _install(slack)
    await slack.setup("dana")
    assert (await slack.event(payload("app_uninstalled"))).status == 200
    await slack.settle()
    async with slack.world.db.session() as session:
        row = (await session.execute(select(ChatWorkspace))).scalar_one()
    assert (row.bot_token, row.active) == (None, False)
