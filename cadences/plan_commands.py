"""`/cadence`: the engagement's clock, its 30/60/90 plan and its hand-over, the same on every platform.

One command with subcommands, dispatched through `SUBCOMMANDS` (subcommand -> handler). Other modules
add their own subcommands by registering an entry, e.g. in `cadences/schedule_commands.py`:

    from cadences import plan_commands
    plan_commands.SUBCOMMANDS["schedule"] = schedule_command      # async (ctx, args) -> CommandResult
    plan_commands.SUBCOMMAND_HELP["schedule"] = "/cadence schedule — what runs when this week"

The module doing that must be imported before the router handles text (import it from
`cadences/catalog.py`). A handler gets the text after the subcommand's name; it may raise
`GrammarError` (the router answers with the usage) or `PlanError` (answered with its message and
audited with its outcome). Every subcommand whose outcome is not "read"/"help" is audited by the router.
"""

from __future__ import annotations

import difflib
import re
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from cadences import handoff, milestones
from cadences.commands import CommandResult, CommandSpec, Handler
from cadences.context import Context
from cadences.grammar import GrammarError, parse_key_values, tokenize
from cadences.messages import Block, FieldItem, Fields, Header, Message, Paragraph, reply
from cadences.milestones import PlanError, long_date
from cadences.rituals import EngagementFacts, load_facts
from storage import engagements as engagement_repo
from storage.models import Person

USAGE = "/cadence status | milestones | deliverable <key> status=... | handoff [<key> done | <key> to=@name] | help"
DELIVERABLE_FIELDS = {"status": "status", "note": "note", "notes": "note", "comment": "note"}
HANDOFF_FIELDS = {"to": "to", "owner": "to", "note": "note", "notes": "note", "comment": "note"}
DONE_WORDS = frozenset({"done", "complete", "completed", "finished"})
REOPEN_WORDS = frozenset({"open", "reopen"})
_SLACK_USER = re.compile(r"<@([A-Za-z0-9]+)(?:\|[^>]*)?>")
_TEAMS_MENTION = re.compile(r"<at>(.*?)</at>", re.IGNORECASE | re.DOTALL)


async def _facts(session: AsyncSession, ctx: Context) -> EngagementFacts:
    return await load_facts(session, ctx.engagement)


# --- /cadence status ------------------------------------------------------------------------------


async def status_command(ctx: Context, args: str) -> CommandResult:
    """One screen: day N of M, days to the exit, the next milestone and hand-over readiness."""
    today = ctx.today()
    async with ctx.db.session() as session:
        facts = await _facts(session, ctx)
        r = await handoff.readiness(session, facts, today)
        items = [
            FieldItem(label="Exit", value=_exit_line(facts, today)),
            *await _plan_items(session, facts, today),
            FieldItem(label="Hand-over", value=r.tasks_line),
            FieldItem(label="Pipeline review", value=r.review_line),
            FieldItem(label="Cadence", value="paused (/cadence resume)" if facts.engagement.paused else "running"),
        ]
    summary = f"{facts.engagement.company}: {_clock(facts, today)}"
    message = Message(text=summary, blocks=[Header(text=summary), Fields(items=items)], ephemeral=True)
    return CommandResult([message], action="cadence.status", outcome="read")


def _clock(facts: EngagementFacts, today: date) -> str:
    engagement = facts.engagement
    length = facts.day_of_engagement(engagement.exit_date)
    if today < engagement.start_date:
        return f"starts {long_date(engagement.start_date)}, in {(engagement.start_date - today).days} days"
    if today > engagement.exit_date:
        return f"the engagement ended on {long_date(engagement.exit_date)}"
    return f"day {facts.day_of_engagement(today)} of {length}"


def _exit_line(facts: EngagementFacts, today: date) -> str:
    return f"{long_date(facts.engagement.exit_date)} ({handoff.when(facts.engagement.exit_date, today)})"


async def _plan_items(session: AsyncSession, facts: EngagementFacts, today: date) -> list[FieldItem]:
    if not facts.deliverable_days:
        return [FieldItem(label="Plan", value="no 30/60/90 plan in the engagement file")]
    whole = await milestones.progress(session, facts.id, max(facts.deliverable_days))
    late = len(await milestones.overdue(session, facts, today))
    plan = FieldItem(
        label="Plan", value=f"{whole.done_to_date} of {whole.planned_to_date} deliverables done, {late} overdue"
    )
    upcoming = [d for d in facts.deliverable_days if milestones.milestone_date(facts, d) >= today]
    if not upcoming:
        return [FieldItem(label="Next milestone", value="every milestone has passed"), plan]
    day = upcoming[0]
    on = milestones.milestone_date(facts, day)
    score = await milestones.progress(session, facts.id, day)
    value = f"day {day}, {long_date(on)} ({handoff.when(on, today)}): {score.done} of {score.planned} done"
    return [FieldItem(label="Next milestone", value=value), plan]


# --- /cadence milestones and /cadence deliverable -------------------------------------------------


async def milestones_command(ctx: Context, args: str) -> CommandResult:
    """The plan by phase: each deliverable's owner, status and due date."""
    async with ctx.db.session() as session:
        facts = await _facts(session, ctx)
        rows = await milestones.deliverables(session, facts.id)
    return CommandResult(
        [milestones.plan_message(facts, rows, ctx.today())], action="cadence.milestones", outcome="read"
    )


async def deliverable_command(ctx: Context, args: str) -> CommandResult:
    """`/cadence deliverable <key> status=<s> [note="..."]` (also `<key> at risk note=...`)."""
    words, fields = parse_key_values(tokenize(args), DELIVERABLE_FIELDS)
    if not words:
        raise GrammarError('Which deliverable? /cadence deliverable revenue_audit status=done note="..."')
    key, rest = words[0], " ".join(words[1:])
    if rest and "status" in fields:
        raise GrammarError(f"Give the status once: status={fields['status']} or “{rest}”, not both.")
    typed = fields.get("status") or rest
    if not typed:
        raise GrammarError(
            f"What is the status of {key}? done, on_track, at_risk or blocked: "
            f"/cadence deliverable {key} status=on_track"
        )
    change = await milestones.set_status(ctx, key, milestones.parse_status(typed), fields.get("note"))
    labels = milestones.STATUS_LABELS
    text = f"{change.title}: {labels.get(change.before, change.before)} → {labels[change.after]}."
    blocks: list[Block] = [Paragraph(text=text)]
    if change.note:
        blocks.append(Paragraph(text=f"Note: {change.note}", muted=True))
    return CommandResult(
        [Message(text=text, blocks=blocks, ephemeral=True)],
        action="plan.deliverable",
        target=f"deliverable:{change.deliverable_id}",
        detail={"changes": {"status": [change.before, change.after]}, "note": change.note},
    )


# --- /cadence handoff -----------------------------------------------------------------------------


async def handoff_command(ctx: Context, args: str) -> CommandResult:
    """`/cadence handoff` (the list), `<key>` (one task), `<key> done|open [note=...]`, `<key> to=@name`."""
    words, fields = parse_key_values(tokenize(args), HANDOFF_FIELDS)
    today = ctx.today()
    if not words:
        if fields:
            raise GrammarError("Which task? Put its key first: /cadence handoff review_host to=@maya")
        async with ctx.db.session() as session:
            facts = await _facts(session, ctx)
            rows = await handoff.tasks(session, facts.id)
            r = await handoff.readiness(session, facts, today)
        return CommandResult([handoff.handoff_message(facts, rows, r, today)], action="cadence.handoff", outcome="read")
    key, verb = words[0], " ".join(words[1:]).casefold()
    note = fields.get("note")
    if "to" in fields:
        if verb:
            raise GrammarError(f"Assign the task, then mark it done, one at a time: /cadence handoff {key} to=@name")
        change = await handoff.assign_task(ctx, key, await _person(ctx, fields["to"]), note)
        action = "handoff.assign"
    elif verb in DONE_WORDS:
        change = await handoff.set_task_status(ctx, key, "done", note)
        action = "handoff.done"
    elif verb in REOPEN_WORDS:
        change = await handoff.set_task_status(ctx, key, "open", note)
        action = "handoff.reopen"
    elif not verb and not fields:
        async with ctx.db.session() as session:
            facts = await _facts(session, ctx)
            task = await handoff.find_task(session, facts.id, key)
        return CommandResult([handoff.task_card(facts, task, today)], action="cadence.handoff", outcome="read")
    else:
        raise GrammarError(
            f"I can mark a task done or open, or assign it: /cadence handoff {key} done, "
            f"/cadence handoff {key} to=@name"
        )
    async with ctx.db.session() as session:
        facts = await _facts(session, ctx)
    taker = facts.person(change.task.to_id) if change.task.to_id is not None else None
    intro = {
        "handoff.assign": f"{change.task.title}: moves to {taker.name if taker else 'nobody'}.",
        "handoff.done": f"Hand-over done: {change.task.title}.",
        "handoff.reopen": f"Hand-over reopened: {change.task.title}.",
    }[action]
    card = handoff.task_card(facts, change.task, today, intro=intro)
    if ctx.cadence is not None:
        # The reminders already sent about this task now show where it stands, without stale buttons.
        await ctx.cadence.update_sent(f"handoff:{change.task.id}", card.model_copy(update={"ephemeral": False}))
    return CommandResult(
        [card], action=action, target=f"handoff:{change.task.id}", detail={"changes": change.changes, "note": note}
    )


async def _person(ctx: Context, typed: str) -> Person:
    """The one person `to=` names: @key, a name or first name, or a Slack/Teams mention."""
    text = typed.strip()
    async with ctx.db.session() as session:
        if (slack := _SLACK_USER.fullmatch(text)) is not None:
            found = await engagement_repo.person_by_identity(session, ctx.engagement.id, ctx.channel, slack.group(1))
            if found is not None:
                return found
        if (teams := _TEAMS_MENTION.fullmatch(text)) is not None:
            text = teams.group(1)
        matches = list(await engagement_repo.find_people(session, ctx.engagement.id, text))
    if len(matches) == 1:
        return matches[0]
    found_names = ", ".join(p.name for p in matches) or "nobody"
    raise PlanError(f'"{typed}" matches {found_names}. Use a handle, e.g. to=@maya.')


# --- /cadence help and the dispatcher -------------------------------------------------------------


async def help_command(ctx: Context, args: str) -> CommandResult:
    """Every /cadence subcommand, including those other modules registered."""
    lines = [SUBCOMMAND_HELP.get(name, f"/cadence {name}") for name in SUBCOMMANDS]
    return CommandResult(
        [reply("The engagement's cadence:\n" + "\n".join(lines))], action="cadence.help", outcome="help"
    )


SUBCOMMANDS: dict[str, Handler] = {
    "status": status_command,
    "milestones": milestones_command,
    "deliverable": deliverable_command,
    "handoff": handoff_command,
    "help": help_command,
}
"""Subcommand -> handler `async (ctx, args_after_the_name) -> CommandResult`. Add entries to extend."""

SUBCOMMAND_HELP: dict[str, str] = {
    "status": "/cadence status — day N of the engagement, days to the exit, next milestone, hand-over readiness",
    "milestones": "/cadence milestones — the 30/60/90 plan: owners, statuses and due dates",
    "deliverable": '/cadence deliverable <key> status=done|on_track|at_risk|blocked [note="..."] — report progress',
    "handoff": "/cadence handoff — the hand-over list; /cadence handoff <key> done [note=...] | <key> to=@name",
    "help": "/cadence help — this list",
}
"""Subcommand -> its line in `/cadence help`; a subcommand without one is listed by name."""


async def cadence_command(ctx: Context, args: str) -> CommandResult:
    """Dispatch `/cadence <subcommand> ...`; with nothing after it, the status screen."""
    head, *tail = args.split(maxsplit=1) or ["status"]
    name, rest = head.casefold(), tail[0] if tail else ""
    handler = SUBCOMMANDS.get(name)
    if handler is None:
        close = difflib.get_close_matches(name, list(SUBCOMMANDS), n=1, cutoff=0.6)
        hint = f" Did you mean /cadence {close[0]}?" if close else ""
        raise GrammarError(f"I don't know /cadence {name}.{hint} Try /cadence help.")
    try:
        return await handler(ctx, rest)
    except PlanError as exc:
        return CommandResult([reply(exc.message)], action=f"cadence.{name}", outcome=exc.outcome)


SPEC = CommandSpec(
    name="cadence",
    handler=cadence_command,
    summary="the engagement clock, the 30/60/90 plan and the hand-over",
    usage=USAGE,
)
