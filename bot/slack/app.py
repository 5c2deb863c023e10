"""The Slack app: a Bolt `AsyncApp` built by a factory from settings and dependencies (no module-level
clients), with every listener registered by feature (`bot/slack/listeners/`).

- **Two ways in.** Single workspace: `SLACK_BOT_TOKEN` + `SLACK_SIGNING_SECRET`. Several workspaces
  (one per client engagement): `SLACK_CLIENT_ID` + `SLACK_CLIENT_SECRET` + the signing secret, with the
  OAuth install at /slack/install and installations in our database (`installations.py`).
  `SLACK_API_URL` replaces the Web API base URL for every client the app makes (a local fake in tests).
- **Ack first.** Bolt verifies each request's signature and age before anything runs. Listeners ack
  at once and hand slow work to `Background`, which the HTTP response does not wait for; with
  `process_before_response` the listener itself (ack + scheduling) has finished when the response
  leaves, so tests and shutdown can wait for the slow part with `Background.drain()`. Modal
  submissions are the one exception Slack imposes: their validation must be in the ack
  (`response_action: errors`), so they run the service before acking.
- **Retries.** Slack resends an event it thinks was lost (`X-Slack-Retry-Num`); a middleware records
  every `event_id` in `inbound_event` (a unique insert) and drops one already seen, in any process.
- **One error path.** A listener's exception and a background task's both reach `report_error`,
  which logs the stack and tells the person something useful.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler, async_default_handlers
from slack_sdk.web.async_client import AsyncWebClient

from bot.command_limit import CommandLimit
from bot.settings import Settings
from bot.slack.identity import PLATFORM, SlackIdentities
from bot.slack.installations import oauth_settings
from bot.slack.port import DEFAULT_API_URL, create_client
from cadences.clock import Clock
from cadences.commands import CommandRouter
from cadences.engine import Engine
from storage import chat_workspaces
from storage.db import Database

log = logging.getLogger(__name__)

SORRY = "Something went wrong on my side and it's been logged. Please try again in a minute."

ErrorReporter = Callable[[BaseException], Awaitable[None]]


BACKGROUND_AT_ONCE = 8
"""How many pieces of work run after their acks at once; the rest wait their turn, in order. A burst of
commands would otherwise start hundreds of handlers that contend with the acks still arriving for the
event loop and the database pool (10 connections by default), and an ack late by more than 3 s is an
error in Slack (bench/ack.py measures it)."""


class Background:
    """Work that runs after the ack. Tasks are kept (so they are not garbage collected mid-flight),
    their failures reported, and `drain` waits for all of them: at shutdown, and in tests. At most
    `at_once` run at a time."""

    def __init__(self, at_once: int = BACKGROUND_AT_ONCE) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._turns = asyncio.Semaphore(at_once)

    def spawn(self, work: Coroutine[Any, Any, None], *, what: str, on_error: ErrorReporter | None = None) -> None:
        async def run() -> None:
            async with self._turns:
                try:
                    await work
                except Exception as exc:
                    log.exception("background work failed: %s", what)
                    if on_error is not None:
                        try:
                            await on_error(exc)
                        except Exception:
                            log.exception("could not tell the person about the failure of %s", what)

        task = asyncio.create_task(run(), name=what)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until no background work is left (work started meanwhile included)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


@dataclass
class Registry:
    """What the listeners handle, as the manifest names it: kept by the `register` functions so a test
    can compare it with manifest.yaml both ways."""

    commands: set[str] = field(default_factory=set)
    shortcuts: set[str] = field(default_factory=set)
    events: set[str] = field(default_factory=set)
    actions: set[str] = field(default_factory=set)
    views: set[str] = field(default_factory=set)
    options: set[str] = field(default_factory=set)

    @property
    def count(self) -> int:
        return sum(len(s) for s in (self.commands, self.shortcuts, self.events, self.actions, self.views, self.options))


@dataclass
class SlackDeps:
    """What the listeners work with. `cadence` is the engine (rituals triggered by commands, the next
    rituals on the CRO's Home); `on_workspace_change` refreshes the engine's ports after a workspace is
    linked or uninstalled; `limit` is the per-user command limit, asked by the command handlers after the
    ack (None: no limit, as in tests of other things)."""

    db: Database
    clock: Clock
    router: CommandRouter
    cadence: Engine | None = None
    identities: SlackIdentities | None = None
    background: Background = field(default_factory=Background)
    registry: Registry = field(default_factory=Registry)
    on_workspace_change: Callable[[], Awaitable[None]] | None = None
    limit: CommandLimit | None = None

    async def within_limit(self, team_id: str, user_id: str) -> bool:
        """Count a command by this person; False when it is over their limit (then say SLOW_DOWN)."""
        return self.limit is None or await self.limit.allow(PLATFORM, team_id, user_id)

    @property
    def people(self) -> SlackIdentities:
        if self.identities is None:
            self.identities = SlackIdentities(self.db, self.clock)
        return self.identities


def create_slack_app(deps: SlackDeps, settings: Settings) -> AsyncApp:
    """The Bolt app for these settings, listeners registered. Raises ValueError when the settings name
    neither a bot token nor an OAuth client."""
    from bot.slack.listeners import register_all

    if not settings.slack_signing_secret and not settings.slack_app_token:
        raise ValueError("SLACK_SIGNING_SECRET is required to serve Slack over HTTP")
    common: dict[str, Any] = {
        "signing_secret": settings.slack_signing_secret or "socket-mode",
        "process_before_response": True,
        "request_verification_enabled": bool(settings.slack_signing_secret),
        "name": "cadence",
        "logger": bolt_logger(),
    }
    if settings.slack_client_id and settings.slack_client_secret:
        client = AsyncWebClient(base_url=_base_url(settings.slack_api_url), retry_handlers=retry_handlers())
        app = AsyncApp(
            client=client,
            oauth_settings=oauth_settings(
                deps.db,
                deps.clock,
                client_id=settings.slack_client_id,
                client_secret=settings.slack_client_secret,
                redirect_uri=settings.slack_redirect_uri,
            ),
            installation_store_bot_only=True,
            **common,
        )
    elif settings.slack_bot_token:
        app = AsyncApp(client=create_client(settings.slack_bot_token, base_url=settings.slack_api_url), **common)
    else:
        raise ValueError("set SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (OAuth)")

    app.middleware(_dedupe_retries(deps))
    app.error(_report_listener_error)
    register_all(app, deps)
    return app


class _TokenInClient(logging.Filter):
    """Bolt also reads SLACK_BOT_TOKEN from the environment and then warns that the token "will be unused"
    because a client was given; the client carries that very token (with SLACK_API_URL and the retry
    handlers), so the warning would only confuse whoever runs Cadence."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def bolt_logger() -> logging.Logger:
    logger = logging.getLogger("bot.slack.bolt")
    if not any(isinstance(f, _TokenInClient) for f in logger.filters):
        logger.addFilter(_TokenInClient())
    return logger


def _base_url(url: str | None) -> str:
    url = url or DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


def retry_handlers() -> list[AsyncRetryHandler]:
    """The same retries as the port's clients: connection errors, and 429s after their Retry-After."""
    return [*async_default_handlers(), AsyncRateLimitErrorRetryHandler(max_retry_count=3)]


def _dedupe_retries(deps: SlackDeps) -> Callable[..., Awaitable[BoltResponse | None]]:
    async def dedupe_retries(body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        """An event whose id was already recorded is a retry: acknowledged, not handled again."""
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            async with deps.db.write() as session:
                first = await chat_workspaces.first_sight(session, PLATFORM, str(event_id), deps.clock.now())
            if not first:
                log.info("event %s was already handled; ignoring the retry", event_id)
                return BoltResponse(status=200, body="")
        await next()
        return None

    return dedupe_retries


async def _report_listener_error(error: Exception, body: dict[str, Any], respond: AsyncRespond | None) -> None:
    log.error("Slack listener failed on a %s request", body.get("type"), exc_info=error)
    if respond is not None and body.get("response_url"):
        await respond(text=SORRY, response_type="ephemeral", replace_original=False)


def reporter(respond: AsyncRespond | None) -> ErrorReporter:
    """What a background task says when it fails: the same words as a failed listener."""

    async def report(exc: BaseException) -> None:
        if respond is not None and respond.response_url:
            await respond(text=SORRY, response_type="ephemeral", replace_original=False)

    return report


def socket_mode(app: AsyncApp, app_token: str) -> AsyncSocketModeHandler:
    """Socket Mode (local development without a public URL): Slack's requests come over a WebSocket
    opened with the app-level token, through the same app and listeners."""
    return AsyncSocketModeHandler(app, app_token)
