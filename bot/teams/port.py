"""Teams as the cadence engine's chat port: proactive cards to people and channels, thread replies and
in-place updates, through the Bot Connector REST API.

- **Addresses.** A bot can only speak where it holds a *conversation reference* (service URL, tenant,
  conversation id), captured from the activities Teams sends it and persisted by the inbound side
  behind `ReferenceStore` — never only in memory, or a restart would lose every target. A person is
  reached in their 1:1 chat by their Microsoft Entra (AAD) object id, the engagement file's `teams:`;
  a person the bot has never talked to gets a 1:1 chat created in the engagement's tenant
  (`create_conversation`), which Teams allows only when the app is installed for them — otherwise the
  delivery fails permanently with a line the CRO can act on. A channel is reached by its engagement
  name; a thread reply goes to `"{channel conversation id};messageid={root activity id}"`.
- **Exactly once.** Every activity carries its delivery key in `channelData.cadence`. The Bot Connector
  API cannot list what a bot posted, so `find_sent` reads a sent-log kept in the reference store,
  written right after the connector accepts the post. The honest limit: a crash between Teams' 201 and
  that write leaves no trace, and the engine posts again.
- **Teams' rules.** 412, 429, 502, 503 and 504 are retried here with exponential back-off and jitter,
  never sooner than `Retry-After` (a wait longer than `Backoff.max_delay` is handed to the engine as a
  transient failure with its `retry_after`, rather than held in this call). 400, 401, 403, 404 and 413
  are permanent: no retry changes them. A retried 502/504 can post twice when Teams did accept the
  first attempt; Microsoft documents these as retryable, so this port follows it.
- **One message, several activities.** Everything is rendered before anything is posted (a message
  that cannot be shown fails before it half-appears). The first activity is the delivery; the rest —
  continuation cards of a long message, images too large for a card, the model's `thread` replies —
  follow in the thread (in a 1:1 chat, after it) on a best-effort basis: a failure there is logged,
  not raised, because raising would make the engine post the first part again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from botbuilder.schema import Activity, ChannelAccount, ConversationParameters
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import AppCredentials, MicrosoftAppCredentials
from msrest.exceptions import ClientException, HttpOperationError

from bot.teams.render import CARD_LIMIT, ImageData, Images, JSONDict, render_activities
from cadences.attachments import attachment_bytes
from cadences.messages import Image, Message
from cadences.ports import DeliveryFailed, SentRef, Target
from storage.db import Database

log = logging.getLogger(__name__)

PLATFORM = "teams"
RETRIED_STATUSES = frozenset({412, 429, 502, 503, 504})
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 413})
THREAD_MARK = ";messageid="

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
ImageLoader = Callable[[str], Awaitable[ImageData | None]]
"""The bytes behind an `Image` block's key, or None when nothing is stored under it."""


class ReferenceStore(Protocol):
    """Where conversation references and the sent-log live (the database, written by the inbound side).

    A reference is the Bot Framework JSON of a `ConversationReference`, as
    `TurnContext.get_conversation_reference(activity).serialize()` gives it: `serviceUrl`, `bot`
    (`{"id": "28:<app id>", "name": ...}`), `user`, `channelId` and `conversation` (`id`, `tenantId`,
    `conversationType`). The port needs `serviceUrl` and `conversation.id` always, plus
    `conversation.tenantId` (or `tenantID`) and `bot.id` in the reference `get_team` returns.
    """

    async def get_personal(self, engagement_id: int, aad_object_id: str) -> JSONDict | None:
        """The reference of the bot's 1:1 chat with this person, or None when there is none yet."""
        ...

    async def get_channel(self, engagement_id: int, channel_name: str) -> JSONDict | None:
        """The reference of the Teams channel linked to the engagement's channel `channel_name` (no '#')."""
        ...

    async def get_team(self, engagement_id: int) -> JSONDict | None:
        """Any reference in the engagement's team (the install's, a channel's): its service URL, tenant
        and bot account are what creating a 1:1 chat needs. None when the bot is in no team yet."""
        ...

    async def get_conversation(self, conversation_id: str) -> JSONDict | None:
        """The stored reference whose `conversation.id` is this (without any `;messageid=` suffix): how
        `update` finds the service URL of a message it only knows by its `SentRef`."""
        ...

    async def save_personal(self, engagement_id: int, aad_object_id: str, reference: JSONDict) -> None:
        """Keep the reference of a 1:1 chat the port created, so the next message reuses it."""
        ...

    async def record_sent(self, delivery_key: str, ref: SentRef) -> None:
        """Log that the message with this delivery key was posted as `ref` (the sent-log)."""
        ...

    async def find_sent(self, delivery_key: str) -> SentRef | None:
        """The posted message logged under this delivery key, or None."""
        ...


@dataclass(frozen=True)
class Reference:
    """The parts of a stored conversation reference the port uses."""

    service_url: str
    conversation_id: str
    tenant_id: str | None = None
    bot: JSONDict | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Reference:
        """Raises ValueError when the reference lacks a service URL or a conversation id."""
        conversation = data.get("conversation")
        conversation = conversation if isinstance(conversation, Mapping) else {}
        service_url, conversation_id = data.get("serviceUrl"), conversation.get("id")
        if not (isinstance(service_url, str) and service_url and isinstance(conversation_id, str) and conversation_id):
            raise ValueError("a conversation reference needs serviceUrl and conversation.id")
        # botbuilder-python serialises the tenant as `tenantID`; Teams itself sends `tenantId`.
        tenant = conversation.get("tenantId") or conversation.get("tenantID")
        bot = data.get("bot")
        return cls(
            service_url=service_url,
            conversation_id=base_conversation(conversation_id),
            tenant_id=tenant if isinstance(tenant, str) else None,
            bot=dict(bot) if isinstance(bot, Mapping) else None,
        )


@dataclass
class Backoff:
    """Retries of one Bot Connector call on Teams' transient statuses: exponential from `base_delay`,
    capped at `max_delay`, never sooner than `Retry-After`, stretched by up to `jitter` (a fraction) so
    several senders do not retry in step. `sleep` and `random` are injected so tests run on fake time."""

    max_attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.25
    sleep: Sleep = asyncio.sleep
    random: Callable[[], float] = random.random

    def delay(self, attempt: int, retry_after: float | None) -> float:
        wait = retry_after if retry_after is not None else min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return wait * (1 + self.jitter * self.random())


def base_conversation(conversation_id: str) -> str:
    """A channel conversation id without the `;messageid=` that addresses one of its threads."""
    return conversation_id.split(THREAD_MARK, 1)[0]


def thread_conversation(conversation_id: str, root_activity_id: str) -> str:
    """The conversation id that addresses the thread under `root_activity_id` in a channel."""
    return f"{base_conversation(conversation_id)}{THREAD_MARK}{root_activity_id}"


def app_credentials(app_id: str | None, password: str | None, tenant_id: str | None = None) -> MicrosoftAppCredentials:
    """Credentials for the Bot Connector: a token for MicrosoftAppId/Password (from the app's own tenant
    when `tenant_id` is given — the single-tenant registration — else Bot Framework's). Without an app
    id, the emulator-style anonymous mode that sends no token: for local development only."""
    if not app_id:
        return MicrosoftAppCredentials.empty()
    return MicrosoftAppCredentials(app_id, password or "", channel_auth_tenant=tenant_id)


def stored_images(db: Database) -> ImageLoader:
    """An image loader over the `attachment` table, so any process can send what a ritual stored."""

    async def load(key: str) -> ImageData | None:
        async with db.session() as session:
            found = await attachment_bytes(session, key)
        return None if found is None else ImageData(content=found[0], mime=found[1], filename=found[2])

    return load


@dataclass(frozen=True)
class _Address:
    """Where the first activity of a delivery goes, and where what follows it goes."""

    service_url: str
    conversation: str
    thread: str | None
    personal: bool

    @property
    def post_to(self) -> str:
        return thread_conversation(self.conversation, self.thread) if self.thread else self.conversation

    def follow_ups(self, first_activity_id: str) -> str:
        if self.personal:
            return self.conversation  # 1:1 chats have no threads: the rest follows in the chat
        return thread_conversation(self.conversation, self.thread or first_activity_id)


@dataclass
class TeamsPort:
    """The ChatPort for Microsoft Teams (one bot registration, any number of tenants and engagements)."""

    references: ReferenceStore
    credentials: AppCredentials = field(default_factory=MicrosoftAppCredentials.empty)
    images: ImageLoader | None = None
    backoff: Backoff = field(default_factory=Backoff)
    limit: int = CARD_LIMIT
    platform: str = PLATFORM
    on_rate_limited: Callable[[], None] | None = None
    """Called for every HTTP 429 the Bot Connector answers (the metrics count them)."""
    _clients: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    async def send(self, target: Target, message: Message, *, delivery_key: str) -> SentRef:
        where = target.describe()
        activities = await self._render(message, where)
        address = await self._address(target)
        first_id = await self._post(address.service_url, address.post_to, activities[0], delivery_key, where)
        ref = SentRef(
            platform=self.platform, conversation=address.conversation, message_id=first_id, thread_id=address.thread
        )
        try:
            await self.references.record_sent(delivery_key, ref)
        except Exception:
            # The message is in Teams: failing the delivery now would make the engine post it again.
            log.exception("%s was posted to %s but not written to the sent-log", delivery_key, where)
        follow_ups = address.follow_ups(first_id)
        for part, activity in enumerate(activities[1:], start=1):
            try:
                await self._post(address.service_url, follow_ups, activity, delivery_key, where, part=part)
            except DeliveryFailed as failed:
                log.warning("part %d of %s to %s was not posted: %s", part, delivery_key, where, failed.reason)
        return ref

    async def find_sent(self, target: Target, delivery_key: str) -> SentRef | None:
        """From the sent-log: the Bot Connector API has no way to list the messages a bot posted."""
        return await self.references.find_sent(delivery_key)

    async def update(self, ref: SentRef, message: Message) -> None:
        """Replaces the first card of a delivery; continuation cards and separate images stay as posted."""
        where = f"activity {ref.message_id} in {ref.conversation}"
        activity = (await self._render(message.model_copy(update={"thread": []}), where))[0]
        stored = await self.references.get_conversation(base_conversation(ref.conversation))
        if stored is None:
            raise DeliveryFailed(f"Teams: no stored conversation reference ({where})", permanent=True)
        service_url = self._parse(stored, where).service_url
        conversation = thread_conversation(ref.conversation, ref.thread_id) if ref.thread_id else ref.conversation
        body = Activity.deserialize({**activity, "id": ref.message_id})
        await self._call(
            service_url, lambda client: client.conversations.update_activity(conversation, ref.message_id, body), where
        )

    async def close(self) -> None:
        """Close the HTTP sessions of the connector clients (one per service URL)."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.__aexit__(None, None, None)

    # --- addressing -------------------------------------------------------------------------------

    async def _address(self, target: Target) -> _Address:
        where = target.describe()
        if target.kind == "person":
            aad = target.identities.get(PLATFORM)
            if not aad:
                raise DeliveryFailed(
                    f"{target.person_name} cannot be reached in Teams: no Microsoft Entra object id for them "
                    "(add `teams:` to the engagement file, or ask them to message the bot once)",
                    permanent=True,
                )
            stored = await self.references.get_personal(target.engagement_id, aad)
            reference = self._parse(stored, where) if stored else await self._create_personal(target, aad)
            return _Address(reference.service_url, reference.conversation_id, thread=None, personal=True)
        name = str(target.channel).lstrip("#")
        stored = await self.references.get_channel(target.engagement_id, name)
        if stored is None:
            raise DeliveryFailed(
                f"Teams: no channel '{name}' is linked for this engagement (add the bot to the team and link "
                "the channel)",
                permanent=True,
            )
        reference = self._parse(stored, where)
        if target.thread is None:
            return _Address(reference.service_url, reference.conversation_id, thread=None, personal=False)
        root = target.thread.thread_id or target.thread.message_id  # a reply to a reply joins the same thread
        return _Address(reference.service_url, base_conversation(target.thread.conversation), root, personal=False)

    async def _create_personal(self, target: Target, aad: str) -> Reference:
        """Open a 1:1 chat with someone the bot has never talked to, in the engagement's tenant."""
        where = target.describe()
        unreachable = f"{target.person_name} cannot be reached in Teams: the bot has not been installed for them"
        stored = await self.references.get_team(target.engagement_id)
        if stored is None:
            raise DeliveryFailed(f"{unreachable} (it is in no team of this engagement yet)", permanent=True)
        team = self._parse(stored, where)
        bot_id = (team.bot or {}).get("id")
        if not team.tenant_id or not isinstance(bot_id, str):
            raise DeliveryFailed(f"{unreachable} (the stored team reference has no tenant or bot id)", permanent=True)
        parameters = ConversationParameters(
            is_group=False,
            bot=ChannelAccount(id=bot_id, name=(team.bot or {}).get("name")),
            members=[ChannelAccount(id=aad, aad_object_id=aad)],
            tenant_id=team.tenant_id,
            channel_data={"tenant": {"id": team.tenant_id}},
        )
        try:
            created = await self._call(
                team.service_url, lambda client: client.conversations.create_conversation(parameters), where
            )
        except DeliveryFailed as failed:
            if failed.permanent:
                raise DeliveryFailed(f"{unreachable} ({failed.reason})", permanent=True) from failed
            raise
        reference = Reference(
            service_url=created.service_url or team.service_url,
            conversation_id=str(created.id),
            tenant_id=team.tenant_id,
            bot=team.bot,
        )
        await self.references.save_personal(
            target.engagement_id,
            aad,
            {
                "channelId": "msteams",
                "serviceUrl": reference.service_url,
                "bot": reference.bot,
                "user": {"id": aad, "aadObjectId": aad},
                "conversation": {
                    "id": reference.conversation_id,
                    "tenantId": reference.tenant_id,
                    "conversationType": "personal",
                    "isGroup": False,
                },
            },
        )
        return reference

    @staticmethod
    def _parse(stored: Mapping[str, Any], where: str) -> Reference:
        try:
            return Reference.parse(stored)
        except ValueError as exc:
            raise DeliveryFailed(f"Teams: the stored reference is unusable: {exc} ({where})", permanent=True) from exc

    # --- rendering and posting --------------------------------------------------------------------

    async def _render(self, message: Message, where: str) -> list[JSONDict]:
        """Every activity of the message and its thread replies, in posting order."""
        images: dict[str, ImageData] = {}
        for block in _image_blocks(message):
            loaded = await self.images(block.key) if self.images and block.key not in images else None
            if loaded is not None:
                images[block.key] = loaded
        try:
            return _activities(message, images, self.limit)
        except ValueError as exc:
            raise DeliveryFailed(f"cannot be shown in Teams: {exc} ({where})", permanent=True) from exc

    async def _post(
        self, service_url: str, conversation: str, activity: JSONDict, delivery_key: str, where: str, *, part: int = 0
    ) -> str:
        tag: JSONDict = {"delivery_key": delivery_key} | ({"part": part} if part else {})
        body = Activity.deserialize({**activity, "channelData": {"cadence": tag}})
        response = await self._call(
            service_url, lambda client: client.conversations.send_to_conversation(conversation, body), where
        )
        if response is None or not response.id:
            raise DeliveryFailed(f"Teams accepted the message but gave no activity id ({where})", permanent=True)
        return str(response.id)

    async def _call(self, service_url: str, operation: Callable[[Any], Awaitable[T]], where: str) -> T:
        client = self._client(service_url)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await operation(client)
            except HttpOperationError as exc:
                status = int(getattr(exc.response, "status_code", 0) or 0)
                retry_after = _retry_after(exc.response)
                reason = f"Teams: HTTP {status} {exc} ({where})"
                if status == 429 and self.on_rate_limited is not None:
                    self.on_rate_limited()
                if status in PERMANENT_STATUSES:
                    raise DeliveryFailed(reason, permanent=True) from exc
                waits = retry_after is None or retry_after <= self.backoff.max_delay
                if status in RETRIED_STATUSES and attempt < self.backoff.max_attempts and waits:
                    await self.backoff.sleep(self.backoff.delay(attempt, retry_after))
                    continue
                raise DeliveryFailed(reason, permanent=False, retry_after=retry_after) from exc
            except PermissionError as exc:  # MSAL refused the app id / password: no retry fixes that
                raise DeliveryFailed(f"Teams: no Bot Framework token: {exc} ({where})", permanent=True) from exc
            except (ClientException, OSError) as exc:
                reason = f"Teams unreachable: {exc.__class__.__name__} {exc} ({where})"
                raise DeliveryFailed(reason, permanent=False) from exc

    def _client(self, service_url: str) -> Any:
        client = self._clients.get(service_url)
        if client is None:
            client = ConnectorClient(self.credentials, base_url=service_url)
            client.config.retry_policy.retries = 0  # retries are ours, with Teams' statuses and Retry-After
            self._clients[service_url] = client
        return client


def _image_blocks(message: Message) -> list[Image]:
    found = [block for block in message.blocks if isinstance(block, Image)]
    for reply in message.thread:
        found += _image_blocks(reply)
    return found


def _activities(message: Message, images: Images, limit: int) -> list[JSONDict]:
    out = render_activities(message, images=images, limit=limit)
    for reply in message.thread:
        out += _activities(reply, images, limit)
    return out


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from Teams; the exponential back-off applies
