"""`cadence simulate`: a whole engagement, day 1 to the exit, through the real engine and rituals on a
virtual clock, with a scripted population of people who answer some prompts and ignore others.

Nothing here decides what a ritual says or when: the engine and the rituals do, exactly as in
production. The population only types commands, through the same router a person's chat uses, and
the port prints every message the bot sends. A fixed seed makes two runs print the same transcript.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from cadences.clock import ManualClock
from cadences.commands import CommandRouter
from cadences.context import Context
from cadences.debriefs import questions_for
from cadences.engagement_file import engagement_settings
from cadences.engine import Engine
from cadences.rituals import at_local
from cadences.scheduler import advance
from storage.db import Database
from storage.models import Deal, Debrief, Delivery, Engagement, HandoffTask, Person, PlanDeliverable, Role, Stage

ACTION_TIME = time(11, 30)
FREE_TEXT = "Talked it through with my manager"


@dataclass
class Population:
    """How the simulated people behave: probabilities, drawn from one seeded generator."""

    rng: random.Random
    answers_nudges: float = 0.6
    answers_debriefs: float = 0.55
    advances_a_deal: float = 0.25
    slips_a_deal: float = 0.08
    closes_a_deal: float = 0.06
    reports_status: float = 0.5


class Simulation:
    def __init__(
        self,
        db: Database,
        clock: ManualClock,
        engine: Engine,
        router: CommandRouter,
        engagement: Engagement,
        population: Population,
        echo: Callable[[str], None],
    ) -> None:
        self.db = db
        self.clock = clock
        self.engine = engine
        self.router = router
        self.engagement = engagement
        self.people = population
        self.echo = echo

    async def run(self, days: int) -> None:
        start = self.engagement.start_date
        for offset in range(days):
            day = start + timedelta(days=offset)
            await advance(self.engine, self.clock, at_local(day, ACTION_TIME, _tz(self.engagement)))
            if day.weekday() < 5:
                await self.act(day)
        await advance(self.engine, self.clock, at_local(start + timedelta(days=days), time(0), _tz(self.engagement)))

    async def say(self, person: Person, line: str) -> None:
        self.echo(f"\n{person.key}> {line}")
        ctx = Context(self.db, self.clock, self.engagement, person, "simulate", person.key, cadence=self.engine)
        for message in await self.router.handle_text(ctx, line):
            if message.ephemeral and not message.text.startswith(("Updated", "Thanks", "Created")):
                self.echo(f"  (to {person.key}) {message.text}")

    async def act(self, day: date) -> None:
        """One business day of the population's behaviour, in a fixed order so runs repeat exactly."""
        async with self.db.session() as session:
            people = (
                (
                    await session.execute(
                        select(Person)
                        .where(Person.engagement_id == self.engagement.id, Person.active.is_(True))
                        .order_by(Person.id)
                    )
                )
                .scalars()
                .all()
            )
            since = self.clock.now() - timedelta(days=1)
            nudged = set(
                (
                    await session.execute(
                        select(Delivery.recipient).where(
                            Delivery.engagement_id == self.engagement.id,
                            Delivery.purpose == "nudge",
                            Delivery.sent_at >= since,
                        )
                    )
                ).scalars()
            )
        for person in people:
            if person.role == Role.REP:
                if f"person:{person.id}" in nudged and self.people.rng.random() < self.people.answers_nudges:
                    await self.answer_nudge(person)
                await self.work_pipeline(person)
                await self.answer_debriefs(person)
            await self.report_status(person)

    async def answer_nudge(self, rep: Person) -> None:
        async with self.db.session() as session:
            deals = (
                (
                    await session.execute(
                        select(Deal)
                        .where(Deal.owner_id == rep.id, Deal.is_open.is_(True))
                        .order_by(Deal.touched_at, Deal.id)
                        .limit(3)
                    )
                )
                .scalars()
                .all()
            )
        today = self.clock.now().astimezone(_tz(self.engagement)).date()
        for deal in deals:
            if deal.close_date is not None and deal.close_date < today:
                await self.say(rep, f'/deal "{deal.name}" close={(today + timedelta(days=21)).isoformat()}')
            elif not deal.next_step:
                await self.say(rep, f'/deal "{deal.name}" next="Follow-up call" next_date=+5d')
            else:
                await self.say(rep, f'/deal "{deal.name}" ok')

    async def work_pipeline(self, rep: Person) -> None:
        rng = self.people.rng
        async with self.db.session() as session:
            deals = (
                await session.execute(
                    select(Deal, Stage)
                    .join(Stage, Stage.id == Deal.stage_id)
                    .where(Deal.owner_id == rep.id, Deal.is_open.is_(True))
                    .order_by(Deal.id)
                )
            ).all()
            stages = (
                (
                    await session.execute(
                        select(Stage)
                        .where(Stage.engagement_id == self.engagement.id, Stage.kind == "open")
                        .order_by(Stage.position)
                    )
                )
                .scalars()
                .all()
            )
        if not deals:
            return
        deal, stage = deals[rng.randrange(len(deals))]
        roll = rng.random()
        today = self.clock.now().astimezone(_tz(self.engagement)).date()
        later = [s for s in stages if s.position > stage.position]
        if roll < self.people.closes_a_deal:
            if rng.random() < 0.5:
                await self.say(rep, f'/deal "{deal.name}" won')
            else:
                reason = rng.choice(["price", "no decision", "competitor", "timing"])
                await self.say(rep, f'/deal "{deal.name}" lost reason="{reason}"')
        elif roll < self.people.closes_a_deal + self.people.slips_a_deal and deal.close_date:
            slipped = max(deal.close_date, today) + timedelta(days=rng.choice([14, 21, 30]))
            await self.say(rep, f'/deal "{deal.name}" close={slipped.isoformat()}')
        elif roll < self.people.closes_a_deal + self.people.slips_a_deal + self.people.advances_a_deal and later:
            await self.say(rep, f'/deal "{deal.name}" stage={later[0].key} next="Next meeting" next_date=+7d')

    async def answer_debriefs(self, rep: Person) -> None:
        async with self.db.session() as session:
            debriefs = (
                (
                    await session.execute(
                        select(Debrief).where(Debrief.owner_id == rep.id, Debrief.status == "open").order_by(Debrief.id)
                    )
                )
                .scalars()
                .all()
            )
        settings = engagement_settings(self.engagement)
        for debrief in debriefs:
            if self.people.rng.random() < self.people.answers_debriefs:
                answers = " ".join(
                    f'{q.key}="{self.people.rng.choice(q.choices) if q.choices else FREE_TEXT}"'
                    for q in questions_for(settings, debrief.trigger)
                )
                await self.say(rep, f"/debrief {debrief.id} {answers}")

    async def report_status(self, person: Person) -> None:
        rng = self.people.rng
        today = self.clock.now().astimezone(_tz(self.engagement)).date()
        async with self.db.session() as session:
            deliverables = (
                (
                    await session.execute(
                        select(PlanDeliverable)
                        .where(PlanDeliverable.owner_id == person.id, PlanDeliverable.status != "done")
                        .order_by(PlanDeliverable.position, PlanDeliverable.id)
                    )
                )
                .scalars()
                .all()
            )
            tasks = (
                (
                    await session.execute(
                        select(HandoffTask)
                        .where(HandoffTask.to_id == person.id, HandoffTask.status == "open")
                        .order_by(HandoffTask.id)
                    )
                )
                .scalars()
                .all()
            )
        start = self.engagement.start_date
        for item in deliverables:
            due = start + timedelta(days=item.milestone_day - 1)
            if (due - today).days <= 7 and rng.random() < self.people.reports_status:
                status = rng.choice(["done", "done", "on_track", "at_risk"])
                await self.say(person, f"/cadence deliverable {item.key} status={status}")
                break
        for task in tasks:
            due = self.engagement.exit_date - timedelta(days=task.due_days_before_exit)
            if (due - today).days <= 10 and rng.random() < self.people.reports_status / 3:
                await self.say(person, f"/cadence handoff {task.key} done")
                break


def _tz(engagement: Engagement) -> ZoneInfo:
    return ZoneInfo(engagement.timezone)


def start_of(engagement: Engagement) -> datetime:
    """The simulation starts on the engagement's first morning, before any ritual is due."""
    return at_local(engagement.start_date, time(7), _tz(engagement))
