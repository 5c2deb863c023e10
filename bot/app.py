"""The app factory: builds storage, clock and command router from settings; no module-level state.

`cadence run` with chat credentials adds the chat side (`start_chat`): the engine with a port per
engagement (`ChatPorts`: Slack for an engagement linked to a Slack workspace, Teams for one linked to a
Teams tenant, the console otherwise), the scheduler that wakes it, and the Slack app and/or the Teams
endpoint behind one HTTP server (Slack may use a Socket Mode connection instead).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.command_limit import CommandLimit
from bot.console.port import ConsolePort
from bot.metrics import Metrics
from bot.settings import Settings
from cadences.catalog import build_router
from cadences.clock import Clock, SystemClock
from cadences.commands import CommandRouter
from cadences.context import Context
from cadences.engine import Engine
from cadences.ports import ChatPort
from cadences.ritual_catalog import all_rituals
from cadences.scheduler import CadenceScheduler
from storage import chat_workspaces
from storage import engagements as engagement_repo
from storage.db import Database
from storage.models import Engagement
from storage.secrets import ENVIRONMENT_ENV, SECRET_KEY_ENV

if TYPE_CHECKING:
    from aiohttp import web
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_bolt.async_app import AsyncApp

    from bot.slack.app import SlackDeps
    from bot.slack.pacing import Pacer
    from bot.slack.port import ChannelDirectory
    from bot.teams.port import TeamsPort

log = logging.getLogger(__name__)
PORT_REFRESH_SECONDS = 60.0


class SetupError(RuntimeError):
    """A problem the person running Cadence must fix (shown as one line, exit code 2)."""


@dataclass
class CadenceApp:
    settings: Settings
    db: Database
    clock: Clock
    router: CommandRouter
    metrics: Metrics = field(default_factory=Metrics)

    async def start(self) -> None:
        """Refuse to run without the secret key where tokens must be encrypted; then upgrade the schema,
        on every start, so a new version never runs against an old database."""
        problem = self.settings.secret_key_problem()
        if problem:
            raise SetupError(problem)
        await self.db.upgrade()

    async def close(self) -> None:
        await self.db.dispose()

    async def engagement(self, slug: str | None = None) -> Engagement:
        slug = slug or self.settings.engagement
        async with self.db.session() as session:
            found = await engagement_repo.get_engagement(session, slug)
            if found is None:
                available = [e.slug for e in await engagement_repo.list_engagements(session)]
        if found is not None:
            return found
        if slug:
            raise SetupError(f"no engagement '{slug}' in {self.db.url} (found: {', '.join(available) or 'none'})")
        if not available:
            raise SetupError("no engagement yet: run `cadence engagement apply FILE` (or `cadence demo`)")
        raise SetupError(f"several engagements ({', '.join(available)}): choose one with --engagement SLUG")

    def context(self, engagement: Engagement, actor_ref: str, channel: str) -> Context:
        return Context(self.db, self.clock, engagement, None, channel, actor_ref)


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> CadenceApp:
    settings = settings or Settings()
    _export_secret_settings(settings)
    return CadenceApp(
        settings=settings, db=Database(settings.database_url), clock=clock or SystemClock(), router=build_router()
    )


def _export_secret_settings(settings: Settings) -> None:
    """storage/secrets.py reads the key and the mode from the process environment (a column type has no
    other way in); settings read from a `.env` file are put there, without overriding the real ones."""
    if settings.secret_key:
        os.environ.setdefault(SECRET_KEY_ENV, settings.secret_key)
    if settings.environment.strip().lower() == "production":
        os.environ.setdefault(ENVIRONMENT_ENV, "production")


# --- chat ports ------------------------------------------------------------------------------------


class LinkedChannels:
    """An engagement's channel names as Slack ids: the channel `/cadence setup` linked comes first (the
    review channel is where the CRO ran it), then whatever `conversations.list` finds by name."""

    def __init__(self, db: Database, engagement_id: int, fallback: ChannelDirectory) -> None:
        self.db = db
        self.engagement_id = engagement_id
        self.fallback = fallback

    async def channel_id(self, name: str) -> str | None:
        async with self.db.session() as session:
            linked = await chat_workspaces.channel_id(session, self.engagement_id, "slack", name.lstrip("#"))
        return linked or await self.fallback.channel_id(name)


@dataclass
class ChatPorts:
    """Which chat serves each engagement: a Slack port per linked workspace (its installation's token, or
    SLACK_BOT_TOKEN in single-workspace mode), the one Teams port for engagements linked to a Teams tenant
    (Slack wins for an engagement linked to both), the console for the rest. `port_for` is what the engine
    calls (synchronously), so the map is rebuilt by `refresh`: at start, after a workspace is linked or
    uninstalled in this process, and every minute for changes made by other processes."""

    db: Database
    settings: Settings
    clock: Clock
    pacer: Pacer | None = None
    teams: TeamsPort | None = None
    metrics: Metrics | None = None
    _slack: dict[int, tuple[str, ChatPort]] = field(default_factory=dict)
    _teams: set[int] = field(default_factory=set)
    _console: dict[int, ChatPort] = field(default_factory=dict)

    async def refresh(self) -> None:
        from bot.slack.pacing import ChannelPacer
        from bot.slack.port import ListedChannels, SlackPort, create_client, stored_attachments

        self.pacer = self.pacer or ChannelPacer()
        async with self.db.session() as session:
            rows = await chat_workspaces.linked_workspaces(session, "slack")
        ports: dict[int, tuple[str, ChatPort]] = {}
        for row in rows:
            token = row.bot_token or self.settings.slack_bot_token
            if row.engagement_id is None or not token:
                continue
            known = self._slack.get(row.engagement_id)
            if known is not None and known[0] == token:
                ports[row.engagement_id] = known  # keep its caches (DM channels, channel names)
                continue
            on_429 = self.metrics.rate_limit_hook("slack") if self.metrics is not None else None
            client = create_client(token, base_url=self.settings.slack_api_url, on_rate_limited=on_429)
            channels = LinkedChannels(self.db, row.engagement_id, ListedChannels(client))
            port = SlackPort(
                client,
                workspace=row.workspace_id,
                channels=channels,
                pacer=self.pacer,
                attachments=stored_attachments(self.db),
            )
            ports[row.engagement_id] = (token, port)
        self._slack = ports
        if self.teams is not None:
            async with self.db.session() as session:
                tenants = await chat_workspaces.linked_workspaces(session, "teams")
            self._teams = {row.engagement_id for row in tenants if row.engagement_id is not None}

    def port_for(self, engagement: Engagement) -> ChatPort:
        found = self._slack.get(engagement.id)
        if found is not None:
            return found[1]
        if self.teams is not None and engagement.id in self._teams:
            return self.teams
        if engagement.id not in self._console:
            self._console[engagement.id] = ConsolePort(self.clock.now, ZoneInfo(engagement.timezone), sys.stdout)
        return self._console[engagement.id]


# --- serving Slack and Teams -------------------------------------------------------------------------


@dataclass
class ChatService:
    """Chat being served: the engine and its ports, the Slack app (if configured), the HTTP server (Slack
    events, the Teams endpoint, health) and the clock."""

    engine: Engine
    ports: ChatPorts
    runner: web.AppRunner
    scheduler: CadenceScheduler | None
    refresher: asyncio.Task[None]
    deps: SlackDeps | None = None
    slack: AsyncApp | None = None
    socket: AsyncSocketModeHandler | None = None

    @property
    def url(self) -> str:
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        self.refresher.cancel()
        if self.scheduler is not None:
            await self.scheduler.stop()  # gives the clock lock back before the server stops
        if self.socket is not None:
            await self.socket.close_async()  # type: ignore[no-untyped-call]
        await self.runner.cleanup()
        if self.deps is not None:
            await self.deps.background.drain()
        if self.ports.teams is not None:
            await self.ports.teams.close()


async def start_chat(
    app: CadenceApp, *, host: str | None = None, port: int | None = None, run_scheduler: bool = True
) -> ChatService:
    """Serve the configured chats on one HTTP server on `host:port` (settings by default): Slack events
    (or a Socket Mode connection when SLACK_APP_TOKEN is set) and the Teams endpoint `/api/messages`.
    The rituals run on the wall clock unless `run_scheduler` is False (tests tick the engine themselves)."""
    from aiohttp import web

    from bot.web import create_web_app

    settings = app.settings
    ports = ChatPorts(app.db, settings, app.clock, metrics=app.metrics)
    engine = Engine(app.db, app.clock, all_rituals(), ports.port_for, concurrency=settings.delivery_concurrency)
    deps = slack = socket = None
    limit = CommandLimit(app.db, app.clock, settings.commands_per_minute, on_limited=app.metrics.count_command_refused)
    if settings.has_slack:
        from bot.slack.app import SlackDeps, create_slack_app
        from bot.slack.port import RateLimitCounter

        deps = SlackDeps(app.db, app.clock, app.router, cadence=engine, on_workspace_change=ports.refresh, limit=limit)
        slack = create_slack_app(deps, settings)
        # The listeners' client (and, with OAuth, the per-workspace copies Bolt makes of it) counts 429s too.
        slack.client.retry_handlers.insert(0, RateLimitCounter(app.metrics.rate_limit_hook("slack")))
        if settings.slack_app_token:
            from bot.slack.app import socket_mode

            socket = socket_mode(slack, settings.slack_app_token)
            await socket.connect_async()  # type: ignore[no-untyped-call]
    web_app = create_web_app(
        app.db, None if socket else slack, metrics=app.metrics, slack_signing_secret=settings.slack_signing_secret
    )
    if settings.has_teams:
        from bot.teams.handler import TeamsDeps
        from bot.teams.serve import add_teams_routes, teams_port

        teams_deps = TeamsDeps(
            app.db, app.clock, app.router, settings, cadence=engine, on_link=ports.refresh, limit=limit
        )
        add_teams_routes(web_app, teams_deps)
        ports.teams = teams_port(teams_deps)
        ports.teams.on_rate_limited = app.metrics.rate_limit_hook("teams")
    await ports.refresh()
    # No access log: a line per request would be the busiest log line by far and costs each ack its
    # formatting and redaction; /metrics counts and times every Slack and Teams request instead.
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or settings.host, settings.port if port is None else port).start()
    scheduler = CadenceScheduler(engine) if run_scheduler else None
    if scheduler is not None:
        scheduler.start()
    refresher = asyncio.create_task(_refresh_every(ports, PORT_REFRESH_SECONDS), name="refresh chat ports")
    return ChatService(engine, ports, runner, scheduler, refresher, deps, slack, socket)


async def _refresh_every(ports: ChatPorts, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await ports.refresh()
        except Exception:
            log.exception("refreshing the chat ports failed; the next refresh retries")
