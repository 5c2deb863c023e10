"""`/debrief`: list, show and answer deal debriefs, nudge a rep about one, and read the win/loss lessons.

The same words work in Slack, Teams and the console; the buttons in the debrief DMs carry these commands.
"""

from __future__ import annotations

from datetime import timedelta

from cadences.authz import Action, allowed, denial
from cadences.commands import CommandResult, CommandSpec
from cadences.context import Context
from cadences.deal_views import load_names, money
from cadences.deals import DealError
from cadences.debriefs import (
    DebriefView,
    WinLoss,
    WinLossSummary,
    answer_button,
    answer_debrief,
    business_age,
    debrief_card,
    debrief_item,
    get_debrief,
    holidays_of,
    load_view,
    may_answer,
    nudge,
    outstanding,
    questions_for,
    win_loss_summary,
)
from cadences.engagement_file import engagement_settings
from cadences.grammar import GrammarError, QuotedWord, parse_key_values, tokenize
from cadences.messages import Block, DealList, FieldItem, Fields, Header, Message, Paragraph, Table, reply
from storage.models import Debrief, Person, Role

USAGE = "/debrief | <id> key=value ... | show <id> | nudge <id> | insights [days=90] | help"
HELP = """Debriefs are the questions I ask after a deal is won, lost, slips, moves back or stalls.
  /debrief                        the debriefs waiting for answers (yours; everyone's for managers and the CRO)
  /debrief 12 reason="no decision" competitor=Initech differently="Multi-thread earlier"
                                  answer debrief 12 (choices: type the option or the start of it)
  /debrief show 12                a debrief with its questions and answers
  /debrief nudge 12               managers and the CRO: send the rep the questions again
  /debrief insights days=180      win rate, loss reasons, competitors and lessons (default: last 90 days)"""
DEFAULT_DAYS = 90
MAX_DAYS = 730


def _debrief_id(word: str) -> int:
    text = word.removeprefix("#")
    if isinstance(word, QuotedWord) or not text.isdigit():
        raise GrammarError(f'"{word}" is not a debrief number. Type /debrief to see yours, then /debrief 12 key=value')
    return int(text)


async def debrief_command(ctx: Context, args: str) -> CommandResult:
    tokens = tokenize(args)
    head = tokens[0].casefold() if tokens and not isinstance(tokens[0], QuotedWord) else None
    if not tokens or head in ("list", "mine"):
        return await _list(ctx)
    if head in ("help", "?"):
        return CommandResult([reply(HELP)], action="debrief.help", outcome="help")
    if head == "insights":
        return await _insights(ctx, tokens[1:])
    if head in ("show", "nudge"):
        if len(tokens) != 2:
            raise GrammarError(f"Which debrief? e.g. /debrief {head} 12")
        debrief_id = _debrief_id(tokens[1])
        return await (_show(ctx, debrief_id) if head == "show" else _nudge(ctx, debrief_id))
    debrief_id = _debrief_id(tokens[0])
    if len(tokens) == 1:
        return await _show(ctx, debrief_id)
    return await _answer(ctx, debrief_id, tokens[1:])


async def _view(ctx: Context, debrief: Debrief) -> tuple[DebriefView, int]:
    async with ctx.db.session() as session:
        view = await load_view(session, engagement_settings(ctx.engagement), ctx.tz, debrief)
    return view, business_age(debrief.created_at, ctx.today(), ctx.tz, holidays_of(ctx))


def _sees_everyone(person: Person) -> bool:
    return person.role != Role.REP


async def _show(ctx: Context, debrief_id: int) -> CommandResult:
    actor = ctx.actor
    assert actor is not None
    async with ctx.db.session() as session:
        debrief = await get_debrief(session, ctx.engagement.id, debrief_id)
    if not _sees_everyone(actor) and debrief.owner_id != actor.id:
        raise DealError(f"Debrief #{debrief_id} isn't yours; reps see their own debriefs.", outcome="denied")
    view, age = await _view(ctx, debrief)
    return CommandResult(
        [debrief_card(view, age=age)], action="debrief.show", outcome="read", target=f"debrief:{debrief_id}"
    )


async def _answer(ctx: Context, debrief_id: int, tokens: list[str]) -> CommandResult:
    async with ctx.db.session() as session:
        debrief = await get_debrief(session, ctx.engagement.id, debrief_id)
    keys = [q.key for q in questions_for(engagement_settings(ctx.engagement), debrief.trigger)]
    words, fields = parse_key_values(tokens, {k: k for k in keys})
    if words:
        raise GrammarError(
            f'I didn\'t understand "{" ".join(words)}". Answer as key=value: '
            f'/debrief {debrief_id} {keys[0] if keys else "key"}="..."'
        )
    answered = await answer_debrief(ctx, debrief_id, fields)
    view = answered.view
    if answered.completed:
        intro = f"Thanks — debrief #{debrief_id} on {view.deal.name} is complete."
    elif answered.still_missing:
        todo = "; ".join(f"{q.key} ({q.text})" for q in answered.still_missing)
        intro = f"Saved. Still to answer for debrief #{debrief_id}: {todo}."
    else:
        intro = f"Updated debrief #{debrief_id} on {view.deal.name}."
    return CommandResult(
        [debrief_card(view, intro=intro)],
        action="debrief.answer",
        target=f"debrief:{debrief_id}",
        detail={"answers": answered.saved, "complete": not answered.still_missing},
    )


async def _nudge(ctx: Context, debrief_id: int) -> CommandResult:
    sent = await nudge(ctx, debrief_id)
    text = (
        f"Nudged: I've sent the questions of debrief #{debrief_id} again."
        if sent
        else f"Debrief #{debrief_id} was already nudged today."
    )
    return CommandResult(
        [reply(text)], action="debrief.nudge", outcome="ok" if sent else "unchanged", target=f"debrief:{debrief_id}"
    )


async def _list(ctx: Context) -> CommandResult:
    actor = ctx.actor
    assert actor is not None
    everyone = _sees_everyone(actor)
    async with ctx.db.session() as session:
        debriefs = await outstanding(session, ctx.engagement.id, None if everyone else actor.id)
        names = await load_names(session, ctx.engagement.id, ctx.engagement.currency)
        settings = engagement_settings(ctx.engagement)
        views = [await load_view(session, settings, ctx.tz, d, names) for d in debriefs]
    holidays, today = holidays_of(ctx), ctx.today()
    items = [
        debrief_item(
            view,
            business_age(view.debrief.created_at, today, ctx.tz, holidays),
            [answer_button(view)] if may_answer(actor, view.debrief) else [],
        )
        for view in views
    ]
    title = "Debriefs waiting for answers, oldest first" if everyone else "Your debriefs waiting for answers"
    empty = "No debriefs are waiting." if everyone else "You have no debriefs waiting. Thank you!"
    message = Message(text=title, blocks=[DealList(title=title, items=items, empty_text=empty)], ephemeral=True)
    return CommandResult([message], action="debrief.list", outcome="read")


# --- insights -------------------------------------------------------------------------------------


async def _insights(ctx: Context, tokens: list[str]) -> CommandResult:
    actor = ctx.actor
    assert actor is not None
    if not allowed(actor, Action.VIEW_DIGEST):
        raise DealError(denial(Action.VIEW_DIGEST), outcome="denied")
    words, fields = parse_key_values(tokens, {"days": "days"})
    if words:
        raise GrammarError("Give the window in days: /debrief insights days=180")
    raw = fields.get("days", str(DEFAULT_DAYS))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise GrammarError(f"days= takes a number of days from 1 to {MAX_DAYS}, e.g. days=180")
    end = ctx.today()
    start = end - timedelta(days=int(raw) - 1)
    async with ctx.db.session() as session:
        found = await win_loss_summary(session, ctx.engagement.id, start, end)
    return CommandResult([insights_message(found, ctx.engagement.currency)], action="debrief.insights", outcome="read")


def _pct(rate: float | None) -> str:
    return f"{rate:.0%}" if rate is not None else "—"


def _table(title: str, rows: list[WinLoss], currency: str) -> Table:
    return Table(
        columns=[title, "Won", "Lost", "Win rate", "By value", "Won value"],
        rows=[
            [r.label, str(r.won), str(r.lost), _pct(r.win_rate), _pct(r.value_win_rate), money(r.won_value, currency)]
            for r in rows
        ],
    )


def insights_message(found: WinLossSummary, currency: str) -> Message:
    """The win/loss summary as one message: rates, breakdowns, loss reasons, competitors and lessons."""
    span = f"{found.start:%b %-d} – {found.end:%b %-d, %Y}"
    title = f"Win/loss, {span}"
    overall = found.overall
    if overall.won + overall.lost == 0:
        return reply(f"No deals were won or lost between {span}.")
    closed_value = overall.won_value + overall.lost_value
    cycle = found.median_cycle_days
    blocks: list[Block] = [
        Header(text=title),
        Fields(
            items=[
                FieldItem(label="Win rate", value=f"{_pct(overall.win_rate)} ({overall.won} won, {overall.lost} lost)"),
                FieldItem(
                    label="Win rate by value",
                    value=f"{_pct(overall.value_win_rate)} "
                    f"({money(overall.won_value, currency)} of {money(closed_value, currency)})",
                ),
                FieldItem(label="Median sales cycle", value=f"{cycle:g} days" if cycle is not None else "—"),
            ]
        ),
        _table("Source", found.by_source, currency),
        _table("Segment", found.by_segment, currency),
        _table("Rep", found.by_rep, currency),
    ]
    if found.loss_reasons:
        blocks.append(
            Paragraph(
                text="Top loss reasons: "
                + "; ".join(f"{t.label} {t.count} ({money(t.value, currency)})" for t in found.loss_reasons)
            )
        )
    if found.competitors:
        blocks.append(
            Paragraph(
                text="Lost to competitors: "
                + "; ".join(f"{t.label} {t.count} ({money(t.value, currency)})" for t in found.competitors)
            )
        )
    if found.lessons:
        blocks.append(Paragraph(text="Lessons from debriefs:\n" + "\n".join(f"• {x.line()}" for x in found.lessons)))
    summary = (
        f"{title}: {_pct(overall.win_rate)} win rate ({overall.won} of {overall.won + overall.lost}), "
        f"{money(overall.won_value, currency)} won"
    )
    return Message(text=summary, blocks=blocks, ephemeral=True)


SPEC = CommandSpec(
    name="debrief", handler=debrief_command, summary="answer deal debriefs and read win/loss lessons", usage=USAGE
)
