"""The weekly pipeline review — the heart of the engagement — and the reminders around it.

- `PipelineReview` posts the review to the review channel at the configured day and time (moved to the
  next business day over a holiday): the quarter's numbers, the roll-up, what moved since the last
  review, hygiene per rep, the forecast call and open action items; then one thread reply per deal to
  discuss, each with its card, the reasons and buttons. It records the week's `PipelineSnapshot`.
- `PreReviewNudge` DMs each rep, on the business day before, at their own local time, the deals they
  should fix before the review. `LastCall` repeats it shortly before the review for the deals still
  untouched.
- `ActionReminder` DMs each owner of action items due today or overdue, every business morning.

The review post and `/pipeline snapshot` are built by the same functions (`gather` and `review_blocks`),
so the figures a person checks mid-week read exactly like Monday's.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cadences import deal_views
from cadences.messages import (
    Actions,
    Block,
    Button,
    DealList,
    FieldItem,
    Fields,
    Header,
    Message,
    Paragraph,
    Table,
)
from cadences.parsing import format_money_short
from cadences.periods import is_business_day, iso_week_key, next_business_day_on_or_after, previous_business_day
from cadences.pipeline_metrics import (
    WEEK,
    AmountChange,
    Attention,
    DateMove,
    DealEvent,
    Flag,
    Movement,
    OpenAction,
    QuarterNumbers,
    RepHygiene,
    StageMove,
    attention,
    flagged_for_review,
    hygiene,
    movement,
    open_action_items,
    plural,
    quarter_numbers,
    short_day,
    snapshot_totals,
)
from cadences.rituals import Due, EngagementFacts, Outgoing, PersonFacts, Recipient, RitualRun, at_local, daily
from storage.models import ForecastCall, HandoffTask, Occurrence, PipelineSnapshot, Role

REVIEW = "pipeline_review"
NUDGE = "review_nudge"
LAST_CALL = "review_last_call"
ACTION_REMINDER = "action_reminder"

MAX_BLOCKS = 45
"""Slack allows 50 blocks per message; 45 leaves room for a renderer's own additions."""
MAX_PARAGRAPH = 2900
"""Slack's section text limit is 3,000 characters; a paragraph past this continues in the thread."""
MAX_ACTIONS_SHOWN = 15
REMINDER_TIME = time(9, 0)
REMINDER_GRACE = timedelta(hours=3)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SCHEDULE_MARGIN = timedelta(days=14)
"""How far outside a window to look for reviews: a holiday run can push a review days after its
scheduled day, and a nudge runs a business day (maybe several calendar days) before it."""


# --- when -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewSlot:
    """One week's review: the ISO week of its scheduled day, that day, the day it runs, and when."""

    week: str
    scheduled: date
    day: date
    due_at: datetime


def review_slots(facts: EngagementFacts, start: datetime, end: datetime) -> list[ReviewSlot]:
    """Reviews scheduled around [start, end) (with a margin; callers filter by their own due time).

    A review on a holiday or weekend runs on the next business day at the same local time but keeps
    the week of its scheduled day, so moving it never creates a second review in a week."""
    settings = facts.settings.pipeline_review
    engagement = facts.engagement
    first = start.astimezone(facts.tz).date() - SCHEDULE_MARGIN
    last = end.astimezone(facts.tz).date() + SCHEDULE_MARGIN
    day = first + timedelta(days=(WEEKDAYS.index(settings.day) - first.weekday()) % 7)
    slots = []
    while day <= last:
        runs_on = next_business_day_on_or_after(day, facts.holidays)
        if engagement.start_date <= runs_on <= engagement.exit_date:
            slots.append(ReviewSlot(iso_week_key(day), day, runs_on, facts.local(runs_on, settings.time)))
        day += WEEK
    return slots


async def current_host(session: AsyncSession, facts: EngagementFacts, ritual: str) -> PersonFacts | None:
    """Who runs `ritual` now: the internal owner once its hand-over task is done, else the configured
    host (the review's host, or the forecast owner for "forecast"), else the CRO.

    The one place that answers "whose ritual is it?", so the hand-over moving a ritual to its new owner
    changes the review's host, the forecast owner and the permissions together."""
    handed = (
        select(HandoffTask.to_id)
        .where(
            HandoffTask.engagement_id == facts.id,
            HandoffTask.ritual == ritual,
            HandoffTask.status == "done",
            HandoffTask.to_id.is_not(None),
        )
        .order_by(HandoffTask.status_at.is_(None), HandoffTask.status_at.desc(), HandoffTask.id.desc())
        .limit(1)
    )
    to_id = (await session.execute(handed)).scalar_one_or_none()
    owner = facts.person(to_id)
    if owner is not None and owner.active:
        return owner
    settings = facts.settings
    configured = {
        REVIEW: settings.pipeline_review.host or settings.forecast_owner,
        "forecast": settings.forecast_owner,
    }.get(ritual)
    person = facts.person(configured)
    return person if person is not None and person.active else facts.cro


async def last_review_at(session: AsyncSession, engagement_id: int, before: datetime) -> datetime | None:
    """When the previous review was posted (the due time of the latest planned review before `before`)."""
    stmt = (
        select(Occurrence.due_at)
        .where(
            Occurrence.engagement_id == engagement_id,
            Occurrence.ritual == REVIEW,
            Occurrence.status == "planned",
            Occurrence.due_at < before,
        )
        .order_by(Occurrence.due_at.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def review_occurrence(session: AsyncSession, engagement_id: int, week: str) -> Occurrence | None:
    stmt = select(Occurrence).where(
        Occurrence.engagement_id == engagement_id, Occurrence.ritual == REVIEW, Occurrence.period == week
    )
    return (await session.execute(stmt)).scalar_one_or_none()


# --- what: figures and blocks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewFigures:
    """Everything the review post says, gathered in one transaction."""

    today: date
    now: datetime
    since: datetime
    numbers: QuarterNumbers
    movement: Movement
    hygiene: list[RepHygiene]
    forecast: ForecastCall | None
    forecast_owner: PersonFacts | None
    actions: list[OpenAction]
    flagged: list[Flag]
    host: PersonFacts | None


async def latest_call(
    session: AsyncSession, engagement_id: int, quarter: str, before: datetime | None = None
) -> ForecastCall | None:
    stmt = select(ForecastCall).where(ForecastCall.engagement_id == engagement_id, ForecastCall.quarter == quarter)
    if before is not None:
        stmt = stmt.where(ForecastCall.at < before)
    stmt = stmt.order_by(ForecastCall.at.desc(), ForecastCall.id.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def gather(
    session: AsyncSession, facts: EngagementFacts, today: date, now: datetime, since: datetime, host: PersonFacts | None
) -> ReviewFigures:
    numbers = await quarter_numbers(session, facts.engagement, today)
    moved = await movement(session, facts.id, since, now)
    return ReviewFigures(
        today=today,
        now=now,
        since=since,
        numbers=numbers,
        movement=moved,
        hygiene=await hygiene(session, facts.id, since, today),
        forecast=await latest_call(session, facts.id, numbers.label),
        forecast_owner=await current_host(session, facts, "forecast"),
        actions=await open_action_items(session, facts.id, limit=MAX_ACTIONS_SHOWN + 1),
        flagged=await flagged_for_review(session, facts, today, now, since=since, moved=moved),
        host=host,
    )


def _pct(share: Decimal) -> str:
    return f"{(share * 100).quantize(Decimal(1))}%"


class MoneyText:
    """Short money in the engagement's currency ('$48k'), signed deltas, and 'no amount'."""

    def __init__(self, currency: str) -> None:
        self.currency = currency

    def __call__(self, amount: Decimal | None) -> str:
        return "no amount" if amount is None else format_money_short(amount, self.currency)

    def signed(self, delta: Decimal) -> str:
        return ("+" if delta > 0 else "") + format_money_short(delta, self.currency)


def coverage_text(numbers: QuarterNumbers) -> str:
    """'2.1x of 3.0x target', or 'covered' when the quota is already won."""
    target = f"{numbers.coverage_target:.1f}x target"
    coverage = numbers.coverage
    return f"covered (quota reached; {target})" if coverage is None else f"{coverage:.1f}x of {target}"


def action_line(item: OpenAction, today: date) -> str:
    """'#12 Send pricing — Jordan Lee · due Nov 27 (overdue) · Acme Corp'."""
    due = "no due date" if item.due is None else f"due {short_day(item.due)}"
    if item.overdue(today):
        due += " (overdue)"
    return f"#{item.id} {item.text} — {item.owner} · {due}" + (f" · {item.deal}" if item.deal else "")


def _bullets(title: str, lines: Sequence[str], *, tail: str | None = None) -> Paragraph:
    body = "\n".join(f"• {line}" for line in lines)
    return Paragraph(text=f"{title}\n{body}" + (f"\n{tail}" if tail else ""))


T = TypeVar("T", DealEvent, StageMove, DateMove, AmountChange)
MAX_MOVES_SHOWN = 10
"""Lines per movement section in the review post, the largest deals first; the heading keeps the full
count. A big pipeline moves hundreds of deals a week, and a review that lists them all is not read (and
would spend most of its time formatting lines nobody sees)."""


def _size(move: DealEvent | StageMove | DateMove | AmountChange) -> Decimal:
    """How much a move matters in the list: the size of an amount change, else the deal's amount (a deal
    without one last)."""
    if isinstance(move, AmountChange):
        return abs(move.delta)
    return move.amount if move.amount is not None else Decimal(-1)


def _largest_first(moves: Sequence[T]) -> tuple[list[T], int]:
    """The `MAX_MOVES_SHOWN` largest (ties in the order they came), and how many more there are."""
    shown = heapq.nlargest(MAX_MOVES_SHOWN, moves, key=_size)
    return shown, len(moves) - len(shown)


def movement_blocks(mv: Movement, money: MoneyText) -> list[Block]:
    def who(deal: str, owner: str) -> str:
        return f"{deal} — {owner}"

    def slipped(m: DateMove) -> str:
        return (
            f"{who(m.deal, m.owner)} · {short_day(m.before)} → {short_day(m.after)} · slipped "
            f"{plural(m.slip_count, 'time')} in all" + (" · out of this quarter" if m.slipped_out else "")
        )

    def event(e: DealEvent) -> str:
        return f"{who(e.deal, e.owner)} · {money(e.amount)}"

    def stage(m: StageMove) -> str:
        return f"{who(m.deal, m.owner)} · {m.before} → {m.after}"

    def pulled(m: DateMove) -> str:
        return f"{who(m.deal, m.owner)} · {short_day(m.before)} → {short_day(m.after)}"

    def changed(c: AmountChange) -> str:
        return f"{who(c.deal, c.owner)} · {money(c.before)} → {money(c.after)} ({money.signed(c.delta)})"

    sections: list[tuple[str, Sequence[Any], Callable[[Any], str]]] = [
        ("New", mv.new, event),
        ("Advanced", mv.advanced, stage),
        ("Regressed", mv.regressed, stage),
        ("Slipped", mv.slipped, slipped),
        ("Pulled in", mv.pulled_in, pulled),
        ("Won", mv.won, event),
        ("Lost", mv.lost, event),
        ("Amount changes", mv.amount_changes, changed),
    ]
    blocks: list[Block] = []
    for title, moves, line in sections:
        if not moves:
            continue
        shown, more = _largest_first(moves)
        tails = [f"… and {more} more (the largest are listed)"] if more else []
        if title == "Amount changes":
            tails.append(f"Net change: {money.signed(mv.net_amount_delta)}")
        blocks.append(_bullets(f"{title} ({len(moves)})", [line(m) for m in shown], tail="\n".join(tails) or None))
    return blocks or [Paragraph(text="No deal changes were recorded.", muted=True)]


def hygiene_block(rows: Sequence[RepHygiene]) -> Block:
    if not rows:
        return Paragraph(text="No active reps.", muted=True)
    return Table(
        columns=["Rep", "Open deals", "Updated", "Share"],
        rows=[
            [
                r.name + (" (out of office, excused)" if r.excused else ""),
                str(r.open_deals),
                str(r.fresh),
                "—" if r.share is None else _pct(r.share),
            ]
            for r in rows
        ],
    )


def forecast_text(fig: ReviewFigures, names: deal_views.Names, tz: ZoneInfo) -> str:
    """The latest call against what the pipeline says now: closed won plus the roll-up."""
    money = MoneyText(names.currency)
    numbers, call = fig.numbers, fig.forecast
    projected_commit = numbers.won + numbers.rollup.commit
    projected_best = projected_commit + numbers.rollup.best_case
    if call is None:
        owner = fig.forecast_owner.name if fig.forecast_owner else "The forecast owner"
        return (
            f"No forecast call for {numbers.label} yet. {owner} calls it with "
            f"/pipeline forecast commit=… best=…. Closed won {money(numbers.won)} + commit "
            f"{money(numbers.rollup.commit)} = {money(projected_commit)}."
        )

    def against(projected: Decimal, called: Decimal) -> str:
        gap = projected - called
        return "matches the call" if gap == 0 else f"{money.signed(gap)} vs the call"

    by = names.people[call.by_id].name if call.by_id in names.people else "Called"
    return (
        f"{by}: commit {money(call.commit)}, best case {money(call.best_case)} "
        f"({short_day(call.at.astimezone(tz).date())}). "
        f"Now: closed won {money(numbers.won)} + commit {money(numbers.rollup.commit)} = "
        f"{money(projected_commit)} ({against(projected_commit, call.commit)}); with best case "
        f"{money(projected_best)} ({against(projected_best, call.best_case)})."
        + (f" Note: {call.note}" if call.note else "")
    )


def review_blocks(
    fig: ReviewFigures,
    names: deal_views.Names,
    facts: EngagementFacts,
    *,
    snapshot: bool,
    moved_from: date | None = None,
) -> list[Block]:
    """The review post (or, with `snapshot`, the same figures for `/pipeline snapshot`)."""
    money = MoneyText(names.currency)
    numbers = fig.numbers
    local_now = fig.now.astimezone(facts.tz)
    title = "Pipeline snapshot" if snapshot else "Pipeline review"
    intro = (
        f"Figures as of {local_now:%a %b} {local_now.day}, {local_now:%H:%M}."
        if snapshot
        else f"Hosted by {fig.host.name}."
        if fig.host
        else "No host is set."
    )
    if moved_from is not None:
        intro += f" Moved from {moved_from:%a %b} {moved_from.day} (not a business day)."
    won_of_quota = f" ({_pct(numbers.won / numbers.quota)})" if numbers.quota else ""
    r = numbers.rollup
    blocks: list[Block] = [
        Header(text=f"{title} · {numbers.label} · {fig.today:%a %b} {fig.today.day}"),
        Paragraph(text=intro),
        Fields(
            items=[
                FieldItem(
                    label="Closed won this quarter",
                    value=f"{money(numbers.won)} of {money(numbers.quota)}{won_of_quota}",
                ),
                FieldItem(label="Remaining quota", value=money(numbers.remaining)),
                FieldItem(
                    label=f"Open pipeline closing by {short_day(numbers.end)}", value=money(numbers.open_pipeline)
                ),
                FieldItem(label="Coverage", value=coverage_text(numbers)),
            ]
        ),
        Table(
            columns=["Roll-up", "Amount"],
            rows=[
                ["Commit", money(r.commit)],
                ["Best case", money(r.best_case)],
                ["Pipeline", money(r.pipeline)],
                ["Commit + best case", money(r.commit_best_case)],
                ["Weighted", money(r.weighted)],
            ],
        ),
        Header(text=f"Since the last review ({short_day(fig.since.astimezone(facts.tz).date())})"),
        *movement_blocks(fig.movement, money),
        Header(text="Hygiene: deals updated or confirmed since the last review"),
        hygiene_block(fig.hygiene),
        Header(text="Forecast call"),
        Paragraph(text=forecast_text(fig, names, facts.tz)),
        Header(text="Open action items"),
    ]
    shown = fig.actions[:MAX_ACTIONS_SHOWN]
    more = "… and more: /pipeline actions" if len(fig.actions) > MAX_ACTIONS_SHOWN else None
    blocks.append(
        _bullets(f"{plural(len(shown), 'item')} open", [action_line(a, fig.today) for a in shown], tail=more)
        if shown
        else Paragraph(text="None open.", muted=True)
    )
    if snapshot:
        items = [deal_views.deal_item(f.deal, names, f.reasons) for f in fig.flagged]
        blocks.append(DealList(title="Deals the review would discuss", items=items, empty_text="None flagged."))
    elif fig.flagged:
        blocks.append(
            Paragraph(
                text=f"{plural(len(fig.flagged), 'deal')} to discuss, largest first: one thread "
                "reply each, with its card and buttons.",
                muted=True,
            )
        )
    else:
        blocks.append(Paragraph(text="No deals flagged for discussion this week.", muted=True))
    return blocks


def _split_text(text: str, limit: int) -> list[str]:
    """Cut text into pieces of at most `limit` characters, at line breaks where possible."""
    pieces: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            pieces.append(current)
            candidate = line
        current = candidate
    return [*pieces, current]


def fit_blocks(
    blocks: Sequence[Block], *, max_blocks: int = MAX_BLOCKS, max_chars: int = MAX_PARAGRAPH
) -> tuple[list[Block], list[list[Block]]]:
    """Keep a message within chat limits: at most `max_blocks` blocks and paragraphs of at most
    `max_chars`. What does not fit moves, in order, to continuation messages (each within the same
    limits); the main message ends with a note saying so."""
    split: list[list[Block]] = [
        [Paragraph(text=t, muted=block.muted) for t in _split_text(block.text, max_chars)]
        if isinstance(block, Paragraph)
        else [block]
        for block in blocks
    ]
    if len(blocks) <= max_blocks and all(len(pieces) == 1 for pieces in split):
        return list(blocks), []
    note = Paragraph(text="Continued in the thread.", muted=True)
    main: list[Block] = []
    rest: list[Block] = []
    for pieces in split:
        if rest or len(main) >= max_blocks - 1:
            rest += pieces
        else:
            main.append(pieces[0])
            rest += pieces[1:]
    if not rest:
        return main, []
    return [*main, note], [rest[i : i + max_blocks] for i in range(0, len(rest), max_blocks)]


def add_action_button(deal_name: str, deal_id: int, owner_key: str) -> Button:
    return Button(
        label="Add action item",
        action_id="review_add_action",
        value=str(deal_id),
        command=f'/pipeline action "{deal_name}" owner=@{owner_key} due=... text="..."',
    )


def deal_thread_message(flag: Flag, names: deal_views.Names, actions: Sequence[OpenAction], today: date) -> Message:
    """One flagged deal, as its review thread reply: the card, why it is here, its open action items."""
    deal = flag.deal
    blocks: list[Block] = [
        Header(text=deal.name),
        deal_views.deal_fields(deal, names),
        _bullets("Why it's on the list", flag.reasons),
    ]
    if actions:
        blocks.append(_bullets("Open action items", [action_line(a, today) for a in actions]))
    owner = names.people[deal.owner_id]
    blocks.append(Actions(buttons=[*deal_views.deal_buttons(deal), add_action_button(deal.name, deal.id, owner.key)]))
    return Message(text=f"{deal.name}: " + "; ".join(flag.reasons), blocks=blocks)


async def record_snapshot(
    session: AsyncSession, engagement_id: int, week: str, now: datetime, numbers: QuarterNumbers
) -> None:
    """The week's figures, kept once per week: the first review of a week wins."""
    found = (
        await session.execute(
            select(PipelineSnapshot.id).where(
                PipelineSnapshot.engagement_id == engagement_id, PipelineSnapshot.week == week
            )
        )
    ).scalar_one_or_none()
    if found is None:
        session.add(
            PipelineSnapshot(engagement_id=engagement_id, week=week, taken_at=now, totals=snapshot_totals(numbers))
        )
        await session.flush()


# --- the rituals -------------------------------------------------------------------------------------------


class PipelineReview:
    """The weekly review post in the review channel, with one thread reply per deal to discuss."""

    name = REVIEW

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        grace = timedelta(hours=facts.settings.pipeline_review.grace_hours)
        for slot in review_slots(facts, start, end):
            detail = {"review_day": slot.day.isoformat(), "scheduled_day": slot.scheduled.isoformat()}
            yield Due(self.name, slot.week, slot.due_at, grace, detail)

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        session, facts, occ = run.session, run.facts, run.occurrence
        today, now = run.today, run.now
        host = facts.person(occ.host_id) if occ.host_id else await current_host(session, facts, self.name)
        if occ.host_id is None and host is not None:
            occ.host_id = host.id
        since = await last_review_at(session, facts.id, occ.due_at) or now - WEEK
        fig = await gather(session, facts, today, now, since, host)
        names = await deal_views.load_names(session, facts.id, facts.engagement.currency)
        await record_snapshot(session, facts.id, occ.period, now, fig.numbers)
        scheduled = occ.detail.get("scheduled_day")
        moved_from = date.fromisoformat(scheduled) if scheduled and scheduled != today.isoformat() else None
        main, continued = fit_blocks(review_blocks(fig, names, facts, snapshot=False, moved_from=moved_from))
        channel = Recipient.channel(facts.settings.pipeline_review.channel)
        summary = (
            f"Pipeline review {fig.numbers.label}: coverage {coverage_text(fig.numbers)}, "
            f"{plural(len(fig.flagged), 'deal')} to discuss"
        )
        out = [Outgoing(channel, "review", Message(text=summary, blocks=main), subject=f"review:{occ.period}")]
        out += [
            Outgoing(
                channel,
                f"review-cont-{n}",
                Message(text=f"Pipeline review, continued ({n})", blocks=blocks),
                thread_of="review",
            )
            for n, blocks in enumerate(continued, 1)
        ]
        actions = await open_action_items(session, facts.id, deal_ids=[f.deal.id for f in fig.flagged])
        for flag in fig.flagged:
            mine = [a for a in actions if a.deal_id == flag.deal.id]
            message = deal_thread_message(flag, names, mine, today).model_copy(update={"opens_thread": True})
            subject = f"deal:{flag.deal.id}"
            out.append(Outgoing(channel, subject, message, subject=subject, thread_of="review"))
        return out


def _duration(minutes: int) -> str:
    if minutes % 60 == 0 and minutes >= 120:
        return f"{minutes // 60} hours"
    return plural(minutes, "minute")


def nudge_message(
    rep: PersonFacts,
    items: Sequence[Attention],
    names: deal_views.Names,
    review_at: datetime,
    *,
    last_call_minutes: int | None = None,
) -> Message:
    """A rep's deals to fix before the review, each with its reasons and Update / Still accurate buttons."""
    when = review_at.astimezone(rep.timezone)
    count = plural(len(items), "deal")
    if last_call_minutes is None:
        header = "Before the pipeline review"
        text = f"Pipeline review {when:%a} {when:%H:%M} your time: {count} of yours need a look"
        intro = (
            f"The pipeline review is {when:%A %b} {when.day} at {when:%H:%M} your time. Please update "
            "these deals, or tap Still accurate if nothing changed:"
        )
    else:
        header = "Last call before the pipeline review"
        text = f"Last call: the review starts in {_duration(last_call_minutes)} — {count} still need a look"
        intro = (
            f"Last call: the review starts in {_duration(last_call_minutes)} ({when:%H:%M} your time). "
            "These deals still need an update or a Still accurate:"
        )
    items_out = [deal_views.deal_item(a.deal, names, a.reasons, deal_views.deal_buttons(a.deal)) for a in items]
    return Message(text=text, blocks=[Header(text=header), Paragraph(text=intro), DealList(items=items_out)])


def _rep_dues(ritual: str, facts: EngagementFacts, start: datetime, end: datetime, *, nudge: bool) -> Iterable[Due]:
    settings = facts.settings.pipeline_review
    minutes = settings.nudge.last_call_minutes_before
    if not nudge and minutes == 0:
        return
    reps = facts.with_role(Role.REP)
    for slot in review_slots(facts, start, end):
        last_call_at = slot.due_at - timedelta(minutes=minutes)
        if not nudge and not start <= last_call_at < end:
            continue  # the slots come with a margin; only the window's dues are built
        nudge_day = previous_business_day(slot.day, facts.holidays)
        for rep in reps:
            nudge_at = at_local(nudge_day, settings.nudge.time, rep.timezone)
            due_at = nudge_at if nudge else last_call_at
            if due_at >= slot.due_at or not start <= due_at < end:
                continue
            detail = {
                "rep_id": rep.id,
                "review_day": slot.day.isoformat(),
                "review_at": slot.due_at.isoformat(),
                "nudge_at": nudge_at.isoformat(),
            }
            yield Due(ritual, f"{slot.week}/{rep.key}", due_at, slot.due_at - due_at, detail)


async def _rep_plan(run: RitualRun, *, last_call: bool) -> Sequence[Outgoing]:
    """Shared by the nudge and the last call: the rep's deals needing attention, or nothing."""
    session, facts, occ = run.session, run.facts, run.occurrence
    detail: dict[str, Any] = dict(occ.detail)
    rep = facts.person(detail.get("rep_id"))
    if rep is None or not rep.active:
        return []
    if rep.away_on(date.fromisoformat(detail["review_day"])):
        occ.detail = {**detail, "excused": "out of office on the review day"}
        return []
    review = await review_occurrence(session, facts.id, occ.period.split("/")[0])
    if review is not None and review.status == "planned":
        occ.detail = {**detail, "not_sent": "the review already ran"}
        return []
    items = await attention(session, facts, run.today, run.now, owner_id=rep.id)
    if last_call:
        nudged_at = datetime.fromisoformat(detail["nudge_at"])
        items = [a for a in items if a.deal.touched_at < nudged_at]
    if not items:
        return []
    occ.detail = {**detail, "deals": [a.deal.id for a in items]}
    names = await deal_views.load_names(session, facts.id, facts.engagement.currency)
    minutes = facts.settings.pipeline_review.nudge.last_call_minutes_before if last_call else None
    message = nudge_message(rep, items, names, datetime.fromisoformat(detail["review_at"]), last_call_minutes=minutes)
    return [
        Outgoing(Recipient.person(rep.id), "last-call" if last_call else "nudge", message, subject=f"nudge:{rep.id}")
    ]


class PreReviewNudge:
    """The business day before the review, at `nudge.time` in each rep's own zone: their deals to fix."""

    name = NUDGE

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        return _rep_dues(self.name, facts, start, end, nudge=True)

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        return await _rep_plan(run, last_call=False)


class LastCall:
    """`last_call_minutes_before` the review: the deals a rep still has not touched since the nudge."""

    name = LAST_CALL

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        return _rep_dues(self.name, facts, start, end, nudge=False)

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        return await _rep_plan(run, last_call=True)


class ActionReminder:
    """Every business morning: each owner of action items due today or overdue gets one DM listing them."""

    name = ACTION_REMINDER

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        engagement = facts.engagement
        for day in daily(start, end, facts.tz):
            if is_business_day(day, facts.holidays) and engagement.start_date <= day <= engagement.exit_date:
                yield Due(self.name, day.isoformat(), facts.local(day, REMINDER_TIME), REMINDER_GRACE)

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        today = run.today
        items = await open_action_items(run.session, run.facts.id, due_by=today, limit=500)
        by_owner: dict[int, list[OpenAction]] = {}
        for item in items:
            by_owner.setdefault(item.owner_id, []).append(item)
        out = []
        for owner_id, mine in by_owner.items():
            owner = run.facts.person(owner_id)
            if owner is None or not owner.active or owner.away_on(today):
                continue
            count = plural(len(mine), "action item")
            buttons = [
                Button(
                    label=f"Done #{a.id}", action_id="action_done", value=str(a.id), command=f"/pipeline done {a.id}"
                )
                for a in mine[:10]
            ]
            message = Message(
                text=f"{count} due today or overdue",
                blocks=[
                    Header(text="Action items due"),
                    _bullets(f"{count} due today or overdue", [action_line(a, today) for a in mine]),
                    Actions(buttons=buttons),
                ],
            )
            out.append(Outgoing(Recipient.person(owner_id), "actions", message, subject=f"actions:{owner_id}"))
        return out
