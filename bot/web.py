"""The HTTP server `cadence run` serves: Slack's one request URL, the OAuth install, and a health check.

- `POST /slack/events` — slash commands, interactivity (buttons, modals, menus) and the Events API.
  The route only translates (aiohttp request → Bolt request → aiohttp response); Bolt checks the
  signature and the timestamp (a request unsigned, tampered or older than five minutes gets 401 and
  reaches no listener).
- `GET /slack/install`, `GET /slack/oauth_redirect` — the multi-workspace install, when OAuth is set up.
- `GET /healthz` — 200 when the database answers and is at the newest migration, else 503.
"""

from __future__ import annotations

import logging

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse

from storage.db import Database

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
SLACK_APP = web.AppKey("slack_app", AsyncApp)
DATABASE = web.AppKey("database", Database)


def create_web_app(db: Database, slack: AsyncApp | None = None) -> web.Application:
    """The aiohttp application; without a Slack app (Socket Mode) it serves only the health check."""
    app = web.Application()
    app[DATABASE] = db
    app.router.add_get("/healthz", healthz)
    if slack is not None:
        app[SLACK_APP] = slack
        app.router.add_post(EVENTS_PATH, slack_events)
        if slack.oauth_flow is not None:
            app.router.add_get(INSTALL_PATH, slack_install)
            app.router.add_get(REDIRECT_PATH, slack_oauth_redirect)
    return app


async def slack_events(request: web.Request) -> web.Response:
    bolt_response = await request.app[SLACK_APP].async_dispatch(await to_bolt_request(request))
    return await to_aiohttp_response(bolt_response)


async def slack_install(request: web.Request) -> web.Response:
    flow = request.app[SLACK_APP].oauth_flow
    assert flow is not None
    response: BoltResponse = await flow.handle_installation(await to_bolt_request(request))
    return await to_aiohttp_response(response)


async def slack_oauth_redirect(request: web.Request) -> web.Response:
    flow = request.app[SLACK_APP].oauth_flow
    assert flow is not None
    response: BoltResponse = await flow.handle_callback(await to_bolt_request(request))
    return await to_aiohttp_response(response)


async def healthz(request: web.Request) -> web.Response:
    try:
        current = await request.app[DATABASE].migrations_current()
    except Exception:
        log.exception("health check: the database did not answer")
        return web.json_response({"status": "error", "database": "unreachable"}, status=503)
    if not current:
        return web.json_response({"status": "error", "database": "not at the newest migration"}, status=503)
    return web.json_response({"status": "ok"})
