"""`/cadence schedule`, `/cadence pause`, `/cadence resume`: what runs when, and the CRO's off switch.

The schedule shown is computed by the same pure `due_between` functions the engine fires from, so what
people see here is exactly what will happen.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from sqlalchemy import update

from cadences import plan_commands
from cadences.authz import Action, allowed, denial
from cadences.commands import CommandResult
from cadences.context import Context
from cadences.messages import Header, Message, Paragraph, Table, reply
from cadences.ritual_catalog import all_rituals
from cadences.rituals import Due, load_facts
from storage.models import Engagement

HORIZON = timedelta(days=8)
RITUAL_NAMES = {
    "pipeline_review": "Pipeline review",
    "review_nudge": "Pre-review nudges",
    "review_last_call": "Last call before the review",
    "action_reminder": "Action item reminders",
    "debrief_followup": "Debrief reminders and stall check",
    "milestone_checkin": "Milestone check-ins",
    "milestone_scorecard": "Milestone scorecard",
    "milestone_chase": "Overdue deliverables chase",
    "handoff_reminder": "Hand-over reminders",
    "handoff_overdue": "Overdue hand-over report",
    "exit_planning": "Exit planning prompt",
    "handoff_owner_warning": "Hand-over owner warning",
    "founder_digest": "Founder digest",
}


async def upcoming(ctx: Context, horizon: timedelta = HORIZON) -> list[Due]:
    async with ctx.db.session() as session:
        engagement = await session.get(Engagement, ctx.engagement.id)
        assert engagement is not None
        facts = await load_facts(session, engagement)
    now = ctx.now()
    dues = [
        d
        for ritual in all_rituals()
        for d in ritual.due_between(facts, now, now + horizon)
        if now <= d.due_at < now + horizon
    ]
    return sorted(dues, key=lambda d: (d.due_at, d.ritual, d.period))


async def schedule_command(ctx: Context, args: str) -> CommandResult:
    """The next week of rituals in the engagement's time zone, one row per ritual and time."""
    dues = await upcoming(ctx)
    grouped: dict[tuple[str, str], int] = defaultdict(int)
    for due in dues:
        when = due.due_at.astimezone(ctx.tz).strftime("%a %b %-d %H:%M")
        grouped[(when, RITUAL_NAMES.get(due.ritual, due.ritual.replace("_", " ")))] += 1
    rows = [[when, name + (f" (×{count})" if count > 1 else "")] for (when, name), count in grouped.items()]
    blocks: list[Header | Paragraph | Table] = [Header(text=f"What runs in the next {HORIZON.days} days")]
    if ctx.engagement.paused:
        blocks.append(Paragraph(text="The cadence is paused: nothing below will be sent until /cadence resume."))
    blocks.append(
        Table(columns=[f"When ({ctx.engagement.timezone})", "Ritual"], rows=rows)
        if rows
        else Paragraph(text="Nothing is scheduled in the next week.")
    )
    message = Message(
        text=f"{len(dues)} ritual occurrences in the next {HORIZON.days} days", blocks=blocks, ephemeral=True
    )
    return CommandResult([message], action="cadence.schedule", outcome="read")


async def _set_paused(ctx: Context, paused: bool) -> CommandResult:
    action = "cadence.pause" if paused else "cadence.resume"
    if ctx.actor is None or not allowed(ctx.actor, Action.PAUSE_CADENCE):
        return CommandResult([reply(denial(Action.PAUSE_CADENCE))], action=action, outcome="denied")
    async with ctx.db.write() as session:
        await session.execute(update(Engagement).where(Engagement.id == ctx.engagement.id).values(paused=paused))
    text = (
        "Paused: no ritual will be sent until you run /cadence resume. Occurrences due meanwhile are skipped."
        if paused
        else "Resumed: the rituals run on their schedule again."
    )
    return CommandResult([reply(text)], action=action)


async def pause_command(ctx: Context, args: str) -> CommandResult:
    return await _set_paused(ctx, True)


async def resume_command(ctx: Context, args: str) -> CommandResult:
    return await _set_paused(ctx, False)


def register() -> None:
    """Add schedule/pause/resume to the `/cadence` family."""
    plan_commands.SUBCOMMANDS.update(schedule=schedule_command, pause=pause_command, resume=resume_command)
    plan_commands.SUBCOMMAND_HELP.update(
        schedule="/cadence schedule — what runs when in the next week",
        pause="/cadence pause — stop sending rituals (CRO)",
        resume="/cadence resume — start again (CRO)",
    )
