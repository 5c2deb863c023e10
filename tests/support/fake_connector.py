"""A local fake Bot Connector for tests: a real HTTP server on 127.0.0.1 (ephemeral port) that speaks
enough of the Bot Framework's v3 conversations API for botframework-connector's real `ConnectorClient`
to run against it unchanged — its URL is the `serviceUrl` of the conversation references.

It records every request in order with its JSON body and `Authorization` header, keeps every activity
posted (and each update of it), creates 1:1 conversations, refuses members the app is not installed for
(403, as Teams does), refuses bodies over Teams' documented bot message size (413), and can be told to
answer any status — 429 with `Retry-After` included — for the next N calls of a route. Every Adaptive
Card posted is checked with `card_problems` (a hand-written structural check of card version 1.5: there
is no official schema beside the repository) and refused with 400 when it has any.

    async with FakeConnector() as fake:
        port = TeamsPort(MemoryReferences.with_channels(fake.service_url, engagement_id=1))
        ...
        assert fake.posted("19:review@thread.tacv2")[0].delivery_key == "..."

`MemoryReferences` is the in-memory `ReferenceStore` the port tests use in place of the database.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.teams.port import THREAD_MARK, Reference, base_conversation
from bot.teams.render import ADAPTIVE_CARD
from cadences.ports import SentRef
from support.local_server import LocalServer

ROUTES = ("create", "send", "reply", "update")
CARD_ELEMENTS: dict[str, tuple[str, ...]] = {
    # element type -> its required properties
    "TextBlock": ("text",),
    "FactSet": ("facts",),
    "Container": ("items",),
    "ColumnSet": ("columns",),
    "Column": ("items",),
    "ActionSet": ("actions",),
    "Image": ("url",),
    "Table": ("columns", "rows"),
    "TableRow": ("cells",),
    "TableCell": ("items",),
    "Input.ChoiceSet": ("id", "choices"),
    "Input.Text": ("id",),
    "Input.Number": ("id",),
    "Input.Date": ("id",),
    "Input.Time": ("id",),
    "Input.Toggle": ("id", "title"),
}
CARD_ACTIONS: dict[str, tuple[str, ...]] = {"Action.Submit": ("title",), "Action.Execute": ("title",)}
_ENUMS: dict[str, set[str]] = {
    "size": {"Small", "Default", "Medium", "Large", "ExtraLarge", "Auto", "Stretch"},
    "weight": {"Lighter", "Default", "Bolder"},
    "spacing": {"None", "Small", "Default", "Medium", "Large", "ExtraLarge", "Padding"},
    "associatedInputs": {"auto", "none"},
}
MAX_BODY = 100 * 1024
"""Teams' documented limit for a bot message (it was 40 KB before 2025); the card limit is tighter."""
TENANT = "72f988bf-0000-4000-8000-000000000001"
BOT = {"id": "28:00000000-0000-4000-8000-00000000b07", "name": "Cadence"}
CHANNELS = {
    "pipeline-review": "19:review@thread.tacv2",
    "standup": "19:standup@thread.tacv2",
    "general": "19:general@thread.tacv2",
}
"""The Teams channels of tests/fixtures/engagement_small.yaml's rituals."""


@dataclass
class Request:
    """One request as the fake received it: `route` is create, send, reply or update."""

    route: str
    http_method: str
    conversation: str | None
    activity_id: str | None
    body: dict[str, Any]
    authorization: str | None


@dataclass
class Posted:
    """An activity the bot posted, as addressed (`conversation` may carry `;messageid=`)."""

    conversation: str
    id: str
    body: dict[str, Any]
    reply_to: str | None = None
    updates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def channel(self) -> str:
        return base_conversation(self.conversation)

    @property
    def thread(self) -> str | None:
        """The root activity id of the thread it was posted in, if any."""
        if THREAD_MARK in self.conversation:
            return self.conversation.split(THREAD_MARK, 1)[1]
        return self.reply_to

    @property
    def current(self) -> dict[str, Any]:
        return self.updates[-1] if self.updates else self.body

    @property
    def delivery_key(self) -> str | None:
        tag = (self.body.get("channelData") or {}).get("cadence") or {}
        return tag.get("delivery_key") if not tag.get("part") else None

    @property
    def card(self) -> dict[str, Any] | None:
        """The Adaptive Card it shows now (after any update), or None."""
        for attachment in self.current.get("attachments") or []:
            if attachment.get("contentType") == ADAPTIVE_CARD:
                content: dict[str, Any] = attachment["content"]
                return content
        return None


@dataclass
class Created:
    """A conversation the bot created."""

    id: str
    body: dict[str, Any]


@dataclass
class _Answer:
    status: int
    code: str
    retry_after: float | None = None


class FakeConnector(LocalServer):
    """The fake. Start it with `async with`; `service_url` is what a stored reference's serviceUrl is."""

    def __init__(self, *, token: str | None = None, max_body: int = MAX_BODY) -> None:
        """With `token`, every request must carry `Authorization: Bearer <token>` (else 401)."""
        super().__init__()
        self.token = token
        self.max_body = max_body
        self.requests: list[Request] = []
        self.activities: list[Posted] = []
        self.created: list[Created] = []
        self.not_installed: set[str] = set()
        """AAD object ids whose 1:1 chat cannot be created: the app is not installed for them."""
        self._answers: dict[str, deque[_Answer | None]] = {}
        self._seq = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/amer/v3/conversations", self._create)
        app.router.add_post("/amer/v3/conversations/{conversation}/activities", self._send)
        app.router.add_post("/amer/v3/conversations/{conversation}/activities/{activity}", self._reply)
        app.router.add_put("/amer/v3/conversations/{conversation}/activities/{activity}", self._update)

    @property
    def service_url(self) -> str:
        return f"{self.root}/amer/"

    # --- failures and queries -------------------------------------------------------------------------

    def fail(
        self, route: str, status: int, *, times: int = 1, after: int = 0, retry_after: float | None = None
    ) -> None:
        """Answer `times` calls of `route` with HTTP `status` (and `Retry-After` when given), once `after`
        more calls of it have been answered normally."""
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}")
        answers = self._answers.setdefault(route, deque())
        answers.extend([None] * after + [_Answer(status, f"HTTP{status}", retry_after)] * times)

    def rate_limit(self, route: str, *, retry_after: float = 1, times: int = 1, after: int = 0) -> None:
        self.fail(route, 429, times=times, after=after, retry_after=retry_after)

    def requests_to(self, route: str) -> list[Request]:
        return [r for r in self.requests if r.route == route]

    def posted(self, channel: str | None = None) -> list[Posted]:
        """Activities posted, oldest first; only those in conversation `channel` (threads included)."""
        return [a for a in self.activities if channel is None or a.channel == channel]

    def activity(self, activity_id: str) -> Posted | None:
        return next((a for a in self.activities if a.id == activity_id), None)

    def keys(self) -> list[str]:
        """The delivery keys of the posted activities that are deliveries (not follow-up parts)."""
        return [a.delivery_key for a in self.activities if a.delivery_key]

    # --- HTTP ---------------------------------------------------------------------------------------

    async def _receive(self, request: web.Request, route: str) -> tuple[dict[str, Any], web.Response | None]:
        raw = await request.read()
        body: dict[str, Any] = json.loads(raw) if raw else {}
        header = request.headers.get("Authorization")
        conversation = request.match_info.get("conversation")
        self.requests.append(
            Request(route, request.method, conversation, request.match_info.get("activity"), body, header)
        )
        queued = self._answers.get(route)
        answer = queued.popleft() if queued else None
        if answer is not None:
            headers = {"Retry-After": f"{answer.retry_after:g}"} if answer.retry_after is not None else None
            return body, _error(answer.status, answer.code, "as the test asked", headers)
        if self.token is not None and header != f"Bearer {self.token}":
            return body, _error(401, "Unauthorized", "Authorization has been denied for this request.")
        if len(raw) > self.max_body:
            return body, _error(413, "MessageSizeTooBig", "Message size too big")
        if route != "create" and body.get("type") != "message":
            return body, _error(400, "BadArgument", "Unknown activity type")
        for attachment in body.get("attachments") or []:
            if attachment.get("contentType") == ADAPTIVE_CARD and card_problems(attachment.get("content")):
                return body, _error(400, "BadArgument", "; ".join(card_problems(attachment.get("content"))))
        return body, None

    def _next_id(self) -> str:
        self._seq += 1
        return f"17672256000{self._seq:02d}"

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._receive(request, "create")
        if refused is not None:
            return refused
        members = body.get("members") or []
        if len(members) != 1 or body.get("isGroup"):
            return _error(400, "BadArgument", "A 1:1 conversation needs exactly one member")
        member = str(members[0].get("id"))
        if member in self.not_installed:
            return _error(403, "Forbidden", "The bot is not part of the conversation roster.")
        created = Created(f"a:1on1-{member}", body)
        self.created.append(created)
        return web.json_response({"id": created.id, "serviceUrl": self.service_url}, status=201)

    async def _send(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._receive(request, "send")
        if refused is not None:
            return refused
        posted = Posted(request.match_info["conversation"], self._next_id(), body)
        self.activities.append(posted)
        return web.json_response({"id": posted.id}, status=201)

    async def _reply(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._receive(request, "reply")
        if refused is not None:
            return refused
        posted = Posted(request.match_info["conversation"], self._next_id(), body, request.match_info["activity"])
        self.activities.append(posted)
        return web.json_response({"id": posted.id}, status=201)

    async def _update(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._receive(request, "update")
        if refused is not None:
            return refused
        conversation = base_conversation(request.match_info["conversation"])
        found = self.activity(request.match_info["activity"])
        if found is None or found.channel != conversation:
            return _error(404, "ActivityNotFoundInConversation", "The activity was not found")
        found.updates.append(body)
        return web.json_response({"id": found.id}, status=200)


def card_problems(card: Any) -> list[str]:
    """Why a card is not a well-formed Adaptive Card 1.5 as this bot uses them: an unknown element or
    action type, a missing required property, an enumerated property with an unknown value, a repeated
    input id, an empty action set or choice set. Empty when the card is fine."""
    if not isinstance(card, dict):
        return ["the card is not an object"]
    problems = [
        f"card: {name} must be {want!r}"
        for name, want in (("type", "AdaptiveCard"), ("version", "1.5"))
        if card.get(name) != want
    ]
    if not isinstance(card.get("$schema"), str):
        problems.append("card: no $schema")
    if not isinstance(card.get("body"), list):
        return [*problems, "card: body must be a list"]
    ids: list[str] = []
    for element in card["body"]:
        problems += _element_problems(element, ids)
    problems += [f"input id {i!r} is used twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    return problems


def _element_problems(node: Any, ids: list[str]) -> list[str]:
    if not isinstance(node, dict):
        return [f"not an object: {node!r}"]
    kind = node.get("type")
    known = {**CARD_ELEMENTS, **CARD_ACTIONS}
    if kind not in known:
        return [f"unknown type {kind!r}"]
    problems = [f"{kind}: no {prop}" for prop in known[kind] if prop not in node]
    problems += [f"{kind}: {p}={node[p]!r}" for p, allowed in _ENUMS.items() if p in node and node[p] not in allowed]
    if kind == "TextBlock" and not isinstance(node.get("text"), str):
        problems.append("TextBlock: text must be a string")
    if kind == "FactSet":
        facts = node.get("facts") or []
        if not facts or not all(isinstance(f.get("title"), str) and isinstance(f.get("value"), str) for f in facts):
            problems.append("FactSet: facts need a title and a value")
    if kind == "ActionSet" and not node.get("actions"):
        problems.append("ActionSet: no actions")
    if kind.startswith("Input."):
        ids.append(str(node.get("id")))
    if kind == "Input.ChoiceSet":
        choices = node.get("choices") or []
        if not choices or not all(isinstance(c.get("title"), str) and isinstance(c.get("value"), str) for c in choices):
            problems.append("Input.ChoiceSet: choices need a title and a value")
    if kind in CARD_ACTIONS and not isinstance(node.get("data", {}), dict):
        problems.append(f"{kind}: data must be an object")
    for child in ("items", "actions", "columns", "rows", "cells"):
        if kind == "Table" and child == "columns":
            continue  # column definitions, not elements
        for item in node.get(child) or []:
            problems += _element_problems(item, ids)
    return problems


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


# --- references --------------------------------------------------------------------------------------


def reference(
    service_url: str, conversation_id: str, *, kind: str = "channel", aad_object_id: str | None = None
) -> dict[str, Any]:
    """A conversation reference as the inbound side stores it (the Bot Framework JSON)."""
    user = {"id": f"29:{aad_object_id}", "aadObjectId": aad_object_id} if aad_object_id else None
    return {
        "channelId": "msteams",
        "serviceUrl": service_url,
        "bot": dict(BOT),
        "user": user,
        "conversation": {
            "id": conversation_id,
            "tenantId": TENANT,
            "conversationType": kind,
            "isGroup": kind != "personal",
        },
    }


@dataclass
class MemoryReferences:
    """The `ReferenceStore` protocol in memory, for tests (production keeps references in the database)."""

    personal: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    channels: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    teams: dict[int, dict[str, Any]] = field(default_factory=dict)
    sent: dict[str, SentRef] = field(default_factory=dict)
    saved: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def with_channels(
        cls, service_url: str, engagement_id: int, channels: dict[str, str] = CHANNELS
    ) -> MemoryReferences:
        """A store that knows the engagement's team and its channels (`name -> conversation id`)."""
        store = cls()
        for name, conversation in channels.items():
            store.channels[(engagement_id, name)] = reference(service_url, conversation)
        store.teams[engagement_id] = reference(service_url, next(iter(channels.values())))
        return store

    def add_person(self, service_url: str, engagement_id: int, aad_object_id: str) -> str:
        """A 1:1 chat the bot already has with this person; returns its conversation id."""
        conversation = f"a:chat-{aad_object_id}"
        self.personal[(engagement_id, aad_object_id)] = reference(
            service_url, conversation, kind="personal", aad_object_id=aad_object_id
        )
        return conversation

    async def get_personal(self, engagement_id: int, aad_object_id: str) -> dict[str, Any] | None:
        return self.personal.get((engagement_id, aad_object_id))

    async def get_channel(self, engagement_id: int, channel_name: str) -> dict[str, Any] | None:
        return self.channels.get((engagement_id, channel_name))

    async def get_team(self, engagement_id: int) -> dict[str, Any] | None:
        return self.teams.get(engagement_id)

    async def get_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        every = [*self.personal.values(), *self.channels.values(), *self.teams.values()]
        return next((r for r in every if Reference.parse(r).conversation_id == conversation_id), None)

    async def save_personal(self, engagement_id: int, aad_object_id: str, reference: dict[str, Any]) -> None:
        self.personal[(engagement_id, aad_object_id)] = reference
        self.saved.append((engagement_id, aad_object_id))

    async def record_sent(self, delivery_key: str, ref: SentRef) -> None:
        self.sent[delivery_key] = ref

    async def find_sent(self, delivery_key: str) -> SentRef | None:
        return self.sent.get(delivery_key)
