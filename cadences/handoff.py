"""The hand-over: every responsibility moves from the CRO to an internal owner before the exit date.

An engagement succeeds when the pipeline and the team run well after the CRO leaves, and fails quietly
when month 9 arrives with no answer to "how does this run without the CRO in 60 days?". So the bot
counts back from the exit: a reminder ladder per task (louder as the due date nears, with the CRO
copied at the end), a weekly list of overdue tasks for the founder, an exit-planning prompt in month N,
and from 60 days out a weekly warning about tasks nobody will own and a function that still depends
on the CRO. `readiness` is the one-line answer the digest, `/cadence status` and `/cadence handoff` share.

Task due date = exit date - `due_days_before_exit` calendar days (the engagement file's promise, not
moved). A reminder falling on a weekend or holiday goes out on the business day before, never after.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, case, false, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cadences.authz import Action, allowed
from cadences.context import Context
from cadences.messages import Actions, Block, Button, FieldItem, Fields, Header, Message, Paragraph, Table
from cadences.milestones import GRACE, LIST_LIMIT, PlanError, long_date, plural, weekly
from cadences.periods import end_of_month, is_business_day, next_business_day_on_or_after, previous_business_day
from cadences.pipeline_review import current_host
from cadences.rituals import Due, EngagementFacts, Outgoing, PersonFacts, Recipient, RitualRun, in_window
from storage.models import HandoffTask, Occurrence, Person, Role

RECENT_REVIEWS = 4  # "Maya has hosted 3 of the last 4 reviews": a month of Mondays
CRO_COPIED_FROM_DAYS = 7  # the last reminders of the ladder also go to the CRO
DEPENDENCY_DAYS = 30  # inside this many days of the exit, open tasks still held by the CRO are a warning


# --- dates ----------------------------------------------------------------------------------------


def task_due(facts: EngagementFacts, days_before_exit: int) -> date:
    return facts.engagement.exit_date - timedelta(days=days_before_exit)


def reminder_date(due: date, days_before: int, holidays: frozenset[date]) -> date:
    """`due - days_before`, moved back to a business day so a reminder is never later than promised."""
    on = due - timedelta(days=days_before)
    return on if is_business_day(on, holidays) else previous_business_day(on, holidays)


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clamped to the end of a shorter month (Aug 31 + 6 = Feb 28)."""
    index = day.year * 12 + day.month - 1 + months
    first = date(index // 12, index % 12 + 1, 1)
    return min(first + timedelta(days=day.day - 1), end_of_month(first))


def exit_planning_date(facts: EngagementFacts) -> date:
    """Month N of the engagement: start + N months (clamped), on or after that on a business day."""
    on = add_months(facts.engagement.start_date, facts.settings.handoff.exit_planning_month)
    return next_business_day_on_or_after(on, facts.holidays)


def urgency(days_before: int) -> str:
    """The ladder's words: 60/30 days are a heads-up, 14/7 are soon, 1 is tomorrow."""
    if days_before <= 0:
        return "today"
    if days_before == 1:
        return "tomorrow"
    return "soon" if days_before <= 14 else "heads-up"


def when(due: date, today: date) -> str:
    days = (due - today).days
    if days == 0:
        return "today"
    if days == 1:
        return "tomorrow"
    return f"in {days} days" if days > 0 else f"{-days} days ago"


# --- readiness ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Readiness:
    """How ready the team is to run without the CRO: tasks done, tasks nobody will own, and whether the
    incoming host is already running the pipeline review."""

    exit_date: date
    days_to_exit: int
    tasks_total: int
    tasks_done: int
    open_with_cro: int  # open tasks the CRO still holds
    unowned: tuple[str, ...]  # titles of open tasks with no internal owner
    review_host: PersonFacts | None
    incoming_host: PersonFacts | None  # the to-owner of the pipeline_review task
    hosted_by_incoming: int  # planned reviews the incoming host ran, up to the exit
    recent_reviews: int  # the last RECENT_REVIEWS planned reviews (fewer early on)
    recent_by_incoming: int

    @property
    def review_line(self) -> str:
        host = self.review_host.name if self.review_host else "nobody"
        line = f"hosted by {host}"
        incoming = self.incoming_host
        if incoming is None:
            return line + "; nobody is named to take it over yet."
        first = incoming.name.split()[0]
        if not self.hosted_by_incoming:
            return line + f"; {first} takes it over and has not hosted one yet."
        return (
            line + f"; {first} has hosted {self.recent_by_incoming} of the last "
            f"{plural(self.recent_reviews, 'review')} ({self.hosted_by_incoming} in all)."
        )

    @property
    def tasks_line(self) -> str:
        line = f"{self.tasks_done} of {plural(self.tasks_total, 'task')} done"
        if self.unowned:
            line += f", {len(self.unowned)} without an internal owner"
        return line


async def readiness(session: AsyncSession, facts: EngagementFacts, today: date) -> Readiness:
    """Readiness as of `today`, counted in SQL; the review host is whoever `current_host` says runs it now."""
    cro = facts.cro
    is_open = HandoffTask.status == "open"
    with_cro = and_(is_open, HandoffTask.from_id == cro.id) if cro else false()
    counts = (
        await session.execute(
            select(
                func.count(HandoffTask.id),
                func.coalesce(func.sum(case((HandoffTask.status == "done", 1), else_=0)), 0),
                func.coalesce(func.sum(case((with_cro, 1), else_=0)), 0),
            ).where(HandoffTask.engagement_id == facts.id)
        )
    ).one()
    unowned = (
        (
            await session.execute(
                select(HandoffTask.title)
                .where(HandoffTask.engagement_id == facts.id, is_open, HandoffTask.to_id.is_(None))
                .order_by(HandoffTask.position, HandoffTask.id)
                .limit(LIST_LIMIT)
            )
        )
        .scalars()
        .all()
    )
    incoming_id = (
        await session.execute(
            select(HandoffTask.to_id)
            .where(HandoffTask.engagement_id == facts.id, HandoffTask.ritual == "pipeline_review")
            .order_by(HandoffTask.position, HandoffTask.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    hosted = recent = recent_hosted = 0
    if incoming_id is not None:
        hosted, recent, recent_hosted = await _reviews_hosted(session, facts, incoming_id, today)
    exit_date = facts.engagement.exit_date
    return Readiness(
        exit_date=exit_date,
        days_to_exit=(exit_date - today).days,
        tasks_total=int(counts[0]),
        tasks_done=int(counts[1]),
        open_with_cro=int(counts[2]),
        unowned=tuple(unowned),
        review_host=await current_host(session, facts, "pipeline_review"),
        incoming_host=facts.person(incoming_id) if incoming_id is not None else None,
        hosted_by_incoming=hosted,
        recent_reviews=recent,
        recent_by_incoming=recent_hosted,
    )


async def _reviews_hosted(
    session: AsyncSession, facts: EngagementFacts, host_id: int, today: date
) -> tuple[int, int, int]:
    """(reviews `host_id` hosted up to the exit, the last few reviews up to today, how many of those)."""
    exit_date = facts.engagement.exit_date
    until_exit = facts.local(exit_date + timedelta(days=1), time(0))
    until_today = facts.local(min(today, exit_date) + timedelta(days=1), time(0))
    reviews = and_(
        Occurrence.engagement_id == facts.id, Occurrence.ritual == "pipeline_review", Occurrence.status == "planned"
    )
    hosted = (
        await session.execute(
            select(func.count(Occurrence.id)).where(
                reviews, Occurrence.host_id == host_id, Occurrence.due_at < until_exit
            )
        )
    ).scalar_one()
    last = (
        select(Occurrence.host_id)
        .where(reviews, Occurrence.due_at < until_today)
        .order_by(Occurrence.due_at.desc())
        .limit(RECENT_REVIEWS)
        .subquery()
    )
    recent, recent_hosted = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(case((last.c.host_id == host_id, 1), else_=0)), 0)).select_from(
                last
            )
        )
    ).one()
    return int(hosted), int(recent), int(recent_hosted)


# --- queries and words ----------------------------------------------------------------------------


async def tasks(session: AsyncSession, engagement_id: int) -> list[HandoffTask]:
    """Hand-over tasks, soonest due first (the most days before the exit), then in file order."""
    stmt = (
        select(HandoffTask)
        .where(HandoffTask.engagement_id == engagement_id)
        .order_by(HandoffTask.due_days_before_exit.desc(), HandoffTask.position, HandoffTask.id)
    )
    return list((await session.execute(stmt.limit(LIST_LIMIT))).scalars())


async def overdue_tasks(session: AsyncSession, facts: EngagementFacts, today: date) -> list[HandoffTask]:
    """Open tasks whose due date is before `today` (the date arithmetic is done here, not in SQL)."""
    days_left = (facts.engagement.exit_date - today).days
    stmt = (
        select(HandoffTask)
        .where(
            HandoffTask.engagement_id == facts.id,
            HandoffTask.status == "open",
            HandoffTask.due_days_before_exit > days_left,
        )
        .order_by(HandoffTask.due_days_before_exit.desc(), HandoffTask.position, HandoffTask.id)
    )
    return list((await session.execute(stmt.limit(LIST_LIMIT))).scalars())


async def find_task(session: AsyncSession, engagement_id: int, typed: str) -> HandoffTask:
    """The task someone means by `typed`: its exact key, else the one key that starts with it."""
    needle = typed.strip().casefold()
    rows = await tasks(session, engagement_id)
    matches = [r for r in rows if r.key.casefold() == needle] or [
        r for r in rows if needle and r.key.casefold().startswith(needle)
    ]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise PlanError(f'"{typed}" matches {", ".join(r.key for r in matches)}. Type the full key.')
    keys = ", ".join(r.key for r in rows) or "none yet"
    raise PlanError(f'There is no hand-over task "{typed}". The keys: {keys}. See /cadence handoff.')


def _name(facts: EngagementFacts, person_id: int | None, missing: str = "nobody yet") -> str:
    person = facts.person(person_id) if person_id is not None else None
    return person.name if person else missing


def task_buttons(task: HandoffTask) -> list[Button]:
    """Mark done runs as it is; Assign is a template (the console shows it, the person fills the name)."""
    assign = Button(
        label="Assign", action_id="handoff_assign", value=str(task.id), command=f"/cadence handoff {task.key} to=@..."
    )
    if task.to_id is None:
        return [assign]
    done = Button(
        label="Mark done",
        action_id="handoff_status",
        value=f"{task.id}:done",
        command=f"/cadence handoff {task.key} done",
        style="primary",
    )
    return [done, assign]


def _status(task: HandoffTask, facts: EngagementFacts, today: date) -> str:
    if task.status == "done":
        return "Done"
    return "Open · OVERDUE" if task_due(facts, task.due_days_before_exit) < today else "Open"


def _task_rows(tasks_: Sequence[HandoffTask], facts: EngagementFacts, today: date) -> list[list[str]]:
    rows = []
    for task in tasks_:
        due = task_due(facts, task.due_days_before_exit)
        left = (due - today).days
        rows.append(
            [
                task.key,
                task.title,
                f"{_name(facts, task.from_id, 'nobody')} → {_name(facts, task.to_id)}",
                f"{due:%a %b %-d, %Y}",
                "—" if task.status == "done" else (str(left) if left >= 0 else f"{-left} late"),
                _status(task, facts, today),
            ]
        )
    return rows


def _task_list(tasks_: Sequence[HandoffTask], facts: EngagementFacts, today: date) -> Table:
    return Table(
        columns=["Key", "Task", "From → To", "Due", "Days left", "Status"], rows=_task_rows(tasks_, facts, today)
    )


def readiness_fields(r: Readiness) -> Fields:
    return Fields(
        items=[
            FieldItem(
                label="Exit",
                value=f"{long_date(r.exit_date)} ({plural(r.days_to_exit, 'day')} away)"
                if r.days_to_exit >= 0
                else f"{long_date(r.exit_date)} (passed)",
            ),
            FieldItem(label="Hand-over", value=r.tasks_line),
            FieldItem(label="No internal owner yet", value=", ".join(r.unowned) or "none"),
            FieldItem(label="Pipeline review", value=r.review_line),
        ]
    )


def handoff_message(facts: EngagementFacts, tasks_: Sequence[HandoffTask], r: Readiness, today: date) -> Message:
    """`/cadence handoff`: every task from → to with its due date, days left and status, then readiness."""
    summary = f"Hand-over: {r.tasks_line}; {plural(r.days_to_exit, 'day')} to the exit"
    blocks: list[Block] = [Header(text=summary)]
    if tasks_:
        blocks.append(_task_list(tasks_, facts, today))
    else:
        blocks.append(Paragraph(text="The engagement file has no hand-over list. Add a `handoff:` section."))
    blocks += [
        readiness_fields(r),
        Paragraph(text="/cadence handoff <key> done [note=...]   /cadence handoff <key> to=@name", muted=True),
    ]
    return Message(text=summary, blocks=blocks, ephemeral=True)


def task_card(facts: EngagementFacts, task: HandoffTask, today: date, *, intro: str | None = None) -> Message:
    due = task_due(facts, task.due_days_before_exit)
    text = intro or f"Hand-over task {task.key}: {task.title}"
    blocks: list[Block] = [
        Header(text=text),
        Fields(
            items=[
                FieldItem(label="Task", value=task.title),
                FieldItem(
                    label="From → To", value=f"{_name(facts, task.from_id, 'nobody')} → {_name(facts, task.to_id)}"
                ),
                FieldItem(label="Due", value=f"{long_date(due)} ({when(due, today)})"),
                FieldItem(label="Status", value=_status(task, facts, today)),
                *([FieldItem(label="Note", value=task.status_note)] if task.status_note else []),
            ]
        ),
    ]
    if task.status == "open":
        blocks.append(Actions(buttons=task_buttons(task)))
    return Message(text=text, blocks=blocks, ephemeral=True)


# --- changes from commands ------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskChange:
    task: HandoffTask
    changes: dict[str, list[Any]] = field(default_factory=dict)


async def _locked(session: AsyncSession, engagement_id: int, key: str) -> HandoffTask:
    found = await find_task(session, engagement_id, key)
    return (
        await session.execute(
            select(HandoffTask)
            .where(HandoffTask.id == found.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def set_task_status(ctx: Context, key: str, status: str, note: str | None) -> TaskChange:
    """Mark a task done (or open again): the CRO, a manager, a founder, or the task's new owner may."""
    actor = _actor(ctx)
    async with ctx.db.write() as session:
        task = await _locked(session, ctx.engagement.id, key)
        if not allowed(actor, Action.UPDATE_PLAN, owns=task.to_id == actor.id):
            raise PlanError(
                "Only the task's new owner, a manager, a founder or the CRO can mark a hand-over task done.", "denied"
            )
        changes = {"status": [task.status, status]} if task.status != status else {}
        task.status = status
        task.status_note = note
        task.status_at = ctx.now()
        return TaskChange(task, changes)


async def assign_task(ctx: Context, key: str, to: Person, note: str | None) -> TaskChange:
    """Name the internal owner of a task: the CRO, a manager or a founder decides who takes what over."""
    actor = _actor(ctx)
    if not allowed(actor, Action.UPDATE_PLAN):
        raise PlanError("Only a manager, a founder or the CRO can decide who takes over a hand-over task.", "denied")
    if not to.active:
        raise PlanError(f"{to.name} is no longer active in this engagement; pick someone who is.")
    async with ctx.db.write() as session:
        task = await _locked(session, ctx.engagement.id, key)
        before = await session.get(Person, task.to_id) if task.to_id is not None else None
        changes = {"to": [before.key if before else None, to.key]} if task.to_id != to.id else {}
        task.to_id = to.id
        if note is not None:
            task.status_note = note
        task.status_at = ctx.now()
        return TaskChange(task, changes)


def _actor(ctx: Context) -> Person:
    if ctx.actor is None:
        raise PlanError("You're not part of this engagement, so you can't change its hand-over.", "denied")
    return ctx.actor


# --- the rituals ----------------------------------------------------------------------------------


def _unique(people: Iterable[PersonFacts | None]) -> list[PersonFacts]:
    return list({p.id: p for p in people if p is not None and p.active}.values())


def _founders_or_cro(facts: EngagementFacts) -> list[PersonFacts]:
    """Who answers for the function after the exit: the founders, or the CRO when there is none."""
    return _unique(facts.with_role(Role.FOUNDER) or [facts.cro])


def _cro_and_founders(facts: EngagementFacts) -> list[PersonFacts]:
    return _unique([facts.cro, *facts.with_role(Role.FOUNDER)])


def _first(person: PersonFacts | None, missing: str = "the CRO") -> str:
    return person.name.split()[0] if person else missing


class HandoffReminder:
    """The ladder: each open task is announced 60 and 30 days before it is due, pressed at 14 and 7,
    and confirmed the day before; the CRO is copied on the last steps, and an unowned task goes to the
    CRO and the founders as a question: who will own it?"""

    name = "handoff_reminder"

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        at = facts.settings.handoff.time
        for key, due_on in facts.handoff_due:
            for days in facts.settings.handoff.reminder_days_before_due:
                due = Due(
                    self.name,
                    f"{key}/d{days}",
                    facts.local(reminder_date(due_on, days, facts.holidays), at),
                    GRACE,
                    {"task": key, "days_before": days},
                )
                if in_window(due, start, end):
                    yield due

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        facts, detail = run.facts, run.occurrence.detail
        task = (
            await run.session.execute(
                select(HandoffTask).where(HandoffTask.engagement_id == facts.id, HandoffTask.key == detail["task"])
            )
        ).scalar_one_or_none()
        if task is None or task.status != "open":
            return []
        days = int(detail["days_before"])
        due = task_due(facts, task.due_days_before_exit)
        word = urgency(days)
        head = "Hand-over heads-up" if word == "heads-up" else f"Hand-over due {word}"
        giver, taker = facts.person(task.from_id), facts.person(task.to_id) if task.to_id else None
        if taker is None:
            summary = f"{head}: nobody owns “{task.title}” yet"
            body = (
                f"“{task.title}” is due {long_date(due)} ({when(due, run.today)}) and has no internal owner. "
                f"Who will own it after {_first(facts.cro)} leaves? Assign it with "
                f"/cadence handoff {task.key} to=@name."
            )
            recipients = _cro_and_founders(facts)
        else:
            summary = f"{head}: “{task.title}” moves to {taker.name} by {long_date(due)}"
            body = (
                f"{_name(facts, task.from_id, 'The CRO')} hands “{task.title}” to {taker.name}, "
                f"due {long_date(due)} ({when(due, run.today)}). " + _advice(word, giver, taker)
            )
            recipients = _unique([giver, taker, facts.cro if days <= CRO_COPIED_FROM_DAYS else None])
        message = Message(
            text=summary, blocks=[Header(text=summary), Paragraph(text=body), Actions(buttons=task_buttons(task))]
        )
        return [
            Outgoing(Recipient.person(p.id), "handoff_reminder", message, subject=f"handoff:{task.id}")
            for p in recipients
        ]


def _advice(word: str, giver: PersonFacts | None, taker: PersonFacts) -> str:
    them, me = _first(taker), _first(giver)
    if word == "heads-up":
        return f"Time enough if it starts now: {them} runs it with {me} alongside, then alone, before it is due."
    if word == "soon":
        return f"{them} should be running it now, with {me} only watching. Mark it done once it runs without {me}."
    return f"Mark it done if {them} owns it now; if not, say today what is in the way."


class HandoffOverdue:
    """Every Monday once a task is past due and still open, the founders get the list: it is their
    function after the exit, so they hear first when the hand-over slips."""

    name = "handoff_overdue"

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        if not facts.handoff_due:
            return
        first = min(d for _, d in facts.handoff_due) + timedelta(days=1)
        at = facts.settings.handoff.time
        for week, on in weekly(facts, start, end, first, facts.engagement.exit_date):
            due = Due(self.name, week, facts.local(on, at), GRACE)
            if in_window(due, start, end):
                yield due

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        late = await overdue_tasks(run.session, run.facts, run.today)
        if not late:
            return []
        summary = f"{plural(len(late), 'hand-over task')} overdue"
        days_left = (run.facts.engagement.exit_date - run.today).days
        message = Message(
            text=summary,
            blocks=[
                Header(text=summary),
                Paragraph(
                    text=f"These were due before today and are still open, {plural(days_left, 'day')} "
                    "before the exit. Mark each done when its new owner runs it, or assign an owner."
                ),
                _task_list(late, run.facts, run.today),
                Paragraph(text="/cadence handoff <key> done   /cadence handoff <key> to=@name", muted=True),
            ],
        )
        return [Outgoing(Recipient.person(p.id), "handoff_overdue", message) for p in _founders_or_cro(run.facts)]


class ExitPlanning:
    """In month N the CRO and the founders are told to open exit planning; if owners are already named,
    they get a short readiness summary instead."""

    name = "exit_planning"

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        on = exit_planning_date(facts)
        if on > facts.engagement.exit_date:
            return
        month = facts.settings.handoff.exit_planning_month
        due = Due(self.name, f"month-{month}", facts.local(on, facts.settings.handoff.time), GRACE, {"month": month})
        if in_window(due, start, end):
            yield due

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        facts = run.facts
        all_tasks = await tasks(run.session, facts.id)
        if not all_tasks:
            return []
        month = int(run.occurrence.detail["month"])
        if any(t.to_id is not None for t in all_tasks):
            r = await readiness(run.session, facts, run.today)
            summary = f"Month {month}: exit planning is under way — {r.tasks_line}"
            blocks: list[Block] = [Header(text=summary), readiness_fields(r)]
        else:
            summary = f"Month {month}: time to open exit planning — who will own each ritual?"
            blocks = [
                Header(text=summary),
                Paragraph(
                    text=f"{_first(facts.cro)} leaves on {long_date(facts.engagement.exit_date)}. None of "
                    "these has an internal owner yet; name one for each so there is time to prove it "
                    "runs without the CRO."
                ),
                _task_list(all_tasks, facts, run.today),
                Paragraph(text="/cadence handoff <key> to=@name", muted=True),
            ]
        message = Message(text=summary, blocks=blocks)
        return [Outgoing(Recipient.person(p.id), "exit_planning", message) for p in _cro_and_founders(facts)]


class OwnerWarning:
    """From N days before the exit, every Monday: the founders hear about each task nobody will own, and
    plainly when the function still depends on the CRO."""

    name = "handoff_owner_warning"

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        exit_date = facts.engagement.exit_date
        first = exit_date - timedelta(days=facts.settings.handoff.owner_warning_days_before_exit)
        at = facts.settings.handoff.time
        for week, on in weekly(facts, start, end, first, exit_date):
            due = Due(self.name, week, facts.local(on, at), GRACE)
            if in_window(due, start, end):
                yield due

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        facts = run.facts
        r = await readiness(run.session, facts, run.today)
        dependency = cro_dependency(facts, r)
        if not r.unowned and not dependency:
            return []
        cro = _first(facts.cro)
        summary = f"{plural(r.days_to_exit, 'day')} to {cro}'s exit: " + (
            f"{plural(len(r.unowned), 'task')} with no internal owner"
            if r.unowned
            else "the function still depends on the CRO"
        )
        blocks: list[Block] = [Header(text=summary)]
        if r.unowned:
            blocks.append(
                Paragraph(
                    text="Nobody owns these after the exit yet:\n" + "\n".join(f"• {title}" for title in r.unowned)
                )
            )
        if dependency:
            blocks.append(Paragraph(text=f"The function still depends on {cro}: " + " ".join(dependency)))
        blocks += [readiness_fields(r), Paragraph(text="/cadence handoff <key> to=@name", muted=True)]
        message = Message(text=summary, blocks=blocks)
        return [Outgoing(Recipient.person(p.id), "owner_warning", message) for p in _founders_or_cro(facts)]


def cro_dependency(facts: EngagementFacts, r: Readiness) -> list[str]:
    """The plain reasons the function still depends on the CRO (none: it does not)."""
    cro = facts.cro
    if cro is None:
        return []
    reasons = []
    if r.review_host is not None and r.review_host.id == cro.id:
        reasons.append(f"{cro.name} still hosts the weekly pipeline review.")
    if r.open_with_cro and r.days_to_exit <= DEPENDENCY_DAYS:
        held = (
            "1 open hand-over task still sits"
            if r.open_with_cro == 1
            else f"{r.open_with_cro} open hand-over tasks still sit"
        )
        reasons.append(f"{held} with {cro.name}, {plural(r.days_to_exit, 'day')} before the exit.")
    return reasons
