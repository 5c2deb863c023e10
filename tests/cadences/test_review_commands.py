"""`/pipeline` as people type it, and replies in a review thread, against the seeded pipeline of
`test_pipeline_metrics` (Tue 2026-11-24 10:00 Los Angeles, quarter FY2027 Q4)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from test_pipeline_metrics import seed_pipeline

from bot.console.render import render
from cadences.review_commands import find_quarter, record_note_from_thread
from storage.models import ActionItem, AuditLog, Deal, DealHistory, Decision, ForecastCall, HandoffTask, Occurrence

if TYPE_CHECKING:  # the fixtures' types; at run time "conftest" may name another package's conftest
    from support.worlds import EngineWorld, World


async def count(world: World, model: Any, *where: Any) -> int:
    async with world.db.session() as session:
        return (await session.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def audits(world: World, action: str) -> list[AuditLog]:
    async with world.db.session() as session:
        return list(
            (await session.execute(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id))).scalars()
        )


def review_sends(world: EngineWorld) -> list[Any]:
    return [s for s in world.port.sent if "/pipeline_review/" in s.key]


# --- snapshot -----------------------------------------------------------------------------------------------


async def test_the_snapshot_shows_the_reviews_figures_as_of_now(world: World) -> None:
    await seed_pipeline(world)
    text = await world.text("sam", "/pipeline")  # the founder reads everything
    assert text == await world.text("sam", "/pipeline snapshot")
    for line in (
        "== Pipeline snapshot · FY2027 Q4 · Tue Nov 24 ==",
        "Figures as of Tue Nov 24, 10:00.",
        "  Closed won this quarter: $170k of $900k (19%)",
        "  Remaining quota: $730k",
        "  Open pipeline closing by Jan 31: $360k",
        "  Coverage: 0.5x of 3.0x target",
        "Commit + best case  $330k",
        "Weighted            $238.5k",
        "• Stark — Priya Natarajan · Jan 10 → Feb 20 · slipped 1 time in all · out of this quarter",
        "• Globex — Jordan Lee · $85k → $80k (-$5k)",
        "Net change: +$5k",
        "Jordan Lee       5           4        80%",
        "No forecast call for FY2027 Q4 yet. Dana Whitfield calls it with /pipeline forecast commit=… best=…. "
        "Closed won $170k + commit $230k = $400k.",
        "• #1 Confirm budget with the CFO — Jordan Lee · due Nov 27 · Initech",
        "      ↳ No stage change in 54 days (still in Solution)",
    ):
        assert line in text, line
    assert await count(world, AuditLog) == 0  # reading is not audited


async def test_unknown_words_get_the_usage(world: World) -> None:
    text = await world.text("dana", "/pipeline frobnicate")
    assert text.startswith("I don't know “/pipeline frobnicate”. Try /pipeline help.")
    assert "/pipeline [snapshot] | start" in text
    assert "In a deal's review thread, a reply becomes a note" in await world.text("jordan", "/pipeline help")


# --- start -------------------------------------------------------------------------------------------------------


async def test_start_posts_this_weeks_review_once(engine_world: EngineWorld) -> None:
    w = engine_world
    await seed_pipeline(w)
    assert await w.text("dana", "/pipeline start") == (
        "Posted this week's pipeline review (2026-W48) in #pipeline-review, hosted by you."
    )
    sent = review_sends(w)
    assert len([s for s in sent if s.target.thread is None]) == 1
    assert len([s for s in sent if s.target.thread is not None]) == 5
    again = "This week's review (2026-W48) already ran on Tue Nov 24 at 10:00, hosted by Dana Whitfield."
    assert await w.text("dana", "/pipeline start") == again
    assert await w.text("maya", "/pipeline start") == again
    assert len(review_sends(w)) == len(sent)
    assert await count(w, Occurrence, Occurrence.ritual == "pipeline_review") == 1
    assert [a.outcome for a in await audits(w, "pipeline.start")] == ["ok", "unchanged", "unchanged"]
    # A decision taken now belongs to this review.
    assert await w.text("dana", '/pipeline decide - text="Hold pricing until Q1"') == (
        "Decision recorded for the pipeline: Hold pricing until Q1"
    )
    async with w.db.session() as session:
        decision = (await session.execute(select(Decision))).scalar_one()
        review = (await session.execute(select(Occurrence).where(Occurrence.ritual == "pipeline_review"))).scalar_one()
    assert (decision.deal_id, decision.occurrence_id) == (None, review.id)


async def test_only_the_host_a_manager_or_the_cro_can_start_the_review(engine_world: EngineWorld) -> None:
    w = engine_world
    denied = "Only the ritual's host, a manager or the CRO can run it."
    assert await w.text("jordan", "/pipeline start") == denied
    assert await w.text("sam", "/pipeline start") == denied
    assert review_sends(w) == []
    assert [a.outcome for a in await audits(w, "pipeline.start")] == ["denied", "denied"]
    assert (await w.text("maya", "/pipeline start")).startswith("Posted this week's pipeline review (2026-W48)")


async def test_the_internal_owner_hosts_once_the_hand_over_is_done(engine_world: EngineWorld) -> None:
    w = engine_world
    priya = await w.person("priya")
    async with w.db.write() as session:
        await session.execute(
            update(HandoffTask)
            .where(HandoffTask.ritual == "pipeline_review")
            .values(to_id=priya.id, status="done", status_at=w.clock.now())
        )
    assert (await w.text("priya", "/pipeline start")).endswith("hosted by you.")
    assert "Hosted by Priya Natarajan." in render(review_sends(w)[0].message)


async def test_start_without_the_scheduler_says_so(world: World) -> None:
    assert await world.text("dana", "/pipeline start") == (
        "The scheduler isn't running, so I can't post the review from here. Start Cadence with `cadence run`, "
        "or see the figures now with /pipeline snapshot."
    )
    assert await count(world, Occurrence) == 0


# --- the forecast ---------------------------------------------------------------------------------------------


async def test_a_forecast_call_is_recorded_against_the_rollup(world: World) -> None:
    await seed_pipeline(world)
    text = await world.text("dana", "/pipeline forecast commit=400k best=650k")
    assert text.splitlines() == [
        "Forecast for FY2027 Q4 recorded: commit $400k, best case $650k.",
        "           Your call  Pipeline now",
        "---------  ---------  ------------",
        "Commit     $400k      $400k       ",
        "Best case  $650k      $500k       ",
        "  Pipeline now = closed won $170k + open commit $230k (+ best case $100k). Weighted pipeline: $238.5k.",
    ]
    # +7.5% and +7.7%: within 10%, no note needed.
    assert (await world.text("dana", "/pipeline forecast commit=430k best=700k")).startswith("Forecast for FY2027 Q4")
    # +16%: a question, and nothing recorded until it is answered.
    question = await world.text("dana", "/pipeline forecast commit=500k best=700k")
    assert question == (
        "That moves commit from $430k to $500k (+16%) since the call on Nov 24. What changed? Send it again with "
        'a note, e.g. /pipeline forecast commit=500k best=700k note="Globex slipped to next quarter"'
    )
    assert await count(world, ForecastCall) == 2
    await world.text("dana", '/pipeline forecast commit=500k best=700k note="Acme moved to commit"')
    async with world.db.session() as session:
        calls = (await session.execute(select(ForecastCall).order_by(ForecastCall.id))).scalars().all()
    assert [(c.quarter, c.commit, c.best_case, c.note) for c in calls] == [
        ("FY2027 Q4", Decimal("400000.00"), Decimal("650000.00"), None),
        ("FY2027 Q4", Decimal("430000.00"), Decimal("700000.00"), None),
        ("FY2027 Q4", Decimal("500000.00"), Decimal("700000.00"), "Acme moved to commit"),
    ]
    assert [a.outcome for a in await audits(world, "pipeline.forecast")] == ["ok", "ok", "needs_note", "ok"]
    snapshot = await world.text("maya", "/pipeline")
    assert (
        "Dana Whitfield: commit $500k, best case $700k (Nov 24). Now: closed won $170k + commit $230k = $400k "
        "(-$100k vs the call); with best case $500k (-$200k vs the call). Note: Acme moved to commit"
    ) in snapshot


async def test_only_the_forecast_owner_a_manager_or_the_cro_calls_it(world: World) -> None:
    denied = "Only the forecast owner, a manager or the CRO can call the forecast."
    assert await world.text("jordan", "/pipeline forecast commit=400k best=650k") == denied
    assert await world.text("sam", "/pipeline forecast commit=400k best=650k") == denied
    assert (await world.text("maya", "/pipeline forecast commit=400k best=650k")).startswith("Forecast for")
    # Once the forecast is handed over to Priya, she calls it.
    priya = await world.person("priya")
    async with world.db.write() as session:
        await session.execute(
            update(HandoffTask)
            .where(HandoffTask.ritual == "forecast")
            .values(to_id=priya.id, status="done", status_at=world.clock.now())
        )
    assert (await world.text("priya", "/pipeline forecast commit=410k best=650k")).startswith("Forecast for")
    assert await count(world, ForecastCall) == 2


async def test_a_forecast_call_needs_both_sensible_numbers(world: World) -> None:
    assert (await world.text("dana", "/pipeline forecast commit=400k")).startswith(
        "Give both numbers: /pipeline forecast commit=400k best=650k"
    )
    assert (await world.text("dana", "/pipeline forecast commit=400k best=300k")).startswith(
        "Best case includes commit, so it can't be below it."
    )
    assert (await world.text("dana", "/pipeline forecast commit=-5k best=300k")).startswith(
        "Amounts can't be negative."
    )
    assert await count(world, ForecastCall) == 0


async def test_accuracy_of_a_closed_quarter(world: World) -> None:
    await seed_pipeline(world)  # Oscorp, $200k, won Oct 20: FY2027 Q3 closed won
    dana = await world.person("dana")
    async with world.db.write() as session:
        session.add_all(
            [
                ForecastCall(
                    engagement_id=world.engagement.id,
                    quarter="FY2027 Q3",
                    commit=Decimal(250_000),
                    best_case=Decimal(400_000),
                    by_id=dana.id,
                    at=datetime(2026, 10, 24, 16, tzinfo=UTC),
                ),
                # After the quarter closed: not the call that counts.
                ForecastCall(
                    engagement_id=world.engagement.id,
                    quarter="FY2027 Q3",
                    commit=Decimal(200_000),
                    best_case=Decimal(200_000),
                    by_id=dana.id,
                    at=datetime(2026, 11, 2, 16, tzinfo=UTC),
                ),
            ]
        )
    expected = (
        "FY2027 Q3 (Aug 1 – Oct 31, 2026): the last call was commit $250k (best case $400k, Oct 24 by "
        "Dana Whitfield); closed won $200k. Forecast accuracy: 75%."
    )  # 1 − |250 − 200| ÷ 200
    for typed in ("FY2027 Q3", "q3 fy2027", "Q3", "last", ""):
        assert await world.text("jordan", f"/pipeline accuracy {typed}") == expected, typed
    assert await world.text("jordan", "/pipeline accuracy this") == (
        "FY2027 Q4 (Nov 1 – Jan 31, 2027) hasn't closed yet; its forecast accuracy is computed once it has. "
        "/pipeline shows it so far."
    )
    assert await world.text("jordan", "/pipeline accuracy FY2027 Q2") == (
        "Nobody called the forecast for FY2027 Q2 (May 1 – Jul 31, 2026), so there is no accuracy to compute. "
        "Closed won: $0."
    )
    assert (await world.text("jordan", "/pipeline accuracy FY2031 Q1")).startswith(
        'I couldn\'t find the quarter "FY2031 Q1"'
    )


def test_find_quarter() -> None:
    today = date(2026, 11, 24)
    assert find_quarter("", today, 2) == ("FY2027 Q3", date(2026, 8, 1), date(2026, 10, 31))
    assert find_quarter("this", today, 2) == ("FY2027 Q4", date(2026, 11, 1), date(2027, 1, 31))
    assert find_quarter("Q4", today, 2) == ("FY2027 Q4", date(2026, 11, 1), date(2027, 1, 31))
    assert find_quarter("fy2026 q4", today, 2) == ("FY2026 Q4", date(2025, 11, 1), date(2026, 1, 31))


# --- decisions and action items -----------------------------------------------------------------------------------


async def test_decisions_on_a_deal_or_the_pipeline(world: World) -> None:
    ids = await seed_pipeline(world)
    assert await world.text("jordan", '/pipeline decide Acme text="Offer a 2-year term"') == (
        "Decision recorded for Acme: Offer a 2-year term"
    )
    assert await world.text("jordan", '/pipeline decide Umbrella text="Drop it"') == (
        "Reps record decisions on their own deals; a manager or the CRO records the rest."
    )
    assert await world.text("sam", '/pipeline decide - text="Hire two reps"') == (
        "Reps record decisions on their own deals; a manager or the CRO records the rest."
    )
    assert (await world.text("dana", "/pipeline decide Acme")).startswith("Say what the decision is")
    async with world.db.session() as session:
        rows = (await session.execute(select(Decision))).scalars().all()
    jordan = await world.person("jordan")
    assert [(d.deal_id, d.author_id, d.text, d.occurrence_id) for d in rows] == [
        (ids["Acme"], jordan.id, "Offer a 2-year term", None)
    ]


async def test_action_items_are_added_listed_and_closed(world: World) -> None:
    ids = await seed_pipeline(world)  # item #1: Initech, Jordan's, due Nov 27
    assert await world.text("dana", '/pipeline action Acme owner=@jordan due=Dec 4 text="Book the CFO meeting"') == (
        "Action item #2 for Jordan Lee: Book the CFO meeting · due Dec 4 · Acme"
    )
    assert await world.text("priya", '/pipeline action Umbrella text="Send the security pack"') == (
        "Action item #3 for Priya Natarajan: Send the security pack · no due date · Umbrella"
    )
    assert await world.text("jordan", '/pipeline action Umbrella text="Help Priya"') == (
        "Reps add action items for themselves on their own deals; a manager or the CRO assigns the rest."
    )
    assert await world.text("jordan", '/pipeline action Acme owner=@priya text="Review pricing"') == (
        "Reps add action items for themselves on their own deals; a manager or the CRO assigns the rest."
    )
    assert (await world.text("dana", '/pipeline action Acme due=2026-11-20 text="Too late"')).startswith(
        "The due date Nov 20 is in the past. Pick today or later."
    )
    async with world.db.session() as session:
        item = await session.get(ActionItem, 2)
    assert (item.deal_id, item.due_date, item.source, item.status) == (
        ids["Acme"],
        date(2026, 12, 4),
        "command",
        "open",
    )

    mine = await world.text("jordan", "/pipeline actions")
    assert mine.splitlines()[:3] == [
        "== Your open action items ==",
        "• #1 Confirm budget with the CFO — Jordan Lee · due Nov 27 · Initech",
        "• #2 Book the CFO meeting — Jordan Lee · due Dec 4 · Acme",
    ]
    assert "Showing yours: the CRO and managers see everyone's." in await world.text("jordan", "/pipeline actions all")
    everyone = await world.text("dana", "/pipeline actions")
    assert everyone.startswith("== Open action items ==") and "#3 Send the security pack" in everyone

    assert await world.text("priya", "/pipeline done 1") == (
        "Only the action item's owner, a manager or the CRO can close it."
    )
    assert await world.text("jordan", "/pipeline done #1") == "Done: #1 Confirm budget with the CFO"
    assert await world.text("jordan", "/pipeline done 1") == "Action item #1 is already done."
    assert await world.text("maya", "/pipeline done 3") == "Done: #3 Send the security pack"
    assert await world.text("maya", "/pipeline done 99") == "There is no action item #99. See /pipeline actions."
    assert await count(world, ActionItem, ActionItem.status == "open") == 1


# --- replies in a review thread -------------------------------------------------------------------------------------


async def test_thread_replies_become_notes_action_items_and_decisions(world: World) -> None:
    ids = await seed_pipeline(world)
    acme = ids["Acme"]
    jordan, dana = await world.ctx("jordan", "slack"), await world.ctx("dana", "slack")
    assert [m.text for m in await record_note_from_thread(jordan, acme, "Champion confirmed the budget")] == [
        "Noted on Acme."
    ]
    assert [m.text for m in await record_note_from_thread(dana, acme, "Action: send pricing by Dec 4")] == [
        "Action item #2 for Jordan Lee: send pricing · due Dec 4 · Acme"
    ]
    assert [m.text for m in await record_note_from_thread(dana, acme, "todo: meet by the river")] == [
        "Action item #3 for Jordan Lee: meet by the river · no due date · Acme"
    ]
    assert [m.text for m in await record_note_from_thread(dana, acme, "decision: push the close to Q1")] == [
        "Decision recorded for Acme: push the close to Q1"
    ]
    ambiguous = await record_note_from_thread(dana, acme, "action: call legal by 4/12")
    assert "could be 12 Apr 2027 or 4 Dec 2026" in ambiguous[0].text
    assert [m.text for m in await record_note_from_thread(await world.ctx("sam", "slack"), acme, "Looks good")] == [
        "Reps can change only their own deals; ask the deal's owner, a manager or the CRO."
    ]

    async with world.db.session() as session:
        note = (
            await session.execute(select(DealHistory).where(DealHistory.deal_id == acme, DealHistory.kind == "note"))
        ).scalar_one()
        items = (
            (await session.execute(select(ActionItem).where(ActionItem.deal_id == acme).order_by(ActionItem.id)))
            .scalars()
            .all()
        )
        decision = (await session.execute(select(Decision))).scalar_one()
        deal = await session.get(Deal, acme)
    assert (note.note, note.channel) == ("Champion confirmed the budget", "slack")
    owner = await world.person("jordan")
    assert [(i.owner_id, i.text, i.due_date, i.source) for i in items] == [
        (owner.id, "send pricing", date(2026, 12, 4), "thread"),
        (owner.id, "meet by the river", None, "thread"),
    ]
    assert (decision.deal_id, decision.text) == (acme, "push the close to Q1")
    assert deal.touched_at == world.clock.now()  # a note is an update: the deal is fresh for hygiene
    outcomes = [(a.action, a.outcome) for a in (await _all_audits(world))]
    assert outcomes == [
        ("review.thread_note", "ok"),
        ("pipeline.thread_action", "ok"),
        ("pipeline.thread_action", "ok"),
        ("pipeline.decide", "ok"),
        ("review.thread", "rejected"),
        ("review.thread", "denied"),
    ]


async def _all_audits(world: World) -> list[AuditLog]:
    async with world.db.session() as session:
        return list((await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars())


async def test_a_thread_reply_about_a_deal_outside_the_engagement_records_nothing(world: World) -> None:
    messages = await record_note_from_thread(await world.ctx("dana", "slack"), 9999, "action: call them")
    assert [m.text for m in messages] == [
        "That deal is no longer in this engagement's pipeline, so nothing was recorded."
    ]
    note = await record_note_from_thread(await world.ctx("dana", "slack"), 9999, "a note")
    assert note[0].text == messages[0].text
    assert await count(world, ActionItem) == 0
    assert [(a.outcome, a.target) for a in await _all_audits(world)] == [("rejected", "deal:9999")] * 2
