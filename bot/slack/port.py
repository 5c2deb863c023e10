"""Slack as the cadence engine's chat port: DMs, channel posts, thread replies and in-place updates.

- **Addresses.** A person is reached in their DM (`conversations.open` on the Slack user id from the
  engagement file, cached per user); a channel by name through a `ChannelDirectory` (by default
  `conversations.list`, cached); a thread reply goes to the parent's conversation with `thread_ts`.
- **Exactly once.** Every post carries its delivery key in Slack message metadata
  (`event_type: cadence_delivery`), so after a crash between posting and recording, `find_sent` reads
  the conversation's recent history and finds the message instead of posting it again.
- **Slack's rules.** Posts and DM opens are paced (`pacing.Pacer`: per channel, and with Slack's full
  limits per workspace); a 429 is retried inside the client after its `Retry-After`, through the pacer
  again (`pacing.PacedRetry`); errors that no
  retry can fix (`channel_not_found`, `account_inactive`, `token_revoked`, ...) become permanent
  `DeliveryFailed`s, everything else transient with Slack's `Retry-After` when there is one.
- **One message, several posts.** Everything is rendered before anything is posted, so a message that
  cannot be shown fails before it half-appears. The first post is the delivery; what follows it (the
  blocks past 50 as thread replies, the model's `thread` replies, uploaded images) is best effort: a
  failure there is logged, not raised, because raising would make the engine post the first part again.
- **Images.** The post comes first, because only a message carries the metadata `find_sent` needs; each
  `Image` then is uploaded with `files_upload_v2` right after it, in the same conversation and thread,
  with its bytes from the injected attachment loader (`stored_attachments(db)` reads the attachment
  table). In the post itself the image is a one-line context.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import async_default_handlers
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.pacing import ChannelPacer, Monotonic, PacedRetry, Pacer
from bot.slack.render import JSONDict, image_blocks, render_continuations, render_message
from cadences.attachments import attachment_bytes
from cadences.messages import Image, Message
from cadences.ports import DeliveryFailed, SentRef, Target
from storage.db import Database

log = logging.getLogger(__name__)

EVENT_TYPE = "cadence_delivery"
DEFAULT_API_URL = "https://slack.com/api/"

PERMANENT_ERRORS = frozenset(
    {
        "account_inactive",
        "channel_not_found",
        "is_archived",
        "not_in_channel",
        "token_revoked",
        "token_expired",
        "invalid_auth",
        "not_authed",
        "missing_scope",
        "user_not_found",
        "user_disabled",
        "cannot_dm_bot",
        "msg_too_long",
        "invalid_blocks",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
        "restricted_action",
        "team_access_not_granted",
        "ekm_access_denied",
    }
)

AttachmentLoader = Callable[[str], Awaitable[tuple[bytes, str, str] | None]]
"""Bytes of a stored image by its key: `(content, mime, filename)` as `cadences.attachments.attachment_bytes`
gives them, or None when there is none."""

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
_NETWORK_ERRORS = (aiohttp.ClientError, OSError)


class ChannelDirectory(Protocol):
    async def channel_id(self, name: str) -> str | None:
        """The Slack id of the engagement channel `name` ('#' optional), or None when Slack has none."""
        ...


class DirectMessages(Protocol):
    async def dm_channel(self, user_id: str) -> str:
        """The id of the bot's DM conversation with a Slack user (raises SlackApiError as Slack does)."""
        ...


class RateLimitCounter(AsyncRetryHandler):
    """Calls `hook` for every HTTP 429 a client receives (the metrics count them). It never retries
    itself, so it goes first in a client's `retry_handlers` and the rate-limit handler after it waits
    and retries as before."""

    def __init__(self, hook: Callable[[], None]) -> None:
        super().__init__(max_retry_count=2**31)
        self.hook = hook

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and response.status_code == 429:
            self.hook()
        return False


def create_client(
    token: str,
    *,
    base_url: str | None = None,
    max_retry_count: int = 3,
    on_rate_limited: Callable[[], None] | None = None,
) -> AsyncWebClient:
    """An AsyncWebClient that honours 429 `Retry-After` (up to `max_retry_count` times per call) on top of
    slack_sdk's default connection-error retry; a retried post or DM open takes a fresh slot from the
    pacer that let it through (`pacing.PacedRetry`). `base_url` is the SLACK_API_URL setting (a local
    fake); `on_rate_limited` is called for each 429 received."""
    url = base_url or DEFAULT_API_URL
    counting: list[AsyncRetryHandler] = [RateLimitCounter(on_rate_limited)] if on_rate_limited else []
    return AsyncWebClient(
        token=token,
        base_url=url if url.endswith("/") else url + "/",
        retry_handlers=[
            *counting,
            *async_default_handlers(),
            PacedRetry(max_retry_count=max_retry_count),
        ],
    )


class ListedChannels:
    """Channel names from `conversations.list` (public and private channels the bot can see), cached.
    A name missing from the cache reloads the list, at most once per `refresh_after` seconds, so a channel
    created after start-up is found without asking Slack for every post. A name that already is a
    channel id (engagement files may give one) is used as it is: Slack channel names are lower case."""

    def __init__(self, client: AsyncWebClient, *, refresh_after: float = 60.0, monotonic: Monotonic = time.monotonic):
        self.client = client
        self.refresh_after = refresh_after
        self.monotonic = monotonic
        self._ids: dict[str, str] = {}
        self._loaded_at: float | None = None

    async def channel_id(self, name: str) -> str | None:
        name = name.lstrip("#")
        if _CHANNEL_ID.match(name):
            return name
        if name not in self._ids and (
            self._loaded_at is None or self.monotonic() - self._loaded_at >= self.refresh_after
        ):
            await self._load()
        return self._ids.get(name)

    async def _load(self) -> None:
        ids: dict[str, str] = {}
        cursor: str | None = None
        while True:
            page = await self.client.conversations_list(
                types="public_channel,private_channel", exclude_archived=True, limit=200, cursor=cursor
            )
            channels: list[dict[str, Any]] = page.get("channels") or []
            ids |= {c["name"]: c["id"] for c in channels}
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        self._ids = ids
        self._loaded_at = self.monotonic()


class OpenedDMs:
    """DM conversations from `conversations.open`, remembered per user for the life of the process. With a
    pacer, each open waits for the workspace's `conversations.open` budget (about 50 a minute)."""

    def __init__(self, client: AsyncWebClient, *, pacer: Pacer | None = None, workspace: str = "") -> None:
        self.client = client
        self.pacer = pacer
        self.workspace = workspace
        self._ids: dict[str, str] = {}

    async def dm_channel(self, user_id: str) -> str:
        if user_id not in self._ids:
            if self.pacer is not None:
                await self.pacer.wait_open(self.workspace)
            response = await self.client.conversations_open(users=user_id)
            self._ids[user_id] = response["channel"]["id"]
        return self._ids[user_id]


def stored_attachments(db: Database) -> AttachmentLoader:
    """An attachment loader over the `attachment` table, so any process can upload what a ritual stored."""

    async def load(key: str) -> tuple[bytes, str, str] | None:
        async with db.session() as session:
            return await attachment_bytes(session, key)

    return load


def delivery_failure(exc: Exception, where: str) -> DeliveryFailed:
    """A Slack or network error as the engine understands it: permanent when no retry can fix it."""
    if isinstance(exc, SlackApiError):
        code = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        if code in PERMANENT_ERRORS:
            return DeliveryFailed(f"Slack: {code} ({where})", permanent=True)
        return DeliveryFailed(f"Slack: {code} ({where})", permanent=False, retry_after=_retry_after(exc))
    return DeliveryFailed(f"Slack unreachable: {exc.__class__.__name__} {exc} ({where})", permanent=False)


def _retry_after(exc: SlackApiError) -> float | None:
    headers: Any = exc.response.headers or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return float(value[0] if isinstance(value, list) else value)
            except ValueError:
                return None
    return None


@dataclass
class _Part:
    """One post of a delivery: its payload and the images to upload right after it."""

    payload: JSONDict
    images: list[Image] = field(default_factory=list)


class SlackPort:
    """The ChatPort for one Slack workspace (one bot token)."""

    platform = "slack"

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        workspace: str,
        channels: ChannelDirectory | None = None,
        dms: DirectMessages | None = None,
        pacer: Pacer | None = None,
        attachments: AttachmentLoader | None = None,
        history_limit: int = 100,
    ) -> None:
        """`workspace` names the workspace for the pacer (its team id). `history_limit` is how many recent
        messages `find_sent` reads: 100 suits a workspace's own app; Slack caps apps distributed outside
        the Marketplace at 15 (and one history call a minute), which then is the honest window."""
        self.client = client
        self.workspace = workspace
        self.channels = channels or ListedChannels(client)
        self.pacer = pacer or ChannelPacer()
        self.dms = dms or OpenedDMs(client, pacer=self.pacer, workspace=workspace)
        self.attachments = attachments
        self.history_limit = history_limit

    async def send(self, target: Target, message: Message, *, delivery_key: str) -> SentRef:
        parts = _parts(message, target.describe())
        channel = await self._conversation(target)
        # Slack threads cannot nest: a message whose replies are its own discussion goes top-level.
        thread_ts = target.thread.message_id if target.thread and not message.opens_thread else None
        metadata = {"event_type": EVENT_TYPE, "event_payload": {"delivery_key": delivery_key}}
        try:
            ts = await self._post(channel, parts[0].payload, thread_ts=thread_ts, metadata=metadata)
        except (SlackClientError, *_NETWORK_ERRORS) as exc:
            raise delivery_failure(exc, target.describe()) from exc
        await self._upload(channel, parts[0].images, thread_ts=thread_ts, where=target.describe())
        for part in parts[1:]:
            try:
                await self._post(channel, part.payload, thread_ts=thread_ts or ts)
            except (SlackClientError, *_NETWORK_ERRORS):
                log.warning("a follow-up of %s to %s was not posted", delivery_key, target.describe(), exc_info=True)
                continue
            await self._upload(channel, part.images, thread_ts=thread_ts or ts, where=target.describe())
        return SentRef(platform=self.platform, conversation=channel, message_id=ts, thread_id=thread_ts)

    async def find_sent(self, target: Target, delivery_key: str) -> SentRef | None:
        """Looks through the last `history_limit` messages of the conversation (and of the thread, for a
        reply; a message that opens its own thread was posted top-level, so the channel is searched too).
        A Slack error that no retry fixes (the channel is gone) answers None, and the send then fails with
        it; a transient one raises DeliveryFailed, because answering None could post a duplicate."""
        thread_ts = target.thread.message_id if target.thread else None
        try:
            channel = await self._conversation(target)
            places = [None] if thread_ts is None else [thread_ts, None]
            for ts in places:
                found = await self._find_in(channel, ts, delivery_key)
                if found is not None:
                    return found
        except DeliveryFailed as failed:
            if failed.permanent:
                return None
            raise
        except (SlackClientError, *_NETWORK_ERRORS) as exc:
            failure = delivery_failure(exc, target.describe())
            if failure.permanent:
                return None
            raise failure from exc
        return None

    async def _find_in(self, channel: str, thread_ts: str | None, delivery_key: str) -> SentRef | None:
        if thread_ts is not None:
            response = await self.client.conversations_replies(
                channel=channel, ts=thread_ts, limit=self.history_limit, include_all_metadata=True
            )
        else:
            response = await self.client.conversations_history(
                channel=channel, limit=self.history_limit, include_all_metadata=True
            )
        messages: list[dict[str, Any]] = response.get("messages") or []
        for item in messages:
            meta = item.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == EVENT_TYPE and payload.get("delivery_key") == delivery_key:
                return SentRef(platform=self.platform, conversation=channel, message_id=item["ts"], thread_id=thread_ts)
        return None

    async def update(self, ref: SentRef, message: Message) -> None:
        """Replaces the first post of a delivery; blocks past the 50th are not carried into its thread."""
        where = f"message {ref.message_id} in {ref.conversation}"
        try:
            payload = render_message(message)
        except ValueError as exc:
            raise DeliveryFailed(f"cannot be shown in Slack: {exc} ({where})", permanent=True) from exc
        try:
            await self.client.chat_update(
                channel=ref.conversation, ts=ref.message_id, text=payload["text"], blocks=payload["blocks"]
            )
        except (SlackClientError, *_NETWORK_ERRORS) as exc:
            raise delivery_failure(exc, where) from exc

    # --- internals --------------------------------------------------------------------------------

    async def _conversation(self, target: Target) -> str:
        """The channel id to post in; raises DeliveryFailed when there is none."""
        if target.thread is not None:
            return target.thread.conversation
        where = target.describe()
        try:
            if target.kind == "person":
                user_id = target.identities.get("slack")
                if not user_id:
                    raise DeliveryFailed(
                        f"{target.person_name} has no Slack user id in the engagement file", permanent=True
                    )
                return await self.dms.dm_channel(user_id)
            name = str(target.channel)
            found = await self.channels.channel_id(name)
        except (SlackClientError, *_NETWORK_ERRORS) as exc:
            raise delivery_failure(exc, where) from exc
        if found is None:
            raise DeliveryFailed(
                f"Slack: no channel #{name.lstrip('#')} that the bot can see (create it or invite the bot)",
                permanent=True,
            )
        return found

    async def _post(
        self, channel: str, payload: JSONDict, *, thread_ts: str | None, metadata: JSONDict | None = None
    ) -> str:
        await self.pacer.wait(self.workspace, channel)
        response = await self.client.chat_postMessage(
            channel=channel,
            text=payload["text"],
            blocks=payload["blocks"],
            thread_ts=thread_ts,
            metadata=metadata,
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(response["ts"])

    async def _upload(self, channel: str, images: Sequence[Image], *, thread_ts: str | None, where: str) -> None:
        for image in images:
            loaded = await self.attachments(image.key) if self.attachments else None
            if loaded is None:
                log.warning("image %s for %s was not uploaded: no stored attachment", image.key, where)
                continue
            content, _mime, filename = loaded
            await self.pacer.wait(self.workspace, channel)
            try:
                await self.client.files_upload_v2(
                    channel=channel,
                    content=content,
                    filename=filename,
                    title=image.title or image.alt_text,
                    alt_txt=image.alt_text,
                    thread_ts=thread_ts,
                )
            except (SlackClientError, *_NETWORK_ERRORS):
                log.warning("image %s for %s was not uploaded", image.key, where, exc_info=True)


def _parts(message: Message, where: str) -> list[_Part]:
    """Every post of a message, rendered up front: the message, its overflow, then its thread replies
    (each with their own overflow and images)."""
    try:
        parts = [_Part(render_message(message), image_blocks(message))]
        parts += [_Part(payload) for payload in render_continuations(message)]
        for reply in message.thread:
            parts += _parts(reply, where)
    except ValueError as exc:
        raise DeliveryFailed(f"cannot be shown in Slack: {exc} ({where})", permanent=True) from exc
    return parts
