"""The message shortcut "Log as deal update": a message (a customer's email pasted in a channel, a call
summary) becomes a note on one of the person's deals, through a small form with a deal picker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.listeners import views
from bot.slack.listeners.requests import NOT_LINKED, ids, plain_text, tell, who

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps

LOG_DEAL_UPDATE = "log_deal_update"


def register(app: AsyncApp, deps: SlackDeps) -> None:
    from bot.slack.app import reporter

    async def log_deal_update(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        await ack()
        deps.background.spawn(_open(deps, client, body, respond), what="log as deal update", on_error=reporter(respond))

    app.shortcut(LOG_DEAL_UPDATE)(log_deal_update)
    deps.registry.shortcuts.add(LOG_DEAL_UPDATE)


async def _open(deps: SlackDeps, client: AsyncWebClient, body: dict[str, Any], respond: AsyncRespond) -> None:
    team_id, user_id = ids(body)
    asker = await who(deps, client, team_id, user_id)
    if asker is None:
        await tell(respond, NOT_LINKED)
        return

    async def say(line: str) -> None:
        await tell(respond, line)

    note = plain_text((body.get("message") or {}).get("text"))
    await views.open_log_note_form(
        deps, client, asker, str(body.get("trigger_id") or ""), say, note, views.origin(body)
    )
