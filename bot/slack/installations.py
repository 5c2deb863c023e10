"""Multi-workspace OAuth: slack_sdk's installation and state stores, backed by our database.

A fractional CRO serves several clients from one deployment, each client's Slack workspace installed
through `/slack/install` and linked to its engagement by `/cadence setup`. Installations live in
`chat_workspace` (one row per workspace: a reinstall refreshes the token and keeps the link), OAuth
`state` values in `oauth_state` (one use, ten minutes), so any process can finish an install another
began. Only bot tokens are kept: Cadence never acts as a user.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from bot.slack.identity import PLATFORM
from cadences.clock import Clock
from storage import chat_workspaces
from storage.db import Database
from storage.models import ChatWorkspace

STATE_TTL = timedelta(minutes=10)
BOT_SCOPES = (
    "chat:write",
    "commands",
    "im:write",
    "im:history",
    "channels:history",
    "groups:history",
    "users:read",
    "users:read.email",
    "files:write",
    "channels:read",
    "groups:read",
)
"""The bot scopes requested at install: the same least-privilege list as manifest.yaml (a test checks)."""

log = logging.getLogger(__name__)


def _installed_at(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


def _scopes(value: str | Sequence[str] | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else ",".join(value)


class DbInstallationStore(AsyncInstallationStore):
    """Bot installations per workspace in `chat_workspace`. Enterprise-wide installs are not supported:
    an engagement is one company's workspace."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._logger = log

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    async def async_save(self, installation: Installation) -> None:
        if not installation.team_id or not installation.bot_token:
            raise ValueError("Cadence installs into one workspace with a bot token (no org-wide or user-only installs)")
        async with self.db.write() as session:
            await chat_workspaces.save_install(
                session,
                PLATFORM,
                installation.team_id,
                installed_at=_installed_at(installation.installed_at),
                enterprise_id=installation.enterprise_id,
                app_id=installation.app_id,
                bot_id=installation.bot_id,
                bot_token=installation.bot_token,
                bot_user_id=installation.bot_user_id,
                scopes=_scopes(installation.bot_scopes),
                installed_by_user_id=installation.user_id,
            )

    async def async_save_bot(self, bot: Bot) -> None:
        if not bot.team_id:
            raise ValueError("Cadence installs into one workspace (no org-wide installs)")
        async with self.db.write() as session:
            await chat_workspaces.save_install(
                session,
                PLATFORM,
                bot.team_id,
                installed_at=_installed_at(bot.installed_at),
                enterprise_id=bot.enterprise_id,
                app_id=bot.app_id,
                bot_id=bot.bot_id,
                bot_token=bot.bot_token,
                bot_user_id=bot.bot_user_id,
                scopes=_scopes(bot.bot_scopes),
            )

    async def _row(self, team_id: str | None) -> ChatWorkspace | None:
        if not team_id:
            return None
        async with self.db.session() as session:
            row = await chat_workspaces.workspace(session, PLATFORM, team_id)
        return row if row is not None and row.active and row.bot_token else None

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        row = await self._row(team_id)
        if row is None:
            return None
        assert row.bot_token is not None
        return Bot(
            app_id=row.app_id,
            enterprise_id=row.enterprise_id,
            team_id=row.workspace_id,
            bot_token=row.bot_token,
            bot_id=row.bot_id or "",
            bot_user_id=row.bot_user_id or "",
            bot_scopes=row.scopes,
            installed_at=row.installed_at.timestamp(),
        )

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        row = await self._row(team_id)
        if row is None:
            return None
        return Installation(
            app_id=row.app_id,
            enterprise_id=row.enterprise_id,
            team_id=row.workspace_id,
            bot_token=row.bot_token,
            bot_id=row.bot_id,
            bot_user_id=row.bot_user_id,
            bot_scopes=row.scopes,
            user_id=row.installed_by_user_id or "",
            installed_at=row.installed_at.timestamp(),
        )

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._forget(team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        await self._forget(team_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._forget(team_id)

    async def _forget(self, team_id: str | None) -> None:
        if team_id:
            async with self.db.write() as session:
                await chat_workspaces.uninstall(session, PLATFORM, team_id)


class DbOAuthStateStore(AsyncOAuthStateStore):
    """OAuth `state` values in `oauth_state`: issued at /slack/install, consumed once at the redirect."""

    def __init__(self, db: Database, clock: Clock, ttl: timedelta = STATE_TTL) -> None:
        self.db = db
        self.clock = clock
        self.ttl = ttl

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(24)
        async with self.db.write() as session:
            await chat_workspaces.issue_state(session, state, self.clock.now() + self.ttl)
        return state

    async def async_consume(self, state: str) -> bool:
        async with self.db.write() as session:
            return await chat_workspaces.consume_state(session, state, self.clock.now())


SUCCESS_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Cadence is installed</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Cadence is installed</h1>
<p>One step left: the engagement's CRO opens the channel where the Monday pipeline review should be
posted, invites the bot (<code>/invite @Cadence</code>) and types <code>/cadence setup &lt;engagement-slug&gt;</code>
(the <code>slug:</code> in the engagement file).</p>
<p>You can close this page.</p></body></html>"""

FAILURE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Cadence was not installed</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Cadence was not installed</h1><p>{reason}. <a href="{install_path}">Try again</a>.</p></body></html>"""


async def _success(args: AsyncSuccessArgs) -> BoltResponse:
    return BoltResponse(status=200, body=SUCCESS_PAGE, headers={"Content-Type": "text/html; charset=utf-8"})


async def _failure(args: AsyncFailureArgs) -> BoltResponse:
    reason = {
        "invalid_state": "The install link expired or was already used",
        "invalid_code": "Slack did not confirm the install",
        "access_denied": "The install was cancelled",
        "storage_error": "The installation could not be saved",
    }.get(args.reason, "Something went wrong")
    page = FAILURE_PAGE.format(reason=reason, install_path=args.settings.install_path)
    return BoltResponse(
        status=args.suggested_status_code, body=page, headers={"Content-Type": "text/html; charset=utf-8"}
    )


def oauth_settings(
    db: Database, clock: Clock, *, client_id: str, client_secret: str, redirect_uri: str | None
) -> AsyncOAuthSettings:
    """Bolt's OAuth flow on our stores, at /slack/install and /slack/oauth_redirect."""
    return AsyncOAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=list(BOT_SCOPES),
        redirect_uri=redirect_uri,
        install_path="/slack/install",
        redirect_uri_path="/slack/oauth_redirect",
        installation_store=DbInstallationStore(db),
        installation_store_bot_only=True,
        state_store=DbOAuthStateStore(db, clock),
        install_page_rendering_enabled=False,
        callback_options=AsyncCallbackOptions(success=_success, failure=_failure),
    )
