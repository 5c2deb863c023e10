"""A local fake Slack Web API for tests: a real HTTP server on 127.0.0.1 (ephemeral port) that speaks
enough of Slack for slack_sdk's real `AsyncWebClient` (and Bolt) to run against it unchanged.

It records every call in order with its parsed body (query, form and JSON merged) and the bearer token,
answers from a small in-memory workspace (users, channels, messages with metadata, views, files,
reactions), checks the token, validates posted blocks with slack_sdk's block models the way Slack
answers `invalid_blocks`, and can be told to fail: the next N calls of a method answer a Slack error
(`fail`) or HTTP 429 with `Retry-After` (`rate_limit`). Given `limits` (opt-in), it enforces Slack's rate
limits as the workspace it is — posts per channel and per workspace, DM opens — and answers a call
beyond them with 429 and the `Retry-After` that would have let it through (`throttled` keeps them).

    async with FakeSlack.for_testco() as fake:
        client = AsyncWebClient(token=fake.token, base_url=fake.api_url)
        ...
        assert fake.calls_to("chat.postMessage")[0].body["channel"] == "C0STANDUP"
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

from support.local_server import LocalServer

JSON_FIELDS = ("blocks", "metadata", "files", "view", "attachments")
MAX_BLOCKS = 50


@dataclass
class FakeUser:
    id: str
    name: str
    email: str | None = None
    tz: str = "America/Los_Angeles"
    deleted: bool = False
    is_bot: bool = False

    def as_slack(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "team_id": "T0TEST",
            "name": self.name.lower().replace(" ", "."),
            "real_name": self.name,
            "deleted": self.deleted,
            "is_bot": self.is_bot,
            "tz": self.tz,
            "profile": {"email": self.email, "real_name": self.name, "display_name": self.name.split()[0]},
        }


@dataclass
class FakeChannel:
    id: str
    name: str
    is_private: bool = False
    is_archived: bool = False
    is_member: bool = True
    is_im: bool = False
    user: str | None = None  # the other party of a DM

    def as_slack(self) -> dict[str, Any]:
        if self.is_im:
            return {"id": self.id, "is_im": True, "user": self.user}
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private,
            "is_private": self.is_private,
            "is_archived": self.is_archived,
            "is_member": self.is_member,
        }


@dataclass
class FakeMessage:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    metadata: dict[str, Any] | None
    thread_ts: str | None
    user: str
    files: list[dict[str, Any]] = field(default_factory=list)
    edited: int = 0

    def as_slack(self, *, with_metadata: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "user": self.user, "text": self.text}
        if self.blocks:
            out["blocks"] = self.blocks
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.files:
            out["files"] = self.files
        if with_metadata and self.metadata:
            out["metadata"] = self.metadata
        return out


@dataclass
class FakeFile:
    id: str
    filename: str
    length: int
    alt_txt: str | None = None
    content: bytes | None = None
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None


@dataclass
class Call:
    """One request as the fake received it. `body` merges query string, form and JSON body; the JSON-
    encoded form fields Slack accepts (`blocks`, `metadata`, `view`, ...) are decoded."""

    method: str
    body: dict[str, Any]
    token: str | None
    http_method: str
    at: float = field(default_factory=time.monotonic)
    """When it arrived (`time.monotonic`), for benchmarks that time a fan-out by what Slack saw."""


@dataclass(frozen=True)
class SlackRateLimits:
    """What the fake enforces when given: each a (calls per second, burst) token bucket, per workspace.
    Slack's documented shape: chat.postMessage about 1 per second per channel with short bursts, a
    workspace-wide cap on posts, conversations.open (Tier 3) about 50 a minute."""

    post_per_channel: tuple[float, int] = (1.0, 3)
    post_per_workspace: tuple[float, int] = (10.0, 10)
    opens: tuple[float, int] = (50 / 60, 3)


@dataclass
class _TokenBucket:
    """`capacity` tokens, refilled at `rate` a second; a call takes one."""

    rate: float
    capacity: int
    tokens: float = 0.0
    at: float | None = None

    def refill(self, now: float) -> None:
        self.tokens = (
            self.capacity if self.at is None else min(self.capacity, self.tokens + (now - self.at) * self.rate)
        )
        self.at = now

    def wait(self) -> float:
        """Seconds until a token is there (0: one is)."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


@dataclass
class _Failure:
    status: int
    error: str
    retry_after: int | None = None


class FakeSlack(LocalServer):
    """The fake Web API. Start it with `async with`; `api_url` is what SLACK_API_URL would be."""

    def __init__(
        self,
        *,
        token: str = "xoxb-test",
        team_id: str = "T0TEST",
        bot_user_id: str = "U0CADENCE",
        users: list[FakeUser] | None = None,
        channels: list[FakeChannel] | None = None,
        limits: SlackRateLimits | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(client_max_size=20 * 1024**2)
        self.tokens = {token}
        self.token = token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.users: dict[str, FakeUser] = {u.id: u for u in users or []}
        self.users.setdefault(bot_user_id, FakeUser(bot_user_id, "Cadence", is_bot=True))
        self.channels: dict[str, FakeChannel] = {c.id: c for c in channels or []}
        self.messages: list[FakeMessage] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.views: list[tuple[str, dict[str, Any]]] = []
        self.files: dict[str, FakeFile] = {}
        self.reactions: list[tuple[str, str, str]] = []
        self.calls: list[Call] = []
        self._failures: dict[str, deque[_Failure | None]] = {}
        self._seq = 0
        self.limits = limits
        self.monotonic = monotonic
        self.throttled: list[Call] = []
        self._buckets: dict[str, _TokenBucket] = {}

    @classmethod
    def for_testco(cls) -> FakeSlack:
        """The workspace of tests/fixtures/engagement_small.yaml: its five people by Slack id and email,
        and the channels its rituals use."""
        people = [
            FakeUser("U0DANA", "Dana Whitfield", "dana@testco.example", "America/New_York"),
            FakeUser("U0SAM", "Sam Okafor", "sam@testco.example"),
            FakeUser("U0MAYA", "Maya Chen", "maya@testco.example"),
            FakeUser("U0JORDAN", "Jordan Lee", "jordan@testco.example"),
            FakeUser("U0PRIYA", "Priya Natarajan", "priya@testco.example", "Europe/London"),
        ]
        channels = [
            FakeChannel("C0REVIEW", "pipeline-review"),
            FakeChannel("C0STANDUP", "standup"),
            FakeChannel("C0GENERAL", "general"),
        ]
        return cls(users=people, channels=channels)

    # --- lifecycle --------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)

    @property
    def api_url(self) -> str:
        return f"{self.root}/api/"

    # --- seeding, failures, queries -----------------------------------------------------------------

    def add_user(self, user: FakeUser) -> None:
        self.users[user.id] = user

    def add_channel(self, channel: FakeChannel) -> None:
        self.channels[channel.id] = channel

    def fail(self, method: str, error: str, *, times: int = 1, status: int = 200, after: int = 0) -> None:
        """Answer `times` calls of `method` with `{"ok": false, "error": error}` (and HTTP `status`), once
        `after` more calls of it have been answered normally."""
        self._plan(method, _Failure(status, error), times, after)

    def rate_limit(self, method: str, *, retry_after: int = 1, times: int = 1, after: int = 0) -> None:
        """Answer `times` calls of `method` with HTTP 429 and `Retry-After: retry_after`, after `after`."""
        self._plan(method, _Failure(429, "ratelimited", retry_after), times, after)

    def _plan(self, method: str, failure: _Failure, times: int, after: int) -> None:
        self._failures.setdefault(method, deque()).extend([None] * after + [failure] * times)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    def posts(self, channel: str | None = None) -> list[FakeMessage]:
        """Messages posted (and still stored), oldest first; only those in `channel` when given."""
        return [m for m in self.messages if channel is None or m.channel == channel]

    def message(self, channel: str, ts: str) -> FakeMessage | None:
        return next((m for m in self.messages if m.channel == channel and m.ts == ts), None)

    def dm_id(self, user_id: str) -> str:
        """The DM channel id conversations.open gives for a user: deterministic, `U0JORDAN` → `D0JORDAN`."""
        return "D" + user_id[1:]

    # --- HTTP ---------------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        body = await _parse_body(request)
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else body.get("token")
        self.calls.append(Call(method, body, token, request.method))
        queued = self._failures.get(method)
        failure = queued.popleft() if queued else None
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else None
            return web.json_response({"ok": False, "error": failure.error}, status=failure.status, headers=headers)
        if token is None:
            return _error("not_authed")
        if token not in self.tokens:
            return _error("invalid_auth")
        wait = self._over_limit(method, body)
        if wait > 0:
            self.throttled.append(self.calls[-1])
            headers = {"Retry-After": str(max(1, math.ceil(wait)))}
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers=headers)
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return _error("unknown_method", status=404)
        try:
            result: dict[str, Any] = handler(body)
        except _SlackError as exc:
            return _error(exc.code)
        return web.json_response({"ok": True, **result})

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        data = await request.read()
        self.calls.append(Call("upload", {"file_id": file_id, "length": len(data)}, None, request.method))
        found = self.files.get(file_id)
        if found is None:
            return web.Response(status=404, text="unknown upload", content_type="text/plain")
        found.content = data
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    def _over_limit(self, method: str, body: dict[str, Any]) -> float:
        """0 when the call is within `limits` (and counted), else the seconds until it would be. A refused
        call spends nothing, as with Slack."""
        if self.limits is None:
            return 0.0
        if method == "chat.postMessage":
            named = {
                f"chat:{body.get('channel')}": self.limits.post_per_channel,
                "chat": self.limits.post_per_workspace,
            }
        elif method == "conversations.open":
            named = {"open": self.limits.opens}
        else:
            return 0.0
        now = self.monotonic()
        buckets = [self._buckets.setdefault(key, _TokenBucket(*limit)) for key, limit in named.items()]
        for bucket in buckets:
            bucket.refill(now)
        wait = max(bucket.wait() for bucket in buckets)
        if wait == 0:
            for bucket in buckets:
                bucket.tokens -= 1
        return wait

    # --- methods ------------------------------------------------------------------------------------

    def _next_ts(self) -> str:
        self._seq += 1
        return f"{1767225600 + self._seq}.{self._seq:06d}"

    def _channel(self, channel_id: Any) -> FakeChannel:
        found = self.channels.get(str(channel_id or ""))
        if found is None:
            raise _SlackError("channel_not_found")
        return found

    def _user(self, user_id: Any) -> FakeUser:
        found = self.users.get(str(user_id or ""))
        if found is None:
            raise _SlackError("user_not_found")
        return found

    def _m_auth_test(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://testco.slack.example/",
            "team": "Testco",
            "user": "cadence",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": "B0CADENCE",
            "is_enterprise_install": False,
        }

    def _m_chat_postMessage(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body.get("channel"))
        if channel.is_archived:
            raise _SlackError("is_archived")
        if not channel.is_member:
            raise _SlackError("not_in_channel")
        text, blocks, metadata = _content(body)
        message = FakeMessage(
            channel.id, self._next_ts(), text, blocks, metadata, _opt(body.get("thread_ts")), self.bot_user_id
        )
        self.messages.append(message)
        return {"channel": channel.id, "ts": message.ts, "message": message.as_slack(with_metadata=True)}

    def _m_chat_update(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body.get("channel"))
        message = self.message(channel.id, str(body.get("ts")))
        if message is None:
            raise _SlackError("message_not_found")
        text, blocks, metadata = _content(body)
        message.text, message.blocks = text, blocks
        message.metadata = metadata or message.metadata
        message.edited += 1
        return {"channel": channel.id, "ts": message.ts, "text": message.text}

    def _m_chat_postEphemeral(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body.get("channel"))
        self._user(body.get("user"))
        text, blocks, _ = _content(body)
        ts = self._next_ts()
        self.ephemerals.append(
            {"channel": channel.id, "user": body.get("user"), "text": text, "blocks": blocks, "ts": ts}
        )
        return {"message_ts": ts}

    def _m_conversations_open(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(str(body.get("users", "")).split(",")[0])
        if user.deleted:
            raise _SlackError("user_disabled")
        if user.is_bot:
            raise _SlackError("cannot_dm_bot")
        dm = self.channels.setdefault(
            self.dm_id(user.id), FakeChannel(self.dm_id(user.id), "", is_im=True, user=user.id)
        )
        return {"channel": {"id": dm.id}}

    def _m_conversations_list(self, body: dict[str, Any]) -> dict[str, Any]:
        types = str(body.get("types") or "public_channel").split(",")
        found = [
            c
            for c in self.channels.values()
            if not c.is_im
            and ("private_channel" if c.is_private else "public_channel") in types
            and not (c.is_archived and _truthy(body.get("exclude_archived")))
            and (c.is_member or not c.is_private)
        ]
        start = int(body.get("cursor") or 0)
        limit = int(body.get("limit") or 100)
        page = found[start : start + limit]
        cursor = str(start + limit) if start + limit < len(found) else ""
        return {"channels": [c.as_slack() for c in page], "response_metadata": {"next_cursor": cursor}}

    def _m_conversations_history(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body.get("channel"))
        top = [m for m in self.messages if m.channel == channel.id and m.thread_ts in (None, m.ts)]
        limit = int(body.get("limit") or 100)
        newest_first = list(reversed(top))
        with_metadata = _truthy(body.get("include_all_metadata"))
        return {
            "messages": [m.as_slack(with_metadata=with_metadata) for m in newest_first[:limit]],
            "has_more": len(newest_first) > limit,
        }

    def _m_conversations_replies(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body.get("channel"))
        ts = str(body.get("ts"))
        parent = self.message(channel.id, ts)
        if parent is None:
            raise _SlackError("thread_not_found")
        thread = [parent] + [m for m in self.messages if m.channel == channel.id and m.thread_ts == ts and m.ts != ts]
        limit = int(body.get("limit") or 1000)
        with_metadata = _truthy(body.get("include_all_metadata"))
        return {"messages": [m.as_slack(with_metadata=with_metadata) for m in thread[:limit]], "has_more": False}

    def _m_users_info(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"user": self._user(body.get("user")).as_slack()}

    def _m_users_lookupByEmail(self, body: dict[str, Any]) -> dict[str, Any]:
        email = str(body.get("email", "")).lower()
        found = next((u for u in self.users.values() if u.email and u.email.lower() == email), None)
        if found is None:
            raise _SlackError("users_not_found")
        return {"user": found.as_slack()}

    def _view(self, method: str, view: Any, **extra: Any) -> dict[str, Any]:
        if not isinstance(view, dict):
            raise _SlackError("invalid_arguments")
        view_id = str(extra.pop("view_id", None) or f"V{len(self.views) + 1:06d}")
        self.views.append((method, {**view, **extra, "id": view_id}))
        return {"view": {**view, "id": view_id, "team_id": self.team_id}}

    def _m_views_open(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("trigger_id"):
            raise _SlackError("invalid_trigger_id")
        return self._view("views.open", body.get("view"), trigger_id=body["trigger_id"])

    def _m_views_update(self, body: dict[str, Any]) -> dict[str, Any]:
        if not (body.get("view_id") or body.get("external_id")):
            raise _SlackError("not_found")
        return self._view("views.update", body.get("view"), view_id=body.get("view_id"))

    def _m_views_publish(self, body: dict[str, Any]) -> dict[str, Any]:
        self._user(body.get("user_id"))
        return self._view("views.publish", body.get("view"), user_id=body["user_id"])

    def _m_files_getUploadURLExternal(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("filename") or not body.get("length"):
            raise _SlackError("invalid_arguments")
        file_id = f"F{len(self.files) + 1:07d}"
        self.files[file_id] = FakeFile(file_id, str(body["filename"]), int(body["length"]), _opt(body.get("alt_txt")))
        return {"upload_url": f"{self.root}/upload/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, body: dict[str, Any]) -> dict[str, Any]:
        items = body.get("files")
        if not isinstance(items, list) or not items:
            raise _SlackError("invalid_arguments")
        channel_id = _opt(body.get("channel_id"))
        thread_ts = _opt(body.get("thread_ts"))
        done = []
        for item in items:
            found = self.files.get(str(item.get("id")))
            if found is None or found.content is None:
                raise _SlackError("file_not_found")
            found.title, found.channel, found.thread_ts = item.get("title") or found.filename, channel_id, thread_ts
            done.append({"id": found.id, "name": found.filename, "title": found.title, "size": len(found.content)})
        if channel_id is not None:
            channel = self._channel(channel_id)
            comment = str(body.get("initial_comment") or "")
            self.messages.append(
                FakeMessage(channel.id, self._next_ts(), comment, [], None, thread_ts, self.bot_user_id, done)
            )
        return {"files": done}

    def _m_reactions_add(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body.get("channel"))
        ts = str(body.get("timestamp"))
        if self.message(channel.id, ts) is None:
            raise _SlackError("message_not_found")
        reaction = (channel.id, ts, str(body.get("name")))
        if reaction in self.reactions:
            raise _SlackError("already_reacted")
        self.reactions.append(reaction)
        return {}


class _SlackError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _error(code: str, status: int = 200) -> web.Response:
    return web.json_response({"ok": False, "error": code}, status=status)


def _opt(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


async def _parse_body(request: web.Request) -> dict[str, Any]:
    body: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        body |= await request.json()
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        body |= {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    for key in JSON_FIELDS:
        value = body.get(key)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            body[key] = json.loads(value)
    return body


def _content(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]], dict[str, Any] | None]:
    """Text, blocks and metadata of a post, checked as Slack checks them."""
    text = str(body.get("text") or "")
    blocks = body.get("blocks") or []
    if not text and not blocks:
        raise _SlackError("no_text")
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        raise _SlackError("invalid_blocks")
    if any(block_problems(block) for block in blocks):
        raise _SlackError("invalid_blocks")
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and isinstance(metadata.get("event_type"), str)
        and isinstance(metadata.get("event_payload"), dict)
    ):
        raise _SlackError("invalid_metadata_format")
    return text, blocks, metadata


def block_problems(block: Any) -> list[str]:
    """Why Slack would refuse a block: what slack_sdk's block models reject, plus empty text objects
    (slack_sdk drops those silently, Slack answers `invalid_blocks`). Empty when the block is fine."""
    if not isinstance(block, dict):
        return [f"not an object: {block!r}"]
    try:
        parsed = Block.parse(block)
        if parsed is None:
            return [f"unknown block type {block.get('type')!r}"]
        parsed.validate_json()
    except (SlackObjectFormationError, KeyError, TypeError) as exc:
        return [f"{block.get('type')}: {exc}"]
    return [f"{block.get('type')}: empty text" for text in _text_objects(block) if not text.strip()]


def _text_objects(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["text"]] if node.get("type") in ("plain_text", "mrkdwn") and "text" in node else []
        return found + [t for value in node.values() for t in _text_objects(value)]
    if isinstance(node, list):
        return [t for item in node for t in _text_objects(item)]
    return []
