"""`POST /api/messages`: where the Bot Framework delivers Teams activities, on `cadence run`'s HTTP server.

The route only translates: aiohttp request → Bot Framework `Activity` → `CloudAdapter.process_activity`
(which authenticates the request: the JWT Microsoft signs, checked against `MicrosoftAppId`) → the
handler → an aiohttp response. A request without a valid token gets 401 and reaches no handler.

Without `MicrosoftAppId` the adapter runs the emulator-style anonymous mode: any request is accepted
and replies go out without a token. That is for local development only (the Bot Framework Emulator,
or a fake connector in tests), and `add_teams_routes` says so in the log.

Invoke responses (`adaptiveCard/action`) are written here as JSON: `CloudAdapter.process` would pass
the handler's plain body through msrest's serializer, which only takes msrest models.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from botbuilder.core import TurnContext, serializer_helper
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ActivityTypes

from bot.settings import Settings
from bot.teams.handler import CadenceTeamsBot, TeamsDeps
from bot.teams.port import TeamsPort, app_credentials, stored_images

log = logging.getLogger(__name__)

MESSAGES_PATH = "/api/messages"
SORRY = "Something went wrong on my side and it's been logged. Please try again in a minute."


@dataclass(frozen=True)
class BotFrameworkConfig:
    """The attributes `ConfigurationBotFrameworkAuthentication` reads, from the Bot Framework's
    conventional environment variables (MicrosoftAppId, MicrosoftAppPassword, MicrosoftAppTenantId,
    MicrosoftAppType)."""

    APP_ID: str
    APP_PASSWORD: str
    APP_TENANTID: str | None
    APP_TYPE: str

    @classmethod
    def from_settings(cls, settings: Settings) -> BotFrameworkConfig:
        return cls(
            APP_ID=settings.teams_app_id or "",
            APP_PASSWORD=settings.teams_app_password or "",
            APP_TENANTID=settings.teams_tenant_id,
            APP_TYPE=settings.teams_app_type or "MultiTenant",
        )


@dataclass
class TeamsService:
    """What serves Teams in one process: the adapter (authentication, outbound connector) and the bot."""

    adapter: CloudAdapter
    bot: CadenceTeamsBot


TEAMS = web.AppKey("teams", TeamsService)


def create_adapter(settings: Settings) -> CloudAdapter:
    """The Bot Framework adapter for these settings; anonymous (no token in, none out) without an app id."""
    config = BotFrameworkConfig.from_settings(settings)
    if not config.APP_ID:
        log.warning(
            "Teams: MicrosoftAppId is not set, so %s accepts requests WITHOUT authentication "
            "(the Bot Framework Emulator's mode). Use this for local development only; set MicrosoftAppId "
            "and MicrosoftAppPassword before Teams can reach this server.",
            MESSAGES_PATH,
        )
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(config))
    adapter.on_turn_error = _report_turn_error
    return adapter


def add_teams_routes(web_app: web.Application, deps: TeamsDeps) -> None:
    """Serve Teams on `web_app`: `POST /api/messages` with the CloudAdapter, credentials from
    `deps.settings` (MicrosoftAppId & co.)."""
    web_app[TEAMS] = TeamsService(create_adapter(deps.settings), CadenceTeamsBot(deps))
    web_app.router.add_post(MESSAGES_PATH, messages)


def teams_port(deps: TeamsDeps) -> TeamsPort:
    """The engine's chat port for Teams engagements, on the same credentials and reference store as the
    inbound side, so proactive rituals reach the conversations the handler captured."""
    settings = deps.settings
    credentials = app_credentials(settings.teams_app_id, settings.teams_app_password, settings.teams_tenant_id)
    return TeamsPort(references=deps.refs, credentials=credentials, images=stored_images(deps.db))


async def messages(request: web.Request) -> web.Response:
    """One activity from the Bot Framework: 401 when it is not authenticated, 400 when it is no activity,
    the invoke response for an invoke, else 200 once the turn (and its replies) is done."""
    service = request.app[TEAMS]
    if "application/json" not in request.headers.get("Content-Type", ""):
        return web.Response(status=415, text="expected application/json")
    try:
        body = await request.json()
    except ValueError:
        return web.Response(status=400, text="the body is not JSON")
    if not isinstance(body, dict):
        return web.Response(status=400, text="the body is not an activity")
    activity = Activity().deserialize(body)
    if not activity.type:
        return web.Response(status=400, text="the activity has no type")
    try:
        authenticated = await service.adapter.bot_framework_authentication.authenticate_request(
            activity, request.headers.get("Authorization", "")
        )
    except Exception as exc:  # any failure to authenticate is a refusal, never a 500
        # PermissionError and PyJWT's errors for a bad token; but the SDK also raises IndexError for a key
        # id Microsoft never published and a bare Exception for a token without one or signed with an
        # algorithm it does not accept. Whatever the token, an unauthenticated request gets 401.
        log.warning("Teams: refused an unauthenticated %s activity (%s)", activity.type, exc.__class__.__name__)
        return web.Response(status=401, text="unauthorized")
    invoke = await service.adapter.process_activity(authenticated, activity, service.bot.on_turn)
    if invoke is None:
        return web.Response(status=200)
    payload: Any = invoke.body if isinstance(invoke.body, (dict, list)) or invoke.body is None else None
    if payload is None:
        payload = serializer_helper(invoke.body)
    return web.json_response(payload, status=int(invoke.status), dumps=json.dumps)


async def _report_turn_error(turn_context: TurnContext, error: Exception) -> None:
    """The one error path of a turn: the stack in the log, and a line the person can act on."""
    log.error("Teams turn failed on a %s activity", turn_context.activity.type, exc_info=error)
    if turn_context.activity.type not in (ActivityTypes.message, ActivityTypes.invoke):
        return
    try:
        await turn_context.send_activity(SORRY)
    except Exception:
        log.exception("could not tell the person that their Teams request failed")
