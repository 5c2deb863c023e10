"""Events: messages (review thread replies, DMs to the bot) and the app leaving a workspace.

- A reply in a review thread becomes what it says on the deal it is about (a note, or with `action:` /
  `decision:` an action item or a decision; `cadences.thread_replies`): the deal of the thread's
  parent message, or the one a reply under the review post names first ("Acme: champion moved").
- A message in the bot's DM is read as a command, like the console (and counts against the person's
  command limit: past it they get the "slow down" line privately and nothing runs).
- Edits, deletions, joins and bots' messages are ignored; retried events never reach here twice (the
  dedupe middleware in app.py).
- `app_uninstalled` / `tokens_revoked`: the workspace's token is deleted and its engagement paused.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.command_limit import SLOW_DOWN
from bot.slack.identity import PLATFORM
from bot.slack.listeners.requests import NOT_LINKED, Who, payloads, plain_text, who
from cadences.messages import Message, reply
from cadences.thread_replies import record_reply
from storage import audit, chat_workspaces
from storage.models import Delivery

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps

log = logging.getLogger(__name__)
MESSAGE_SUBSCRIPTIONS = ("message.channels", "message.groups", "message.im")
REPLY_SUBTYPES = (None, "thread_broadcast")


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
    channel, user_id = str(event["channel"]), str(event["user"])
    if not await deps.within_limit(str(body.get("team_id") or event.get("team") or ""), user_id):
        await client.chat_postEphemeral(channel=channel, user=user_id, text=SLOW_DOWN)
        return
    asker = await _asker(deps, client, body, event)
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

    def is_parent(delivery: Delivery) -> bool:
        ref = delivery.ref or {}
        return ref.get("conversation") == channel and ref.get("message_id") == thread_ts

    messages = await record_reply(asker.context(deps), is_parent, plain_text(event.get("text")))
    if messages is not None:
        await _ephemeral(client, channel, thread_ts, asker.user_id, messages)


async def _ephemeral(
    client: AsyncWebClient, channel: str, thread_ts: str, user_id: str, messages: list[Message]
) -> None:
    for payload in payloads(messages):
        await client.chat_postEphemeral(
            channel=channel, user=user_id, thread_ts=thread_ts, text=payload["text"], blocks=payload["blocks"]
        )
