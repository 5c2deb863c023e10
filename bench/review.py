"""Benchmark 3, the review at scale: how long the Monday review snapshot and the founder digest take for
one engagement with 20,000 deals and 400,000 history rows, and for 1,000 engagements with 200 deals
each, on SQLite and PostgreSQL — next to the floor query, the one grouped scan of the engagement's
deals that no review can beat:

    SELECT stage_id, forecast_category, count(*), sum(amount) FROM deal WHERE engagement_id = :e
    GROUP BY stage_id, forecast_category

The snapshot is timed as the engine runs it on Monday: the engagement's facts loaded, then the real
`PipelineReview.plan` (quarter numbers, roll-up, movement since the last review, hygiene, the forecast
call, open action items, the flagged deals and one thread reply each, the blocks split to fit chat
limits). The digest is the real `build_digest` for the founder, chart included. Each runs in a
transaction that is rolled back, so every repetition sees the same data (warm: one untimed run first).

    python bench/review.py            # full: 20,000 deals / 400,000 history rows; 1,000 x 200 deals
    python bench/review.py --quick    # small sizes, under a minute (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import time as wall
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from common import (
    BACKENDS,
    Timing,
    analyze,
    apply_yaml,
    bulk_insert,
    clone_engagement,
    engagement_yaml,
    fast_insert,
    fresh_database,
    machine,
    next_ids,
    postgres_unavailable,
    print_table,
    table_of,
    verdict,
    write_result,
)
from sqlalchemy import func, or_, select

from cadences.digest import build_digest
from cadences.messages import Message
from cadences.pipeline_metrics import MOVES
from cadences.pipeline_review import PipelineReview
from cadences.rituals import RitualRun, load_facts
from storage.db import Database
from storage.models import (
    ActionItem,
    Deal,
    DealHistory,
    Engagement,
    ForecastCall,
    Occurrence,
    Person,
    PipelineSnapshot,
    Stage,
)

NOW = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
"""Monday 30 November 2026, 09:00 in Los Angeles: the review minute."""
WEEK_KEY = "2026-W49"
LAST_WEEK_KEY = "2026-W48"
CENTS = Decimal("0.01")
SNAPSHOT_TARGET_S = 0.250
FLOOR_FACTOR = 3.0
BATCH_TARGET_S = 60.0
DIGEST_SAMPLE = 20
"""Digests timed among the many small engagements (each renders a chart: a sample tells as much)."""


@dataclass(frozen=True)
class Size:
    deals: int
    history_per_deal: int
    engagements: int
    batch_deals: int
    batch_history_per_deal: int
    repetitions: int


FULL = Size(
    deals=20_000, history_per_deal=20, engagements=1_000, batch_deals=200, batch_history_per_deal=20, repetitions=30
)
QUICK = Size(
    deals=2_000, history_per_deal=20, engagements=40, batch_deals=200, batch_history_per_deal=20, repetitions=5
)

OWNER_KEY = "owner"
"""Placeholder for the owner's key in a generated `create` row; bound to the real key per engagement."""
VARIANTS = 8
"""Distinct generated pipelines cycled over the many small engagements: simulating all 200,000 deals'
lives event by event would take minutes and measure nothing more."""
OPEN_KEYS = ("discovery", "qualification", "solution", "proposal", "negotiation")
CATEGORY_BY_STAGE = {
    "discovery": ("pipeline", "pipeline", "omitted"),
    "qualification": ("pipeline", "pipeline", "best_case"),
    "solution": ("pipeline", "best_case", "best_case"),
    "proposal": ("best_case", "commit", "pipeline"),
    "negotiation": ("commit", "commit", "best_case"),
}


# --- data ------------------------------------------------------------------------------------------------


def _money(rng: random.Random) -> Decimal:
    return Decimal(rng.randrange(5_000, 250_000, 500)).quantize(CENTS)


@dataclass(frozen=True)
class Pipeline:
    """One engagement's generated deals and their history, with people and stages still symbolic (an
    owner index, a stage key) so the same pipeline can be bound to many engagements cheaply."""

    deals: list[dict[str, Any]]
    histories: list[list[dict[str, Any]]]


def simulate_pipeline(count: int, history_per_deal: int, rng: random.Random) -> Pipeline:
    """Deals whose life is simulated event by event from creation to now (or to their win or loss): stage
    moves, close dates slipping or pulled in, amount changes, next steps and "still accurate"
    confirmations. Each deal gets history in proportion to how long it has lived, `history_per_deal`
    on average, so the history accrues at a steady rate — about one change per open deal per week, what
    a pipeline kept up to date for a weekly review produces — and the deal row is where its life ends,
    so the figures, flags and movement the review computes are consistent with the history."""
    lives = []
    for _ in range(count):
        created = NOW - timedelta(seconds=rng.randrange(2 * 86_400, 365 * 86_400))
        outcome = rng.choices(("open", "won", "lost"), weights=(65, 20, 15))[0]
        end = NOW if outcome == "open" else created + (NOW - created) * rng.uniform(0.2, 1.0)
        lives.append((created, end, outcome))
    lives.sort()  # deals are numbered in the order they were created, as in a real database
    total = sum((end - created).total_seconds() for created, end, _ in lives)
    deals: list[dict[str, Any]] = []
    histories: list[list[dict[str, Any]]] = []
    for n, (created, end, outcome) in enumerate(lives):
        events = max(2, round(count * history_per_deal * (end - created).total_seconds() / total))
        owner = n
        stage = rng.choice((0, 0, 1))
        amount: Decimal | None = _money(rng) if rng.random() > 0.02 else None
        close = (created + timedelta(days=rng.randrange(30, 200))).date()
        category = rng.choice(CATEGORY_BY_STAGE[OPEN_KEYS[stage]])
        next_step: str | None = "Intro call" if rng.random() > 0.1 else None
        name = f"Deal {n:06d} · Account {n % 997}"
        values = {"name": name, "amount": amount, "close_date": close, "forecast_category": category}
        create = {k: [None, _json(v)] for k, v in values.items() if v is not None}
        create |= {"stage": [None, OPEN_KEYS[stage]], "owner": [None, OWNER_KEY]}
        history = [_history(owner, created, "create", create)]
        span = (end - created).total_seconds()
        times = sorted(created + timedelta(seconds=rng.random() * span) for _ in range(events - 2))
        times.append(end if outcome != "open" else created + timedelta(seconds=rng.random() * span))
        times.sort()
        slips = 0
        stage_changed = touched = created
        closed_on: date | None = None
        for i, at in enumerate(times):
            touched = at
            if outcome != "open" and i == len(times) - 1:
                after = "closed_won" if outcome == "won" else "closed_lost"
                changes: dict[str, Any] = {"stage": [OPEN_KEYS[stage], after]}
                if close > at.date():
                    changes["close_date"] = [close.isoformat(), at.date().isoformat()]
                    close = at.date()
                history.append(_history(owner, at, outcome, changes))
                stage_changed, closed_on = at, at.date()
                continue
            roll = rng.random()
            if roll < 0.15 and stage < len(OPEN_KEYS) - 1:
                changes = {"stage": [OPEN_KEYS[stage], OPEN_KEYS[stage + 1]]}
                stage += 1
                stage_changed = at
                new_category = rng.choice(CATEGORY_BY_STAGE[OPEN_KEYS[stage]])
                if new_category != category:
                    changes["forecast_category"] = [category, new_category]
                    category = new_category
            elif roll < 0.33:
                moved = close + timedelta(days=rng.choice((-14, -7, 7, 14, 21, 30, 45)))
                changes = {"close_date": [close.isoformat(), moved.isoformat()]}
                slips += moved > close
                close = moved
            elif roll < 0.43:
                new_amount = _money(rng)
                changes = {"amount": [_json(amount), _json(new_amount)]}
                amount = new_amount
            elif roll < 0.75:
                step = f"Follow-up {i}"
                changes = {"next_step": [next_step, step]}
                next_step = step
            else:
                history.append(_history(owner, at, "confirm", {}, note="Still accurate"))
                continue
            history.append(_history(owner, at, "update", changes))
        is_open = outcome == "open"
        stage_key = OPEN_KEYS[stage] if is_open else ("closed_won" if outcome == "won" else "closed_lost")
        deals.append(
            {
                "crm_id": None,
                "name": name,
                "account": f"Account {n % 997}",
                "owner_id": owner,
                "stage_id": stage_key,
                "is_open": is_open,
                "amount": amount,
                "currency": "USD",
                "close_date": close,
                "forecast_category": category,
                "next_step": next_step,
                "next_step_date": (touched + timedelta(days=rng.randrange(-5, 20))).date() if next_step else None,
                "risk": None,
                "source": rng.choice(("inbound", "outbound", "partner")),
                "segment": rng.choice(("smb", "mid-market", "enterprise")),
                "loss_reason": "price" if outcome == "lost" else None,
                "competitor": None,
                "created_on": created.date(),
                "closed_on": closed_on,
                "slip_count": slips,
                "stage_changed_at": stage_changed,
                "touched_at": touched,
                "created_at": created,
                "updated_at": touched,
                "version": len(history),
            }
        )
        histories.append(history)
    return Pipeline(deals, histories)


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _history(actor: int, at: datetime, kind: str, changes: dict[str, Any], note: str | None = None) -> dict[str, Any]:
    return {
        "actor_id": actor,
        "at": at,
        "channel": "slack",
        "kind": kind,
        "changes": changes,
        "note": note,
    }


EXTRA_TABLES = (table_of(ActionItem), table_of(Occurrence), table_of(PipelineSnapshot), table_of(ForecastCall))


async def populate(db: Database, engagement_ids: Sequence[int], deals: int, history_per_deal: int, seed: int) -> int:
    """Give each engagement a pipeline, last week's review, twelve weekly snapshots, a forecast call and
    open action items. Returns the number of history rows written."""
    rng = random.Random(seed)
    variants = [simulate_pipeline(deals, history_per_deal, rng) for _ in range(min(VARIANTS, len(engagement_ids)))]
    async with db.engine.begin() as conn:
        stage_rows = (await conn.execute(select(Stage.engagement_id, Stage.key, Stage.id))).all()
        person_rows = (await conn.execute(select(Person.engagement_id, Person.id, Person.key, Person.role))).all()
    stages: dict[int, dict[str, int]] = {}
    for engagement_id, key, stage_id in stage_rows:
        stages.setdefault(engagement_id, {})[key] = stage_id
    reps: dict[int, list[tuple[int, str]]] = {}
    cro: dict[int, int] = {}
    for engagement_id, person_id, key, role in sorted(person_rows):
        if role == "rep":
            reps.setdefault(engagement_id, []).append((person_id, key))
        elif role == "cro":
            cro[engagement_id] = person_id
    written = 0
    per_batch = max(1, 100_000 // max(1, deals))  # engagements per transaction: bounded memory
    for start in range(0, len(engagement_ids), per_batch):
        batch = engagement_ids[start : start + per_batch]
        deal_rows: list[dict[str, Any]] = []
        history_rows: list[dict[str, Any]] = []
        extras: dict[Any, list[dict[str, Any]]] = {t: [] for t in EXTRA_TABLES}
        async with db.engine.begin() as conn:
            deal_ids = iter(await next_ids(conn, table_of(Deal), len(batch) * deals))
            for n, engagement_id in enumerate(batch):
                pipeline = variants[(start + n) % len(variants)]
                owners = reps[engagement_id]
                stage_ids = stages[engagement_id]
                ids = []
                for deal, history in zip(pipeline.deals, pipeline.histories, strict=True):
                    deal_id = next(deal_ids)
                    ids.append(deal_id)
                    owner_id, owner_key = owners[deal["owner_id"] % len(owners)]
                    deal_rows.append(
                        deal
                        | {
                            "id": deal_id,
                            "engagement_id": engagement_id,
                            "owner_id": owner_id,
                            "stage_id": stage_ids[deal["stage_id"]],
                        }
                    )
                    for row in history:
                        bound = row | {"engagement_id": engagement_id, "deal_id": deal_id, "actor_id": owner_id}
                        if row["kind"] == "create":
                            bound["changes"] = row["changes"] | {"owner": [None, owner_key]}
                        history_rows.append(bound)
                extras[table_of(ActionItem)] += _actions(engagement_id, ids, owners, rng)
                extras[table_of(Occurrence)].append(_last_review(engagement_id, cro[engagement_id]))
                extras[table_of(PipelineSnapshot)] += _snapshots(engagement_id, rng)
                extras[table_of(ForecastCall)].append(_call(engagement_id, cro[engagement_id]))
            # History is append-only: rows land in the order they happened, so a week's changes sit together
            # on disk as they would in production (inserted deal by deal, they would be scattered).
            history_rows.sort(key=lambda row: row["at"])
            await fast_insert(conn, table_of(Deal), deal_rows)
            await fast_insert(conn, table_of(DealHistory), history_rows)
            for table, rows in extras.items():
                await bulk_insert(conn, table, rows)
        written += len(history_rows)
    await analyze(db)
    return written


def _actions(
    engagement_id: int, deal_ids: Sequence[int], owners: Sequence[tuple[int, str]], rng: random.Random
) -> list[dict[str, Any]]:
    """One deal in a hundred has an open action item; as many again are done."""
    rows = []
    for n, deal_id in enumerate(rng.sample(list(deal_ids), max(1, len(deal_ids) // 50))):
        done = n % 2 == 1
        rows.append(
            {
                "engagement_id": engagement_id,
                "deal_id": deal_id,
                "owner_id": owners[n % len(owners)][0],
                "text": f"Confirm the buying committee ({n})",
                "due_date": (NOW + timedelta(days=rng.randrange(-7, 14))).date(),
                "status": "done" if done else "open",
                "created_by_id": owners[0][0],
                "created_at": NOW - timedelta(days=rng.randrange(1, 30)),
                "source": "review",
                "done_at": NOW - timedelta(days=1) if done else None,
            }
        )
    return rows


def _last_review(engagement_id: int, host_id: int) -> dict[str, Any]:
    due = NOW - timedelta(days=7)
    return {
        "engagement_id": engagement_id,
        "ritual": "pipeline_review",
        "period": LAST_WEEK_KEY,
        "due_at": due,
        "status": "planned",
        "host_id": host_id,
        "skip_reason": None,
        "detail": {"review_day": "2026-11-23", "scheduled_day": "2026-11-23"},
        "created_at": due,
        "planned_at": due,
    }


def _snapshots(engagement_id: int, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for weeks_ago in range(12, 0, -1):
        taken = NOW - timedelta(weeks=weeks_ago)
        year, week, _ = taken.isocalendar()
        figures = {k: str(_money(rng) * 4) for k in ("commit", "best_case", "pipeline", "weighted", "open")}
        totals = {"quarter": "FY2027 Q4", "quota": "900000.00", "won": "100000.00", **figures, "coverage": "2.5"}
        rows.append(
            {"engagement_id": engagement_id, "week": f"{year}-W{week:02d}", "taken_at": taken, "totals": totals}
        )
    return rows


def _call(engagement_id: int, by_id: int) -> dict[str, Any]:
    return {
        "engagement_id": engagement_id,
        "quarter": "FY2027 Q4",
        "commit": Decimal(600_000),
        "best_case": Decimal(850_000),
        "by_id": by_id,
        "at": NOW - timedelta(days=3),
        "note": None,
    }


# --- what is timed ------------------------------------------------------------------------------------------


async def review_snapshot(db: Database, engagement_id: int) -> int:
    """What the engine does for the Monday review: load the facts, then `PipelineReview.plan`, in a
    transaction rolled back afterwards. Returns the number of messages planned."""
    async with db.sessions() as session:
        engagement = await session.get(Engagement, engagement_id)
        assert engagement is not None
        facts = await load_facts(session, engagement)
        occurrence = Occurrence(
            engagement_id=engagement_id,
            ritual="pipeline_review",
            period=WEEK_KEY,
            due_at=NOW,
            status="pending",
            detail={"review_day": NOW.date().isoformat(), "scheduled_day": NOW.date().isoformat()},
            created_at=NOW,
        )
        outgoing = await PipelineReview().plan(RitualRun(session, facts, occurrence, NOW))
        await session.rollback()
    return len(outgoing)


async def founder_digest(db: Database, engagement_id: int) -> Message:
    """`build_digest` for the founder (chart included), in a transaction rolled back afterwards."""
    async with db.sessions() as session:
        engagement = await session.get(Engagement, engagement_id)
        assert engagement is not None
        facts = await load_facts(session, engagement)
        founder = facts.person("sam")
        assert founder is not None
        message = await build_digest(session, facts, founder, WEEK_KEY, NOW)
        await session.rollback()
    return message


async def floor_query(db: Database, engagement_id: int) -> int:
    """The single grouped scan of the engagement's deals: the least any review could cost."""
    stmt = (
        select(Deal.stage_id, Deal.forecast_category, func.count(), func.sum(Deal.amount))
        .where(Deal.engagement_id == engagement_id)
        .group_by(Deal.stage_id, Deal.forecast_category)
    )
    async with db.sessions() as session:
        rows = (await session.execute(stmt)).all()
        await session.rollback()
    return len(rows)


async def week_of_history(db: Database, engagement_id: int) -> int:
    """The least the movement must read: last week's history rows that change a stage, a close date or an
    amount (the rows `movement` folds), with nothing joined and nothing computed. The review cannot know
    what moved since the last review without reading them, so floor + this is a floor for the snapshot."""
    stmt = select(DealHistory.deal_id, DealHistory.kind, DealHistory.changes).where(
        DealHistory.engagement_id == engagement_id,
        DealHistory.at >= NOW - timedelta(days=7),
        DealHistory.at < NOW,
        DealHistory.kind.not_in(("confirm", "note")),
        or_(DealHistory.kind == "create", *(DealHistory.changes[key].as_string().is_not(None) for key in MOVES)),
    )
    async with db.sessions() as session:
        rows = (await session.execute(stmt)).all()
        await session.rollback()
    return len(rows)


async def timed(operation: Callable[[], Awaitable[object]], repetitions: int) -> Timing:
    await operation()  # warm: caches, prepared statements, the page cache
    samples, cpu = [], []
    for _ in range(repetitions):
        start, used = wall.perf_counter(), wall.process_time()
        await operation()
        samples.append(wall.perf_counter() - start)
        cpu.append(wall.process_time() - used)
    return Timing(tuple(samples), tuple(cpu))


# --- the runs -------------------------------------------------------------------------------------------------


async def one_big(backend: str, size: Size) -> dict[str, Any]:
    async with fresh_database(backend) as db:
        started = wall.perf_counter()
        engagement_id = await apply_yaml(db, engagement_yaml("big", reps=50, managers=5), NOW - timedelta(days=90))
        history = await populate(db, [engagement_id], size.deals, size.history_per_deal, seed=1)
        load_s = wall.perf_counter() - started
        reps = size.repetitions
        floor = await timed(lambda: floor_query(db, engagement_id), reps)
        history_floor = await timed(lambda: week_of_history(db, engagement_id), reps)
        moved_rows = await week_of_history(db, engagement_id)
        snapshot = await timed(lambda: review_snapshot(db, engagement_id), reps)
        digest = await timed(lambda: founder_digest(db, engagement_id), max(3, reps // 3))
        messages = await review_snapshot(db, engagement_id)
        # The same again with the start-up heap frozen (`gc.freeze()`), as a long-running process can do
        # once started: the collector's full passes then skip the ~150,000 objects the imports leave
        # behind, a pass that otherwise costs ~75 ms of CPU whenever one falls inside a snapshot.
        gc.collect()
        gc.freeze()
        try:
            snapshot_frozen = await timed(lambda: review_snapshot(db, engagement_id), reps)
            digest_frozen = await timed(lambda: founder_digest(db, engagement_id), max(3, reps // 3))
        finally:
            gc.unfreeze()
    return {
        "deals": size.deals,
        "history_rows": history,
        "load_s": round(load_s, 1),
        "floor": floor.as_json(),
        "week_of_history": history_floor.as_json(),
        "week_of_history_rows": moved_rows,
        "floor_and_history_over_floor": round((floor.median + history_floor.median) / floor.median, 2),
        "snapshot": snapshot.as_json(),
        "digest": digest.as_json(),
        "snapshot_gc_frozen": snapshot_frozen.as_json(),
        "digest_gc_frozen": digest_frozen.as_json(),
        "review_messages": messages,
        "snapshot_over_floor": round(snapshot.median / floor.median, 2),
        "snapshot_gc_frozen_over_floor": round(snapshot_frozen.median / floor.median, 2),
    }


async def many_small(backend: str, size: Size) -> dict[str, Any]:
    async with fresh_database(backend) as db:
        started = wall.perf_counter()
        template = await apply_yaml(db, engagement_yaml("small-0000", reps=8), NOW - timedelta(days=90))
        slugs = [f"small-{n:04d}" for n in range(1, size.engagements)]
        ids = [template, *await clone_engagement(db, template, slugs)]
        history = await populate(db, ids, size.batch_deals, size.batch_history_per_deal, seed=2)
        load_s = wall.perf_counter() - started
        await review_snapshot(db, ids[0])  # warm
        samples = []
        started = wall.perf_counter()
        for engagement_id in ids:
            t0 = wall.perf_counter()
            await review_snapshot(db, engagement_id)
            samples.append(wall.perf_counter() - t0)
        total_s = wall.perf_counter() - started
        sample_ids = ids[:: max(1, len(ids) // DIGEST_SAMPLE)]
        digests = []
        for engagement_id in sample_ids:
            t0 = wall.perf_counter()
            await founder_digest(db, engagement_id)
            digests.append(wall.perf_counter() - t0)
        floors = []
        for engagement_id in sample_ids:
            t0 = wall.perf_counter()
            await floor_query(db, engagement_id)
            floors.append(wall.perf_counter() - t0)
    return {
        "engagements": size.engagements,
        "deals_each": size.batch_deals,
        "history_rows": history,
        "load_s": round(load_s, 1),
        "snapshots_total_s": round(total_s, 2),
        "snapshot": Timing(tuple(samples)).as_json(),
        "digest_sampled": Timing(tuple(digests)).as_json(),
        "floor_sampled": Timing(tuple(floors)).as_json(),
    }


def _cell(result: dict[str, Any] | None, *path: str) -> Any:
    value: Any = result
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _ms(value: float | None) -> str:
    return "skipped" if value is None else f"{value:.1f} ms"


def report(results: dict[str, dict[str, Any] | None], size: Size) -> list[list[str]]:
    """The table rows: metric, SQLite, PostgreSQL, target, met?"""
    rows: list[list[str]] = []

    def add(metric: str, path: tuple[str, ...], target: str, limit: Callable[[dict[str, Any]], float] | None) -> None:
        values = [_cell(results.get(b), *path) for b in BACKENDS]
        met = []
        for backend, value in zip(BACKENDS, values, strict=True):
            res = results.get(backend)
            if limit is None or value is None or res is None:
                continue
            met.append(f"{backend}: {verdict(value, limit(res))}")
        rows.append([metric, *(_ms(v) if not isinstance(v, str) else v for v in values), target, ", ".join(met) or "—"])

    big = f"{size.deals:,} deals"
    add(f"floor query, {big} (median)", ("big", "floor", "median_ms"), "—", None)
    add(f"floor query, {big} (p95)", ("big", "floor", "p95_ms"), "—", None)
    add(
        f"review snapshot, {big} (median)",
        ("big", "snapshot", "median_ms"),
        f"≤ {SNAPSHOT_TARGET_S * 1000:.0f} ms and ≤ {FLOOR_FACTOR:.0f}× floor",
        lambda r: min(SNAPSHOT_TARGET_S * 1000, FLOOR_FACTOR * r["big"]["floor"]["median_ms"]),
    )
    add(
        f"review snapshot, {big} (p95)",
        ("big", "snapshot", "p95_ms"),
        f"≤ {SNAPSHOT_TARGET_S * 1000:.0f} ms",
        lambda r: SNAPSHOT_TARGET_S * 1000,
    )
    add(
        f"review snapshot, {big}: CPU time of this process (median)",
        ("big", "snapshot", "cpu_median_ms"),
        "—",
        None,
    )
    add(
        f"review snapshot, {big}, gc.freeze() at start-up (median)",
        ("big", "snapshot_gc_frozen", "median_ms"),
        f"≤ {SNAPSHOT_TARGET_S * 1000:.0f} ms",
        lambda r: SNAPSHOT_TARGET_S * 1000,
    )
    add(
        f"review snapshot, {big}, gc.freeze() at start-up (p95)",
        ("big", "snapshot_gc_frozen", "p95_ms"),
        f"≤ {SNAPSHOT_TARGET_S * 1000:.0f} ms",
        lambda r: SNAPSHOT_TARGET_S * 1000,
    )
    add(
        f"review snapshot, {big}, gc.freeze(): CPU time (median)",
        ("big", "snapshot_gc_frozen", "cpu_median_ms"),
        "—",
        None,
    )
    add(f"last week's history read, {big} (median)", ("big", "week_of_history", "median_ms"), "—", None)
    lower = [_cell(results.get(b), "big", "floor_and_history_over_floor") for b in BACKENDS]
    rows.append(
        [
            "(floor + history read) ÷ floor: the least a snapshot can be",
            *("skipped" if v is None else f"{v:.1f}×" for v in lower),
            "—",
            "—",
        ]
    )
    for label, key in (("", "snapshot_over_floor"), (", gc.freeze()", "snapshot_gc_frozen_over_floor")):
        ratios = [_cell(results.get(b), "big", key) for b in BACKENDS]
        rows.append(
            [
                f"snapshot ÷ floor (medians){label}",
                *("skipped" if v is None else f"{v:.1f}×" for v in ratios),
                f"≤ {FLOOR_FACTOR:.0f}×",
                ", ".join(
                    f"{b}: {verdict(v, FLOOR_FACTOR)}" for b, v in zip(BACKENDS, ratios, strict=True) if v is not None
                )
                or "—",
            ]
        )
    add(f"founder digest, {big} (median)", ("big", "digest", "median_ms"), "—", None)
    add(f"founder digest, {big} (p95)", ("big", "digest", "p95_ms"), "—", None)
    add(f"founder digest, {big}, gc.freeze() (median)", ("big", "digest_gc_frozen", "median_ms"), "—", None)
    many = f"{size.engagements:,} × {size.batch_deals} deals"
    totals = [_cell(results.get(b), "many", "snapshots_total_s") for b in BACKENDS]
    rows.append(
        [
            f"all Monday snapshots, {many} (total)",
            *("skipped" if v is None else f"{v:.1f} s" for v in totals),
            f"≤ {BATCH_TARGET_S:.0f} s" + ("" if size is FULL else " (full size)"),
            ", ".join(
                f"{b}: {verdict(v, BATCH_TARGET_S * size.engagements / FULL.engagements)}"
                for b, v in zip(BACKENDS, totals, strict=True)
                if v is not None
            )
            or "—",
        ]
    )
    add(f"one snapshot, {many} (median)", ("many", "snapshot", "median_ms"), "—", None)
    add(f"one snapshot, {many} (p95)", ("many", "snapshot", "p95_ms"), "—", None)
    add(f"founder digest, {many} (median of a sample)", ("many", "digest_sampled", "median_ms"), "—", None)
    add(f"floor query, {many} (median of a sample)", ("many", "floor_sampled", "median_ms"), "—", None)
    return rows


async def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description="The review at scale (benchmark 3).")
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute (what CI runs)")
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="only this database (repeatable)")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    facts = await machine()
    backends = args.backend or list(BACKENDS)
    results: dict[str, dict[str, Any] | None] = {}
    skipped: dict[str, str] = {}
    for backend in backends:
        if backend == "postgresql" and (reason := await postgres_unavailable()):
            skipped[backend] = reason
            print(f"skipping PostgreSQL: {reason}", file=sys.stderr)
            results[backend] = None
            continue
        print(f"{backend}: {size.deals:,} deals in one engagement …", file=sys.stderr, flush=True)
        big = await one_big(backend, size)
        print(f"{backend}: {size.engagements:,} engagements × {size.batch_deals} deals …", file=sys.stderr, flush=True)
        many = await many_small(backend, size)
        results[backend] = {"big": big, "many": many}
    rows = report(results, size)
    print_table(
        f"Review at scale ({'quick' if args.quick else 'full'}; warm, {size.repetitions} repetitions)",
        ["metric", "SQLite", "PostgreSQL", "target", "met?"],
        rows,
    )
    name = "review-quick" if args.quick else "review"
    path = write_result(
        name,
        {
            "mode": "quick" if args.quick else "full",
            "size": size.__dict__,
            "results": results,
            "skipped": skipped,
            "table": rows,
        },
        facts,
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
