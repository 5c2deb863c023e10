"""The 30/60/90 plan in motion: check-ins before each milestone, a scorecard on the day, a weekly chase
of what slipped, and the status updates people send back.

The plan is the first promise a fractional CRO makes to the founder, so it is tracked the way the
founder will judge it: planned vs done on the milestone date, overdue items named with their owner,
and nothing left to memory. Milestone day N falls on `start + (N - 1)` days (day 1 is the start date),
rolled forward to a business day, so "day 30" means the same date to the bot, the CRO and the founder.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cadences.authz import Action, allowed
from cadences.context import Context
from cadences.messages import Actions, Block, Button, FieldItem, Fields, Header, Message, Paragraph, Table
from cadences.periods import add_business_days, iso_week_key, next_business_day_on_or_after
from cadences.rituals import Due, EngagementFacts, Outgoing, PersonFacts, Recipient, RitualRun, at_local, in_window
from storage.models import PlanDeliverable, Role

SETTABLE_STATUSES = ("done", "on_track", "at_risk", "blocked")
STATUS_LABELS = {
    "not_started": "Not started",
    "on_track": "On track",
    "at_risk": "At risk",
    "blocked": "Blocked",
    "done": "Done",
}
PHASE_TITLES = {
    "diagnose": "Diagnose and define",
    "build": "Build the foundation",
    "operationalize": "Operationalize and transition",
}
GRACE = timedelta(hours=8)  # a DM that is a few hours late is still useful the same working day
LIST_LIMIT = 100  # plans are a dozen items; the cap only guards a runaway file


class PlanError(Exception):
    """A plan or hand-over change refused as a whole, with the sentence to say to the person."""

    def __init__(self, message: str, outcome: str = "rejected") -> None:
        super().__init__(message)
        self.message = message
        self.outcome = outcome


# --- dates ----------------------------------------------------------------------------------------


def long_date(day: date) -> str:
    return f"{day:%a %b %-d, %Y}"


def milestone_date(facts: EngagementFacts, day: int) -> date:
    """The date of milestone day `day`: start + (day - 1), rolled forward to a business day."""
    on = facts.engagement.start_date + timedelta(days=day - 1)
    return next_business_day_on_or_after(on, facts.holidays)


def checkin_date(facts: EngagementFacts, day: int) -> date:
    return add_business_days(
        milestone_date(facts, day), -facts.settings.milestones.checkin_business_days_before, facts.holidays
    )


def weekly(
    facts: EngagementFacts, start: datetime, end: datetime, first: date, last: date
) -> Iterator[tuple[str, date]]:
    """(ISO week, day) for each week's Monday between `first` and `last`, in the engagement's zone.

    A Monday holiday moves the ritual to the next business day of the same week (the period stays the
    ISO week, so it still fires once); a week with no business day from Monday on is skipped.
    """
    tz: ZoneInfo = facts.tz
    day = start.astimezone(tz).date() - timedelta(days=7)
    day -= timedelta(days=day.weekday())
    stop = end.astimezone(tz).date() + timedelta(days=1)
    while day <= stop:
        on = next_business_day_on_or_after(day, facts.holidays)
        if on.isocalendar()[:2] == day.isocalendar()[:2] and first <= on <= last:
            yield iso_week_key(day), on
        day += timedelta(days=7)


def passed_days(facts: EngagementFacts, today: date) -> list[int]:
    """Milestone days whose date is before `today`: their open deliverables are overdue."""
    return [d for d in facts.deliverable_days if milestone_date(facts, d) < today]


# --- queries --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Planned vs done: for one milestone and cumulatively up to it."""

    planned: int
    done: int
    planned_to_date: int
    done_to_date: int


async def progress(session: AsyncSession, engagement_id: int, day: int) -> Progress:
    is_done = PlanDeliverable.status == "done"
    at_day = PlanDeliverable.milestone_day == day
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(case((at_day, 1), else_=0)), 0),
                func.coalesce(func.sum(case((and_(at_day, is_done), 1), else_=0)), 0),
                func.count(PlanDeliverable.id),
                func.coalesce(func.sum(case((is_done, 1), else_=0)), 0),
            ).where(PlanDeliverable.engagement_id == engagement_id, PlanDeliverable.milestone_day <= day)
        )
    ).one()
    return Progress(*(int(v) for v in row))


async def deliverables(
    session: AsyncSession,
    engagement_id: int,
    *,
    days: Sequence[int] | None = None,
    owner_id: int | None = None,
    open_only: bool = False,
) -> list[PlanDeliverable]:
    """Plan rows in plan order, optionally for some milestone days, one owner, or not yet done."""
    stmt = select(PlanDeliverable).where(PlanDeliverable.engagement_id == engagement_id)
    if days is not None:
        stmt = stmt.where(PlanDeliverable.milestone_day.in_(list(days)))
    if owner_id is not None:
        stmt = stmt.where(PlanDeliverable.owner_id == owner_id)
    if open_only:
        stmt = stmt.where(PlanDeliverable.status != "done")
    stmt = stmt.order_by(PlanDeliverable.milestone_day, PlanDeliverable.position, PlanDeliverable.id)
    return list((await session.execute(stmt.limit(LIST_LIMIT))).scalars())


async def overdue(session: AsyncSession, facts: EngagementFacts, today: date) -> list[PlanDeliverable]:
    days = passed_days(facts, today)
    return await deliverables(session, facts.id, days=days, open_only=True) if days else []


async def find_deliverable(session: AsyncSession, engagement_id: int, typed: str) -> PlanDeliverable:
    """The deliverable someone means by `typed`: its exact key, else the one key that starts with it."""
    needle = typed.strip().casefold()
    rows = list(
        (
            await session.execute(
                select(PlanDeliverable)
                .where(PlanDeliverable.engagement_id == engagement_id)
                .order_by(PlanDeliverable.milestone_day, PlanDeliverable.position)
            )
        ).scalars()
    )
    exact = [r for r in rows if r.key.casefold() == needle]
    matches = exact or [r for r in rows if needle and r.key.casefold().startswith(needle)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise PlanError(f'"{typed}" matches {", ".join(r.key for r in matches)}. Type the full key.')
    keys = ", ".join(r.key for r in rows) or "none yet"
    raise PlanError(f'There is no deliverable "{typed}". The plan\'s keys: {keys}. See /cadence milestones.')


# --- words and buttons ----------------------------------------------------------------------------


def status_label(row: PlanDeliverable, facts: EngagementFacts, today: date) -> str:
    label = STATUS_LABELS.get(row.status, row.status)
    if row.status != "done" and milestone_date(facts, row.milestone_day) < today:
        label += " · OVERDUE"
    return label


def status_buttons(row: PlanDeliverable) -> list[Button]:
    """Done and On track run as they are; At risk and Blocked are templates that ask for a note."""
    buttons = []
    for status in SETTABLE_STATUSES:
        command = f"/cadence deliverable {row.key} status={status}"
        if status in ("at_risk", "blocked"):
            command += ' note="..."'
        buttons.append(
            Button(
                label=STATUS_LABELS[status],
                action_id="deliverable_status",
                value=f"{row.id}:{status}",
                command=command,
                style="primary" if status == "done" else None,
            )
        )
    return buttons


def _item_text(row: PlanDeliverable, facts: EngagementFacts, today: date) -> str:
    text = f"{row.title} [{row.key}] — {status_label(row, facts, today)}"
    if row.status_note:
        text += f"\n  Note: {row.status_note}"
    return text


def _names(facts: EngagementFacts) -> dict[int, str]:
    return {p.id: p.name for p in facts.people}


def plural(n: int, word: str) -> str:
    """'1 deliverable', '3 deliverables' (every noun these messages count takes a plain -s)."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def checkin_message(
    facts: EngagementFacts, owner: PersonFacts, day: int, rows: Sequence[PlanDeliverable], today: date
) -> Message:
    on = milestone_date(facts, day)
    summary = f"Day {day} check-in: {plural(len(rows), 'deliverable')} of yours due {long_date(on)}"
    blocks: list[Block] = [
        Header(text=summary),
        Paragraph(
            text=f"Hi {owner.name.split()[0]}, the day-{day} milestone is on {long_date(on)}. "
            "Where do these stand? One tap each, or type the command with a note."
        ),
    ]
    for row in rows:
        blocks += [Paragraph(text=_item_text(row, facts, today)), Actions(buttons=status_buttons(row))]
    return Message(text=summary, blocks=blocks)


def chase_message(facts: EngagementFacts, owner: PersonFacts, rows: Sequence[PlanDeliverable], today: date) -> Message:
    summary = f"{plural(len(rows), 'plan deliverable')} of yours overdue"
    blocks: list[Block] = [
        Header(text=summary),
        Paragraph(
            text=f"Hi {owner.name.split()[0]}, these were due at an earlier milestone and are not done. "
            "Mark them done, or say what is in the way so the CRO can help."
        ),
    ]
    for row in rows:
        on = milestone_date(facts, row.milestone_day)
        late = (today - on).days
        blocks += [
            Paragraph(
                text=_item_text(row, facts, today)
                + f"\n  Due day {row.milestone_day} ({long_date(on)}), {plural(late, 'day')} ago"
            ),
            Actions(buttons=status_buttons(row)),
        ]
    return Message(text=summary, blocks=blocks)


async def scorecard_message(session: AsyncSession, facts: EngagementFacts, day: int, today: date) -> Message:
    on = milestone_date(facts, day)
    score = await progress(session, facts.id, day)
    rows = await deliverables(session, facts.id, days=[day])
    late = [r for r in await overdue(session, facts, today) if r.milestone_day < day]
    names = _names(facts)
    summary = f"Day {day} scorecard: {score.done} of {score.planned} done"
    table = Table(
        columns=["Deliverable", "Due", "Owner", "Status", "Note"],
        rows=[
            [
                r.title,
                f"day {r.milestone_day}",
                names.get(r.owner_id or 0, "nobody"),
                status_label(r, facts, today),
                r.status_note or "",
            ]
            for r in [*rows, *late]
        ],
    )
    fields = Fields(
        items=[
            FieldItem(label=f"Day {day} ({long_date(on)})", value=f"{score.done} of {score.planned} done"),
            FieldItem(label="Plan to date", value=f"{score.done_to_date} of {score.planned_to_date} done"),
            FieldItem(label="Overdue from earlier milestones", value=str(len(late))),
        ]
    )
    return Message(text=summary, blocks=[Header(text=summary), fields, table])


def plan_message(facts: EngagementFacts, rows: Sequence[PlanDeliverable], today: date) -> Message:
    """The whole plan by phase: each deliverable's owner, status and due date, and where we are now."""
    day_now = facts.day_of_engagement(today)
    done = sum(r.status == "done" for r in rows)
    late = sum(r.status != "done" and milestone_date(facts, r.milestone_day) < today for r in rows)
    summary = f"30/60/90 plan: {done} of {len(rows)} done, {late} overdue — day {day_now} of the engagement"
    blocks: list[Block] = [
        Header(text=f"30/60/90 plan — day {day_now} of the engagement"),
        Paragraph(text=f"{done} of {len(rows)} deliverables done, {late} overdue."),
    ]
    if not rows:
        blocks.append(Paragraph(text="The engagement file's plan is empty."))
    names = _names(facts)
    phases = list(dict.fromkeys(r.phase for r in rows))
    for phase in phases:
        mine = [r for r in rows if r.phase == phase]
        days = sorted({r.milestone_day for r in mine})
        phase_done = sum(r.status == "done" for r in mine)
        blocks += [
            Header(text=f"{PHASE_TITLES.get(phase, phase)} — by day {days[-1]}: {phase_done} of {len(mine)} done"),
            Table(
                columns=["Key", "Deliverable", "Owner", "Status", "Due"],
                rows=[
                    [
                        r.key,
                        r.title,
                        names.get(r.owner_id or 0, "nobody"),
                        status_label(r, facts, today),
                        f"day {r.milestone_day}, {milestone_date(facts, r.milestone_day):%a %b %-d}",
                    ]
                    for r in mine
                ],
            ),
        ]
    blocks.append(
        Paragraph(
            text='Update one: /cadence deliverable <key> status=done|on_track|at_risk|blocked note="..."', muted=True
        )
    )
    return Message(text=summary, blocks=blocks, ephemeral=True)


# --- status updates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusChange:
    deliverable_id: int
    key: str
    title: str
    before: str
    after: str
    note: str | None


def parse_status(typed: str) -> str:
    folded = "_".join(typed.casefold().replace("-", " ").split())
    status = {"ontrack": "on_track", "atrisk": "at_risk", "complete": "done", "completed": "done"}.get(folded, folded)
    if status not in SETTABLE_STATUSES:
        raise PlanError(f'"{typed}" is not a status. Use one of: done, on_track, at_risk, blocked.')
    return status


async def set_status(ctx: Context, key: str, status: str, note: str | None) -> StatusChange:
    """Record a deliverable's status as `ctx.actor`: its owner, a manager, the CRO or a founder may.

    The note belongs to the status it explains, so a new status without a note clears the old one."""
    if ctx.actor is None:
        raise PlanError("You're not part of this engagement, so you can't update its plan.", "denied")
    async with ctx.db.write() as session:
        found = await find_deliverable(session, ctx.engagement.id, key)
        row = (
            await session.execute(
                select(PlanDeliverable)
                .where(PlanDeliverable.id == found.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalar_one()
        if not allowed(ctx.actor, Action.UPDATE_PLAN, owns=row.owner_id == ctx.actor.id):
            raise PlanError(
                "Reps can update only the deliverables they own; ask the owner, a manager or the CRO.", "denied"
            )
        before = row.status
        row.status = status
        row.status_note = note
        row.status_at = ctx.now()
        return StatusChange(row.id, row.key, row.title, before, status, note)


# --- the rituals ----------------------------------------------------------------------------------


def _day(run: RitualRun) -> int:
    return int(run.occurrence.detail["day"])


def _scorecard_recipients(facts: EngagementFacts) -> list[PersonFacts]:
    people = [p for p in (facts.cro, *facts.with_role(Role.FOUNDER)) if p is not None]
    return list({p.id: p for p in people}.values())


class MilestoneCheckin:
    """Business days before each milestone, each owner is asked where their deliverables stand.

    Scheduled for every active person (the facts do not say who owns what); the occurrence of someone
    with nothing open at that milestone plans no message. It runs at the owner's own 10:00.
    """

    name = "milestone_checkin"

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        at = facts.settings.milestones.time
        for day in facts.deliverable_days:
            on = checkin_date(facts, day)
            for person in facts.people:
                if not person.active:
                    continue
                due = Due(
                    self.name,
                    f"d{day}/{person.key}",
                    at_local(on, at, person.timezone),
                    GRACE,
                    {"day": day, "owner": person.id},
                )
                if in_window(due, start, end):
                    yield due

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        day = _day(run)
        owner = run.facts.person(int(run.occurrence.detail["owner"]))
        if owner is None or not owner.active:
            return []
        rows = await deliverables(run.session, run.facts.id, days=[day], owner_id=owner.id, open_only=True)
        if not rows:
            return []
        message = checkin_message(run.facts, owner, day, rows, run.today)
        return [Outgoing(Recipient.person(owner.id), "checkin", message)]


class MilestoneScorecard:
    """On the milestone date, the CRO and each founder see planned vs done, with who owns what is late."""

    name = "milestone_scorecard"

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        at = facts.settings.milestones.time
        for day in facts.deliverable_days:
            due = Due(self.name, f"d{day}", facts.local(milestone_date(facts, day), at), GRACE, {"day": day})
            if in_window(due, start, end):
                yield due

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        message = await scorecard_message(run.session, run.facts, _day(run), run.today)
        return [Outgoing(Recipient.person(p.id), "scorecard", message) for p in _scorecard_recipients(run.facts)]


class OverdueChase:
    """Every Monday once a milestone has passed, each owner of overdue deliverables gets one list."""

    name = "milestone_chase"

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        if not facts.deliverable_days:
            return
        first = min(milestone_date(facts, d) for d in facts.deliverable_days) + timedelta(days=1)
        at = facts.settings.milestones.time
        for week, on in weekly(facts, start, end, first, facts.engagement.exit_date):
            due = Due(self.name, week, facts.local(on, at), GRACE)
            if in_window(due, start, end):
                yield due

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        by_owner: dict[int, list[PlanDeliverable]] = {}
        for row in await overdue(run.session, run.facts, run.today):
            if row.owner_id is not None:
                by_owner.setdefault(row.owner_id, []).append(row)
        out = []
        for owner_id, rows in by_owner.items():
            owner = run.facts.person(owner_id)
            if owner is not None and owner.active:
                out.append(
                    Outgoing(Recipient.person(owner_id), "chase", chase_message(run.facts, owner, rows, run.today))
                )
        return out
