"""Deal debriefs: prompted once per deal event through real `/deal` commands, stalls found by the daily
follow-up, reminders and the escalation on exact business days, answers validated, and the win/loss
figures computed by hand.

The clock starts on Tue 2026-11-24 10:00 in Los Angeles; Thu Nov 26 is a company holiday. Jordan is a
rep whose manager is Maya; Dana is the CRO. The late stage for debriefs is Solution (the first stage
with a probability of 50% or more).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from cadences import deal_events
from cadences.deals import update_deal
from cadences.debrief_commands import insights_message
from cadences.debriefs import DebriefFollowUp, win_loss_summary
from cadences.messages import Actions, Choice, Message
from cadences.rituals import load_facts
from storage.models import AuditLog, Deal, Debrief, Occurrence, Stage
from support.transcript import Sent

if TYPE_CHECKING:  # the fixtures' types; at run time "conftest" may name another package's conftest
    from support.worlds import EngineWorld, World

LA = ZoneInfo("America/Los_Angeles")


def local(y: int, m: int, d: int, h: int = 10, minute: int = 0) -> datetime:
    return datetime(y, m, d, h, minute, tzinfo=LA).astimezone(UTC)


def parts(sent: Sent) -> tuple[str, str, str, str]:
    """(ritual, period, recipient name, purpose) of a sent message, from its delivery key."""
    pieces = sent.key.split("/")
    return pieces[1], "/".join(pieces[2:-2]), sent.target.person_name or "", pieces[-1]


def debrief_sends(world: EngineWorld) -> list[tuple[str, str, str, str]]:
    return [p for s in world.port.sent if (p := parts(s))[0] in ("debrief", "debrief_followup")]


def debrief_messages(world: EngineWorld) -> list[Message]:
    """The debrief rituals' messages, in the order sent (other rituals also talk during run_until)."""
    return [s.message for s in world.port.sent if parts(s)[0] in ("debrief", "debrief_followup")]


def body(message: Message) -> str:
    from bot.console.render import render

    return render(message)


async def debriefs(world: World) -> list[Debrief]:
    async with world.db.session() as session:
        return list((await session.execute(select(Debrief).order_by(Debrief.id))).scalars())


async def deal_named(world: World, name: str) -> Deal:
    async with world.db.session() as session:
        return (await session.execute(select(Deal).where(Deal.name == name))).scalar_one()


async def new_deal(world: World, name: str = "Acme", stage: str = "qualification") -> None:
    await world.say("jordan", f"/deal new {name} amount=50k close=2026-12-15 stage={stage}")


# --- prompts from deal events ---------------------------------------------------------------------


async def test_a_won_deal_prompts_its_owner_once(engine_world: EngineWorld) -> None:
    w = engine_world
    await new_deal(w)
    await w.say("jordan", "/deal Acme won")
    assert debrief_sends(w) == [("debrief", "debrief-1", "Jordan Lee", "prompt")]
    prompt = debrief_messages(w)[-1]
    assert "Acme ($50,000) was won on Nov 24." in body(prompt)
    assert next(b for b in prompt.blocks if isinstance(b, Choice)).label == "What was the main reason we won? (reason)"
    button = next(b for b in prompt.blocks if isinstance(b, Actions)).buttons[0]
    assert (button.label, button.action_id, button.value) == ("Answer", "debrief_open", "1")
    assert button.command == '/debrief 1 reason="..." turning_point="..." repeat="..."'

    assert "already closed" in await w.text("jordan", "/deal Acme won")
    assert len(debrief_sends(w)) == 1
    assert [(d.trigger, d.status) for d in await debriefs(w)] == [("won", "open")]


async def test_every_slip_asks_why_and_the_second_says_so(engine_world: EngineWorld) -> None:
    w = engine_world
    await new_deal(w)
    deal = await deal_named(w, "Acme")
    ctx = await w.ctx("jordan")
    outcome = await update_deal(ctx, deal.id, {"close": "2027-01-20"})
    await deal_events.publish(ctx, outcome)
    await deal_events.publish(ctx, outcome)  # the same event again: no second debrief, no second DM
    assert debrief_sends(w) == [("debrief", "debrief-1", "Jordan Lee", "prompt")]
    first = body(debrief_messages(w)[-1])
    assert "Acme slipped from Dec 15 to Jan 20." in first
    assert "that's the" not in first

    await w.say("jordan", "/deal Acme close=2027-02-10")
    rows = await debriefs(w)
    assert [(d.trigger, d.trigger_key) for d in rows] == [("slipped", "1"), ("slipped", "2")]
    # (PostgreSQL spends a sequence number on the replayed insert, so the second id is read, not assumed.)
    assert debrief_sends(w)[-1] == ("debrief", f"debrief-{rows[1].id}", "Jordan Lee", "prompt")
    assert "Acme slipped from Jan 20 to Feb 10 — that's the 2nd time, so it's flagged in the pipeline review." in body(
        debrief_messages(w)[-1]
    )
    # Each debrief still names its own slip once both have happened (at the same instant, here).
    assert "Acme slipped from Dec 15 to Jan 20." in await w.text("jordan", f"/debrief show {rows[0].id}")


async def test_a_regression_asks_what_changed(engine_world: EngineWorld) -> None:
    w = engine_world
    await new_deal(w)
    await w.say("jordan", "/deal Acme stage=solution")
    assert debrief_sends(w) == []  # moving forward is not a debrief
    await w.say("jordan", "/deal Acme stage=qualification")
    assert debrief_sends(w) == [("debrief", "debrief-1", "Jordan Lee", "prompt")]
    assert "Acme moved back from Solution to Qualification on Nov 24." in body(debrief_messages(w)[-1])
    debrief = (await debriefs(w))[0]
    assert (debrief.trigger, debrief.trigger_key) == ("regressed", "3")  # history: create, advance, regress


async def test_a_late_stage_loss_reaches_the_cro_with_the_answers_once(engine_world: EngineWorld) -> None:
    w = engine_world
    await new_deal(w)
    await w.say("jordan", "/deal Acme stage=solution")
    await w.say("jordan", "/deal Acme lost reason=price competitor=Initech")
    assert debrief_sends(w) == [
        ("debrief", "debrief-1", "Jordan Lee", "prompt"),
        ("debrief", "debrief-1", "Dana Whitfield", "late-loss"),
    ]
    prompt, notice = debrief_messages(w)[-2:]
    assert "Acme ($50,000) was lost from Solution on Nov 24." in body(prompt)
    assert "Already noted from your update: reason = price; competitor = Initech." in body(prompt)
    assert not [b for b in prompt.blocks if isinstance(b, Choice)]  # the reason is known: not asked again
    assert 'Answer in one line: /debrief 1 differently="..."' in body(prompt)
    assert notice.text == (
        "Jordan Lee lost Acme ($50,000) from Solution. I've asked for a debrief and will send you the answers."
    )
    live = next(b for b in notice.blocks if isinstance(b, Actions)).buttons[0]
    assert live.label == "Debrief live"
    assert live.command == '/pipeline action Acme owner=@dana text="Live debrief with Jordan Lee"'
    assert (await debriefs(w))[0].answers == {"reason": "price", "competitor": "Initech"}

    reply = await w.text("jordan", '/debrief 1 differently="Multi-thread before the proposal"')
    assert "Thanks — debrief #1 on Acme is complete." in reply
    assert debrief_sends(w)[-1] == ("debrief", "debrief-1/shared", "Dana Whitfield", "shared")
    shared = body(debrief_messages(w)[-1])
    assert "What would you do differently?: Multi-thread before the proposal" in shared
    assert "Which competitor, if any?: Initech" in shared
    assert len(w.port.updates) == 1 and "Answered — thank you." in body(w.port.updates[0][1])
    debrief = (await debriefs(w))[0]
    assert (debrief.status, debrief.answered_at) == ("answered", w.clock.now())

    await w.say("jordan", '/debrief 1 differently="Find the economic buyer in discovery"')
    await w.run_until(local(2026, 11, 26, 12))  # the daily follow-up finds nothing left to share
    assert [p for p in debrief_sends(w) if p[3].startswith("shared")] == [
        ("debrief", "debrief-1/shared", "Dana Whitfield", "shared")
    ]


async def test_an_early_loss_is_the_reps_alone_and_fills_the_deal(engine_world: EngineWorld) -> None:
    w = engine_world
    await new_deal(w, "Beta")
    await w.say("jordan", "/deal Beta lost")
    assert debrief_sends(w) == [("debrief", "debrief-1", "Jordan Lee", "prompt")]
    await w.say("jordan", '/debrief 1 reason=tim competitor=none differently="Qualify budget first"')
    deal = await deal_named(w, "Beta")
    assert (deal.loss_reason, deal.competitor) == ("timing", None)
    assert (await debriefs(w))[0].status == "answered"
    assert len(debrief_sends(w)) == 1  # no late-loss notice, nothing shared


async def test_without_an_engine_the_daily_follow_up_sends_what_is_due(engine_world: EngineWorld) -> None:
    w = engine_world
    await w.engine.tick()
    await new_deal(w)
    await w.say("jordan", "/deal Acme stage=solution")
    offline = replace(await w.ctx("jordan"), cadence=None)
    await w.router.handle_text(offline, "/deal Acme lost")
    assert debrief_sends(w) == []
    await w.run_until(local(2026, 11, 25, 12))
    assert debrief_sends(w) == [
        ("debrief_followup", "2026-11-25", "Jordan Lee", "prompt-1"),
        ("debrief_followup", "2026-11-25", "Dana Whitfield", "late-loss-1"),
    ]  # and no reminder in the same breath as the questions
    assert await w.engine.trigger(w.engagement, "debrief", "debrief-1", detail={"debrief_id": 1}) is not None
    assert len(debrief_sends(w)) == 2  # the late trigger finds the prompt already sent

    await w.router.handle_text(offline, '/debrief 1 reason=price competitor=Initech differently="Call the CFO"')
    await w.run_until(local(2026, 11, 30, 12))
    assert debrief_sends(w)[2:] == [("debrief_followup", "2026-11-27", "Dana Whitfield", "shared-1")]


# --- the daily follow-up --------------------------------------------------------------------------


async def test_the_follow_up_runs_on_business_days_at_ten(world: World) -> None:
    async with world.db.session() as session:
        facts = await load_facts(session, world.engagement)
    dues = list(DebriefFollowUp().due_between(facts, local(2026, 11, 24, 0), local(2026, 12, 2, 0)))
    assert [d.period for d in dues] == ["2026-11-24", "2026-11-25", "2026-11-27", "2026-11-30", "2026-12-01"]
    assert {d.due_at.astimezone(LA).time().isoformat() for d in dues} == {"10:00:00"}


async def test_a_deal_stalled_21_days_is_asked_once_per_stall(engine_world: EngineWorld) -> None:
    w = engine_world
    await w.engine.tick()
    await new_deal(w)
    await w.run_until(local(2026, 12, 16, 12))
    stalls = [p for p in debrief_sends(w) if p[3].startswith("prompt")]
    assert stalls == [("debrief_followup", "2026-12-15", "Jordan Lee", "prompt-1")]
    assert "Acme has had no stage change since Nov 24 (21 days in Qualification)." in body(
        next(s.message for s in w.port.sent if parts(s)[3] == "prompt-1")
    )

    await w.say("jordan", "/deal Acme stage=solution")  # Dec 16, 12:00: a new stage, a new clock
    await w.run_until(local(2027, 1, 8, 12))
    stalls = [p for p in debrief_sends(w) if p[3].startswith("prompt")]
    rows = await debriefs(w)
    assert [(d.trigger, d.trigger_key) for d in rows] == [("stalled", "2026-11-24"), ("stalled", "2026-12-16")]
    assert stalls[1:] == [("debrief_followup", "2027-01-07", "Jordan Lee", f"prompt-{rows[1].id}")]


async def test_reminders_after_one_and_three_business_days_then_the_manager(engine_world: EngineWorld) -> None:
    w = engine_world
    await w.engine.tick()
    await new_deal(w)
    await w.say("jordan", "/deal Acme lost reason=timing")
    await w.say("priya", "/deal new Globex amount=20k close=2026-12-20")
    await w.say("priya", "/deal Globex lost reason=price")
    await w.run_until(local(2026, 12, 3, 12))
    # Wed 25 is day 1; Thu 26 is a holiday and the weekend does not count, so Mon 30 is day 3 and
    # Tue Dec 1 (the next business day) escalates to the reps' manager, in one DM.
    assert debrief_sends(w) == [
        ("debrief", "debrief-1", "Jordan Lee", "prompt"),
        ("debrief", "debrief-2", "Priya Natarajan", "prompt"),
        ("debrief_followup", "2026-11-25", "Jordan Lee", "reminder"),
        ("debrief_followup", "2026-11-25", "Priya Natarajan", "reminder"),
        ("debrief_followup", "2026-11-30", "Jordan Lee", "reminder"),
        ("debrief_followup", "2026-11-30", "Priya Natarajan", "reminder"),
        ("debrief_followup", "2026-12-01", "Maya Chen", "escalation"),
    ]
    reminder = debrief_messages(w)[2]
    assert reminder.text == "Reminder: 1 debrief is waiting for your answers."
    assert "#1 Acme — lost · Jordan Lee · asked 1 business day ago" in body(reminder)
    escalation = debrief_messages(w)[-1]
    assert escalation.text.startswith("Jordan Lee and Priya Natarajan haven't answered 2 debriefs after 2 reminders.")
    assert "#1 Acme — lost · Jordan Lee · asked 4 business days ago · escalated" in body(escalation)
    assert "(/debrief nudge 1)" in body(escalation)
    maya = await w.person("maya")
    assert [(d.status, d.escalated_to_id) for d in await debriefs(w)] == [("escalated", maya.id)] * 2
    async with w.db.session() as session:
        stmt = select(Occurrence.period).where(Occurrence.ritual == "debrief_followup").order_by(Occurrence.period)
        periods = (await session.execute(stmt)).scalars().all()
    assert periods == ["2026-11-24", "2026-11-25", "2026-11-27", "2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03"]

    before = len(w.port.sent)
    await w.engine.tick()  # the same day again plans nothing
    assert len(w.port.sent) == before

    assert "Nudged" in await w.text("maya", "/debrief nudge 1")
    assert debrief_sends(w)[-1] == ("debrief", "debrief-1/nudge-2026-12-03", "Jordan Lee", "nudge")
    assert "Maya Chen asked me to nudge you about this debrief." in body(debrief_messages(w)[-1])
    assert "already nudged today" in await w.text("maya", "/debrief nudge 1")
    assert "Only a manager or the CRO" in await w.text("priya", "/debrief nudge 1")


# --- answering ------------------------------------------------------------------------------------


async def test_answers_are_validated_and_nothing_is_saved_on_error(world: World) -> None:
    await new_deal(world)
    await world.say("jordan", "/deal Acme lost")
    (debrief,) = await debriefs(world)
    assert debrief.answers == {}

    bad_choice = await world.text("jordan", "/debrief 1 reason=pricey differently=later")
    assert (
        '"pricey" is not an option for reason; choose one of: price, no decision, competitor, timing, '
        "product gap, champion left, other."
    ) in bad_choice
    assert "could be competitor or champion left" in await world.text("jordan", "/debrief 1 reason=c")
    unknown = await world.text("jordan", "/debrief 1 reason=price budget=10k")
    assert "I don't know the field “budget”." in unknown
    assert "Valid fields: reason, competitor, differently." in unknown
    assert "Debrief #1 is Jordan Lee's to answer" in await world.text("priya", "/debrief 1 reason=price")
    assert "Jordan Lee's to answer" in await world.text("sam", "/debrief 1 reason=price")
    assert (await debriefs(world))[0].answers == {}
    async with world.db.session() as session:
        outcomes = (
            await session.execute(
                select(AuditLog.actor_ref, AuditLog.outcome)
                .where(AuditLog.action.startswith("debrief"))
                .order_by(AuditLog.id)
            )
        ).all()
    assert outcomes == [
        ("jordan", "rejected"),
        ("jordan", "rejected"),
        ("jordan", "rejected"),
        ("priya", "denied"),
        ("sam", "denied"),
    ]

    partial = await world.text("jordan", "/debrief 1 reason=NO")
    assert (
        "Saved. Still to answer for debrief #1: competitor (Which competitor, if any?); "
        "differently (What would you do differently?)."
    ) in partial
    debrief = (await debriefs(world))[0]
    assert (debrief.answers, debrief.status) == ({"reason": "no decision"}, "open")

    done = await world.text("maya", '/debrief 1 competitor=none differently="Confirm the budget owner early"')
    assert "Thanks — debrief #1 on Acme is complete." in done
    debrief = (await debriefs(world))[0]
    assert debrief.status == "answered"
    assert debrief.answers == {
        "reason": "no decision",
        "competitor": "none",
        "differently": "Confirm the budget owner early",
    }
    assert (await deal_named(world, "Acme")).loss_reason == "no decision"


async def test_the_list_shows_mine_or_everyones_oldest_first(world: World) -> None:
    await new_deal(world)
    await world.say("jordan", "/deal Acme lost")
    world.clock.set(local(2026, 11, 27, 9))
    await world.say("priya", "/deal new Globex amount=20k close=2026-12-20")
    await world.say("priya", "/deal Globex won")
    world.clock.set(local(2026, 11, 30, 9))

    mine = await world.text("jordan", "/debrief")
    assert "Your debriefs waiting for answers" in mine
    assert "#1 Acme — lost · Jordan Lee · asked 3 business days ago" in mine
    assert "Globex" not in mine
    everyone = await world.text("dana", "/debrief")
    assert everyone.index("#1 Acme") < everyone.index("#2 Globex")
    assert "#2 Globex — won · Priya Natarajan · asked 1 business day ago" in everyone
    shown = await world.text("jordan", "/debrief show 1")
    assert "== Debrief #1: Acme ==" in shown and "What was the main reason we lost?: —" in shown
    assert "reps see their own debriefs" in await world.text("jordan", "/debrief show 2")


# --- win/loss -------------------------------------------------------------------------------------


async def _closed(
    world: World,
    name: str,
    owner: str,
    won: bool,
    amount: int,
    source: str,
    segment: str,
    created: date,
    closed: date,
    **extra: Any,
) -> int:
    async with world.db.write() as session:
        stage = (
            await session.execute(
                select(Stage).where(
                    Stage.engagement_id == world.engagement.id, Stage.key == ("closed_won" if won else "closed_lost")
                )
            )
        ).scalar_one()
        at = datetime.combine(closed, datetime.min.time(), tzinfo=UTC)
        deal = Deal(
            engagement_id=world.engagement.id,
            name=name,
            owner_id=(await world.person(owner)).id,
            stage_id=stage.id,
            is_open=False,
            amount=Decimal(amount),
            currency="USD",
            close_date=closed,
            closed_on=closed,
            created_on=created,
            source=source,
            segment=segment,
            slip_count=0,
            stage_changed_at=at,
            touched_at=at,
            forecast_category="pipeline",
            **extra,
        )
        session.add(deal)
        await session.flush()
        return deal.id


async def _answered(world: World, deal_id: int, trigger: str, answers: dict[str, str], at: datetime) -> None:
    async with world.db.write() as session:
        deal = await session.get(Deal, deal_id)
        assert deal is not None
        session.add(
            Debrief(
                engagement_id=world.engagement.id,
                deal_id=deal_id,
                owner_id=deal.owner_id,
                trigger=trigger,
                trigger_key="1",
                status="answered",
                answers=answers,
                created_at=at,
                answered_at=at,
            )
        )


async def seed_wins_and_losses(world: World) -> None:
    """Three wins and three losses closed in November, one win in October (outside), one open deal."""
    w1 = await _closed(world, "W1", "jordan", True, 100_000, "inbound", "mid", date(2026, 10, 1), date(2026, 11, 10))
    await _closed(world, "W2", "priya", True, 50_000, "outbound", "smb", date(2026, 11, 1), date(2026, 11, 21))
    await _closed(world, "W3", "jordan", True, 30_000, "inbound", "smb", date(2026, 9, 1), date(2026, 11, 20))
    l1 = await _closed(
        world,
        "L1",
        "jordan",
        False,
        80_000,
        "inbound",
        "mid",
        date(2026, 9, 15),
        date(2026, 11, 5),
        loss_reason="price",
        competitor="Initech",
    )
    await _closed(
        world,
        "L2",
        "priya",
        False,
        20_000,
        "outbound",
        "smb",
        date(2026, 10, 1),
        date(2026, 11, 12),
        loss_reason="no decision",
    )
    await _closed(
        world,
        "L3",
        "priya",
        False,
        40_000,
        "inbound",
        "mid",
        date(2026, 10, 2),
        date(2026, 11, 18),
        loss_reason="price",
        competitor="Initech",
    )
    await _closed(world, "Old", "jordan", True, 999_000, "inbound", "mid", date(2026, 8, 1), date(2026, 10, 15))
    await new_deal(world, "Open")
    await _answered(
        world,
        l1,
        "lost",
        {"reason": "price", "competitor": "Initech", "differently": "Bring procurement in before the proposal"},
        local(2026, 11, 6),
    )
    await _answered(
        world,
        w1,
        "won",
        {"reason": "champion", "turning_point": "The CFO demo", "repeat": "A mutual action plan from week one"},
        local(2026, 11, 11),
    )


async def test_win_loss_summary_figures(world: World) -> None:
    await seed_wins_and_losses(world)
    async with world.db.session() as session:
        found = await win_loss_summary(session, world.engagement.id, date(2026, 11, 1), date(2026, 11, 30))
    o = found.overall
    assert (o.won, o.lost, o.won_value, o.lost_value) == (3, 3, Decimal(180_000), Decimal(140_000))
    assert o.win_rate == 0.5
    assert o.value_win_rate == 180_000 / 320_000  # 0.5625
    assert found.median_cycle_days == 40  # cycles 40, 20 and 80 days
    assert [(r.label, r.won, r.lost, r.won_value, r.lost_value) for r in found.by_source] == [
        ("inbound", 2, 2, Decimal(130_000), Decimal(120_000)),
        ("outbound", 1, 1, Decimal(50_000), Decimal(20_000)),
    ]
    assert found.by_source[0].value_win_rate == 130_000 / 250_000
    assert [(r.label, r.won, r.lost) for r in found.by_segment] == [("mid", 1, 2), ("smb", 2, 1)]
    assert [(r.label, r.won, r.lost, r.win_rate) for r in found.by_rep] == [
        ("Jordan Lee", 2, 1, 2 / 3),
        ("Priya Natarajan", 1, 2, 1 / 3),
    ]
    assert [(t.label, t.count, t.value) for t in found.loss_reasons] == [
        ("price", 2, Decimal(120_000)),
        ("no decision", 1, Decimal(20_000)),
    ]
    assert [(t.label, t.count, t.value) for t in found.competitors] == [("Initech", 2, Decimal(120_000))]
    assert [x.line() for x in found.lessons] == [
        "W1 (won): A mutual action plan from week one",
        "L1 (lost): Bring procurement in before the proposal",
    ]
    text = body(insights_message(found, "USD"))
    assert "Win rate: 50% (3 won, 3 lost)" in text
    assert "Win rate by value: 56% ($180,000 of $320,000)" in text
    assert "Median sales cycle: 40 days" in text


async def test_insights_command_reads_the_last_days(world: World) -> None:
    await seed_wins_and_losses(world)
    text = await world.text("dana", "/debrief insights days=30")  # Oct 26 – Nov 24: the October win is out
    assert "== Win/loss, Oct 26 – Nov 24, 2026 ==" in text
    assert "Top loss reasons: price 2 ($120,000); no decision 1 ($20,000)" in text
    assert "Lost to competitors: Initech 2 ($120,000)" in text
    assert "You don't have permission" in await world.text("jordan", "/debrief insights")
    assert "days= takes a number of days" in await world.text("dana", "/debrief insights days=0")
    assert "No deals were won or lost" in await world.text("dana", "/debrief insights days=1")


async def test_debrief_help_and_grammar(world: World) -> None:
    assert "/debrief show 12" in await world.text("jordan", "/debrief help")
    assert '"abc" is not a debrief number' in await world.text("jordan", "/debrief abc reason=price")
    assert "There's no debrief #99" in await world.text("jordan", "/debrief 99 reason=price")
