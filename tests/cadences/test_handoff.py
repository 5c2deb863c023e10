"""The hand-over on the test engagement (exit Fri 2027-03-05, LA; the default hand-over list: from Dana,
to nobody): reminder ladders, overdue lists, the month-N prompt and the 60-day owner warnings on dates
worked out by hand; exactly-once delivery; who may assign or close a task; readiness counting."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from bot.console.render import render
from cadences.engagement_file import HandoffSettings
from cadences.engine import Engine
from cadences.handoff import (
    ExitPlanning,
    HandoffOverdue,
    HandoffReminder,
    OwnerWarning,
    Readiness,
    add_months,
    cro_dependency,
    exit_planning_date,
    readiness,
)
from cadences.rituals import EngagementFacts, load_facts
from storage.models import AuditLog, Engagement, HandoffTask, Occurrence, Person
from support.transcript import Sent, TranscriptPort

WEEK = timedelta(days=7)
WIDE = (datetime(2026, 8, 1, tzinfo=UTC), datetime(2027, 6, 1, tzinfo=UTC))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def pst(day: str, hour: int = 10) -> datetime:
    """A Los Angeles wall-clock time between November and March (PST, UTC-8)."""
    return utc(f"{day}T{hour:02d}:00-08:00")


async def facts_of(world: Any) -> EngagementFacts:
    async with world.db.session() as session:
        engagement = await session.get(Engagement, world.engagement.id)
        assert engagement is not None
        return await load_facts(session, engagement)


def with_handoff(facts: EngagementFacts, **changes: Any) -> EngagementFacts:
    handoff = HandoffSettings.model_validate({**facts.settings.handoff.model_dump(), **changes})
    return replace(facts, settings=facts.settings.model_copy(update={"handoff": handoff}))


async def store_handoff_settings(world: Any, **changes: Any) -> None:
    facts = with_handoff(await facts_of(world), **changes)
    async with world.db.session() as session:
        await session.execute(
            update(Engagement)
            .where(Engagement.id == world.engagement.id)
            .values(settings=facts.settings.model_dump(mode="json"))
        )


async def task(world: Any, key: str) -> HandoffTask:
    async with world.db.session() as session:
        return (await session.execute(select(HandoffTask).where(HandoffTask.key == key))).scalar_one()


async def person_id(world: Any, key: str) -> int:
    async with world.db.session() as session:
        return (await session.execute(select(Person.id).where(Person.key == key))).scalar_one()


def rig(world: Any) -> tuple[Engine, TranscriptPort]:
    port = TranscriptPort()
    rituals = [HandoffReminder(), HandoffOverdue(), ExitPlanning(), OwnerWarning()]
    return Engine(world.db, world.clock, rituals, lambda _e: port, worker="handoff"), port


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


def sent(port: TranscriptPort, ritual: str, period_prefix: str = "") -> list[Sent]:
    return [s for s in port.sent if f"/{ritual}/{period_prefix}" in s.key]


def ladder(port: TranscriptPort, key: str) -> list[tuple[str, list[str], str]]:
    """(step, recipients, headline) for each reminder step of one task, in order."""
    steps: dict[str, tuple[list[str], str]] = {}
    for s in sent(port, "handoff_reminder", f"{key}/"):
        step = s.key.split("/")[3]
        names, _ = steps.setdefault(step, ([], s.message.text.split(":")[0]))
        names.append((s.target.person_name or "").split()[0])
    return [(step, sorted(names), head) for step, (names, head) in steps.items()]


# --- when -----------------------------------------------------------------------------------------


async def test_reminder_ladder_for_a_task_due_30_days_before_the_exit(world: Any) -> None:
    facts = await facts_of(world)
    # review_host is due 30 days before Fri Mar 5: Wed Feb 3, 2027
    dues = [
        (d.period, d.due_at) for d in HandoffReminder().due_between(facts, *WIDE) if d.period.startswith("review_host/")
    ]
    assert dues == [
        ("review_host/d60", pst("2026-12-04")),  # Sat Dec 5 moves back to Fri Dec 4
        ("review_host/d30", pst("2027-01-04")),
        ("review_host/d14", pst("2027-01-20")),
        ("review_host/d7", pst("2027-01-27")),
        ("review_host/d1", pst("2027-02-02")),
    ]


async def test_weekly_overdue_lists_and_owner_warnings_start_on_the_right_monday(world: Any) -> None:
    facts = await facts_of(world)
    # the earliest tasks are due 60 days before the exit, Mon Jan 4: the overdue list starts the Monday after
    overdue = [(d.period, d.due_at) for d in HandoffOverdue().due_between(facts, *WIDE)]
    assert overdue[0] == ("2027-W02", pst("2027-01-11")) and overdue[-1] == ("2027-W09", pst("2027-03-01"))
    assert len(overdue) == 8
    # owner warnings from 60 days before the exit (Mon Jan 4) every Monday to the exit: Jan 4 ... Mar 1
    warnings = [(d.period, d.due_at) for d in OwnerWarning().due_between(facts, *WIDE)]
    assert [p for p, _ in warnings] == [f"2027-W{n:02d}" for n in range(1, 10)]
    assert warnings[0][1] == pst("2027-01-04")


async def test_exit_planning_month_is_start_plus_n_months_on_a_business_day(world: Any) -> None:
    facts = await facts_of(world)
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)
    assert add_months(date(2027, 11, 30), 3) == date(2028, 2, 29)
    assert exit_planning_date(with_handoff(facts, exit_planning_month=4)) == date(2027, 1, 7)  # Thursday
    assert exit_planning_date(with_handoff(facts, exit_planning_month=3)) == date(2026, 12, 7)  # Monday
    # the default month 6 is Sun Mar 7 -> Mon Mar 8, after the exit: a six-month engagement gets no prompt
    assert exit_planning_date(facts) == date(2027, 3, 8)
    assert list(ExitPlanning().due_between(facts, *WIDE)) == []
    due = list(ExitPlanning().due_between(with_handoff(facts, exit_planning_month=4), *WIDE))
    assert [(d.period, d.due_at) for d in due] == [("month-4", pst("2027-01-07"))]


# --- what, exactly once ---------------------------------------------------------------------------


async def test_the_ladder_gets_louder_copies_the_cro_and_stops_when_done(world: Any) -> None:
    assert "moves to Maya Chen" in await world.text("sam", "/cadence handoff review_host to=@maya")
    async with world.db.session() as session:  # a task handed from the manager to a rep
        await session.execute(
            update(HandoffTask)
            .where(HandoffTask.key == "onboarding_playbook")
            .values(from_id=await person_id(world, "maya"))
        )
    await world.say("dana", "/cadence handoff onboarding_playbook to=@jordan")
    engine, port = rig(world)

    await run_until(world, engine, pst("2026-12-04"))
    await engine.tick()
    await engine.tick()  # the same instant again: nothing new
    assert ladder(port, "review_host") == [("d60", ["Dana", "Maya"], "Hand-over heads-up")]
    first = sent(port, "handoff_reminder", "review_host/d60")[0].message
    text = render(first)
    assert first.text == "Hand-over heads-up: “Host the weekly pipeline review” moves to Maya Chen by Wed Feb 3, 2027"
    assert "due Wed Feb 3, 2027 (in 61 days)" in text  # sent on Friday for a Saturday step
    assert "[1] Mark done (/cadence handoff review_host done)" in text
    assert "[Assign] (/cadence handoff review_host to=@...)" in text
    unowned = sent(port, "handoff_reminder", "forecast_call/d60")
    assert sorted(s.target.person_name or "" for s in unowned) == ["Dana Whitfield", "Sam Okafor"]
    assert unowned[0].message.text == "Hand-over heads-up: nobody owns “Call the forecast each week” yet"
    assert "Who will own it after Dana leaves?" in render(unowned[0].message)
    assert [b.label for b in unowned[0].message.blocks[2].buttons] == ["Assign"]

    await run_until(world, engine, pst("2027-01-12"))
    assert ladder(port, "onboarding_playbook") == [
        ("d30", ["Jordan", "Maya"], "Hand-over heads-up"),  # due Tue Jan 19; Sun Dec 20 -> Fri Dec 18
        ("d14", ["Jordan", "Maya"], "Hand-over due soon"),
        ("d7", ["Dana", "Jordan", "Maya"], "Hand-over due soon"),  # the CRO is copied from 7 days out
    ]
    ctx = replace(await world.ctx("jordan"), cadence=engine)  # Jordan, the new owner, closes it
    reply = await world.router.handle_text(ctx, '/cadence handoff onboarding_playbook done note="Ran the Jan cohort"')
    assert "Hand-over done: Own the onboarding and ramp playbook." in render(reply[0])
    assert len(port.updates) == 7  # every reminder already sent about it now shows it done, without buttons
    assert all(
        m.text.startswith("Hand-over done") and not any(b.type == "actions" for b in m.blocks) for _, m in port.updates
    )

    await run_until(world, engine, pst("2027-02-02"))
    assert [step for step, _, _ in ladder(port, "onboarding_playbook")] == ["d30", "d14", "d7"]  # no d1
    assert ladder(port, "review_host") == [
        ("d60", ["Dana", "Maya"], "Hand-over heads-up"),
        ("d30", ["Dana", "Maya"], "Hand-over heads-up"),
        ("d14", ["Dana", "Maya"], "Hand-over due soon"),
        ("d7", ["Dana", "Maya"], "Hand-over due soon"),
        ("d1", ["Dana", "Maya"], "Hand-over due tomorrow"),
    ]


async def test_overdue_tasks_and_owner_warnings_go_to_the_founder(world: Any) -> None:
    engine, port = rig(world)
    await run_until(world, engine, pst("2027-01-11"))
    warnings = sent(port, "handoff_owner_warning")
    assert [(s.key.split("/")[2], s.target.person_name) for s in warnings] == [
        ("2027-W01", "Sam Okafor"),
        ("2027-W02", "Sam Okafor"),
    ]
    first = render(warnings[0].message)
    assert warnings[0].message.text == "60 days to Dana's exit: 8 tasks with no internal owner"
    assert "• Own the sales hiring plan" in first
    assert "The function still depends on Dana: Dana Whitfield still hosts the weekly pipeline review." in first
    assert "still sit with" not in first  # more than 30 days out
    overdue = sent(port, "handoff_overdue")
    assert [(s.key.split("/")[2], s.target.person_name) for s in overdue] == [("2027-W02", "Sam Okafor")]
    assert overdue[0].message.text == "2 hand-over tasks overdue"
    lines = render(overdue[0].message).splitlines()
    assert any(x.startswith("stage_definitions") and "Mon Jan 4, 2027" in x and "7 late" in x for x in lines)
    assert any(x.startswith("hiring_plan") for x in lines)

    await world.say("sam", "/cadence handoff stage_definitions done")
    await run_until(world, engine, pst("2027-02-08"))  # 25 days before the exit
    warning = render(sent(port, "handoff_owner_warning", "2027-W06")[0].message)
    assert "7 tasks with no internal owner" in warning
    assert "7 open hand-over tasks still sit with Dana Whitfield, 25 days before the exit." in warning
    # late by now: hiring_plan (Jan 4), the four due Jan 19, and the two due Feb 3
    assert sent(port, "handoff_overdue", "2027-W06")[0].message.text == "7 hand-over tasks overdue"


async def test_month_n_prompts_exit_planning_or_summarises_the_plan(world: Any) -> None:
    await store_handoff_settings(world, exit_planning_month=3)
    engine, port = rig(world)
    await run_until(world, engine, pst("2026-12-07"))
    prompts = sent(port, "exit_planning")
    assert sorted(s.target.person_name or "" for s in prompts) == ["Dana Whitfield", "Sam Okafor"]
    assert prompts[0].message.text == "Month 3: time to open exit planning — who will own each ritual?"
    text = render(prompts[0].message)
    assert "Dana leaves on Fri Mar 5, 2027." in text
    assert sum(x.startswith(("review_host", "forecast_call", "hiring_plan")) for x in text.splitlines()) == 3


async def test_month_n_with_owners_named_is_a_readiness_summary(world: Any) -> None:
    await store_handoff_settings(world, exit_planning_month=3)
    await world.say("dana", "/cadence handoff review_host to=@maya")
    engine, port = rig(world)
    await run_until(world, engine, pst("2026-12-07"))
    message = sent(port, "exit_planning")[0].message
    assert message.text == "Month 3: exit planning is under way — 0 of 8 tasks done, 7 without an internal owner"
    assert "Maya takes it over and has not hosted one yet." in render(message)


async def test_who_may_assign_and_close_hand_over_tasks(world: Any) -> None:
    denied = await world.text("jordan", "/cadence handoff review_host to=@jordan")
    assert "Only a manager, a founder or the CRO can decide who takes over" in denied
    assert (await task(world, "review_host")).to_id is None
    assert "moves to Maya Chen" in await world.text("sam", "/cadence handoff review_host to=@maya")
    assert "Only the task's new owner" in await world.text("jordan", "/cadence handoff review_host done")

    await world.say("dana", "/cadence handoff deal_coaching to=@jordan")
    assert "Only a manager, a founder or the CRO" in await world.text(
        "jordan", "/cadence handoff deal_coaching to=@priya"
    )
    assert "Only the task's new owner" in await world.text("priya", "/cadence handoff deal_coaching done")
    assert "Hand-over done" in await world.text("jordan", '/cadence handoff deal_coaching done note="Ran two debriefs"')
    done = await task(world, "deal_coaching")
    assert done.status == "done" and done.status_note == "Ran two debriefs" and done.status_at == world.clock.now()
    assert "Hand-over reopened" in await world.text("maya", "/cadence handoff deal_coaching reopen")

    assert '"@nobody" matches nobody' in await world.text("dana", "/cadence handoff hiring_plan to=@nobody")
    assert "There is no hand-over task" in await world.text("dana", "/cadence handoff nope done")
    assert "one at a time" in await world.text("dana", "/cadence handoff hiring_plan done to=@sam")

    async with world.db.session() as session:
        rows = (
            await session.execute(select(AuditLog.action, AuditLog.outcome, AuditLog.detail).order_by(AuditLog.id))
        ).all()
    assert [(a, o) for a, o, _ in rows][:3] == [
        ("cadence.handoff", "denied"),
        ("handoff.assign", "ok"),
        ("cadence.handoff", "denied"),
    ]
    assert rows[1][2]["changes"] == {"to": [None, "maya"]}
    assert rows[1][2]["text"] == "/cadence handoff review_host to=@maya"

    card = await world.text("priya", "/cadence handoff review_host")
    assert "From → To: Dana Whitfield → Maya Chen" in card and "Due: Wed Feb 3, 2027 (in 71 days)" in card


async def test_handoff_screen_and_readiness_counting(world: Any) -> None:
    maya, dana = await person_id(world, "maya"), await person_id(world, "dana")
    async with world.db.session() as session:
        for day, host, status in [
            ("2026-10-26", dana, "planned"),
            ("2026-11-02", maya, "planned"),
            ("2026-11-09", maya, "planned"),
            ("2026-11-16", dana, "planned"),
            ("2026-11-23", maya, "planned"),
            ("2026-11-23", maya, "skipped"),
        ]:
            session.add(
                Occurrence(
                    engagement_id=world.engagement.id,
                    ritual="pipeline_review",
                    period=day + ("" if status == "planned" else "/x"),
                    due_at=pst(day, 9),
                    status=status,
                    host_id=host,
                    created_at=pst(day, 9),
                )
            )
    await world.say("sam", "/cadence handoff review_host to=@maya")
    await world.say("sam", "/cadence handoff forecast_call to=@maya")
    await world.say("maya", "/cadence handoff forecast_call done")
    await world.say("sam", "/cadence handoff dashboards done")

    facts = await facts_of(world)
    async with world.db.session() as session:
        r = await readiness(session, facts, date(2026, 11, 24))
    assert (r.tasks_total, r.tasks_done, r.open_with_cro, r.days_to_exit) == (8, 2, 6, 101)
    assert r.unowned == (
        "Run deal coaching and debriefs",
        "Own the sales playbook: where it lives and keeping it current",
        "Own the stage definitions and their entry/exit criteria",
        "Own the onboarding and ramp playbook",
        "Own the sales hiring plan",
    )
    assert r.incoming_host is not None and r.incoming_host.key == "maya"
    assert (r.hosted_by_incoming, r.recent_reviews, r.recent_by_incoming) == (3, 4, 3)  # Nov 2, 9, 16, 23
    assert "Maya has hosted 3 of the last 4 reviews (3 in all)." in r.review_line

    text = await world.text("jordan", "/cadence handoff")
    assert "== Hand-over: 2 of 8 tasks done, 5 without an internal owner; 101 days to the exit ==" in text
    row = next(x for x in text.splitlines() if x.startswith("review_host"))
    assert "Dana Whitfield → Maya Chen" in row and "Wed Feb 3, 2027" in row and " 71 " in row and "Open" in row
    row = next(x for x in text.splitlines() if x.startswith("dashboards"))
    assert "Dana Whitfield → nobody yet" in row and "Done" in row
    assert "Maya has hosted 3 of the last 4 reviews" in text


async def test_the_function_depends_on_the_cro_until_the_review_moves_and_her_tasks_close(world: Any) -> None:
    facts = await facts_of(world)
    dana, maya = facts.person("dana"), facts.person("maya")
    base = Readiness(
        exit_date=date(2027, 3, 5),
        days_to_exit=20,
        tasks_total=8,
        tasks_done=7,
        open_with_cro=1,
        unowned=(),
        review_host=maya,
        incoming_host=maya,
        hosted_by_incoming=4,
        recent_reviews=4,
        recent_by_incoming=4,
    )
    assert cro_dependency(facts, base) == [
        "1 open hand-over task still sits with Dana Whitfield, 20 days before the exit."
    ]
    assert cro_dependency(facts, replace(base, days_to_exit=31)) == []
    assert cro_dependency(facts, replace(base, open_with_cro=0)) == []
    assert cro_dependency(facts, replace(base, open_with_cro=0, review_host=dana)) == [
        "Dana Whitfield still hosts the weekly pipeline review."
    ]
