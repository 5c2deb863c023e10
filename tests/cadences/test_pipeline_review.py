"""The weekly review and its reminders: when they are due (pure, DST and holidays included) and what
they send through the real engine (one post, one thread reply per flagged deal, nudges only to reps
with something to fix), against the seeded pipeline of `test_pipeline_metrics`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, update
from test_pipeline_metrics import la, seed_pipeline

from bot.console.render import render
from cadences import pipeline_review
from cadences.messages import Block, Header, Paragraph
from cadences.pipeline_review import (
    ActionReminder,
    LastCall,
    PipelineReview,
    PreReviewNudge,
    current_host,
    fit_blocks,
)
from cadences.rituals import Due, load_facts
from storage import engagements as engagement_repo
from storage.models import Deal, DealHistory, Delivery, Engagement, HandoffTask, Occurrence, Person, PipelineSnapshot
from support.transcript import Sent

if TYPE_CHECKING:  # the fixtures' types; at run time "conftest" may name another package's conftest
    from support.worlds import EngineWorld, World

MON_NOV_30_REVIEW = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # 09:00 PST
CLOCK = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)


def utc(y: int, m: int, d: int, h: int, minute: int = 0) -> datetime:
    return datetime(y, m, d, h, minute, tzinfo=UTC)


async def facts_of(world: World) -> Any:
    async with world.db.session() as session:
        return await load_facts(session, world.engagement)


def dues(ritual: Any, facts: Any, start: datetime, end: datetime) -> list[Due]:
    return sorted(
        (d for d in ritual.due_between(facts, start, end) if start <= d.due_at < end),
        key=lambda d: (d.due_at, d.period),
    )


def sent_by(world: EngineWorld, ritual: str) -> list[Sent]:
    return [s for s in world.port.sent if f"/{ritual}/" in s.key]


def purpose(sent: Sent) -> str:
    return sent.key.rsplit("/", 1)[1]


# --- when ---------------------------------------------------------------------------------------------------


async def test_the_review_is_due_monday_at_nine_in_los_angeles(world: World) -> None:
    facts = await facts_of(world)
    found = dues(PipelineReview(), facts, CLOCK, CLOCK + timedelta(days=7))
    assert [(d.period, d.due_at, d.grace) for d in found] == [("2026-W49", MON_NOV_30_REVIEW, timedelta(hours=4))]
    assert found[0].detail == {"review_day": "2026-11-30", "scheduled_day": "2026-11-30"}


async def test_a_monday_holiday_moves_the_review_to_tuesday_in_the_same_week(world: World) -> None:
    facts = await facts_of(world)
    holiday = replace(facts, holidays=facts.holidays | {date(2026, 11, 30)})
    found = dues(PipelineReview(), holiday, CLOCK, CLOCK + timedelta(days=14))
    assert [(d.period, d.due_at) for d in found] == [
        ("2026-W49", utc(2026, 12, 1, 17)),  # Tuesday 09:00 PST
        ("2026-W50", utc(2026, 12, 7, 17)),
    ]
    assert found[0].detail == {"review_day": "2026-12-01", "scheduled_day": "2026-11-30"}
    # The nudge moves with it: the business day before Tuesday is Friday (Monday is the holiday).
    nudges = dues(PreReviewNudge(), holiday, CLOCK, CLOCK + timedelta(days=7))
    assert [(d.period, d.due_at) for d in nudges] == [
        ("2026-W49/priya", utc(2026, 11, 27, 15)),
        ("2026-W49/jordan", utc(2026, 11, 27, 23)),
    ]


async def test_after_the_fall_back_the_review_stays_at_nine_local(world: World) -> None:
    facts = await facts_of(world)
    found = dues(PipelineReview(), facts, utc(2026, 10, 20, 0), utc(2026, 11, 5, 0))
    # Oct 26 is PDT (UTC-7): 16:00 UTC; after the Nov 1 fall-back PST (UTC-8): 17:00 UTC.
    assert [(d.period, d.due_at) for d in found] == [
        ("2026-W44", utc(2026, 10, 26, 16)),
        ("2026-W45", utc(2026, 11, 2, 17)),
    ]


async def test_the_nudge_is_at_three_in_each_reps_own_zone_the_business_day_before(world: World) -> None:
    facts = await facts_of(world)
    found = dues(PreReviewNudge(), facts, CLOCK, CLOCK + timedelta(days=7))
    priya, jordan = facts.person("priya"), facts.person("jordan")
    assert [(d.period, d.due_at, d.grace) for d in found] == [
        ("2026-W49/priya", utc(2026, 11, 27, 15), MON_NOV_30_REVIEW - utc(2026, 11, 27, 15)),  # 15:00 GMT
        ("2026-W49/jordan", utc(2026, 11, 27, 23), MON_NOV_30_REVIEW - utc(2026, 11, 27, 23)),  # 15:00 PST
    ]
    assert found[0].detail["rep_id"] == priya.id and found[1].detail["rep_id"] == jordan.id
    # In October London is on summer time: 15:00 BST is 14:00 UTC.
    october = dues(PreReviewNudge(), facts, utc(2026, 10, 19, 0), utc(2026, 10, 26, 0))
    assert [(d.period, d.due_at) for d in october] == [
        ("2026-W44/priya", utc(2026, 10, 23, 14)),
        ("2026-W44/jordan", utc(2026, 10, 23, 22)),
    ]


async def test_the_last_call_is_an_hour_before_the_review(world: World) -> None:
    facts = await facts_of(world)
    found = dues(LastCall(), facts, CLOCK, CLOCK + timedelta(days=7))
    assert [(d.period, d.due_at, d.grace) for d in found] == [
        ("2026-W49/jordan", utc(2026, 11, 30, 16), timedelta(hours=1)),
        ("2026-W49/priya", utc(2026, 11, 30, 16), timedelta(hours=1)),
    ]
    none = replace(
        facts,
        settings=facts.settings.model_copy(
            update={
                "pipeline_review": facts.settings.pipeline_review.model_copy(
                    update={
                        "nudge": facts.settings.pipeline_review.nudge.model_copy(update={"last_call_minutes_before": 0})
                    }
                )
            }
        ),
    )
    assert dues(LastCall(), none, CLOCK, CLOCK + timedelta(days=7)) == []


async def test_no_review_before_the_start_or_after_the_exit(world: World) -> None:
    facts = await facts_of(world)
    # Start Mon 2026-09-07, exit Fri 2027-03-05.
    assert [d.period for d in dues(PipelineReview(), facts, utc(2026, 8, 24, 0), utc(2026, 9, 14, 0))] == ["2026-W37"]
    assert [d.period for d in dues(PipelineReview(), facts, utc(2027, 2, 27, 0), utc(2027, 3, 20, 0))] == ["2027-W09"]


async def test_action_reminders_are_due_every_business_morning(world: World) -> None:
    facts = await facts_of(world)
    found = dues(ActionReminder(), facts, CLOCK, CLOCK + timedelta(days=7))
    # Thanksgiving (Thu Nov 26) and the weekend are skipped.
    assert [(d.period, d.due_at) for d in found] == [
        ("2026-11-25", utc(2026, 11, 25, 17)),
        ("2026-11-27", utc(2026, 11, 27, 17)),
        ("2026-11-30", utc(2026, 11, 30, 17)),
        ("2026-12-01", utc(2026, 12, 1, 17)),
    ]


# --- the host --------------------------------------------------------------------------------------------------


async def test_the_host_is_the_configured_one_until_the_hand_over_is_done(world: World) -> None:
    facts = await facts_of(world)
    maya = facts.person("maya")
    async with world.db.session() as session:
        assert (await current_host(session, facts, "pipeline_review")).key == "dana"
        assert (await current_host(session, facts, "forecast")).key == "dana"
    async with world.db.write() as session:
        await session.execute(
            update(HandoffTask)
            .where(HandoffTask.ritual == "pipeline_review")
            .values(to_id=maya.id, status="done", status_at=CLOCK)
        )
    async with world.db.session() as session:
        assert (await current_host(session, facts, "pipeline_review")).key == "maya"
        assert (await current_host(session, facts, "forecast")).key == "dana"


# --- what: through the engine ----------------------------------------------------------------------------------


async def test_the_review_posts_once_with_one_thread_reply_per_flagged_deal(engine_world: EngineWorld) -> None:
    w = engine_world
    ids = await seed_pipeline(w)
    await w.run_until(MON_NOV_30_REVIEW)
    review = sent_by(w, "pipeline_review")
    posts = [s for s in review if s.target.thread is None]
    assert len(posts) == 1
    post = posts[0]
    assert post.target.channel == "pipeline-review"
    threads = [s for s in review if s.target.thread is not None]
    # Largest first: Acme (large, late), Stark (large, late), Globex (slipped twice), Umbrella (stalled),
    # Initech (an open action item).
    assert [purpose(s) for s in threads] == [
        f"deal:{ids[n]}" for n in ("Acme", "Stark", "Globex", "Umbrella", "Initech")
    ]
    assert all(s.target.thread == post.ref for s in threads)
    text = render(post.message)
    assert "== Pipeline review · FY2027 Q4 · Mon Nov 30 ==" in text
    assert "Hosted by Dana Whitfield." in text
    assert "Closed won this quarter: $170k of $900k (19%)" in text
    assert "Coverage: 0.5x of 3.0x target" in text
    assert "5 deals to discuss" in text
    initech = render(threads[-1].message)
    assert "1 open action item" in initech
    assert "Confirm budget with the CFO — Jordan Lee · due Nov 27 (overdue)" in initech
    assert '/pipeline action "Initech" owner=@jordan due=... text="..."' in initech
    assert "/deal Initech ok" in initech

    before = len(w.port.sent)
    w.clock.advance(timedelta(minutes=5))
    await w.engine.tick()
    await w.engine.tick()
    assert len(sent_by(w, "pipeline_review")) == len(review)
    assert len(w.port.sent) == before

    async with w.db.session() as session:
        occ = (await session.execute(select(Occurrence).where(Occurrence.ritual == "pipeline_review"))).scalar_one()
        snap = (await session.execute(select(PipelineSnapshot))).scalar_one()
        dana = (await session.execute(select(Person).where(Person.key == "dana"))).scalar_one()
    assert (occ.period, occ.host_id) == ("2026-W49", dana.id)
    assert snap.week == "2026-W49"
    assert snap.totals["quarter"] == "FY2027 Q4" and snap.totals["won"] == "170000.00"
    assert Decimal(snap.totals["weighted"]) == Decimal("238500.385")


async def test_the_next_review_counts_movement_from_the_previous_one(engine_world: EngineWorld) -> None:
    w = engine_world
    await seed_pipeline(w)
    await w.run_until(MON_NOV_30_REVIEW)
    assert await w.say("jordan", "/deal Acme stage=proposal")
    await w.run_until(MON_NOV_30_REVIEW + timedelta(days=7))
    posts = [s for s in sent_by(w, "pipeline_review") if s.target.thread is None]
    assert len(posts) == 2
    text = render(posts[1].message)
    assert "Since the last review (Nov 30)" in text
    assert "Regressed (1)\n• Acme — Jordan Lee · Negotiation → Proposal" in text


async def test_a_holiday_review_says_it_moved(engine_world: EngineWorld) -> None:
    w = engine_world
    async with w.db.write() as session:
        engagement = await session.get(Engagement, w.engagement.id)
        engagement.holidays = [*engagement.holidays, "2026-11-30"]
    await w.run_until(MON_NOV_30_REVIEW)
    assert sent_by(w, "pipeline_review") == []
    await w.run_until(utc(2026, 12, 1, 17))
    (post,) = sent_by(w, "pipeline_review")
    assert "Pipeline review · FY2027 Q4 · Tue Dec 1" in render(post.message)
    assert "Moved from Mon Nov 30 (not a business day)." in render(post.message)


async def test_nudges_go_only_to_reps_with_deals_to_fix(engine_world: EngineWorld) -> None:
    w = engine_world
    await seed_pipeline(w)
    await w.run_until(MON_NOV_30_REVIEW)
    nudges = sent_by(w, "review_nudge")
    assert [(s.target.person_name, purpose(s)) for s in nudges] == [("Jordan Lee", "nudge")]
    message = nudges[0].message
    text = render(message)
    # Friday Nov 27: Wayne's date passed; Initech is stale, closes soon in an early stage, has no next step;
    # Acme and Globex are a week without an update; Hooli has neither a next step nor an amount.
    assert [i.name for b in message.blocks if b.type == "deal_list" for i in b.items] == [
        "Wayne",
        "Initech",
        "Acme",
        "Globex",
        "Hooli",
    ]
    assert "The pipeline review is Monday Nov 30 at 09:00 your time." in text
    assert "↳ Closes Dec 1 but is still in Qualification" in text
    assert "/deal Wayne ok" in text
    async with w.db.session() as session:
        occ = {
            o.period: o
            for o in (await session.execute(select(Occurrence).where(Occurrence.ritual == "review_nudge"))).scalars()
        }
    assert set(occ) == {"2026-W49/jordan", "2026-W49/priya"}
    assert occ["2026-W49/priya"].status == "planned" and "deals" not in occ["2026-W49/priya"].detail
    # The last call, Monday 08:00: Jordan's five again (nobody touched them since Friday's nudge), and Priya's
    # two, which went a week without an update over the weekend.
    last = {s.target.person_name: s.message for s in sent_by(w, "review_last_call")}
    assert {
        name: [(i.name, i.reasons) for b in m.blocks if b.type == "deal_list" for i in b.items]
        for name, m in last.items()
    }["Priya Natarajan"] == [("Umbrella", ["No update in 7 days"]), ("Stark", ["No update in 8 days"])]
    assert len([i for b in last["Jordan Lee"].blocks if b.type == "deal_list" for i in b.items]) == 5
    assert last["Jordan Lee"].text == "Last call: the review starts in 60 minutes — 5 deals still need a look"


async def test_the_last_call_skips_deals_touched_since_the_nudge(engine_world: EngineWorld) -> None:
    w = engine_world
    await seed_pipeline(w)
    await w.run_until(utc(2026, 11, 28, 18))  # Saturday, after Friday's nudges
    assert await w.say("jordan", "/deal Globex ok")  # still accurate; its next step is still overdue
    await w.run_until(MON_NOV_30_REVIEW)
    (last,) = [s for s in sent_by(w, "review_last_call") if s.target.person_name == "Jordan Lee"]
    assert [i.name for b in last.message.blocks if b.type == "deal_list" for i in b.items] == [
        "Wayne",
        "Initech",
        "Acme",
        "Hooli",
    ]


async def test_an_out_of_office_rep_is_excused_and_not_nudged(engine_world: EngineWorld) -> None:
    w = engine_world
    await seed_pipeline(w)
    async with w.db.write() as session:
        await session.execute(update(Deal).where(Deal.name == "Umbrella").values(next_step=None))
        await session.execute(
            update(Person)
            .where(Person.key == "priya")
            .values(out_of_office=[{"from": "2026-11-30", "to": "2026-12-04"}])
        )
    await w.run_until(MON_NOV_30_REVIEW)
    assert [s.target.person_name for s in sent_by(w, "review_nudge")] == ["Jordan Lee"]
    assert [s.target.person_name for s in sent_by(w, "review_last_call")] == [
        "Jordan Lee"
    ]  # Priya's deals go stale, but she is away
    async with w.db.session() as session:
        priya = (
            await session.execute(
                select(Occurrence).where(Occurrence.period == "2026-W49/priya", Occurrence.ritual == "review_nudge")
            )
        ).scalar_one()
    assert priya.detail["excused"] == "out of office on the review day"
    (post,) = [s for s in sent_by(w, "pipeline_review") if s.target.thread is None]
    assert "Priya Natarajan (out of office, excused)" in render(post.message)


async def test_action_owners_get_one_reminder_each_business_morning(engine_world: EngineWorld) -> None:
    w = engine_world
    await seed_pipeline(w)
    await w.run_until(MON_NOV_30_REVIEW)
    reminders = sent_by(w, "action_reminder")
    # Initech's item is due Fri Nov 27: reminded that morning and, overdue, on Monday; not on Wednesday.
    assert [(s.key.split("/")[2], s.target.person_name, purpose(s)) for s in reminders] == [
        ("2026-11-27", "Jordan Lee", "actions"),
        ("2026-11-30", "Jordan Lee", "actions"),
    ]
    assert "Confirm budget with the CFO — Jordan Lee · due Nov 27 (overdue) · Initech" in render(reminders[1].message)
    assert "/pipeline done" in render(reminders[1].message)


async def _new_deals(w: EngineWorld, count: int) -> None:
    """`count` deals created by Jordan on Monday Nov 23 (so the Nov 30 review lists them as new), amounts
    rising with their number."""
    eid = w.engagement.id
    async with w.db.write() as session:
        jordan = (await session.execute(select(Person).where(Person.key == "jordan"))).scalar_one()
        stage_id = (await engagement_repo.stages(session, eid))[0].id
        for i in range(count):
            deal = Deal(
                engagement_id=eid,
                name=f"Northwind Regional Hospital Group {i:03d}",
                owner_id=jordan.id,
                stage_id=stage_id,
                is_open=True,
                amount=Decimal(10_000 + i),
                currency="USD",
                close_date=date(2026, 12, 31),
                next_step="Call",
                created_on=date(2026, 11, 23),
                stage_changed_at=la("2026-11-23"),
                touched_at=la("2026-11-23"),
                created_at=la("2026-11-23"),
                updated_at=la("2026-11-23"),
                version=1,
            )
            session.add(deal)
            await session.flush()
            session.add(
                DealHistory(
                    engagement_id=eid,
                    deal_id=deal.id,
                    actor_id=jordan.id,
                    at=la("2026-11-23"),
                    channel="console",
                    kind="create",
                    changes={"name": [None, deal.name], "amount": [None, str(deal.amount)]},
                )
            )


async def _review_rows(w: EngineWorld) -> list[Delivery]:
    assert await w.engine.trigger(w.engagement, "pipeline_review", "2026-W48")
    async with w.db.session() as session:
        stmt = select(Delivery).where(Delivery.purpose.like("review%")).order_by(Delivery.id)
        return list((await session.execute(stmt)).scalars().all())


async def test_a_busy_week_lists_the_largest_moves_and_counts_the_rest(engine_world: EngineWorld) -> None:
    w = engine_world
    await _new_deals(w, 150)
    [main] = await _review_rows(w)  # one message: nothing to continue
    [new] = [b["text"] for b in main.payload["blocks"] if b["type"] == "paragraph" and b["text"].startswith("New")]
    lines = new.split("\n")
    assert lines[0] == "New (150)" and lines[-1] == "… and 140 more (the largest are listed)"
    assert [line.split(" — ")[0][2:] for line in lines[1:-1]] == [
        f"Northwind Regional Hospital Group {i:03d}" for i in range(149, 139, -1)
    ]


async def test_a_long_review_continues_in_the_thread_within_chat_limits(
    engine_world: EngineWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = engine_world
    monkeypatch.setattr(pipeline_review, "MAX_MOVES_SHOWN", 500)  # every move listed: far past one message
    await _new_deals(w, 150)
    rows = await _review_rows(w)
    main, *continued = rows
    assert main.purpose == "review" and [r.purpose for r in continued] == ["review-cont-1"]
    assert all(r.parent_id == main.id for r in continued)
    for row in rows:
        blocks = row.payload["blocks"]
        assert len(blocks) <= 45
        assert all(len(b["text"]) <= 2900 for b in blocks if b["type"] == "paragraph")
    assert main.payload["blocks"][-1]["text"] == "Continued in the thread."
    sent = {s.key.rsplit("/", 1)[1]: s for s in sent_by(w, "pipeline_review")}
    assert sent["review-cont-1"].target.thread == sent["review"].ref
    shown = "\n".join(b["text"] for r in rows for b in r.payload["blocks"] if b["type"] == "paragraph")
    assert all(f"Northwind Regional Hospital Group {i:03d}" in shown for i in range(150))


def test_fit_blocks_moves_what_does_not_fit_to_continuations() -> None:
    blocks: list[Block] = [Header(text="Title"), *(Paragraph(text=f"p{i}") for i in range(50))]
    main, continued = fit_blocks(blocks)
    assert len(main) == 45 and main[-1] == Paragraph(text="Continued in the thread.", muted=True)
    assert main[:44] == blocks[:44]
    assert continued == [blocks[44:]]

    lines = [f"line {i:04d} " + "x" * 50 for i in range(200)]  # 60 characters each
    long = Paragraph(text="\n".join(lines))
    main, continued = fit_blocks([long], max_chars=2900)
    pieces = [main[0], *continued[0]]
    assert all(isinstance(p, Paragraph) and len(p.text) <= 2900 for p in pieces)
    assert "\n".join(p.text for p in pieces if isinstance(p, Paragraph) and not p.muted) == long.text
    assert len(pieces) == 5  # 47 lines of 60 (+46 breaks) fit in 2,900: 200 lines take 5 pieces

    one_line = Paragraph(text="y" * 7000)
    main, continued = fit_blocks([one_line], max_chars=2900)
    assert [len(b.text) for b in [main[0], *continued[0]] if isinstance(b, Paragraph)] == [2900, 2900, 1200]

    assert fit_blocks(blocks[:3]) == (blocks[:3], [])
    assert fit_blocks(blocks[:45]) == (blocks[:45], [])  # exactly at the limit: no continuation
