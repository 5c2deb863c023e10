"""Events: messages (review thread replies, DMs to the bot) and the app leaving a workspace.

- A reply in a review thread becomes what it says on the deal (a note, or with `action:` / `decision:`
  an action item or a decision; `cadences.review_commands.record_note_from_thread`). The deal is the
  subject of the thread's parent message (`deal:<id>`). Slack threads do not nest, so a reply under the
  review post itself names its deal first ("Acme: champion moved to the CFO office").
- A message in the bot's DM is read as a command, like the console.
- Edits, deletions, joins and bots' messages are ignored; retried events never reach here twice (the
  dedupe middleware in app.py).
- `app_uninstalled` / `tokens_revoked`: the workspace's token is deleted and its engagement paused.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.identity import PLATFORM
from bot.slack.listeners.requests import NOT_LINKED, Who, payloads, plain_text, who
from cadences.messages import Message, reply
from cadences.pipeline_review import REVIEW
from cadences.review_commands import record_note_from_thread
from storage import audit, chat_workspaces
from storage.models import Deal, Delivery

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps

log = logging.getLogger(__name__)
MESSAGE_SUBSCRIPTIONS = ("message.channels", "message.groups", "message.im")
REPLY_SUBTYPES = (None, "thread_broadcast")
NAME_HINT = (
    "To record this on a deal, start the reply with the deal's name, e.g. “Acme: champion moved to the CFO "
    "office” (or “Acme: action: send pricing by Dec 4”)."
)


def register(app: AsyncApp, deps: SlackDeps) -> None:
    async def message(body: dict[str, Any], event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("subtype") not in REPLY_SUBTYPES or event.get("bot_id") or not event.get("user"):
            return
        if event.get("channel_type") == "im":
            deps.background.spawn(_direct_message(deps, client, body, event), what="a DM to the bot")
        elif event.get("thread_ts") and event.get("thread_ts") != event.get("ts"):
            deps.background.spawn(_thread_reply(deps, client, body, event), what="a review thread reply")

    async def uninstalled(body: dict[str, Any], event: dict[str, Any]) -> None:
        """The app left the workspace (or its bot token was revoked): forget the token, pause the rituals."""
        if event.get("type") == "tokens_revoked" and not (event.get("tokens") or {}).get("bot"):
            return
        await _uninstall(deps, str(body.get("team_id") or ""), str(event.get("type")))

    app.event("message")(message)
    app.event("app_uninstalled")(uninstalled)
    app.event("tokens_revoked")(uninstalled)
    deps.registry.events.update({*MESSAGE_SUBSCRIPTIONS, "app_uninstalled", "tokens_revoked"})


async def _uninstall(deps: SlackDeps, team_id: str, why: str) -> None:
    async with deps.db.write() as session:
        engagement_id = await chat_workspaces.uninstall(session, PLATFORM, team_id)
        audit.record(
            session,
            at=deps.clock.now(),
            channel=PLATFORM,
            action="slack.uninstall",
            outcome="ok",
            engagement_id=engagement_id,
            actor_ref="slack",
            target=f"slack:{team_id}",
            detail={"event": why, "paused": engagement_id is not None},
        )
    log.warning("Slack workspace %s: %s; token deleted, engagement %s paused", team_id, why, engagement_id)
    if deps.identities is not None and engagement_id is not None:
        deps.identities.forget(engagement_id)
    if deps.on_workspace_change is not None:
        await deps.on_workspace_change()


async def _asker(deps: SlackDeps, client: AsyncWebClient, body: dict[str, Any], event: dict[str, Any]) -> Who | None:
    return await who(deps, client, str(body.get("team_id") or event.get("team") or ""), str(event["user"]))


async def _direct_message(deps: SlackDeps, client: AsyncWebClient, body: dict[str, Any], event: dict[str, Any]) -> None:
    """What the person sees in the DM: the answer to what they typed, as in the console."""
    asker = await _asker(deps, client, body, event)
    channel = str(event["channel"])
    if asker is None:
        messages = [reply(NOT_LINKED)]
    else:
        messages = await deps.router.handle_text(asker.context(deps), plain_text(event.get("text")))
    for payload in payloads(messages):
        await client.chat_postMessage(channel=channel, text=payload["text"], blocks=payload["blocks"])


async def _thread_reply(deps: SlackDeps, client: AsyncWebClient, body: dict[str, Any], event: dict[str, Any]) -> None:
    asker = await _asker(deps, client, body, event)
    if asker is None:
        return
    channel, thread_ts = str(event["channel"]), str(event["thread_ts"])
    text = plain_text(event.get("text"))
    async with deps.db.session() as session:
        sent = await chat_workspaces.sent_messages(session, asker.engagement.id, PLATFORM, REVIEW)
        parent = next((d for d in sent if _is(d, channel, thread_ts)), None)
        if parent is None:
            return
        deal_id = _deal_of(parent)
        if deal_id is None:
            deal_id, text = await _named_deal(session, sent, parent, text)
    if deal_id is None:
        messages = [reply(NAME_HINT)]
    else:
        messages = await record_note_from_thread(asker.context(deps), deal_id, text)
    await _ephemeral(client, channel, thread_ts, asker.user_id, messages)


def _is(delivery: Delivery, channel: str, ts: str) -> bool:
    ref = delivery.ref or {}
    return ref.get("conversation") == channel and ref.get("message_id") == ts


def _deal_of(delivery: Delivery) -> int | None:
    subject = delivery.subject or ""
    return int(subject.split(":", 1)[1]) if subject.startswith("deal:") and subject[5:].isdigit() else None


async def _named_deal(session: Any, sent: Any, parent: Delivery, text: str) -> tuple[int | None, str]:
    """A reply under the review post names its deal first: "<deal name>: what to record". Only the deals
    of that review's threads are candidates, so a short name is enough and nothing else is guessed."""
    head, colon, rest = text.partition(":")
    if not colon or not head.strip():
        return None, text
    ids = [d for d in (_deal_of(x) for x in sent if x.parent_id == parent.id) if d is not None]
    if not ids:
        return None, text
    names = {deal.id: deal.name for deal in [await session.get(Deal, i) for i in ids] if deal is not None}
    typed = " ".join(head.split()).casefold()
    exact = [i for i, name in names.items() if name.casefold() == typed]
    starts = [i for i, name in names.items() if name.casefold().startswith(typed)]
    found = exact or starts
    return (found[0], rest.strip()) if len(found) == 1 else (None, text)


async def _ephemeral(
    client: AsyncWebClient, channel: str, thread_ts: str, user_id: str, messages: list[Message]
) -> None:
    for payload in payloads(messages):
        await client.chat_postEphemeral(
            channel=channel, user=user_id, thread_ts=thread_ts, text=payload["text"], blocks=payload["blocks"]
        )
