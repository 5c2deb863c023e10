"""`/deal`: the text grammar on top of the deal service, the same in Slack, Teams and the console."""

from __future__ import annotations

from cadences import deal_events, deal_views
from cadences.commands import CommandResult, CommandSpec
from cadences.context import Context
from cadences.deals import Outcome, confirm_deal, create_deal, resolve_deal, update_deal
from cadences.grammar import DealCommand, parse_deal_command
from cadences.messages import Message, Paragraph, reply
from storage import deals as deal_repo
from storage import engagements as engagement_repo

USAGE = '/deal <deal> field=value ... | new "Name" ... | <deal> won | <deal> lost reason=... | list | show | history'
HELP = """Update a deal by typing its name (or the start of it) and the fields that changed:
  /deal Acme stage=proposal amount=48k close=2026-12-15 next="Send MSA" forecast=commit
  /deal new "Globex Corp" amount=$120,000 close=eoq stage=discovery
  /deal Acme note="Champion moved to the CFO office"
  /deal Acme won            /deal Acme lost reason="no decision" competitor=Initech
  /deal Acme ok             (still accurate: confirms the deal is up to date)
  /deal list                /deal list @jordan          /deal show Acme          /deal history Acme
Fields: stage, amount, close, next, next_date, forecast (commit, best_case, pipeline, omitted), risk,
account, source, segment, owner (managers and the CRO), name, note.
Amounts: 48k, $48,000, 1.2m, 48000.50. Dates: 2026-12-15, Dec 15, +30d, eom, eoq."""


async def deal_command(ctx: Context, args: str) -> CommandResult:
    command = parse_deal_command(args)
    if command.verb == "help":
        return CommandResult([reply(HELP)], action="deal.help", outcome="help")
    if command.verb == "list":
        return await _list(ctx, command)
    if command.verb == "new":
        assert command.target is not None
        outcome = await create_deal(ctx, command.target, command.fields)
        return await _result(ctx, outcome, "deal.create", f"Created {outcome.deal.name}.")
    assert command.target is not None
    async with ctx.db.session() as session:
        deal = await resolve_deal(session, ctx.engagement.id, command.target)
        names = await deal_views.load_names(session, ctx.engagement.id, ctx.engagement.currency)
        if command.verb == "show":
            return CommandResult([deal_views.deal_card(deal, names)], action="deal.show", outcome="read")
        if command.verb == "history":
            rows = await deal_repo.history(session, deal.id)
            message = deal_views.history_message(deal, rows, names, ctx.tz)
            return CommandResult([message], action="deal.history", outcome="read")
    if command.verb == "confirm":
        outcome = await confirm_deal(ctx, deal.id)
        return await _result(ctx, outcome, "deal.confirm", f"Thanks — {deal.name} marked as still accurate.")
    kind = command.verb if command.verb in ("won", "lost") else "update"
    # No expected version: a typed change was not made against values the person saw, so it applies to the
    # deal as it is when written (the write locks the row). Two reps' commands for one deal a moment apart
    # both apply, in order, instead of the second being told it edited a stale form.
    outcome = await update_deal(ctx, deal.id, command.fields, kind=kind)
    return await _result(ctx, outcome, f"deal.{outcome.kind}", change_intro(deal.name, outcome))


def change_intro(name: str, outcome: Outcome) -> str:
    """The first line of the answer to a change of the deal called `name` before it (a rename says
    "Updated <new name>."), whether the change was typed or made in a form."""
    return {"won": f"Congratulations — {name} is won!", "lost": f"{name} marked as lost."}.get(
        outcome.kind, f"Updated {outcome.deal.name}." if outcome.changes else f"Note added to {name}."
    )


async def confirmation(ctx: Context, outcome: Outcome, intro: str) -> Message:
    """The deal card after a change, with each field's before → after and the note: the same answer for
    the text command and for a Slack modal or Teams card that made the change."""
    async with ctx.db.session() as session:
        names = await deal_views.load_names(session, ctx.engagement.id, ctx.engagement.currency)
    lines = deal_views.change_lines(outcome.changes, names) if outcome.kind != "create" else []
    card = deal_views.deal_card(outcome.deal, names, intro=intro)
    blocks = list(card.blocks)
    if lines:
        blocks.insert(1, Paragraph(text="\n".join(lines)))
    if outcome.note and outcome.kind != "confirm":
        blocks.insert(1, Paragraph(text=f"Note: {outcome.note}", muted=True))
    return Message(text=intro, blocks=blocks, ephemeral=True)


async def _result(ctx: Context, outcome: Outcome, action: str, intro: str) -> CommandResult:
    await deal_events.publish(ctx, outcome)
    return CommandResult(
        [await confirmation(ctx, outcome, intro)],
        action=action,
        target=f"deal:{outcome.deal.id}",
        detail={"changes": outcome.changes, "events": outcome.events},
    )


async def _list(ctx: Context, command: DealCommand) -> CommandResult:
    assert ctx.actor is not None
    async with ctx.db.session() as session:
        who = ctx.actor
        if command.person:
            found = await engagement_repo.person_by_identity(session, ctx.engagement.id, ctx.channel, command.person)
            matches = (
                [found]
                if found
                else list(await engagement_repo.find_people(session, ctx.engagement.id, command.person))
            )
            if len(matches) != 1:
                names_found = ", ".join(p.name for p in matches) or "nobody"
                return CommandResult(
                    [reply(f'"{command.person}" matches {names_found}. Use a handle, e.g. /deal list @jordan.')],
                    action="deal.list",
                    outcome="read",
                )
            who = matches[0]
        deals = await deal_repo.open_deals_of(session, ctx.engagement.id, who.id)
        names = await deal_views.load_names(session, ctx.engagement.id, ctx.engagement.currency)
    mine = who.id == ctx.actor.id
    title = "Your open deals" if mine else f"{who.name}'s open deals"
    empty = (
        'You have no open deals. Add one with /deal new "Name" amount=... close=...'
        if mine
        else f"{who.name} has no open deals."
    )
    return CommandResult([deal_views.deal_list(title, deals, names, empty=empty)], action="deal.list", outcome="read")


SPEC = CommandSpec(name="deal", handler=deal_command, summary="update, add, close, list and show deals", usage=USAGE)
