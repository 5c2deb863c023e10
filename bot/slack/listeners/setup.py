"""`/cadence setup <engagement-slug>`: the engagement's CRO links this Slack workspace to the engagement
and makes the channel they typed it in the review channel.

Slack-only (it is about workspaces and channels), so it is answered here rather than by the router's
`/cadence`. Only the engagement's CRO may link it — recognised by the Slack id in the engagement file or
by the email on their Slack profile — and one engagement is served by one workspace at a time: a
deployment serves several clients, and a wrong link would post one client's pipeline in another's Slack.
Linking also matches everyone in the engagement file to their Slack user (by id or email), so their
DMs and time zones work from the first ritual on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.identity import PLATFORM
from bot.slack.listeners.requests import ids, tell
from cadences.engagement_file import engagement_settings
from storage import audit, chat_workspaces
from storage import engagements as engagement_repo
from storage.models import Engagement, Role

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps

log = logging.getLogger(__name__)
USAGE = (
    "Type `/cadence setup <engagement-slug>` (the `slug:` in the engagement file) in the channel where the "
    "pipeline review should be posted. Only the engagement's CRO can do it."
)


async def link_workspace(
    deps: SlackDeps, client: AsyncWebClient, body: dict[str, Any], respond: AsyncRespond, slug: str
) -> None:
    """What the CRO sees: the link confirmed with the review channel, who was matched, and what is left."""
    team_id, user_id = ids(body)
    slug = slug.strip()
    if not slug or " " in slug:
        await tell(respond, USAGE)
        return
    async with deps.db.session() as session:
        engagement = await engagement_repo.get_engagement(session, slug)
    person = await deps.people.person(client, team_id, engagement, user_id) if engagement is not None else None
    if engagement is None or person is None or person.role != Role.CRO:
        await _audit(deps, engagement, None, user_id, "denied", {"slug": slug, "team": team_id})
        await tell(
            respond,
            f"I can't link this workspace to “{slug}”: there is no such engagement, or you are not its CRO "
            "(the engagement file names the CRO; their `slack:` id or email must be yours).",
        )
        return
    channel_id = str(body.get("channel_id") or "")
    if (
        not channel_id
        or channel_id.startswith("D")
        or body.get("channel_name") in ("directmessage", "privategroup-mpim")
    ):
        await tell(
            respond, "Run `/cadence setup` in the channel where the pipeline review should be posted, not in a DM."
        )
        return
    review_channel = engagement_settings(engagement).pipeline_review.channel
    async with deps.db.write() as session:
        current = await chat_workspaces.workspace_of(session, engagement.id, PLATFORM)
        if current is not None and current.workspace_id != team_id:
            await _audit(
                deps, engagement, person.id, user_id, "rejected", {"team": team_id, "linked": current.workspace_id}
            )
            await tell(
                respond,
                f"{engagement.company} is already served by another Slack workspace ({current.workspace_id}). "
                "Uninstall Cadence there first, then run this again.",
            )
            return
        await chat_workspaces.link(session, PLATFORM, team_id, engagement.id, now=deps.clock.now())
        await chat_workspaces.set_channel(session, engagement.id, PLATFORM, team_id, review_channel, channel_id)
    report = await deps.people.sync(client, team_id, engagement)
    await _audit(
        deps,
        engagement,
        person.id,
        user_id,
        "ok",
        {"team": team_id, "channel": channel_id, "matched": len(report.matched)},
    )
    if deps.on_workspace_change is not None:
        await deps.on_workspace_change()
    here = f"#{body['channel_name']}" if body.get("channel_name") else "this channel"
    lines = [
        f"Linked this workspace to {engagement.company} ({engagement.slug}). The pipeline review will be posted "
        f"in {here} (the engagement file's #{review_channel}).",
        report.summary(),
    ]
    if not await _bot_is_member(client, channel_id):
        lines.append(f"Invite me to {here} (`/invite @Cadence`) so I can post the review there.")
    if engagement.paused:
        lines.append("The cadence is paused; `/cadence resume` starts it again.")
    await tell(respond, "\n".join(lines))


async def _bot_is_member(client: AsyncWebClient, channel_id: str) -> bool:
    """Whether the bot can post in the channel; True when Slack cannot say (the post will tell)."""
    try:
        info = await client.conversations_info(channel=channel_id)
    except SlackApiError as exc:
        log.info("conversations.info %s: %s", channel_id, exc.response.get("error"))
        return True
    return bool((info.get("channel") or {}).get("is_member", True))


async def _audit(
    deps: SlackDeps,
    engagement: Engagement | None,
    actor_id: int | None,
    user_id: str,
    outcome: str,
    detail: dict[str, Any],
) -> None:
    async with deps.db.session() as session:
        audit.record(
            session,
            at=deps.clock.now(),
            channel=PLATFORM,
            action="slack.setup",
            outcome=outcome,
            engagement_id=engagement.id if engagement else None,
            actor_id=actor_id,
            actor_ref=f"slack:{user_id}",
            target=f"slack:{detail.get('team')}",
            detail=detail,
        )
