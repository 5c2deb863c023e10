"""`/digest`: see the founder digest now, or send this week's digest early.

`/digest preview` shows the asker exactly what the Friday DM would say (same builder, chart included),
so a CRO can check it before the founder reads it and a founder need not wait for Friday.
`/digest send` runs this week's occurrence for each recipient through the engine: the occurrence is
the same one the schedule would create, so a digest sent early is not sent again on Friday.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cadences.authz import Action, allowed
from cadences.commands import CommandResult, CommandSpec
from cadences.context import Context
from cadences.digest import RITUAL, build_digest, in_season, period_of, recipients
from cadences.grammar import GrammarError, tokenize
from cadences.messages import Message, reply
from cadences.periods import iso_week_key
from cadences.rituals import EngagementFacts, PersonFacts, load_facts
from storage.models import Engagement, Occurrence, Role

USAGE = "/digest preview | send | help"
HELP = """The founder digest goes to the founders every week (see rituals.digest in the engagement file).
  /digest preview    the digest as it would read now, for you (founders, managers and the CRO)
  /digest send       the CRO: send this week's digest to its recipients now (once per week)"""


async def digest_command(ctx: Context, args: str) -> CommandResult:
    words = [w.casefold() for w in tokenize(args)]
    if words in ([], ["help"]):
        return CommandResult([reply(HELP)], action="digest.help", outcome="help")
    if words == ["preview"]:
        return await _preview(ctx)
    if words == ["send"]:
        return await _send(ctx)
    raise GrammarError(f'I don\'t know "/digest {args.strip()}".')


async def _fresh_facts(session: AsyncSession, ctx: Context) -> EngagementFacts:
    """The engagement as stored now: its settings may have changed since the request's context was built,
    and the preview must read exactly like the digest the engine would send."""
    engagement = await session.get(Engagement, ctx.engagement.id, populate_existing=True)
    assert engagement is not None
    return await load_facts(session, engagement)


async def _preview(ctx: Context) -> CommandResult:
    """The asker's own digest for this week, as an ephemeral reply."""
    assert ctx.actor is not None
    if not allowed(ctx.actor, Action.VIEW_DIGEST):
        text = "The digest is for the founders, managers and the CRO. Your own deals are in /deal list."
        return CommandResult([reply(text)], action="digest.preview", outcome="denied")
    now = ctx.now()
    async with ctx.db.write() as session:
        facts = await _fresh_facts(session, ctx)
        me = facts.person(ctx.actor.id)
        assert me is not None
        week = iso_week_key(now.astimezone(me.timezone).date())
        message = await build_digest(session, facts, me, week, now)
    preview = Message(text=f"Preview: {message.text}", blocks=message.blocks, ephemeral=True)
    return CommandResult([preview], action="digest.preview", outcome="read")


async def _send(ctx: Context) -> CommandResult:
    """This week's digest to every recipient now, unless their week's digest already happened."""
    assert ctx.actor is not None
    # Only the CRO: sending early changes what the founders receive, which the CRO answers for.
    if not ctx.actor.active or Role(ctx.actor.role) != Role.CRO:
        text = "Only the CRO can send the digest early; it goes out on schedule every week."
        return CommandResult([reply(text)], action="digest.send", outcome="denied")
    if ctx.cadence is None:
        text = "The cadence engine is not running here, so nothing was sent; the digest goes out on schedule."
        return CommandResult([reply(text)], action="digest.send", outcome="unavailable")
    now = ctx.now()
    async with ctx.db.session() as session:
        facts = await _fresh_facts(session, ctx)
    people = recipients(facts)
    if not people:
        text = "The digest has no recipients: set rituals.digest.recipients in the engagement file."
        return CommandResult([reply(text)], action="digest.send", outcome="rejected")
    lines: list[str] = []
    sent: list[str] = []
    for person in people:
        local_day = now.astimezone(person.timezone).date()
        week = iso_week_key(local_day)
        if not in_season(facts, local_day):
            lines.append(
                f"{person.name}: no digest — the engagement's digests run from "
                f"{facts.engagement.start_date} to a week after the exit."
            )
            continue
        period = period_of(week, person)
        occurrence = await ctx.cadence.trigger(
            ctx.engagement, RITUAL, period, detail={"week": week, "person": person.id}
        )
        if occurrence is not None:
            sent.append(period)
            lines.append(f"{person.name}: sent this week's digest ({week}).")
        else:
            lines.append(await _already(ctx, person, period, week))
    outcome = "ok" if sent else "unchanged"
    return CommandResult(
        [reply("\n".join(lines))],
        action="digest.send",
        outcome=outcome,
        target=f"{RITUAL}:{','.join(sent)}" if sent else None,
    )


async def _already(ctx: Context, person: PersonFacts, period: str, week: str) -> str:
    """Why a recipient's week cannot be sent again: it went out, or it was skipped."""
    async with ctx.db.session() as session:
        occurrence = (
            await session.execute(
                select(Occurrence).where(
                    Occurrence.engagement_id == ctx.engagement.id,
                    Occurrence.ritual == RITUAL,
                    Occurrence.period == period,
                )
            )
        ).scalar_one_or_none()
    if occurrence is not None and occurrence.status == "skipped":
        return (
            f"{person.name}: this week's digest ({week}) was skipped ({occurrence.skip_reason}); "
            "it is not sent twice in a week."
        )
    when = occurrence.planned_at.astimezone(ctx.tz) if occurrence and occurrence.planned_at else None
    at = f" on {when:%a %b} {when.day} at {when:%H:%M}" if when else ""
    return f"{person.name} already has this week's digest ({week}){at}; it is sent once a week."


SPEC = CommandSpec(
    name="digest", handler=digest_command, summary="preview the founder digest, or send it now", usage=USAGE
)
