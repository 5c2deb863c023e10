"""The pipeline's figures against a seeded pipeline whose answers are worked out by hand below.

The seed (`seed_pipeline`) is eleven deals with their history, inserted directly so that the history can
sit in the past: the clock is Tue 2026-11-24 10:00 in Los Angeles, the fiscal quarter is FY2027 Q4
(Nov 1, 2026 – Jan 31, 2027), "the last review" is a week ago (Tue Nov 17 10:00 LA).

  deal       owner   stage          amount     close        category   notes
  Acme       jordan  negotiation    150,000    Dec 15       commit     advanced Nov 20; amount 140k → 150k
  Globex     jordan  proposal        80,000.55 Dec 20       commit     slipped Dec 5 → Dec 20 on Nov 19 (2nd slip);
                                                                       amount 85k → 80,000.55; next step overdue
  Initech    jordan  qualification   40,000    Dec 1        best_case  untouched since Nov 10; no next step;
                                                                       an open action item
  Umbrella   priya   solution        60,000    Jan 15       best_case  pulled in Jan 31 → Jan 15 on Nov 23;
                                                                       no stage change since Oct 1
  Hooli      jordan  discovery       —         Jan 30       pipeline   created Nov 18; no next step
  Stark      priya   proposal       100,000    Feb 20 '27   pipeline   slipped Jan 10 → Feb 20 on Nov 22 (out)
  Wayne      jordan  solution        30,000    Nov 20       omitted    regressed Proposal → Solution on Nov 21
  Cyberdyne  jordan  won             50,000    Nov 23                  won Nov 23 (its close date moved: not a pull-in)
  Tyrell     priya   lost            70,000    Nov 20                  lost Nov 20
  Soylent    jordan  won            120,000    Nov 5                   won Nov 5 (before the window)
  Oscorp     priya   won            200,000    Oct 20                  won last quarter
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from cadences.pipeline_metrics import (
    AmountChange,
    DateMove,
    DealEvent,
    StageMove,
    attention,
    flagged_for_review,
    forecast_accuracy,
    hygiene,
    movement,
    open_action_items,
    pipeline_created,
    quarter_numbers,
    rolling_snapshot_totals,
    win_rate,
)
from cadences.pipeline_review import record_snapshot
from cadences.rituals import load_facts
from storage import engagements as engagement_repo
from storage.models import ActionItem, Deal, DealHistory, Person

if TYPE_CHECKING:  # the fixtures' types; at run time "conftest" may name another package's conftest
    from support.worlds import World

NOW = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)  # Tue Nov 24, 10:00 in Los Angeles
SINCE = NOW - timedelta(days=7)
TODAY = date(2026, 11, 24)


def la(day: str, hour: int = 10) -> datetime:
    """A Los Angeles wall-clock time as UTC (PDT until Nov 1, 2026, PST after)."""
    offset = "-07:00" if day < "2026-11-01" else "-08:00"
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00{offset}").astimezone(UTC)


@dataclass
class Spec:
    name: str
    owner: str
    stage: str
    amount: str | None
    close: str
    category: str = "pipeline"
    created: str = "2026-09-01"
    stage_changed: str | None = None
    touched: str | None = None
    slips: int = 0
    next_step: str | None = "Follow up"
    next_date: str | None = None
    history: tuple[tuple[str, str, dict[str, Any]], ...] = ()  # (day, kind, changes)


SPECS = (
    Spec(
        "Acme",
        "jordan",
        "negotiation",
        "150000",
        "2026-12-15",
        "commit",
        "2026-10-01",
        "2026-11-20",
        "2026-11-20",
        next_step="Legal review",
        next_date="2026-12-01",
        history=(
            ("2026-11-20", "update", {"stage": ["proposal", "negotiation"], "amount": ["140000.00", "150000.00"]}),
        ),
    ),
    Spec(
        "Globex",
        "jordan",
        "proposal",
        "80000.55",
        "2026-12-20",
        "commit",
        "2026-09-15",
        "2026-11-10",
        "2026-11-19",
        slips=2,
        next_step="Send MSA",
        next_date="2026-11-20",
        history=(
            ("2026-10-20", "update", {"close_date": ["2026-11-30", "2026-12-05"]}),
            ("2026-11-19", "update", {"close_date": ["2026-12-05", "2026-12-20"], "amount": ["85000.00", "80000.55"]}),
        ),
    ),
    Spec(
        "Initech",
        "jordan",
        "qualification",
        "40000",
        "2026-12-01",
        "best_case",
        "2026-10-05",
        "2026-11-10",
        "2026-11-10",
        next_step=None,
        history=(("2026-11-10", "update", {"stage": ["discovery", "qualification"]}),),
    ),
    Spec(
        "Umbrella",
        "priya",
        "solution",
        "60000",
        "2027-01-15",
        "best_case",
        "2026-09-20",
        "2026-10-01",
        "2026-11-23",
        next_step="Demo to IT",
        next_date="2026-12-03",
        history=(("2026-11-23", "update", {"close_date": ["2027-01-31", "2027-01-15"]}),),
    ),
    Spec(
        "Hooli",
        "jordan",
        "discovery",
        None,
        "2027-01-30",
        "pipeline",
        "2026-11-18",
        "2026-11-18",
        "2026-11-18",
        next_step=None,
        history=(
            (
                "2026-11-18",
                "create",
                {"name": [None, "Hooli"], "stage": [None, "discovery"], "close_date": [None, "2027-01-30"]},
            ),
        ),
    ),
    Spec(
        "Stark",
        "priya",
        "proposal",
        "100000",
        "2027-02-20",
        "pipeline",
        "2026-09-01",
        "2026-11-05",
        "2026-11-22",
        slips=1,
        next_step="Pricing call",
        next_date="2026-12-02",
        history=(("2026-11-22", "update", {"close_date": ["2027-01-10", "2027-02-20"]}),),
    ),
    Spec(
        "Wayne",
        "jordan",
        "solution",
        "30000",
        "2026-11-20",
        "omitted",
        "2026-10-10",
        "2026-11-21",
        "2026-11-21",
        next_step="Re-qualify",
        next_date="2026-12-04",
        history=(("2026-11-21", "update", {"stage": ["proposal", "solution"]}),),
    ),
    Spec(
        "Cyberdyne",
        "jordan",
        "closed_won",
        "50000",
        "2026-11-23",
        "commit",
        "2026-08-01",
        "2026-11-23",
        "2026-11-23",
        history=(
            ("2026-11-23", "won", {"stage": ["negotiation", "closed_won"], "close_date": ["2026-12-10", "2026-11-23"]}),
        ),
    ),
    Spec(
        "Tyrell",
        "priya",
        "closed_lost",
        "70000",
        "2026-11-20",
        "pipeline",
        "2026-08-15",
        "2026-11-20",
        "2026-11-20",
        history=(("2026-11-20", "lost", {"stage": ["proposal", "closed_lost"]}),),
    ),
    Spec(
        "Soylent",
        "jordan",
        "closed_won",
        "120000",
        "2026-11-05",
        "commit",
        "2026-07-01",
        "2026-11-05",
        "2026-11-05",
        history=(("2026-11-05", "won", {"stage": ["negotiation", "closed_won"]}),),
    ),
    Spec("Oscorp", "priya", "closed_won", "200000", "2026-10-20", "commit", "2026-06-01", "2026-10-20", "2026-10-20"),
)


async def seed_pipeline(world: World) -> dict[str, int]:
    """Insert the deals above with their history and Initech's open action item; returns deal ids by name."""
    eid = world.engagement.id
    async with world.db.write() as session:
        stages = {s.key: s for s in await engagement_repo.stages(session, eid)}
        people = {p.key: p for p in await engagement_repo.people(session, eid)}
        ids: dict[str, int] = {}
        for spec in SPECS:
            stage = stages[spec.stage]
            is_open = stage.kind == "open"
            deal = Deal(
                engagement_id=eid,
                name=spec.name,
                owner_id=people[spec.owner].id,
                stage_id=stage.id,
                is_open=is_open,
                amount=Decimal(spec.amount) if spec.amount else None,
                currency="USD",
                close_date=date.fromisoformat(spec.close),
                forecast_category=spec.category,
                next_step=spec.next_step,
                next_step_date=date.fromisoformat(spec.next_date) if spec.next_date else None,
                created_on=date.fromisoformat(spec.created),
                closed_on=None if is_open else date.fromisoformat(spec.close),
                slip_count=spec.slips,
                stage_changed_at=la(spec.stage_changed or spec.created),
                touched_at=la(spec.touched or spec.created),
                created_at=la(spec.created),
                updated_at=la(spec.touched or spec.created),
                version=1,
            )
            session.add(deal)
            await session.flush()
            ids[spec.name] = deal.id
            for day, kind, changes in spec.history:
                session.add(
                    DealHistory(
                        engagement_id=eid,
                        deal_id=deal.id,
                        actor_id=people[spec.owner].id,
                        at=la(day),
                        channel="console",
                        kind=kind,
                        changes=changes,
                    )
                )
        session.add(
            ActionItem(
                engagement_id=eid,
                deal_id=ids["Initech"],
                owner_id=people["jordan"].id,
                text="Confirm budget with the CFO",
                due_date=date(2026, 11, 27),
                status="open",
                created_by_id=people["dana"].id,
                created_at=la("2026-11-17", 9),
                source="command",
            )
        )
    return ids


async def _facts(world: World) -> Any:
    async with world.db.session() as session:
        return await load_facts(session, world.engagement)


async def test_quarter_numbers_coverage_rollup_and_exact_weighted(world: World) -> None:
    await seed_pipeline(world)
    async with world.db.session() as session:
        q = await quarter_numbers(session, world.engagement, TODAY)
    assert (q.label, q.start, q.end) == ("FY2027 Q4", date(2026, 11, 1), date(2027, 1, 31))
    assert q.quota == Decimal("900000.00")
    assert q.won == Decimal("170000.00")  # Cyberdyne + Soylent; Oscorp closed last quarter
    assert q.remaining == Decimal("730000.00")
    # Acme + Globex + Initech + Umbrella + Wayne (Hooli has no amount; Stark closes next quarter)
    assert q.open_pipeline == Decimal("360000.55")
    assert q.coverage == Decimal("360000.55") / Decimal("730000")
    assert q.coverage_target == Decimal("3.0")
    r = q.rollup
    assert (r.commit, r.best_case, r.pipeline, r.omitted) == (
        Decimal("230000.55"),
        Decimal("100000.00"),
        Decimal(0),
        Decimal("30000.00"),
    )
    assert r.commit_best_case == Decimal("330000.55")
    # 150,000×.85 + 80,000.55×.70 + 40,000×.25 + 60,000×.50 + 30,000×.50, exactly (no float rounding)
    assert r.weighted == Decimal("238500.385")
    assert isinstance(r.weighted, Decimal)


async def test_coverage_is_none_once_the_quota_is_won(world: World) -> None:
    await seed_pipeline(world)
    async with world.db.write() as session:
        await session.execute(update(Deal).where(Deal.name == "Soylent").values(amount=Decimal(900_000)))
    async with world.db.session() as session:
        q = await quarter_numbers(session, world.engagement, TODAY)
    assert q.won == Decimal("950000.00")
    assert q.remaining == 0
    assert q.coverage is None


async def test_movement_since_the_last_review(world: World) -> None:
    ids = await seed_pipeline(world)
    async with world.db.session() as session:
        mv = await movement(session, world.engagement.id, SINCE, NOW)
    jordan, priya = "Jordan Lee", "Priya Natarajan"
    assert mv.new == [DealEvent(ids["Hooli"], "Hooli", jordan, None)]
    assert mv.advanced == [StageMove(ids["Acme"], "Acme", jordan, "Proposal", "Negotiation")]
    assert mv.regressed == [StageMove(ids["Wayne"], "Wayne", jordan, "Proposal", "Solution")]
    assert mv.slipped == [
        DateMove(ids["Globex"], "Globex", jordan, date(2026, 12, 5), date(2026, 12, 20), 1, 2, False),
        DateMove(ids["Stark"], "Stark", priya, date(2027, 1, 10), date(2027, 2, 20), 1, 1, True),
    ]
    # Cyberdyne's close date moved earlier as it was won: that is a win, not a pull-in.
    assert mv.pulled_in == [DateMove(ids["Umbrella"], "Umbrella", priya, date(2027, 1, 31), date(2027, 1, 15), 1, 0)]
    assert mv.won == [DealEvent(ids["Cyberdyne"], "Cyberdyne", jordan, Decimal("50000.00"))]
    assert mv.lost == [DealEvent(ids["Tyrell"], "Tyrell", priya, Decimal("70000.00"))]
    assert mv.amount_changes == [  # in the order the deals first changed
        AmountChange(ids["Globex"], "Globex", jordan, Decimal("85000.00"), Decimal("80000.55")),
        AmountChange(ids["Acme"], "Acme", jordan, Decimal("140000.00"), Decimal("150000.00")),
    ]
    assert mv.net_amount_delta == Decimal("5000.55")
    async with world.db.session() as session:
        assert (await movement(session, world.engagement.id, NOW, NOW + timedelta(days=1))).is_empty


async def test_two_moves_in_a_week_read_as_one_net_move(world: World) -> None:
    ids = await seed_pipeline(world)
    async with world.db.write() as session:
        session.add_all(
            [
                DealHistory(
                    engagement_id=world.engagement.id,
                    deal_id=ids["Acme"],
                    at=la("2026-11-23"),
                    channel="console",
                    kind="update",
                    changes={"close_date": ["2026-12-10", "2026-12-15"]},
                ),
                DealHistory(
                    engagement_id=world.engagement.id,
                    deal_id=ids["Acme"],
                    at=la("2026-11-22"),
                    channel="console",
                    kind="update",
                    changes={"close_date": ["2026-12-01", "2026-12-10"]},
                ),
            ]
        )
    async with world.db.session() as session:
        mv = await movement(session, world.engagement.id, SINCE, NOW)
    acme = next(m for m in mv.slipped if m.deal == "Acme")
    assert (acme.before, acme.after, acme.moves) == (date(2026, 12, 1), date(2026, 12, 15), 2)


async def test_hygiene_per_rep_and_the_out_of_office_excused(world: World) -> None:
    await seed_pipeline(world)
    async with world.db.session() as session:
        rows = await hygiene(session, world.engagement.id, SINCE, TODAY)
    assert [(r.key, r.open_deals, r.fresh, r.share, r.excused) for r in rows] == [
        ("jordan", 5, 4, Decimal("0.8"), False),  # Initech was last touched Nov 10
        ("priya", 2, 2, Decimal(1), False),
    ]
    async with world.db.write() as session:
        await session.execute(
            update(Person)
            .where(Person.key == "priya")
            .values(out_of_office=[{"from": "2026-11-23", "to": "2026-11-27"}])
        )
    async with world.db.session() as session:
        rows = await hygiene(session, world.engagement.id, SINCE, TODAY)
        later = await hygiene(session, world.engagement.id, SINCE, date(2026, 11, 30))
    assert [r.excused for r in rows] == [False, True]
    assert [r.excused for r in later] == [False, False]


async def test_a_rep_with_no_open_deals_has_no_share(world: World) -> None:
    async with world.db.session() as session:
        rows = await hygiene(session, world.engagement.id, SINCE, TODAY)
    assert [(r.key, r.open_deals, r.share) for r in rows] == [("jordan", 0, None), ("priya", 0, None)]


async def test_attention_lists_each_reason_in_plain_words(world: World) -> None:
    await seed_pipeline(world)
    facts = await _facts(world)
    jordan = facts.person("jordan")
    async with world.db.session() as session:
        found = await attention(session, facts, TODAY, NOW)
        mine = await attention(session, facts, TODAY, NOW, owner_id=jordan.id)
        priyas = await attention(session, facts, TODAY, NOW, owner_id=facts.person("priya").id)
    expected = [
        ("Wayne", ["Close date Nov 20 has passed"]),
        ("Initech", ["No update in 14 days", "Closes Dec 1 but is still in Qualification", "No next step"]),
        ("Globex", ["Next step date Nov 20 is overdue"]),
        ("Hooli", ["No next step", "No amount"]),
    ]
    assert [(a.deal.name, a.reasons) for a in found] == expected
    assert [(a.deal.name, a.reasons) for a in mine] == expected
    assert priyas == []


async def test_flagged_deals_with_reasons_largest_first(world: World) -> None:
    await seed_pipeline(world)
    facts = await _facts(world)
    async with world.db.session() as session:
        flags = await flagged_for_review(session, facts, TODAY, NOW, since=SINCE)
    assert [(f.deal.name, f.reasons) for f in flags] == [
        ("Acme", ["Large late-stage deal ($150k in Negotiation)"]),
        (
            "Stark",
            [
                "Slipped 1 time: close date moved Jan 10 → Feb 20 since the last review",
                "Large late-stage deal ($100k in Proposal)",
            ],
        ),
        ("Globex", ["Slipped 2 times: close date moved Dec 5 → Dec 20 since the last review"]),
        ("Umbrella", ["No stage change in 54 days (still in Solution)"]),
        ("Initech", ["1 open action item"]),
    ]
    # A week later Stark's single slip is old news but it has now stalled too; Globex has slipped twice in all.
    # Globex and Initech last changed stage exactly 21 days before: not yet "older than" the 21 days.
    later = NOW + timedelta(days=7)
    async with world.db.session() as session:
        flags = await flagged_for_review(session, facts, TODAY + timedelta(days=7), later)
    assert [(f.deal.name, f.reasons) for f in flags] == [
        ("Acme", ["Large late-stage deal ($150k in Negotiation)"]),
        ("Stark", ["No stage change in 26 days (still in Proposal)", "Large late-stage deal ($100k in Proposal)"]),
        ("Globex", ["Slipped 2 times"]),
        ("Umbrella", ["No stage change in 61 days (still in Solution)"]),
        ("Initech", ["1 open action item"]),
    ]


async def test_open_action_items_join_owner_and_deal(world: World) -> None:
    ids = await seed_pipeline(world)
    async with world.db.session() as session:
        items = await open_action_items(session, world.engagement.id, due_by=date(2026, 11, 27))
        none_yet = await open_action_items(session, world.engagement.id, due_by=date(2026, 11, 26))
    assert [(a.text, a.owner, a.deal, a.deal_id, a.overdue(date(2026, 11, 30))) for a in items] == [
        ("Confirm budget with the CFO", "Jordan Lee", "Initech", ids["Initech"], True)
    ]
    assert none_yet == []


def test_forecast_accuracy() -> None:
    assert forecast_accuracy(Decimal(400_000), Decimal(380_000)) == 1 - Decimal(20_000) / Decimal(380_000)
    assert forecast_accuracy(Decimal(400_000), Decimal(400_000)) == 1
    assert forecast_accuracy(Decimal(1_000), Decimal(400)) == Decimal("-0.5")
    assert forecast_accuracy(Decimal(400_000), Decimal(0)) is None


async def test_win_rate_and_pipeline_created(world: World) -> None:
    await seed_pipeline(world)
    async with world.db.session() as session:
        rate = await win_rate(session, world.engagement.id, date(2026, 11, 1), date(2026, 12, 1))
        created = await pipeline_created(session, world.engagement.id, date(2026, 9, 1), date(2026, 10, 1))
        nothing = await pipeline_created(session, world.engagement.id, date(2026, 11, 18), date(2026, 11, 19))
    assert (rate.won, rate.lost, rate.won_amount, rate.lost_amount) == (2, 1, Decimal(170_000), Decimal(70_000))
    assert rate.by_count == Decimal(2) / 3
    assert rate.by_value == Decimal(170_000) / Decimal(240_000)
    assert created == Decimal("240000.55")  # Stark, Globex, Umbrella (created in September)
    assert nothing == 0  # Hooli was created that day, without an amount


async def test_snapshots_are_kept_once_a_week_and_read_back_oldest_first(world: World) -> None:
    await seed_pipeline(world)
    async with world.db.write() as session:
        q = await quarter_numbers(session, world.engagement, TODAY)
        await record_snapshot(session, world.engagement.id, "2026-W48", NOW, q)
        await record_snapshot(session, world.engagement.id, "2026-W47", NOW - timedelta(days=7), q)
    async with world.db.write() as session:
        await session.execute(update(Deal).where(Deal.name == "Acme").values(amount=Decimal(1)))
        changed = await quarter_numbers(session, world.engagement, TODAY)
        await record_snapshot(session, world.engagement.id, "2026-W48", NOW, changed)  # the first one stays
    async with world.db.session() as session:
        points = await rolling_snapshot_totals(session, world.engagement.id, weeks=13)
        last = await rolling_snapshot_totals(session, world.engagement.id, weeks=1)
    assert [p.week for p in points] == ["2026-W47", "2026-W48"]
    assert [p.week for p in last] == ["2026-W48"]
    w48 = points[1]
    assert w48.quarter == "FY2027 Q4"
    assert w48.figures == {
        "quota": Decimal("900000.00"),
        "won": Decimal("170000.00"),
        "open": Decimal("360000.55"),
        "commit": Decimal("230000.55"),
        "best_case": Decimal("100000.00"),
        "pipeline": Decimal("0.00"),
        "weighted": Decimal("238500.385"),
    }
    assert w48.coverage == Decimal("360000.55") / Decimal("730000")
