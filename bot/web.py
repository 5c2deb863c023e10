"""The HTTP server `cadence run` serves: Slack's request URL, the OAuth install, Teams (added by
`bot.teams.serve.add_teams_routes`), and the operations routes.

- `POST /slack/events` — slash commands, interactivity (buttons, modals, menus) and the Events API.
  The route translates (aiohttp request → Bolt request → aiohttp response) after one check of its own:
  the signature of the raw bytes (`slack_signature_ok`), so that a request unsigned, tampered, older
  than five minutes, or with headers or a body malformed in any way gets 401 before anything reads it
  (Bolt checks it again; on its own it answers some malformed ones with 500).
- `GET /slack/install`, `GET /slack/oauth_redirect` — the multi-workspace install, when OAuth is set up.
- `GET /healthz` — liveness: 200 while the process serves HTTP (restart it when this fails).
- `GET /readyz` — readiness: 200 when the database answers and is at the newest migration, else 503 with
  the reason as JSON (take the process out of the load balancer, don't restart it).
- `GET /metrics` — Prometheus text format (`bot/metrics.py`).

Every route is behind two middlewares: a body larger than `MAX_BODY` is refused with 413 before it is
read (Slack's and Teams' payloads are far smaller; a bigger one is an attack or a mistake), and the time
to answer each Slack or Teams request is recorded for the latency histogram.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.metrics import CONTENT_TYPE, Metrics
from storage.db import Database
from storage.delivery_stats import deliveries_by_ritual

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
TEAMS_PATH = "/api/messages"
TIMED = {EVENTS_PATH: "slack", TEAMS_PATH: "teams"}
"""The routes whose answer time is the ack latency, by platform."""
MAX_BODY = 1024 * 1024
SIGNATURE_MAX_AGE = 5 * 60
SLACK_APP = web.AppKey("slack_app", AsyncApp)
SIGNING_SECRET = web.AppKey("slack_signing_secret", str)
DATABASE = web.AppKey("database", Database)
METRICS = web.AppKey("metrics", Metrics)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_web_app(
    db: Database,
    slack: AsyncApp | None = None,
    *,
    metrics: Metrics | None = None,
    slack_signing_secret: str | None = None,
) -> web.Application:
    """The aiohttp application; without a Slack app (Socket Mode) it serves only the operations routes
    (and Teams, when `add_teams_routes` adds it). With `slack_signing_secret`, Slack's requests are
    verified here before Bolt sees them."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[time_requests, limit_body])
    app[DATABASE] = db
    app[METRICS] = metrics or Metrics()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_route)
    if slack is not None:
        app[SLACK_APP] = slack
        if slack_signing_secret:
            app[SIGNING_SECRET] = slack_signing_secret
        app.router.add_post(EVENTS_PATH, slack_events)
        if slack.oauth_flow is not None:
            app.router.add_get(INSTALL_PATH, slack_install)
            app.router.add_get(REDIRECT_PATH, slack_oauth_redirect)
    return app


@web.middleware
async def limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    """413 for a declared length over `MAX_BODY`, before reading a byte; a body sent without a length
    is cut off at the same size by `client_max_size` when a handler reads it (also 413)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        log.warning("refused a %d-byte request to %s (the limit is %d)", request.content_length, request.path, MAX_BODY)
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    return await handler(request)


@web.middleware
async def time_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    platform = TIMED.get(request.path)
    if platform is None:
        return await handler(request)
    started = time.perf_counter()
    try:
        return await handler(request)
    finally:
        request.app[METRICS].observe_request(platform, time.perf_counter() - started)


def slack_signature_ok(raw: bytes, headers: Mapping[str, str], secret: str, now: float) -> bool:
    """Slack's v0 signature of exactly these bytes, made in the last five minutes. Any header that is
    missing, not ASCII or not a number is simply a failed check (never an exception)."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not (timestamp.isascii() and timestamp.isdigit() and signature.isascii()):
        return False
    if abs(now - int(timestamp)) > SIGNATURE_MAX_AGE:
        return False
    base = b"v0:" + timestamp.encode("ascii") + b":" + raw
    expected = "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii"))


async def slack_events(request: web.Request) -> web.Response:
    raw = await request.read()
    secret = request.app.get(SIGNING_SECRET)
    if secret is not None and not slack_signature_ok(raw, request.headers, secret, time.time()):
        return web.Response(status=401, text="invalid request signature")
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        return web.Response(status=400, text="the body is not UTF-8")
    bolt_request = AsyncBoltRequest(body=body, query=request.query_string, headers=request.headers)  # type: ignore[arg-type]
    return await to_aiohttp_response(await request.app[SLACK_APP].async_dispatch(bolt_request))


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
    """The process is up and serving HTTP; says nothing about the database (that is /readyz)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        current = await request.app[DATABASE].migrations_current()
    except Exception as exc:
        log.warning("readiness: the database did not answer (%s)", exc.__class__.__name__)
        return web.json_response({"status": "unavailable", "reason": "the database is unreachable"}, status=503)
    if not current:
        reason = "the database is not at the newest migration (run `cadence db upgrade`)"
        return web.json_response({"status": "unavailable", "reason": reason}, status=503)
    return web.json_response({"status": "ok"})


async def metrics_route(request: web.Request) -> web.Response:
    """The process's figures always; the database's when it answers (`cadence_database_up` says which)."""
    deliveries = None
    try:
        async with request.app[DATABASE].session() as session:
            deliveries = await deliveries_by_ritual(session)
    except Exception as exc:
        log.warning("metrics: the database did not answer (%s)", exc.__class__.__name__)
    body = request.app[METRICS].exposition(deliveries)
    return web.Response(body=body.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})
