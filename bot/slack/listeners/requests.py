"""What every listener needs from a Slack payload: who is asking, in which engagement, with which words,
and how to answer them.

Slack escapes `&`, `<` and `>` in what people type (`&amp;`, `&lt;`, `&gt;`) and wraps links and
mentions in `<...>`; `command_text` undoes the escaping for the command grammar (which understands
`<@U123|name>` mentions itself), `plain_text` turns a message into words for a note.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.identity import PLATFORM
from bot.slack.render import JSONDict, render_continuations, render_message
from cadences.context import Context
from cadences.messages import Message
from cadences.people import engagement_for_workspace
from storage.models import Engagement, Person

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps

NOT_LINKED = (
    "This Slack workspace isn't linked to a Cadence engagement yet. The engagement's CRO links it by typing "
    "`/cadence setup <engagement-slug>` (the `slug:` in the engagement file) in the channel where the "
    "pipeline review should be posted."
)

_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def unescape(text: str) -> str:
    """Slack's three entities back to characters (`&amp;` last, so `&amp;lt;` stays `&lt;`)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def command_text(text: str | None) -> str:
    """A slash command's text as typed, ready for the command grammar."""
    return unescape(text or "").strip()


def plain_text(text: str | None) -> str:
    """A Slack message as plain words: `<https://x|label>` → label, `<@U1|dana>` → @dana, `<#C1|general>`
    → #general, `<!here>` → @here, a bare `<https://x>` → the URL; then the entities undone."""

    def word(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@"):
            return f"@{label}" if label else target
        if target.startswith("#"):
            return f"#{label}" if label else target
        if target.startswith("!"):
            return f"@{label or target[1:].split('^')[0]}"
        return label or target

    return unescape(_LINK.sub(word, text or "")).strip()


@dataclass(frozen=True)
class Who:
    """The person behind a Slack request, in the engagement of their workspace (`person` is None for
    someone who is not part of it: the router answers them so)."""

    engagement: Engagement
    person: Person | None
    team_id: str
    user_id: str

    def context(self, deps: SlackDeps) -> Context:
        return Context(
            deps.db,
            deps.clock,
            self.engagement,
            self.person,
            PLATFORM,
            f"slack:{self.user_id}",
            deps.cadence,
        )


def ids(body: Mapping[str, Any]) -> tuple[str, str]:
    """(team id, user id) of any payload: slash command form, interaction or event."""
    team = body.get("team_id") or (body.get("team") or {}).get("id") or ""
    user = body.get("user_id") or (body.get("user") or {}).get("id") or ""
    event = body.get("event") or {}
    if not user and isinstance(event, dict):
        user = event.get("user") or ""
    return str(team), str(user)


async def who(deps: SlackDeps, client: AsyncWebClient, team_id: str, user_id: str) -> Who | None:
    """Who is asking; None when the workspace is not linked to an engagement (then say `NOT_LINKED`)."""
    engagement = await engagement_for_workspace(deps.db, PLATFORM, team_id)
    if engagement is None:
        return None
    person = await deps.people.person(client, team_id, engagement, user_id) if user_id else None
    return Who(engagement, person, team_id, user_id)


def payloads(messages: Iterable[Message]) -> list[JSONDict]:
    """Every post of the replies: each message, what did not fit in it, then its thread replies."""
    out: list[JSONDict] = []
    for message in messages:
        out.append({**render_message(message), "ephemeral": message.ephemeral})
        out += [{**part, "ephemeral": message.ephemeral} for part in render_continuations(message)]
        out += payloads(message.thread)
    return out


async def answer(respond: AsyncRespond, messages: Sequence[Message]) -> None:
    """Reply through the request's response_url: ephemeral unless a message is meant for the channel."""
    for payload in payloads(messages):
        await respond(
            text=payload["text"],
            blocks=payload["blocks"],
            response_type="ephemeral" if payload["ephemeral"] else "in_channel",
            replace_original=False,
        )


async def tell(respond: AsyncRespond, text: str) -> None:
    """A one-line ephemeral answer."""
    await respond(text=text, response_type="ephemeral", replace_original=False)


async def direct(client: AsyncWebClient, user_id: str, messages: Sequence[Message]) -> None:
    """Send replies to a person's DM with the bot (when there is no response_url to answer through)."""
    channel = (await client.conversations_open(users=user_id))["channel"]["id"]
    for payload in payloads(messages):
        await client.chat_postMessage(channel=channel, text=payload["text"], blocks=payload["blocks"])
