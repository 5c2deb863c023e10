"""Drive the real Slack app as Slack does: `cadence run`'s server on an ephemeral local port, fed REAL
SIGNED requests (the v0 signature computed with slack_sdk's `SignatureVerifier`) built from the payload
fixtures in tests/fixtures/slack/, against the fake Slack Web API. Slack's response_urls point at a
small local sink that records what was answered through them.

    async with serve_slack(world, fake) as slack:
        await slack.setup()                                   # /cadence setup by the CRO
        assert (await slack.command("jordan", "/deal", "Acme stage=proposal")).status == 200
        await slack.settle()                                  # the work after the ack
        assert "Updated Acme" in slack.sink.texts()[-1]
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from bot.app import CadenceApp, ChatService, start_chat
from bot.settings import Settings
from support.fake_slack import FakeSlack
from support.local_server import Response, serve_locally

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slack"
SLACK_IDS = {"dana": "U0DANA", "sam": "U0SAM", "maya": "U0MAYA", "jordan": "U0JORDAN", "priya": "U0PRIYA"}


def payload(name: str) -> dict[str, Any]:
    """A fresh copy of tests/fixtures/slack/payload_<name>.json."""
    return copy.deepcopy(json.loads((FIXTURES / f"payload_{name}.json").read_text(encoding="utf-8")))


def sign(body: str, timestamp: int, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """The two headers Slack signs a request with."""
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": str(signature)}


class ResponseSink:
    """Where Slack's response_urls point in tests: records every JSON body posted to /respond/<name>."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()
        self.root = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/respond/{name}", self._record)
        self._runner, self.root = await serve_locally(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> web.Response:
        self.posts.append((request.match_info["name"], await request.json()))
        async with self._arrived:
            self._arrived.notify_all()
        return web.Response(text="ok")

    async def wait_for(self, name: str, count: int = 1) -> list[dict[str, Any]]:
        """The first `count` answers to `name`, waiting for them to arrive (for a bot in another process;
        wrap in `asyncio.timeout`)."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.to(name)) >= count)
        return self.to(name)[:count]

    def url(self, name: str | None = None) -> str:
        return f"{self.root}/respond/{name or uuid.uuid4().hex[:8]}"

    def to(self, name: str) -> list[dict[str, Any]]:
        return [body for n, body in self.posts if n == name]

    def texts(self, name: str | None = None) -> list[str]:
        """Each answer's words: the fallback text and every text object of its blocks."""
        return [_words(body) for n, body in self.posts if name in (None, n)]


def _words(node: Any) -> str:
    if isinstance(node, dict):
        own = [str(node["text"])] if isinstance(node.get("text"), str) else []
        return "\n".join(own + [_words(v) for k, v in node.items() if k != "text" or not isinstance(v, str)]).strip()
    if isinstance(node, list):
        return "\n".join(_words(item) for item in node).strip()
    return ""


def words(node: Any) -> str:
    """Every text in a Slack payload (blocks, views, messages), joined: what a person would read."""
    return _words(node)


@dataclass
class SlackDriver:
    """The served app and the means to send it Slack's requests."""

    service: ChatService
    fake: FakeSlack
    sink: ResponseSink
    world: Any
    http: aiohttp.ClientSession
    sent: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.service.url + "/slack/events"

    async def settle(self) -> None:
        """Wait for the work the listeners started after their acks."""
        assert self.service.deps is not None
        await self.service.deps.background.drain()

    async def post(
        self,
        body: str,
        content_type: str,
        *,
        signed: bool = True,
        age: int = 0,
        tamper: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """POST to /slack/events as Slack would: signed now (or `age` seconds ago); `tamper` changes one
        byte of the body after signing."""
        extra = dict(headers or {})
        if signed:
            extra |= sign(body, int(time.time()) - age)
        if tamper:
            body = body[:-1] + ("x" if body[-1] != "x" else "y")
        async with self.http.post(self.url, data=body.encode(), headers={"Content-Type": content_type, **extra}) as r:
            return Response(r.status, await r.text())

    # --- request builders ----------------------------------------------------------------------

    def command_body(
        self, who: str, command: str, text: str, *, channel: str = "C0REVIEW", respond_to: str = ""
    ) -> str:
        form = payload("slash_command")
        form.update(
            user_id=SLACK_IDS.get(who, who),
            user_name=who,
            command=command,
            text=text,
            channel_id=channel,
            channel_name={"C0REVIEW": "pipeline-review", "C0GENERAL": "general"}.get(channel, "directmessage"),
            response_url=self.sink.url(respond_to or who),
        )
        return urlencode(form)

    async def command(self, who: str, command: str, text: str = "", **kwargs: Any) -> Response:
        """A slash command typed by `who` (a person's key, or a raw Slack user id); answers go to the sink
        under `respond_to` (default: the person's key)."""
        return await self.post(self.command_body(who, command, text, **kwargs), "application/x-www-form-urlencoded")

    async def interaction(self, body: dict[str, Any]) -> Response:
        return await self.post(urlencode({"payload": json.dumps(body)}), "application/x-www-form-urlencoded")

    async def event(self, body: dict[str, Any], *, retry: int | None = None) -> Response:
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else None
        return await self.post(json.dumps(body), "application/json", headers=headers)

    def button(
        self, who: str, action_id: str, value: str, *, message: dict[str, Any] | None = None, block_id: str = "btns"
    ) -> dict[str, Any]:
        body = payload("block_actions")
        body["user"]["id"] = SLACK_IDS.get(who, who)
        body["response_url"] = self.sink.url(who)
        if message is not None:
            body["message"] = message
        body["actions"] = [{**body["actions"][0], "action_id": action_id, "value": value, "block_id": block_id}]
        return body

    def submission(
        self, who: str, view: dict[str, Any], values: dict[str, dict[str, Any]], *, view_id: str = "V0FORM"
    ) -> dict[str, Any]:
        """A view_submission of `view` (as the app opened it) with `values`: block id → element state."""
        body = payload("view_submission")
        body["user"]["id"] = SLACK_IDS.get(who, who)
        state = {
            block_id: {block_id if block_id != "deal" else "deal_pick": element} for block_id, element in values.items()
        }
        body["view"] = {**body["view"], **view, "id": view_id, "state": {"values": state}}
        return body

    async def setup(self, who: str = "dana", slug: str = "acme-test") -> Response:
        """`/cadence setup <slug>` in #pipeline-review, and wait for it."""
        response = await self.command(who, "/cadence", f"setup {slug}", respond_to="setup")
        await self.settle()
        return response


def select(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value}}


def text_input(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def date_input(value: str | None) -> dict[str, Any]:
    return {"type": "datepicker", "selected_date": value}


@asynccontextmanager
async def serve_slack(world: Any, fake: FakeSlack, **settings: Any) -> AsyncIterator[SlackDriver]:
    """`cadence run`'s Slack service on 127.0.0.1:<ephemeral> for the test world, against the fake
    (`settings` override the single-workspace defaults, e.g. `slack_bot_token=None, slack_client_id=...`)."""
    sink = ResponseSink()
    await sink.start()
    defaults = {"slack_bot_token": fake.token, "slack_signing_secret": SIGNING_SECRET, "slack_api_url": fake.api_url}
    config = Settings(**{**defaults, "database_url": world.db.url, **settings})
    app = CadenceApp(settings=config, db=world.db, clock=world.clock, router=world.router)
    service = await start_chat(app, host="127.0.0.1", port=0, run_scheduler=False)
    try:
        async with aiohttp.ClientSession() as http:
            yield SlackDriver(service, fake, sink, world, http)
    finally:
        await service.stop()
        await sink.stop()
