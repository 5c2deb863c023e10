"""`/pipeline`: the review's commands — the snapshot, starting the review, the forecast call, forecast
accuracy, decisions and action items — plus what a reply in a review thread records.

Grammar (the same in Slack, Teams and the console):
  /pipeline [snapshot]                         the review's figures as of now (anyone in the engagement)
  /pipeline start                              post this week's review now (host, manager or CRO)
  /pipeline forecast commit=400k best=650k [note="..."]
  /pipeline accuracy [FY2027 Q3 | Q3 | last]
  /pipeline decide <deal or -> text="..."
  /pipeline action <deal or -> owner=@jordan due=Dec 4 text="..."
  /pipeline actions [all | mine]               /pipeline done <id>
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, time, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cadences import deal_events, deal_views
from cadences.authz import Action, allowed, denial
from cadences.commands import CommandResult, CommandSpec
from cadences.context import Context
from cadences.deals import MAX_TEXT, DealError, not_in_engagement, resolve_deal, update_deal
from cadences.grammar import GrammarError, QuotedWord, parse_key_values, tokenize
from cadences.messages import Actions, Block, Button, Header, Message, Paragraph, Table, reply
from cadences.parsing import AmbiguousInput, ParseError, parse_amount, parse_date
from cadences.periods import fiscal_quarter_bounds, iso_week_key, quarter_label
from cadences.pipeline_metrics import (
    WEEK,
    closed_won,
    forecast_accuracy,
    open_action_items,
    quarter_numbers,
    short_day,
)
from cadences.pipeline_review import (
    REVIEW,
    MoneyText,
    action_line,
    current_host,
    fit_blocks,
    gather,
    last_review_at,
    latest_call,
    review_blocks,
    review_occurrence,
)
from cadences.rituals import at_local, load_facts
from storage import audit
from storage import deals as deal_repo
from storage import engagements as engagement_repo
from storage.models import ActionItem, Deal, Decision, ForecastCall, Occurrence, Person

USAGE = (
    "/pipeline [snapshot] | start | forecast commit=… best=… [note=…] | accuracy [quarter] | "
    'decide <deal|-> text="…" | action <deal|-> owner=@… due=… text="…" | actions [all] | done <id>'
)
HELP = """The weekly pipeline review:
  /pipeline                      the review's figures as of now (also /pipeline snapshot)
  /pipeline start                post this week's review now (the host, a manager or the CRO)
  /pipeline forecast commit=400k best=650k note="Globex slipped to Q1"
                                 call the quarter (a change over 10% needs a note saying what changed)
  /pipeline accuracy FY2027 Q3   forecast accuracy of a closed quarter (or: last)
  /pipeline decide Acme text="Offer a 2-year term"       (use - for the pipeline as a whole)
  /pipeline action Acme owner=@jordan due=Dec 4 text="Book the CFO meeting"
  /pipeline actions              open action items (yours; everyone's for the CRO and managers)
  /pipeline done 12              close action item #12
In a deal's review thread, a reply becomes a note on the deal; start it with action: (or todo:) for an
action item for the deal's owner ("action: send pricing by Dec 4"), or decision: to record a decision."""

FORECAST_FIELDS = {"commit": "commit", "best": "best", "best_case": "best", "bestcase": "best", "note": "note"}
DECIDE_FIELDS = {"text": "text", "decision": "text"}
ACTION_FIELDS = {"owner": "owner", "due": "due", "by": "due", "text": "text"}
FORECAST_CHANGE = Decimal("0.10")
"""A call moving commit or best case by more than this share needs a note saying what changed."""
WHOLE_PIPELINE = "-"
GONE = "That deal is no longer in this engagement's pipeline, so nothing was recorded."
SLACK_MENTION = re.compile(r"<@([A-Za-z0-9]+)(?:\|[^>]*)?>")
THREAD_PREFIX = re.compile(r"(action|todo|decision)\s*:\s*(.*)", re.IGNORECASE | re.DOTALL)
DUE_SUFFIX = re.compile(r"(.*\S)\s+by\s+(.+?)\s*[.!]?", re.IGNORECASE | re.DOTALL)

Verb = Callable[[Context, list[str]], Awaitable[CommandResult]]


def _actor(ctx: Context) -> Person:
    assert ctx.actor is not None, "the router answers people outside the engagement before any handler runs"
    return ctx.actor


def _joined(words: Sequence[str]) -> str | None:
    return " ".join(" ".join(words).split()) or None


def _denied(action: str, message: str) -> CommandResult:
    return CommandResult([reply(message)], action=action, outcome="denied")


def _read(action: str, *messages: Message) -> CommandResult:
    return CommandResult(list(messages), action=action, outcome="read")


def _grammar(exc: ParseError) -> GrammarError:
    return GrammarError(exc.message)


def _text(value: str | None, what: str, example: str) -> str:
    text = (value or "").strip()
    if not text:
        raise GrammarError(f"Say what the {what} is: {example}")
    if len(text) > MAX_TEXT:
        raise GrammarError(f"The {what} is {len(text)} characters; keep it under {MAX_TEXT}.")
    return text


# --- snapshot and start ----------------------------------------------------------------------------------


async def _snapshot(ctx: Context, rest: list[str]) -> CommandResult:
    """What the person sees: the review post's figures as of now, just for them."""
    if rest:
        raise GrammarError("/pipeline snapshot takes nothing else. Try /pipeline help.")
    now, today = ctx.now(), ctx.today()
    async with ctx.db.session() as session:
        facts = await load_facts(session, ctx.engagement)
        since = await last_review_at(session, facts.id, now) or now - WEEK
        host = await current_host(session, facts, REVIEW)
        fig = await gather(session, facts, today, now, since, host)
        names = await deal_views.load_names(session, facts.id, ctx.engagement.currency)
    main, continued = fit_blocks(review_blocks(fig, names, facts, snapshot=True))
    text = f"Pipeline snapshot {fig.numbers.label}"
    messages = [Message(text=text, blocks=main, ephemeral=True)]
    messages += [Message(text=f"{text}, continued", blocks=blocks, ephemeral=True) for blocks in continued]
    return _read("pipeline.snapshot", *messages)


def _already(occ: Occurrence, ctx: Context, names: dict[int, str]) -> str:
    week = occ.period
    if occ.status == "skipped":
        return f"This week's review ({week}) was skipped: {occ.skip_reason or 'no reason recorded'}."
    if occ.status != "planned":
        return f"This week's review ({week}) is being posted right now."
    when = (occ.planned_at or occ.due_at).astimezone(ctx.tz)
    host = f", hosted by {names[occ.host_id]}" if occ.host_id in names else ""
    return f"This week's review ({week}) already ran on {when:%a %b} {when.day} at {when:%H:%M}{host}."


async def _start(ctx: Context, rest: list[str]) -> CommandResult:
    """What the person sees: the review posted in the review channel, or why it was not."""
    if rest:
        raise GrammarError("/pipeline start takes nothing else: it posts this week's review now.")
    actor = _actor(ctx)
    week = iso_week_key(ctx.today())
    async with ctx.db.session() as session:
        facts = await load_facts(session, ctx.engagement)
        host = await current_host(session, facts, REVIEW)
        existing = await review_occurrence(session, facts.id, week)
    names = {p.id: p.name for p in facts.people}
    if not (host is not None and host.id == actor.id) and not allowed(actor, Action.RUN_RITUAL):
        return _denied("pipeline.start", denial(Action.RUN_RITUAL))
    if existing is not None:
        return CommandResult([reply(_already(existing, ctx, names))], action="pipeline.start", outcome="unchanged")
    if ctx.cadence is None:
        message = (
            "The scheduler isn't running, so I can't post the review from here. Start Cadence with "
            "`cadence run`, or see the figures now with /pipeline snapshot."
        )
        return CommandResult([reply(message)], action="pipeline.start", outcome="unavailable")
    occ_id = await ctx.cadence.trigger(ctx.engagement, REVIEW, week, host_id=actor.id)
    async with ctx.db.session() as session:
        occ = await review_occurrence(session, facts.id, week)
    assert occ is not None
    if occ_id is None or occ.status != "planned":
        outcome = "unchanged" if occ_id is None else "failed"
        return CommandResult([reply(_already(occ, ctx, names))], action="pipeline.start", outcome=outcome)
    channel = facts.settings.pipeline_review.channel
    return CommandResult(
        [reply(f"Posted this week's pipeline review ({week}) in #{channel}, hosted by you.")],
        action="pipeline.start",
        target=f"occurrence:{occ_id}",
    )


# --- the forecast ---------------------------------------------------------------------------------------------


def _moved(before: Decimal, after: Decimal) -> bool:
    if before == 0:
        return after != 0
    return abs(after - before) / before > FORECAST_CHANGE


def _change(label: str, before: Decimal, after: Decimal, money: MoneyText) -> str:
    share = "" if before == 0 else f" ({'+' if after > before else ''}{((after - before) / before * 100):.0f}%)"
    return f"{label} from {money(before)} to {money(after)}{share}"


async def _forecast(ctx: Context, rest: list[str]) -> CommandResult:
    """What the person sees: their call recorded and set against the pipeline — or a question first."""
    actor = _actor(ctx)
    words, fields = parse_key_values(rest, FORECAST_FIELDS)
    if words or "commit" not in fields or "best" not in fields:
        raise GrammarError("Give both numbers: /pipeline forecast commit=400k best=650k")
    currency = ctx.engagement.currency
    try:
        commit, best = (parse_amount(fields[k], currency) for k in ("commit", "best"))
    except ParseError as exc:
        raise _grammar(exc) from exc
    if commit.currency != currency or best.currency != currency:
        raise GrammarError(f"This engagement reports in {currency}; give the call in {currency}.")
    if best.amount < commit.amount:
        raise GrammarError("Best case includes commit, so it can't be below it. Check the two numbers.")
    note = _text(fields["note"], "note", 'note="…"') if "note" in fields else None
    money = MoneyText(currency)
    now, today = ctx.now(), ctx.today()
    async with ctx.db.write() as session:
        facts = await load_facts(session, ctx.engagement)
        owner = await current_host(session, facts, "forecast")
        if not (owner is not None and owner.id == actor.id) and not allowed(actor, Action.CALL_FORECAST):
            return _denied("pipeline.forecast", denial(Action.CALL_FORECAST))
        numbers = await quarter_numbers(session, ctx.engagement, today)
        previous = await latest_call(session, facts.id, numbers.label)
        if previous is not None and note is None:
            moves = [
                _change(label, before, after, money)
                for label, before, after in (
                    ("commit", previous.commit, commit.amount),
                    ("best case", previous.best_case, best.amount),
                )
                if _moved(before, after)
            ]
            if moves:
                question = (
                    f"That moves {' and '.join(moves)} since the call on {short_day(previous.at.astimezone(ctx.tz))}."
                    " What changed? Send it again with a note, e.g. /pipeline forecast "
                    f'commit={fields["commit"]} best={fields["best"]} note="Globex slipped to next quarter"'
                )
                return CommandResult(
                    [reply(question)],
                    action="pipeline.forecast",
                    outcome="needs_note",
                    detail={"quarter": numbers.label},
                )
        call = ForecastCall(
            engagement_id=facts.id,
            quarter=numbers.label,
            commit=commit.amount,
            best_case=best.amount,
            by_id=actor.id,
            at=now,
            note=note,
        )
        session.add(call)
        await session.flush()
        call_id = call.id
    r = numbers.rollup
    projected = numbers.won + r.commit
    intro = f"Forecast for {numbers.label} recorded: commit {money(commit.amount)}, best case {money(best.amount)}."
    blocks: list[Block] = [
        Paragraph(text=intro),
        Table(
            columns=["", "Your call", "Pipeline now"],
            rows=[
                ["Commit", money(commit.amount), money(projected)],
                ["Best case", money(best.amount), money(projected + r.best_case)],
            ],
        ),
        Paragraph(
            text=f"Pipeline now = closed won {money(numbers.won)} + open commit {money(r.commit)} "
            f"(+ best case {money(r.best_case)}). Weighted pipeline: {money(r.weighted)}.",
            muted=True,
        ),
    ]
    return CommandResult(
        [Message(text=intro, blocks=blocks, ephemeral=True)],
        action="pipeline.forecast",
        target=f"forecast_call:{call_id}",
        detail={"quarter": numbers.label},
    )


def find_quarter(text: str, today: date, fiscal_year_start_month: int) -> tuple[str, date, date]:
    """The quarter someone means: 'FY2027 Q3', 'Q3 FY2027', 'Q3' (the latest Q3), 'last' or 'this'."""
    wanted = "".join(text.upper().split())
    day = today
    if wanted in ("", "LAST", "PREVIOUS", "PREV"):
        day = fiscal_quarter_bounds(today, fiscal_year_start_month)[0] - timedelta(days=1)
        wanted = ""
    elif wanted in ("THIS", "CURRENT"):
        wanted = ""
    for _ in range(40):
        start, end = fiscal_quarter_bounds(day, fiscal_year_start_month)
        label = quarter_label(day, fiscal_year_start_month)
        compact = label.replace(" ", "")  # FY2027Q3
        if wanted in ("", compact, compact[-2:] + compact[:-2]) or wanted == compact[-2:]:
            return label, start, end
        day = start - timedelta(days=1)
    raise GrammarError(
        f'I couldn\'t find the quarter "{text}". Write it like FY2027 Q3, or "last" for the one that just closed.'
    )


async def _accuracy(ctx: Context, rest: list[str]) -> CommandResult:
    """What the person sees: the last call of a closed quarter against what actually closed."""
    words, _ = parse_key_values(rest, {})
    today = ctx.today()
    label, start, end = find_quarter(_joined(words) or "", today, ctx.engagement.fiscal_year_start_month)
    money = MoneyText(ctx.engagement.currency)
    span = f"{label} ({short_day(start)} – {short_day(end)}, {end.year})"
    if end >= today:
        return _read(
            "pipeline.accuracy",
            reply(
                f"{span} hasn't closed yet; its forecast accuracy is computed once it has. /pipeline shows it so far."
            ),
        )
    closes = at_local(end + timedelta(days=1), time(0), ctx.tz)
    async with ctx.db.session() as session:
        call = await latest_call(session, ctx.engagement.id, label, before=closes)
        actual = await closed_won(session, ctx.engagement.id, start, end)
        caller = await session.get(Person, call.by_id) if call is not None and call.by_id else None
    if call is None:
        return _read(
            "pipeline.accuracy",
            reply(
                f"Nobody called the forecast for {span}, so there is no accuracy to compute. "
                f"Closed won: {money(actual)}."
            ),
        )
    accuracy = forecast_accuracy(call.commit, actual)
    made = f"{short_day(call.at.astimezone(ctx.tz).date())}" + (f" by {caller.name}" if caller else "")
    head = f"{span}: the last call was commit {money(call.commit)} (best case {money(call.best_case)}, {made}); "
    if accuracy is None:
        return _read("pipeline.accuracy", reply(head + "nothing closed won, so accuracy isn't defined."))
    return _read(
        "pipeline.accuracy", reply(head + f"closed won {money(actual)}. Forecast accuracy: {(accuracy * 100):.0f}%.")
    )


# --- decisions and action items -------------------------------------------------------------------------------


async def _deal_or_pipeline(session: AsyncSession, ctx: Context, target: str) -> Deal | None:
    return None if target == WHOLE_PIPELINE else await resolve_deal(session, ctx.engagement.id, target)


async def _this_weeks_review(session: AsyncSession, ctx: Context) -> int | None:
    occ = await review_occurrence(session, ctx.engagement.id, iso_week_key(ctx.today()))
    return occ.id if occ is not None else None


async def _decide(ctx: Context, rest: list[str]) -> CommandResult:
    """What the person sees: the decision recorded, against a deal or the whole pipeline."""
    actor = _actor(ctx)
    words, fields = parse_key_values(rest, DECIDE_FIELDS)
    target = _joined(words)
    if target is None:
        raise GrammarError(
            'Which deal? Give its name, or - for the pipeline as a whole: /pipeline decide Acme text="…"'
        )
    text = _text(fields.get("text"), "decision", '/pipeline decide Acme text="Offer a 2-year term"')
    async with ctx.db.write() as session:
        deal = await _deal_or_pipeline(session, ctx, target)
        return await _record_decision(session, ctx, actor, deal, text)


async def _record_decision(
    session: AsyncSession, ctx: Context, actor: Person, deal: Deal | None, text: str
) -> CommandResult:
    if not allowed(actor, Action.RECORD_DECISION, owns=deal is not None and deal.owner_id == actor.id):
        return _denied(
            "pipeline.decide", "Reps record decisions on their own deals; a manager or the CRO records the rest."
        )
    row = Decision(
        engagement_id=ctx.engagement.id,
        deal_id=deal.id if deal else None,
        occurrence_id=await _this_weeks_review(session, ctx),
        author_id=actor.id,
        text=text,
        at=ctx.now(),
    )
    session.add(row)
    await session.flush()
    about = deal.name if deal else "the pipeline"
    return CommandResult(
        [reply(f"Decision recorded for {about}: {text}")],
        action="pipeline.decide",
        target=f"deal:{deal.id}" if deal else "pipeline",
        detail={"decision_id": row.id},
    )


async def _person(session: AsyncSession, ctx: Context, typed: str) -> Person:
    mention = SLACK_MENTION.fullmatch(typed.strip())
    if mention is not None:
        found = await engagement_repo.person_by_identity(session, ctx.engagement.id, "slack", mention.group(1))
        if found is not None and found.active:
            return found
    people = [p for p in await engagement_repo.find_people(session, ctx.engagement.id, typed) if p.active]
    if len(people) != 1:
        matches = ", ".join(p.name for p in people) or "nobody"
        raise GrammarError(f'"{typed}" matches {matches}. Use their handle, e.g. owner=@jordan.')
    return people[0]


async def _create_action(
    session: AsyncSession,
    ctx: Context,
    actor: Person,
    deal: Deal | None,
    owner: Person,
    text: str,
    due: date | None,
    source: str,
) -> CommandResult:
    owns = (deal is None or deal.owner_id == actor.id) and owner.id == actor.id
    if not allowed(actor, Action.RECORD_DECISION, owns=owns):
        return _denied(
            f"pipeline.{source}_action",
            "Reps add action items for themselves on their own deals; a manager or the CRO assigns the rest.",
        )
    if due is not None and due < ctx.today():
        raise GrammarError(f"The due date {short_day(due)} is in the past. Pick today or later.")
    item = ActionItem(
        engagement_id=ctx.engagement.id,
        deal_id=deal.id if deal else None,
        owner_id=owner.id,
        text=text,
        due_date=due,
        status="open",
        created_by_id=actor.id,
        created_at=ctx.now(),
        source=source,
    )
    session.add(item)
    await session.flush()
    parts = [f"Action item #{item.id} for {owner.name}: {text}"]
    parts.append(f"due {short_day(due)}" if due else "no due date")
    if deal is not None:
        parts.append(deal.name)
    return CommandResult(
        [reply(" · ".join(parts))],
        action=f"pipeline.{source}_action",
        target=f"action_item:{item.id}",
        detail={"deal_id": deal.id if deal else None},
    )


async def _action(ctx: Context, rest: list[str]) -> CommandResult:
    """What the person sees: the new action item with its number, owner and due date."""
    actor = _actor(ctx)
    words, fields = parse_key_values(rest, ACTION_FIELDS)
    target = _joined(words)
    if target is None:
        raise GrammarError(
            'Which deal? Give its name, or - for the pipeline: /pipeline action Acme owner=@jordan due=Dec 4 text="…"'
        )
    text = _text(fields.get("text"), "action item", '/pipeline action Acme owner=@jordan due=Dec 4 text="…"')
    due = None
    if "due" in fields:
        try:
            due = parse_date(fields["due"], ctx.today(), ctx.engagement.fiscal_year_start_month)
        except ParseError as exc:
            raise _grammar(exc) from exc
    async with ctx.db.write() as session:
        deal = await _deal_or_pipeline(session, ctx, target)
        if "owner" in fields:
            owner = await _person(session, ctx, fields["owner"])
        else:
            owner = (await session.get(Person, deal.owner_id) if deal else None) or actor
        return await _create_action(session, ctx, actor, deal, owner, text, due, "command")


async def _actions(ctx: Context, rest: list[str]) -> CommandResult:
    """What the person sees: open action items — theirs, or everyone's for the CRO and managers."""
    actor = _actor(ctx)
    words, _ = parse_key_values(rest, {})
    scope = (_joined(words) or "").casefold()
    if scope not in ("", "all", "mine", "me", "my"):
        raise GrammarError("Try /pipeline actions, /pipeline actions mine or /pipeline actions all.")
    everyone = scope in ("", "all") and allowed(actor, Action.RECORD_DECISION)
    async with ctx.db.session() as session:
        items = await open_action_items(session, ctx.engagement.id, owner_id=None if everyone else actor.id)
    today = ctx.today()
    title = "Open action items" if everyone else "Your open action items"
    body = "\n".join(f"• {action_line(a, today)}" for a in items) or "None open."
    blocks: list[Block] = [Header(text=title), Paragraph(text=body)]
    if scope == "all" and not everyone:
        blocks.append(Paragraph(text="Showing yours: the CRO and managers see everyone's.", muted=True))
    closable = [a for a in items if a.owner_id == actor.id or everyone][:10]
    if closable:
        blocks.append(
            Actions(
                buttons=[
                    Button(
                        label=f"Done #{a.id}",
                        action_id="action_done",
                        value=str(a.id),
                        command=f"/pipeline done {a.id}",
                    )
                    for a in closable
                ]
            )
        )
    main, continued = fit_blocks(blocks)
    messages = [Message(text=title, blocks=main, ephemeral=True)]
    messages += [Message(text=f"{title}, continued", blocks=b, ephemeral=True) for b in continued]
    return _read("pipeline.actions", *messages)


async def _done(ctx: Context, rest: list[str]) -> CommandResult:
    """What the person sees: the action item closed (by its owner, a manager or the CRO)."""
    actor = _actor(ctx)
    words, _ = parse_key_values(rest, {})
    typed = (_joined(words) or "").lstrip("#")
    if not typed.isdigit():
        raise GrammarError("Which action item? Give its number: /pipeline done 12 (see /pipeline actions).")
    async with ctx.db.write() as session:
        item = (
            await session.execute(
                select(ActionItem)
                .where(ActionItem.id == int(typed), ActionItem.engagement_id == ctx.engagement.id)
                .with_for_update()
            )
        ).scalar_one_or_none()
        if item is None:
            raise DealError(f"There is no action item #{typed}. See /pipeline actions.")
        if item.owner_id != actor.id and not allowed(actor, Action.RECORD_DECISION):
            return _denied("pipeline.done", "Only the action item's owner, a manager or the CRO can close it.")
        if item.status != "open":
            return CommandResult(
                [reply(f"Action item #{item.id} is already {item.status}.")],
                action="pipeline.done",
                outcome="unchanged",
                target=f"action_item:{item.id}",
            )
        item.status = "done"
        item.done_at = ctx.now()
        text = item.text
    return CommandResult([reply(f"Done: #{typed} {text}")], action="pipeline.done", target=f"action_item:{typed}")


async def _help(ctx: Context, rest: list[str]) -> CommandResult:
    return CommandResult([reply(HELP)], action="pipeline.help", outcome="help")


VERBS: dict[str, Verb] = {
    "snapshot": _snapshot,
    "start": _start,
    "forecast": _forecast,
    "accuracy": _accuracy,
    "decide": _decide,
    "decision": _decide,
    "action": _action,
    "todo": _action,
    "actions": _actions,
    "done": _done,
    "help": _help,
    "?": _help,
}


async def pipeline_command(ctx: Context, args: str) -> CommandResult:
    tokens = tokenize(args)
    if not tokens:
        return await _snapshot(ctx, [])
    head = tokens[0]
    verb = VERBS.get(head.casefold()) if not isinstance(head, QuotedWord) else None
    if verb is None:
        raise GrammarError(f"I don't know “/pipeline {head}”. Try /pipeline help.")
    return await verb(ctx, tokens[1:])


SPEC = CommandSpec(
    name="pipeline",
    handler=pipeline_command,
    summary="the weekly pipeline review: snapshot, start, forecast call, accuracy, decisions and action items",
    usage=USAGE,
)


# --- replies in a review thread ---------------------------------------------------------------------------------


def _split_due(text: str, today: date, fiscal_year_start_month: int) -> tuple[str, date | None]:
    """'send pricing by Dec 4' → ('send pricing', Dec 4). A tail that isn't a date stays part of the text;
    an ambiguous one (4/12) is asked about rather than guessed."""
    match = DUE_SUFFIX.fullmatch(text)
    if match is None:
        return text, None
    try:
        return match.group(1), parse_date(match.group(2), today, fiscal_year_start_month)
    except AmbiguousInput as exc:
        raise GrammarError(exc.message) from exc
    except ParseError:
        return text, None


async def _thread_reply(ctx: Context, deal_id: int, text: str) -> CommandResult:
    actor = _actor(ctx)
    body = text.strip()
    prefix = THREAD_PREFIX.fullmatch(body)
    if prefix is None:
        async with ctx.db.session() as session:
            if await deal_repo.get_deal(session, ctx.engagement.id, deal_id) is None:
                raise DealError(GONE)
        outcome = await update_deal(ctx, deal_id, {"note": body})
        await deal_events.publish(ctx, outcome)
        return CommandResult(
            [reply(f"Noted on {outcome.deal.name}.")],
            action="review.thread_note",
            target=f"deal:{deal_id}",
            detail={"history_id": outcome.history_id},
        )
    kind, rest = prefix.group(1).casefold(), prefix.group(2).strip()
    async with ctx.db.write() as session:
        deal = await deal_repo.get_deal(session, ctx.engagement.id, deal_id)
        if deal is None:
            raise DealError(GONE)
        if kind == "decision":
            return await _record_decision(session, ctx, actor, deal, _text(rest, "decision", "decision: …"))
        task, due = _split_due(rest, ctx.today(), ctx.engagement.fiscal_year_start_month)
        owner = await session.get(Person, deal.owner_id)
        assert owner is not None
        return await _create_action(
            session, ctx, actor, deal, owner, _text(task, "action item", "action: send pricing by Dec 4"), due, "thread"
        )


async def record_note_from_thread(ctx: Context, deal_id: int, text: str) -> list[Message]:
    """A reply in a deal's review thread, recorded as what it says: a note on the deal; with "action:" or
    "todo:" an action item for the deal's owner (optionally "by <date>"); with "decision:" a decision.

    Platform adapters call this with the person who replied; like a command, every attempt is audited
    with the exact text, accepted or not, and the answer is a reply for that person."""
    if ctx.actor is None:
        result = CommandResult([reply(not_in_engagement(ctx))], action="review.thread", outcome="denied")
    else:
        try:
            result = await _thread_reply(ctx, deal_id, text)
        except GrammarError as exc:
            result = CommandResult([reply(exc.message)], action="review.thread", outcome="rejected")
        except DealError as exc:
            result = CommandResult([reply(exc.message)], action="review.thread", outcome=exc.outcome)
    async with ctx.db.session() as session:
        audit.record(
            session,
            at=ctx.now(),
            channel=ctx.channel,
            action=result.action,
            outcome=result.outcome,
            engagement_id=ctx.engagement.id,
            actor_id=ctx.actor.id if ctx.actor else None,
            actor_ref=ctx.actor_ref,
            target=result.target or f"deal:{deal_id}",
            detail={"text": text, **result.detail},
        )
    return result.messages
