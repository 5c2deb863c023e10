"""Tests for cadences.demo_seed: the demo pipeline is realistic, has the planted problems, and is repeatable."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from cadences.deals import LOSS_REASONS
from cadences.demo_seed import COMPANIES, SeedError, SeedReport, seed_demo_pipeline
from storage.db import Database
from storage.models import Deal, DealHistory, Person, Stage
from support.crm_engagement import SLUG, add_test_engagement

TODAY = date(2026, 11, 24)
TZ = ZoneInfo("America/Los_Angeles")
TODAY_START = datetime.combine(TODAY, time(0), tzinfo=TZ).astimezone(UTC)


@pytest.fixture
async def slug(db: Database) -> str:
    return await add_test_engagement(db)


async def _deals(db: Database) -> list[Deal]:
    async with db.session() as s:
        return list((await s.execute(select(Deal).order_by(Deal.id))).scalars().all())


async def _history(db: Database) -> list[DealHistory]:
    async with db.session() as s:
        return list((await s.execute(select(DealHistory).order_by(DealHistory.id))).scalars().all())


async def _stage_keys(db: Database) -> dict[int, Stage]:
    async with db.session() as s:
        return {st.id: st for st in (await s.execute(select(Stage))).scalars().all()}


async def test_seed_counts_and_summary(db: Database, slug: str) -> None:
    report = await seed_demo_pipeline(db, slug, today=TODAY)
    deals = await _deals(db)
    open_deals = [d for d in deals if d.is_open]
    assert report.seeded
    assert report.open_deals == len(open_deals) == 40
    assert report.won_deals == 60 and report.lost_deals == 45
    assert len(deals) == 145
    assert report.history_rows == len(await _history(db))
    assert report.open_amount == sum((d.amount or Decimal(0) for d in open_deals), Decimal(0))
    text = report.summary()
    assert text.startswith("Seeded the demo pipeline for acme: 40 open deals ($")
    assert "60 won and 45 lost in the last 12 months" in text
    assert "Planted for the review to find: 3 close date passed, 4 no update for 10+ days" in text


async def test_open_deals_are_realistic(db: Database, slug: str) -> None:
    await seed_demo_pipeline(db, slug, today=TODAY)
    stages = await _stage_keys(db)
    open_deals = [d for d in await _deals(db) if d.is_open]
    async with db.session() as s:
        reps = {p.id: p for p in (await s.execute(select(Person).where(Person.role == "rep"))).scalars().all()}
    assert {d.owner_id for d in open_deals} == set(reps)  # spread over all four reps
    assert max(Counter(d.owner_id for d in open_deals).values()) <= 12
    assert len({stages[d.stage_id].key for d in open_deals}) == 5  # every open stage has deals
    assert all(stages[d.stage_id].kind == "open" for d in open_deals)
    amounts = [d.amount for d in open_deals if d.amount is not None]
    assert all(Decimal(8_000) <= a <= Decimal(220_000) for a in amounts)
    assert sum(1 for a in amounts if Decimal(20_000) <= a <= Decimal(80_000)) > len(amounts) / 2
    assert len({d.name for d in open_deals}) == 40
    assert not any(d.name.startswith("Globex Corp") for d in open_deals)  # kept free for the README walkthrough
    for d in open_deals:  # late stages are mostly commit / best case; early stages never commit
        if stages[d.stage_id].probability_pct < 40:
            assert d.forecast_category == "pipeline"
    late = [d for d in open_deals if stages[d.stage_id].probability_pct >= 70]
    assert sum(1 for d in late if d.forecast_category in ("commit", "best_case")) >= len(late) * 0.7
    assert all(d.touched_at < TODAY_START for d in open_deals)  # nothing in the future
    assert all(d.close_date is not None and d.created_on <= d.close_date for d in open_deals)


async def test_planted_hygiene_problems(db: Database, slug: str) -> None:
    report = await seed_demo_pipeline(db, slug, today=TODAY)
    stages = await _stage_keys(db)
    open_deals = [d for d in await _deals(db) if d.is_open]
    past_close = [d for d in open_deals if d.close_date is not None and d.close_date < TODAY]
    stale = [d for d in open_deals if d.touched_at <= TODAY_START - timedelta(days=10)]
    stalled = [d for d in open_deals if d.stage_changed_at <= TODAY_START - timedelta(days=25)]
    big_late = [d for d in open_deals if (d.amount or 0) >= 150_000 and stages[d.stage_id].probability_pct >= 70]
    assert len(past_close) == 3
    assert len(stale) == 4
    assert sum(1 for d in open_deals if not d.next_step) == 3
    assert sum(1 for d in open_deals if d.amount is None) == 2
    assert sum(1 for d in open_deals if d.slip_count) == 3
    assert all(1 <= d.slip_count <= 2 for d in open_deals if d.slip_count)
    assert len(stalled) == 2
    assert len(big_late) >= 2
    assert report.problems == {
        "past_close": 3, "stale": 4, "no_next_step": 3, "no_amount": 2, "slipped": 3, "stalled": 2,
        "big_late": len(big_late),
    }  # fmt: skip
    # The rest are healthy: touched within the week, close dates ahead.
    fresh = [d for d in open_deals if d.touched_at >= TODAY_START - timedelta(days=7)]
    assert len(fresh) >= 30


async def test_history_agrees_with_the_deals(db: Database, slug: str) -> None:
    report = await seed_demo_pipeline(db, slug, today=TODAY)
    deals = {d.id: d for d in await _deals(db)}
    rows = await _history(db)
    by_deal: dict[int, list[DealHistory]] = {}
    for row in rows:
        by_deal.setdefault(row.deal_id, []).append(row)
    stages = await _stage_keys(db)
    assert set(by_deal) == set(deals)
    for deal_id, history in by_deal.items():
        deal = deals[deal_id]
        assert history[0].kind == "create" and history[0].channel == "import"
        assert all(r.channel == "import" for r in history)
        assert [r.at for r in history] == sorted(r.at for r in history)
        assert deal.created_at == history[0].at
        assert deal.touched_at == history[-1].at
        stage_moves = [r for r in history if "stage" in r.changes]  # the create row sets the first stage
        assert deal.stage_changed_at == stage_moves[-1].at
        assert stage_moves[-1].changes["stage"][1] == stages[deal.stage_id].key
        for row in stage_moves[1:]:
            before, after = (stages_by_key(stages, k) for k in row.changes["stage"])
            if after.kind != "open":  # closing is its own kind of row, as in chat
                assert row.kind == after.kind and not deal.is_open
            elif after.position > before.position:  # forward moves never skip a stage's exit criteria
                assert after.position == before.position + 1
        closes = [r.changes["close_date"] for r in history if "close_date" in r.changes]
        assert closes[-1][1] == (deal.close_date.isoformat() if deal.close_date else None)
        slips = sum(1 for before, after in closes[1:] if after > before)
        assert slips == deal.slip_count
        amounts = [r.changes["amount"][1] for r in history if "amount" in r.changes]
        assert (amounts[-1] if amounts else None) == (str(deal.amount) if deal.amount is not None else None)
    week_ago = TODAY_START - timedelta(days=7)
    recent = [r for r in rows if r.at >= week_ago and r.changes]
    assert report.recent_changes == len(recent) >= 10
    assert {r.kind for r in recent} == {"create", "update", "won", "lost"}
    assert any("stage" in r.changes and r.kind == "update" for r in recent)
    assert any("close_date" in r.changes and r.kind == "update" for r in recent)  # a slip this week


def stages_by_key(stages: dict[int, Stage], key: str) -> Stage:
    return next(s for s in stages.values() if s.key == key)


async def test_closed_history(db: Database, slug: str) -> None:
    await seed_demo_pipeline(db, slug, today=TODAY)
    stages = await _stage_keys(db)
    closed = [d for d in await _deals(db) if not d.is_open]
    won = [d for d in closed if stages[d.stage_id].kind == "won"]
    lost = [d for d in closed if stages[d.stage_id].kind == "lost"]
    assert len(won) == 60 and len(lost) == 45
    for d in closed:
        assert d.closed_on is not None and d.close_date == d.closed_on
        assert TODAY - timedelta(days=370) <= d.closed_on < TODAY
        assert 18 <= (d.closed_on - d.created_on).days <= 125
        assert d.amount is not None and d.source in ("Inbound", "Outbound", "Partner", "Event")
        assert d.segment in ("SMB", "Mid-market", "Enterprise")
    assert all(d.loss_reason in LOSS_REASONS for d in lost)
    assert all(d.loss_reason is None and d.competitor is None for d in won)
    assert len({d.loss_reason for d in lost}) >= 5
    assert any(d.competitor for d in lost)
    assert all(d.competitor for d in lost if d.loss_reason == "competitor")
    assert any(d.closed_on and d.closed_on >= TODAY - timedelta(days=7) for d in closed)  # to call this week
    assert len({d.source for d in won}) == 4 and len({d.segment for d in won}) == 3
    # Losses happen at every stage, including late ones worth a debrief.
    async with db.session() as s:
        lost_rows = (await s.execute(select(DealHistory).where(DealHistory.kind == "lost"))).scalars().all()
    assert len(lost_rows) == 45
    assert len({r.changes["stage"][0] for r in lost_rows}) >= 4


async def test_same_seed_same_pipeline(tmp_path: Path) -> None:
    pipelines = []
    for name in ("a", "b", "c"):
        database = Database(f"sqlite+aiosqlite:///{tmp_path}/{name}.db")
        await database.upgrade()
        await add_test_engagement(database)
        await seed_demo_pipeline(database, SLUG, today=TODAY, seed=7 if name != "c" else 8)
        pipelines.append([(d.name, d.amount, d.close_date, d.touched_at, d.slip_count) for d in await _deals(database)])
        await database.dispose()
    assert pipelines[0] == pipelines[1]
    assert pipelines[0] != pipelines[2]


async def test_seed_is_idempotent(db: Database, slug: str) -> None:
    first = await seed_demo_pipeline(db, slug, today=TODAY)
    again = await seed_demo_pipeline(db, slug, today=TODAY + timedelta(days=3))
    assert first.seeded and not again.seeded
    assert again == SeedReport(engagement=SLUG, seeded=False, currency="USD", existing_deals=145)
    assert again.summary() == (
        "acme already has 145 deals, so the demo pipeline was not seeded (it only fills an empty pipeline)."
    )
    async with db.session() as s:
        assert (await s.execute(select(func.count(Deal.id)))).scalar_one() == 145
        assert (await s.execute(select(func.count(DealHistory.id)))).scalar_one() == first.history_rows


async def test_seed_needs_an_engagement_with_reps(db: Database) -> None:
    with pytest.raises(SeedError, match="no engagement 'nope'"):
        await seed_demo_pipeline(db, "nope", today=TODAY)


def test_company_names_are_plenty_and_unique() -> None:
    assert len(COMPANIES) >= 120
    assert len(set(COMPANIES)) == len(COMPANIES)
