"""The 30/60/90 plan on the test engagement (start Mon 2026-09-07, holidays Nov 26, Dec 25, Jan 1; LA;
Dana the CRO in New York, Priya in London): check-in, scorecard and chase dates worked out by hand,
the check-ins and chases delivered exactly once, status updates and who may make them, and the
`/cadence` screens (status, milestones, help, the subcommand hook)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.console.render import render
from cadences import plan_commands
from cadences.commands import CommandResult
from cadences.context import Context
from cadences.engagement_file import MilestoneSettings
from cadences.engine import Engine
from cadences.messages import reply
from cadences.milestones import MilestoneCheckin, MilestoneScorecard, OverdueChase, checkin_date, milestone_date
from cadences.ritual_catalog import all_rituals
from cadences.rituals import EngagementFacts, load_facts
from storage.models import AuditLog, Engagement, Person, PlanDeliverable
from support.transcript import Sent, TranscriptPort

WEEK = timedelta(days=7)
WIDE = (datetime(2026, 8, 1, tzinfo=UTC), datetime(2027, 6, 1, tzinfo=UTC))
DAY_90_DANA = [
    "Run the system for one full cycle",
    "Playbook documented",
    "Internal owners named for each ritual",
    "Hand-over of operating responsibilities begun",
]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def facts_of(world: Any) -> EngagementFacts:
    async with world.db.session() as session:
        engagement = await session.get(Engagement, world.engagement.id)
        assert engagement is not None
        return await load_facts(session, engagement)


async def set_owner(world: Any, deliverable: str, person: str) -> None:
    async with world.db.session() as session:
        owner = (await session.execute(select(Person.id).where(Person.key == person))).scalar_one()
        await session.execute(update(PlanDeliverable).where(PlanDeliverable.key == deliverable).values(owner_id=owner))


async def deliverable(world: Any, key: str) -> PlanDeliverable:
    async with world.db.session() as session:
        return (await session.execute(select(PlanDeliverable).where(PlanDeliverable.key == key))).scalar_one()


def rig(world: Any) -> tuple[Engine, TranscriptPort]:
    port = TranscriptPort()
    rituals = [MilestoneCheckin(), MilestoneScorecard(), OverdueChase()]
    return Engine(world.db, world.clock, rituals, lambda _e: port, worker="milestones"), port


async def run_until(world: Any, engine: Engine, until: datetime) -> None:
    """Tick at every due time up to `until`, stepping a week at a time over quiet stretches (the engine
    looks 8 days ahead for its next wake-up)."""
    while True:
        now = world.clock.now()
        nxt = await engine.next_wakeup(now)
        if nxt is None and now + WEEK < until:
            world.clock.set(now + WEEK)
            continue
        if nxt is None or nxt > until:
            break
        world.clock.set(nxt)
        await engine.tick()
    world.clock.set(until)
    await engine.tick()


def sent(port: TranscriptPort, ritual: str) -> list[Sent]:
    return [s for s in port.sent if f"/{ritual}/" in s.key]


# --- when -----------------------------------------------------------------------------------------


async def test_milestone_dates_and_checkins_five_business_days_before_at_the_owners_ten(world: Any) -> None:
    facts = await facts_of(world)
    # day N = start + (N - 1): day 30 Tue Oct 6, day 60 Thu Nov 5, day 90 Sat Dec 5 -> Mon Dec 7
    assert [milestone_date(facts, d) for d in (30, 60, 90)] == [date(2026, 10, 6), date(2026, 11, 5), date(2026, 12, 7)]
    # 5 business days back: Oct 6 -> Tue Sep 29; Nov 5 -> Thu Oct 29; Dec 7 -> Mon Nov 30
    assert [checkin_date(facts, d) for d in (30, 60, 90)] == [date(2026, 9, 29), date(2026, 10, 29), date(2026, 11, 30)]
    dues = list(MilestoneCheckin().due_between(facts, *WIDE))
    dana = [(d.period, d.due_at) for d in dues if d.period.endswith("/dana")]
    assert dana == [
        ("d30/dana", utc("2026-09-29T10:00-04:00")),
        ("d60/dana", utc("2026-10-29T10:00-04:00")),
        ("d90/dana", utc("2026-11-30T10:00-05:00")),
    ]  # New York: EDT, then EST after Nov 1
    priya = next(d for d in dues if d.period == "d90/priya")
    assert priya.due_at == utc("2026-11-30T10:00+00:00") and priya.detail["day"] == 90
    assert len(dues) == 3 * 5  # every active person; only owners with open deliverables get a message

    # 7 business days before Mon Dec 7 skips Thanksgiving (Thu Nov 26): Dec 4,3,2,1, Nov 30, 27, 25
    seven = replace(
        facts,
        settings=facts.settings.model_copy(update={"milestones": MilestoneSettings(checkin_business_days_before=7)}),
    )
    assert checkin_date(seven, 90) == date(2026, 11, 25)


async def test_scorecard_on_the_milestone_day_and_a_weekly_chase_after_the_first(world: Any) -> None:
    facts = await facts_of(world)
    cards = [(d.period, d.due_at) for d in MilestoneScorecard().due_between(facts, *WIDE)]
    assert cards == [
        ("d30", utc("2026-10-06T10:00-07:00")),
        ("d60", utc("2026-11-05T10:00-08:00")),
        ("d90", utc("2026-12-07T10:00-08:00")),
    ]
    chases = [(d.period, d.due_at) for d in OverdueChase().due_between(facts, *WIDE)]
    # every Monday after day 30 (Tue Oct 6) up to the exit (Fri Mar 5): Oct 12 ... Mar 1 = 21 Mondays
    assert chases[:2] == [("2026-W42", utc("2026-10-12T10:00-07:00")), ("2026-W43", utc("2026-10-19T10:00-07:00"))]
    assert chases[-1] == ("2027-W09", utc("2027-03-01T10:00-08:00"))
    assert len(chases) == 21
    # a Monday holiday moves that week's chase to Tuesday, same period
    holiday = replace(facts, holidays=facts.holidays | {date(2026, 10, 19)})
    assert [(d.period, d.due_at) for d in OverdueChase().due_between(holiday, *WIDE)][1] == (
        "2026-W43",
        utc("2026-10-20T10:00-07:00"),
    )


# --- what, exactly once ---------------------------------------------------------------------------


async def test_checkins_chases_and_scorecards_are_sent_once_to_the_right_people(world: Any) -> None:
    await set_owner(world, "full_cycle", "jordan")
    assert "Not started → Done" in await world.text("maya", "/cadence deliverable revenue_audit status=done")
    engine, port = rig(world)

    await run_until(world, engine, utc("2026-11-30T10:00-05:00"))  # Dana's day-90 check-in, 10:00 New York
    checkins = sent(port, "milestone_checkin")
    assert [s.target.person_name for s in checkins] == ["Dana Whitfield"]
    text = render(checkins[0].message)
    assert "Day 90 check-in: 3 deliverables of yours due Mon Dec 7, 2026" in text
    assert all(title in text for title in DAY_90_DANA[1:]) and DAY_90_DANA[0] not in text  # Jordan's now
    assert "[1] Done (/cadence deliverable playbook_documented status=done)" in text
    assert "[2] On track (/cadence deliverable playbook_documented status=on_track)" in text
    assert '[At risk] (/cadence deliverable playbook_documented status=at_risk note="...")' in text
    button = checkins[0].message.blocks[3]
    assert button.type == "actions" and button.buttons[0].action_id == "deliverable_status"
    row = await deliverable(world, "playbook_documented")
    assert button.buttons[0].value == f"{row.id}:done"

    await engine.tick()
    await engine.tick()  # the same instant again: nothing new
    assert len(sent(port, "milestone_checkin")) == 1

    await run_until(world, engine, utc("2026-11-30T10:00-08:00"))  # Jordan's check-in and the Monday chase
    assert [s.target.person_name for s in sent(port, "milestone_checkin")] == ["Dana Whitfield", "Jordan Lee"]
    assert (
        "Day 90 check-in: 1 deliverable of yours due Mon Dec 7, 2026" in sent(port, "milestone_checkin")[1].message.text
    )
    chase = sent(port, "milestone_chase")
    assert [s.target.person_name for s in chase] == ["Dana Whitfield"]  # Jordan's is not due yet
    assert chase[0].message.text == "7 plan deliverables of yours overdue"  # 3 of day 30 + 4 of day 60
    chase_text = render(chase[0].message)
    assert "Revenue audit" not in chase_text and "Single biggest constraint named" in chase_text
    assert "Due day 30 (Tue Oct 6, 2026), 55 days ago" in chase_text

    reply_text = await world.text("jordan", '/cadence deliverable full_cycle at risk note="Waiting on Q4 data"')
    assert "Run the system for one full cycle: Not started → At risk." in reply_text

    await run_until(world, engine, utc("2026-12-07T10:00-08:00"))  # day 90: scorecard and the next chase
    cards = sent(port, "milestone_scorecard")
    assert sorted(s.target.person_name or "" for s in cards) == ["Dana Whitfield", "Sam Okafor"]
    card = render(cards[0].message)
    assert cards[0].message.text == "Day 90 scorecard: 0 of 4 done"
    assert "Day 90 (Mon Dec 7, 2026): 0 of 4 done" in card
    assert "Plan to date: 1 of 12 done" in card
    assert "Overdue from earlier milestones: 7" in card
    line = next(x for x in card.splitlines() if x.startswith("Run the system"))
    assert "Jordan Lee" in line and "At risk" in line and "Waiting on Q4 data" in line and "OVERDUE" not in line
    line = next(x for x in card.splitlines() if x.startswith("Single biggest constraint"))
    assert "day 30" in line and "Not started · OVERDUE" in line
    assert [s.key.split("/")[2] for s in sent(port, "milestone_chase")] == ["2026-W49", "2026-W50"]
    assert len(sent(port, "milestone_checkin")) == 2


async def test_status_updates_and_who_may_make_them(world: Any) -> None:
    await set_owner(world, "full_cycle", "jordan")
    denied = await world.text("jordan", "/cadence deliverable revenue_audit status=done")
    assert "Reps can update only the deliverables they own" in denied
    assert "Reps can update only" in await world.text("priya", "/cadence deliverable full_cycle status=done")
    assert (await deliverable(world, "revenue_audit")).status == "not_started"

    assert "Not started → On track" in await world.text("jordan", "/cadence deliverable full_cycle on track")
    assert "Not started → Blocked" in await world.text(
        "sam", '/cadence deliverable icp_def status=blocked note="No access to the CRM export"'
    )  # key prefix
    row = await deliverable(world, "icp_defined")
    assert row.status == "blocked" and row.status_note == "No access to the CRM export"
    assert row.status_at == world.clock.now()
    assert "Blocked → Done" in await world.text("dana", "/cadence deliverable icp_defined status=done")
    assert (await deliverable(world, "icp_defined")).status_note is None

    assert "is not a status" in await world.text("dana", "/cadence deliverable icp_defined status=maybe")
    assert 'There is no deliverable "nope"' in await world.text("dana", "/cadence deliverable nope status=done")
    assert '"i" matches icp_defined, internal_owners' in await world.text("dana", "/cadence deliverable i status=done")
    assert "not part of" in await world.text(None, "/cadence deliverable icp_defined status=done")

    async with world.db.session() as session:
        rows = (
            await session.execute(select(AuditLog.action, AuditLog.outcome, AuditLog.detail).order_by(AuditLog.id))
        ).all()
    assert [(a, o) for a, o, _ in rows][:4] == [
        ("cadence.deliverable", "denied"),
        ("cadence.deliverable", "denied"),
        ("plan.deliverable", "ok"),
        ("plan.deliverable", "ok"),
    ]
    assert rows[3][2]["changes"] == {"status": ["not_started", "blocked"]}
    assert rows[3][2]["note"] == "No access to the CRM export"
    assert rows[-1][1] == "denied"  # the stranger, audited too


# --- the /cadence screens -------------------------------------------------------------------------


async def test_milestones_screen_shows_each_phase_with_owner_status_and_due_date(world: Any) -> None:
    await world.say("dana", "/cadence deliverable revenue_audit status=done")
    text = await world.text("jordan", "/cadence milestones")
    assert "== 30/60/90 plan — day 79 of the engagement ==" in text  # Tue Nov 24: Sep 7 is day 1
    assert "1 of 12 deliverables done, 7 overdue." in text
    assert "== Diagnose and define — by day 30: 1 of 4 done ==" in text
    assert "== Operationalize and transition — by day 90: 0 of 4 done ==" in text
    audit = next(x for x in text.splitlines() if x.startswith("revenue_audit"))
    assert "Dana Whitfield" in audit and "Done" in audit and "day 30, Tue Oct 6" in audit
    icp = next(x for x in text.splitlines() if x.startswith("icp_defined"))
    assert "Not started · OVERDUE" in icp
    full = next(x for x in text.splitlines() if x.startswith("full_cycle"))
    assert "OVERDUE" not in full and "day 90, Mon Dec 7" in full


async def test_status_is_the_engagement_clock_on_one_screen(world: Any) -> None:
    await world.say("dana", "/cadence deliverable full_cycle status=done")
    text = await world.text("sam", "/cadence status")
    assert "== Testco: day 79 of 180 ==" in text  # Sep 7 2026 .. Mar 5 2027 is 180 days
    assert "Exit: Fri Mar 5, 2027 (in 101 days)" in text
    assert "Next milestone: day 90, Mon Dec 7, 2026 (in 13 days): 1 of 4 done" in text
    assert "Plan: 1 of 12 deliverables done, 8 overdue" in text
    assert "Hand-over: 0 of 8 tasks done, 8 without an internal owner" in text
    assert "Cadence: running" in text
    assert await world.text("sam", "/cadence") == text


async def test_help_unknown_subcommands_and_the_extension_hook(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    help_text = await world.text("jordan", "/cadence help")
    for name in ("status", "milestones", "deliverable", "handoff"):
        assert f"/cadence {name}" in help_text
    assert "Did you mean /cadence milestones?" in await world.text("jordan", "/cadence milestone")

    seen: list[str] = []

    async def schedule(ctx: Context, args: str) -> CommandResult:
        seen.append(args)
        return CommandResult([reply("this week: the pipeline review")], action="cadence.schedule", outcome="read")

    monkeypatch.setitem(plan_commands.SUBCOMMANDS, "schedule", schedule)
    monkeypatch.setitem(plan_commands.SUBCOMMAND_HELP, "schedule", "/cadence schedule — what runs when")
    assert await world.text("dana", "/cadence schedule next week") == "this week: the pipeline review"
    assert seen == ["next week"]
    assert "/cadence schedule — what runs when" in await world.text("dana", "/cadence help")


def test_the_catalog_runs_the_milestone_rituals() -> None:
    names = {r.name for r in all_rituals()}
    assert {"milestone_checkin", "milestone_scorecard", "milestone_chase"} <= names
