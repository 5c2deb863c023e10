"""The founder digest: once a week, each founder gets one DM that says where the quarter stands, what
happened this week, what is at risk, how the plan and the hand-over are going — and what the CRO needs
from them.

Founder reporting is one of the three rituals of the engagement, and the one that keeps the founder's
hands off the pipeline: the figures come to them, so they need not ask a rep. The digest therefore
computes nothing itself. Every figure comes from the module that owns it, so the digest, the Monday
review and `/cadence status` can never disagree:

- quarter, coverage, roll-up, movement, flags, pipeline created and snapshots: `pipeline_metrics`;
- the forecast call and its comparison with the roll-up: `pipeline_review` (`gather`, `forecast_text`);
- one-line lessons from answered win/loss debriefs: `debriefs.win_loss_summary`;
- the milestone scorecard: `milestones`; hand-over readiness: `handoff.readiness`.

It goes out at the configured day and time in each recipient's own time zone (a founder in London
reads it at 16:00 London time), one occurrence per recipient and ISO week (`2026-W48/sam`), so
`/digest send` and the schedule can never both deliver the same week's digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cadences import deal_views, handoff, milestones
from cadences.attachments import store_attachment
from cadences.chart import MAX_WEEKS, ChartPoint, pipeline_chart
from cadences.debriefs import questions_for, win_loss_summary
from cadences.messages import Block, DealItem, DealList, FieldItem, Fields, Header, Image, Message, Paragraph
from cadences.parsing import format_money_short
from cadences.periods import is_business_day, iso_week_key
from cadences.pipeline_metrics import (
    WEEK,
    DealEvent,
    Movement,
    QuarterNumbers,
    movement,
    pipeline_created,
    rolling_snapshot_totals,
    short_day,
)
from cadences.pipeline_review import WEEKDAYS, coverage_text, forecast_text, gather, last_review_at
from cadences.rituals import Due, EngagementFacts, Outgoing, PersonFacts, Recipient, RitualRun, at_local, in_window
from storage.models import Attachment, Deal, Role

RITUAL = "founder_digest"
PURPOSE = "digest"
GRACE = timedelta(hours=4)
AFTER_EXIT = timedelta(weeks=1)
"""The week after the exit still gets a digest: the first one that shows the function without the CRO."""
TOP_RISKS = 5
MAX_LISTED = 5
"""Wins, losses and slips listed by name; beyond that the founder gets a count (the review has the rest)."""
MAX_ASKS = 10
MAX_BLOCKS = 45


# --- when -----------------------------------------------------------------------------------------


def week_bounds(week: str) -> tuple[date, date]:
    """Monday of ISO week `week` ("2026-W48") and the Monday after it (exclusive end)."""
    year, number = week.split("-W")
    monday = date.fromisocalendar(int(year), int(number), 1)
    return monday, monday + WEEK


def period_of(week: str, person: PersonFacts) -> str:
    return f"{week}/{person.key}"


def recipients(facts: EngagementFacts) -> list[PersonFacts]:
    """The digest's active recipients, in the order the engagement file names them; when the stored
    settings name none (`None`, not an empty list), the founders, else the forecast owner."""
    keys = facts.settings.digest.recipients
    found: list[PersonFacts | None] = (
        [facts.person(key) for key in keys]
        if keys is not None
        else list(facts.with_role(Role.FOUNDER)) or [facts.person(facts.settings.forecast_owner)]
    )
    return list({p.id: p for p in found if p is not None and p.active}.values())


def in_season(facts: EngagementFacts, day: date) -> bool:
    """The engagement's digest weeks: from the start to a week after the exit."""
    return facts.engagement.start_date <= day <= facts.engagement.exit_date + AFTER_EXIT


def send_day(scheduled: date, holidays: frozenset[date]) -> date | None:
    """The configured day, or over a company holiday the latest business day before it in the same ISO
    week (the week's digest still goes out, a day early); None when the week has no such day."""
    if scheduled not in holidays:
        return scheduled
    day = scheduled - timedelta(days=1)
    while day.isocalendar()[:2] == scheduled.isocalendar()[:2]:
        if is_business_day(day, holidays):
            return day
        day -= timedelta(days=1)
    return None


class FounderDigest:
    """The weekly founder digest, one DM per recipient at their own local day and time."""

    name = RITUAL

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        settings = facts.settings.digest
        weekday = WEEKDAYS.index(settings.day)
        for person in recipients(facts):
            # A week of margin on both sides: a holiday can move the send day back within its week, so a
            # send day inside the window can belong to a nominal day after it.
            first = start.astimezone(person.timezone).date() - WEEK
            day = first + timedelta(days=(weekday - first.weekday()) % 7)
            last = end.astimezone(person.timezone).date() + WEEK
            while day <= last:
                on = send_day(day, facts.holidays)
                if on is not None and in_season(facts, on):
                    week = iso_week_key(day)
                    due = Due(
                        self.name,
                        period_of(week, person),
                        at_local(on, settings.time, person.timezone),
                        GRACE,
                        {"week": week, "person": person.id},
                    )
                    if in_window(due, start, end):
                        yield due
                day += WEEK

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        detail = run.occurrence.detail
        person = run.facts.person(int(detail["person"]))
        if person is None or not person.active:
            return []
        message = await build_digest(run.session, run.facts, person, str(detail["week"]), run.now)
        return [Outgoing(Recipient.person(person.id), PURPOSE, message)]


# --- what -----------------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _pct(part: Decimal, whole: Decimal) -> str:
    return f"{(part * 100 / whole).quantize(Decimal(1))}%"


def chart_key(facts: EngagementFacts, week: str) -> str:
    return f"digest/{facts.engagement.slug}/{week}/chart.png"


async def chart_points(
    session: AsyncSession, facts: EngagementFacts, week: str, numbers: QuarterNumbers
) -> list[ChartPoint]:
    """The review snapshots up to `week` (the last `MAX_WEEKS`); with fewer than two, this week's point
    from the live figures too, so a new engagement still sees a chart."""
    snapshots = await rolling_snapshot_totals(session, facts.id, weeks=MAX_WEEKS)
    zero = Decimal(0)
    points = [
        ChartPoint(
            s.week, s.figures.get("commit", zero), s.figures.get("best_case", zero), s.figures.get("pipeline", zero)
        )
        for s in snapshots
        if s.week <= week
    ]
    if len(points) < 2 and all(p.week != week for p in points):
        r = numbers.rollup
        points.append(ChartPoint(week, r.commit, r.best_case, r.pipeline))
    return points


async def chart_image(
    session: AsyncSession, facts: EngagementFacts, week: str, numbers: QuarterNumbers, now: datetime
) -> Image:
    """Render the week's chart, keep it as an attachment (first render of the week wins) and point to it.
    Once the week's chart is stored it is not drawn again (the second founder, `/digest preview`): the
    first render is what every message of the week shows, and drawing is most of the digest's cost."""
    points = await chart_points(session, facts, week, numbers)
    key = chart_key(facts, week)
    stored = (await session.execute(select(Attachment.id).where(Attachment.key == key))).first() is not None
    if not stored:
        png = pipeline_chart(points, numbers.quota, facts.engagement.currency, quarter=numbers.label)
        await store_attachment(session, facts.id, key, png, mime="image/png", filename=f"pipeline-{week}.png", now=now)
    return Image(
        key=key,
        alt_text=f"Pipeline by forecast category vs quota, last {_plural(len(points), 'week')}",
        title=f"Pipeline by forecast category vs quota — {numbers.label}",
    )


async def _lessons(
    session: AsyncSession, facts: EngagementFacts, moved: Movement, monday: date, next_monday: date
) -> dict[int, str]:
    """deal id -> the lesson of its answered debrief, for this week's wins and losses.

    `win_loss_summary` selects by close date; a deal marked won this week may carry an earlier close
    date, so the window reaches back to the earliest close date among this week's wins and losses."""
    ids = [e.deal_id for e in (*moved.won, *moved.lost)]
    if not ids:
        return {}
    closes = (await session.execute(select(Deal.close_date).where(Deal.id.in_(ids)))).scalars().all()
    start = min([monday, *(d for d in closes if d is not None)])
    summary = await win_loss_summary(session, facts.id, start, next_monday - timedelta(days=1))
    lessons: dict[int, str] = {}
    for lesson in summary.lessons:
        lessons.setdefault(lesson.deal_id, lesson.text)
    return lessons


def _closed_list(
    title: str,
    trigger: str,
    events: Sequence[DealEvent],
    lessons: dict[int, str],
    facts: EngagementFacts,
    currency: str,
) -> DealList:
    asked = bool(questions_for(facts.settings, trigger))
    items = [
        DealItem(
            deal_id=e.deal_id,
            name=e.deal,
            summary=f"{_money(e.amount, currency)} · {e.owner}",
            reasons=[
                f"Debrief: {lessons[e.deal_id]}"
                if e.deal_id in lessons
                else "Debrief pending"
                if asked
                else "No debrief asked"
            ],
        )
        for e in events[:MAX_LISTED]
    ]
    more = f" — {len(events) - MAX_LISTED} more not shown" if len(events) > MAX_LISTED else ""
    return DealList(title=f"{title} ({len(events)}){more}", items=items, empty_text="None this week.")


def _slipped_list(moved: Movement, currency: str) -> DealList:
    items = []
    for m in moved.slipped[:MAX_LISTED]:
        reasons = [f"Slipped {_plural(m.slip_count, 'time')} in all"]
        if m.slipped_out:
            reasons.insert(0, "Moved out of this quarter")
        items.append(
            DealItem(
                deal_id=m.deal_id,
                name=m.deal,
                summary=f"close date {short_day(m.before)} → {short_day(m.after)} · {m.owner}",
                reasons=reasons,
            )
        )
    more = f" — {len(moved.slipped) - MAX_LISTED} more not shown" if len(moved.slipped) > MAX_LISTED else ""
    return DealList(title=f"Slipped ({len(moved.slipped)}){more}", items=items, empty_text="No close date moved out.")


def _clip(text: str, limit: int = 200) -> str:
    """A note as one short line: the digest points at the item, the full note is in /cadence milestones."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _money(amount: Decimal | None, currency: str) -> str:
    return "no amount" if amount is None else format_money_short(amount, currency)


async def _plan_section(session: AsyncSession, facts: EngagementFacts, today: date) -> list[Block]:
    """Planned vs done for the milestone being worked toward (the last one once all have passed)."""
    days = facts.deliverable_days
    if not days:
        return []
    upcoming = [d for d in days if milestones.milestone_date(facts, d) >= today]
    day = upcoming[0] if upcoming else days[-1]
    on = milestones.milestone_date(facts, day)
    score = await milestones.progress(session, facts.id, day)
    late = await milestones.overdue(session, facts, today)
    which = "Next milestone" if upcoming else "Last milestone"
    return [
        Header(text="30/60/90 plan"),
        Fields(
            items=[
                FieldItem(
                    label=f"{which}: day {day} ({milestones.long_date(on)})",
                    value=f"{score.done} of {score.planned} done",
                ),
                FieldItem(label="Plan to date", value=f"{score.done_to_date} of {score.planned_to_date} done"),
                FieldItem(label="Overdue from passed milestones", value=str(len(late))),
            ]
        ),
    ]


def handoff_in_digest(facts: EngagementFacts, today: date) -> bool:
    """Hand-over status joins the digest in the exit-planning month, or once the owner warnings start
    (`owner_warning_days_before_exit`), whichever comes first — a short engagement still gets it."""
    warn_from = facts.engagement.exit_date - timedelta(days=facts.settings.handoff.owner_warning_days_before_exit)
    return today >= min(handoff.exit_planning_date(facts), warn_from)


async def _asks(session: AsyncSession, facts: EngagementFacts, with_handoff: bool) -> list[str]:
    """What only the founder can unblock: blocked and at-risk deliverables to decide on, and hand-over
    tasks nobody will own after the exit."""
    names = {p.id: p.name for p in facts.people}
    asks = []
    open_items = await milestones.deliverables(session, facts.id, open_only=True)
    for status, verb in (("blocked", "Unblock"), ("at_risk", "Decide on")):
        for row in (r for r in open_items if r.status == status):
            owner = names.get(row.owner_id or 0, "nobody")
            note = f": {_clip(row.status_note)}" if row.status_note else ""
            asks.append(f"{verb} “{row.title}” — {milestones.STATUS_LABELS[status].lower()}, owner {owner}{note}")
    if with_handoff:
        for task in await handoff.tasks(session, facts.id):
            if task.status == "open" and task.to_id is None:
                asks.append(f"Name an owner for “{task.title}”: /cadence handoff {task.key} to=@name")
    return asks


async def build_digest(
    session: AsyncSession, facts: EngagementFacts, recipient: PersonFacts, week: str, now: datetime
) -> Message:
    """The digest for `recipient` for ISO week `week`, as of `now`; stores the week's chart."""
    today = now.astimezone(facts.tz).date()
    currency = facts.engagement.currency
    monday, next_monday = week_bounds(week)
    week_start, week_end = facts.local(monday, time(0)), facts.local(next_monday, time(0))
    since = await last_review_at(session, facts.id, now) or now - WEEK
    fig = await gather(session, facts, today, now, since, None)
    numbers = fig.numbers
    names = await deal_views.load_names(session, facts.id, currency)
    moved = await movement(session, facts.id, week_start, min(now, week_end))
    lessons = await _lessons(session, facts, moved, monday, next_monday)
    created = await pipeline_created(session, facts.id, monday, next_monday)
    image = await chart_image(session, facts, week, numbers, now)
    with_handoff = handoff_in_digest(facts, today)
    asks = await _asks(session, facts, with_handoff)

    won = f"{_money(numbers.won, currency)} of {_money(numbers.quota, currency)}"
    if numbers.quota:
        won += f" ({_pct(numbers.won, numbers.quota)})"
    local = now.astimezone(recipient.timezone)
    sunday = next_monday - timedelta(days=1)
    blocks: list[Block] = [
        Header(text=f"Weekly digest · {facts.engagement.company} · week of {short_day(monday)}"),
        Paragraph(
            text=f"Hi {recipient.name.split()[0]}, here is the week. Figures as of "
            f"{local:%a %b} {local.day}, {local:%H:%M} your time; day "
            f"{facts.day_of_engagement(today)} of the engagement."
        ),
        Fields(
            items=[
                FieldItem(label=f"Closed won, {numbers.label}", value=won),
                FieldItem(label="Coverage", value=coverage_text(numbers)),
                FieldItem(
                    label=f"Open pipeline closing by {short_day(numbers.end)}",
                    value=_money(numbers.open_pipeline, currency),
                ),
                FieldItem(label="Pipeline created this week", value=_money(created, currency)),
            ]
        ),
        Paragraph(text=f"Forecast call — {forecast_text(fig, names, facts.tz)}"),
        image,
        Header(text=f"This week ({short_day(monday)}–{short_day(sunday)})"),
        _closed_list("Wins", "won", moved.won, lessons, facts, currency),
        _closed_list("Losses", "lost", moved.lost, lessons, facts, currency),
        _slipped_list(moved, currency),
        DealList(
            title="Top risks: the largest deals flagged for the review",
            items=[deal_views.deal_item(f.deal, names, f.reasons) for f in fig.flagged[:TOP_RISKS]],
            empty_text="No deals flagged.",
        ),
        *await _plan_section(session, facts, today),
    ]
    if with_handoff:
        r = await handoff.readiness(session, facts, today)
        blocks += [Header(text="Hand-over"), handoff.readiness_fields(r)]
    shown = asks[:MAX_ASKS]
    more = f"\n… and {len(asks) - MAX_ASKS} more: /cadence status" if len(asks) > MAX_ASKS else ""
    blocks += [
        Header(text="What we need from you"),
        Paragraph(text="\n".join(f"• {a}" for a in shown) + more if shown else "Nothing this week."),
    ]
    assert len(blocks) <= MAX_BLOCKS
    summary = (
        f"Weekly digest: won {won} this quarter, coverage {coverage_text(numbers)}, {_plural(len(asks), 'ask')} for you"
    )
    return Message(text=summary, blocks=blocks)
