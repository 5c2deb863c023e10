"""Benchmark 2, fan-out at Slack's rate limits: a Monday for 20 workspaces with 50 reps each — 1,000 nudge
DMs and 20 pipeline reviews with a thread reply per flagged deal — delivered by the real engine against
fake Slack workspaces that enforce Slack's limits and answer 429 with `Retry-After` beyond them.

Each workspace is its own fake Slack (tests/support/fake_slack.py with `limits`): chat.postMessage 1 a
second per channel with bursts of 3, 10 a second per workspace (bursts of 10), conversations.open 50 a
minute. The engagements (applied from a real engagement file, then copied in bulk), their people with
Slack ids and their deals (every deal stale and stalled, so each rep is nudged and each review flags
its maximum) are written in bulk; the nudges and the reviews are planned by the real rituals
(`Engine.trigger` on the Monday, deliveries left pending). Then bot processes (bench/_fanout_worker.py:
the real Engine sending concurrently, the real SlackPort, the pacer `pacer_for` picks) are told to go,
and the fakes record every call with its arrival time.

Reported per run: wall time from "go" to the last post Slack accepted, against the theoretical minimum
the limits allow (computed from what was planned; see `minimum`), messages lost and duplicated (by the
delivery key each post carries), and the 429s received. Runs: SQLite with one process (the in-memory
pacer), PostgreSQL with one process and with two processes sharing the limiter.

    python bench/fanout.py            # full: 20 workspaces x 50 reps
    python bench/fanout.py --quick    # 3 workspaces x 6 reps, under a minute (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the fake Slack lives with the test support code

from common import (  # noqa: E402
    BACKENDS,
    analyze,
    apply_yaml,
    clone_engagement,
    engagement_yaml,
    fast_insert,
    fresh_database,
    machine,
    postgres_unavailable,
    print_table,
    table_of,
    verdict,
    write_result,
)
from sqlalchemy import func, select  # noqa: E402

from cadences.clock import ManualClock  # noqa: E402
from cadences.engine import Engine  # noqa: E402
from cadences.pipeline_review import NUDGE, REVIEW  # noqa: E402
from cadences.ports import ChatPort  # noqa: E402
from cadences.ritual_catalog import all_rituals  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import Deal, Delivery, Engagement, Person, Stage  # noqa: E402
from support.fake_slack import FakeChannel, FakeSlack, FakeUser, SlackRateLimits  # noqa: E402

LIMITS = SlackRateLimits()
"""What every fake workspace enforces: posts 1/s per channel (burst 3), 10/s per workspace (burst 10),
DM opens 50/min (burst 3)."""
MARGIN = 0.02
"""How much slower than the limits the pacer aims (SlackLimits.margin)."""
HEADROOM = 1
"""How many calls of each burst the pacer leaves unused. A slot is reserved in the bot, but the call
reaches Slack some milliseconds later, and on a busy two-core machine now and then a few hundred: a
call late by more than the margin would make the next, punctual one look early. One spare call per
bucket absorbs that (it costs one interval on the busiest bucket: 1.2 s of the DM opens)."""
MONDAY = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # 09:00 in Los Angeles, the engagements' zone
WEEK = "2026-W49"
REVIEW_CHANNEL = "C0REVIEW"
WORKER = ROOT / "bench" / "_fanout_worker.py"


@dataclass(frozen=True)
class Size:
    workspaces: int
    reps: int
    deals_per_rep: int


FULL = Size(workspaces=20, reps=50, deals_per_rep=2)
QUICK = Size(workspaces=3, reps=6, deals_per_rep=1)
RUNS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2))


# --- the workspaces ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    engagement_id: int
    slug: str
    team_id: str
    token: str


def fake_workspace(n: int, reps: int) -> FakeSlack:
    """The fake Slack of workspace n: the people engagement_yaml gives Slack ids to, and the review channel."""
    users = [FakeUser("U0DANA", "Dana Whitfield"), FakeUser("U0SAM", "Sam Okafor"), FakeUser("U0MGR0", "Manager 0")]
    users += [FakeUser(f"U0REP{r}", f"Rep {r:03d}") for r in range(reps)]
    return FakeSlack(
        token=f"xoxb-bench-{n}",
        team_id=f"T0WS{n:03d}",
        users=users,
        channels=[FakeChannel(REVIEW_CHANNEL, "pipeline-review")],
        limits=LIMITS,
    )


async def build(db: Database, size: Size) -> list[Workspace]:
    """The engagements (one applied through the real engagement file, the rest bulk copies of it) and
    their deals: every deal stale (no update for 10 days: its rep is nudged) and stalled (no stage change
    for 30: the review flags it)."""
    slugs = [f"fan-{n:03d}" for n in range(size.workspaces)]
    template = await apply_yaml(db, engagement_yaml(slugs[0], reps=size.reps), MONDAY - timedelta(days=60))
    ids = [template, *await clone_engagement(db, template, slugs[1:])]
    async with db.engine.begin() as conn:
        stages = {(e, k): s for e, k, s in (await conn.execute(select(Stage.engagement_id, Stage.key, Stage.id))).all()}
        reps = (
            await conn.execute(select(Person.engagement_id, Person.id).where(Person.role == "rep").order_by(Person.id))
        ).all()
        rows = []
        for n, (engagement_id, owner_id) in enumerate(reps):
            for d in range(size.deals_per_rep):
                stage = ("solution", "proposal", "negotiation")[(n + d) % 3]
                rows.append(deal_row(engagement_id, owner_id, stages[(engagement_id, stage)], n * 10 + d))
        await fast_insert(conn, table_of(Deal), rows)
    await analyze(db)
    return [Workspace(e, s, f"T0WS{n:03d}", f"xoxb-bench-{n}") for n, (e, s) in enumerate(zip(ids, slugs, strict=True))]


def deal_row(engagement_id: int, owner_id: int, stage_id: int, n: int) -> dict[str, Any]:
    touched, stage_changed = MONDAY - timedelta(days=10), MONDAY - timedelta(days=30)
    created = MONDAY - timedelta(days=50)
    return {
        "engagement_id": engagement_id,
        "crm_id": None,
        "name": f"Deal {n:05d}",
        "account": f"Account {n}",
        "owner_id": owner_id,
        "stage_id": stage_id,
        "is_open": True,
        "amount": Decimal(20_000 + (n * 7_919) % 180_000),
        "currency": "USD",
        "close_date": date(2027, 1, 15) + timedelta(days=n % 20),
        "forecast_category": "best_case",
        "next_step": "Follow-up call",
        "next_step_date": date(2026, 12, 10),
        "risk": None,
        "source": "outbound",
        "segment": "mid-market",
        "loss_reason": None,
        "competitor": None,
        "created_on": created.date(),
        "closed_on": None,
        "slip_count": 0,
        "stage_changed_at": stage_changed,
        "touched_at": touched,
        "created_at": created,
        "updated_at": touched,
        "version": 1,
    }


def _no_sending(engagement: Engagement) -> ChatPort:
    raise AssertionError("the benchmark plans here; its workers send")


async def plan_monday(db: Database, parallel: int) -> int:
    """Plan every rep's nudge, then each review, with the real rituals: `Engine.trigger` on the Monday
    morning, deliveries left pending for the workers; `parallel` occurrences at a time (an engagement's
    review after its nudges, which a planned review would silence). Returns how many were planned."""
    engine = Engine(db, ManualClock(MONDAY), all_rituals(), _no_sending, worker="planner")
    at, day = MONDAY.isoformat(), MONDAY.date().isoformat()
    async with db.session() as session:
        engagements = list((await session.execute(select(Engagement).order_by(Engagement.id))).scalars())
        reps = (
            await session.execute(select(Person.engagement_id, Person.id, Person.key).where(Person.role == "rep"))
        ).all()
    slots = asyncio.Semaphore(parallel)

    async def trigger(engagement: Engagement, ritual: str, period: str, detail: dict[str, Any]) -> bool:
        async with slots:
            return await engine.trigger(engagement, ritual, period, detail=detail, deliver=False) is not None

    async def one(engagement: Engagement) -> int:
        nudged = await asyncio.gather(
            *(
                trigger(
                    engagement,
                    NUDGE,
                    f"{WEEK}/{key}",
                    {"rep_id": rep, "review_day": day, "review_at": at, "nudge_at": at},
                )
                for engagement_id, rep, key in reps
                if engagement_id == engagement.id
            )
        )
        return sum(nudged) + await trigger(engagement, REVIEW, WEEK, {"review_day": day, "scheduled_day": day})

    return sum(await asyncio.gather(*(one(e) for e in engagements)))


# --- the minimum the limits allow ----------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One workspace's planned deliveries: DM recipients (each needs a conversations.open) and posts per
    conversation (one post per delivery)."""

    dm_recipients: int
    posts_per_conversation: dict[str, int]

    @property
    def posts(self) -> int:
        return sum(self.posts_per_conversation.values())


def minimum_seconds(plan: Planned, limits: SlackRateLimits = LIMITS) -> dict[str, float]:
    """The shortest time, from a workspace's first call to its last post, its limits allow. A bucket
    with burst b and rate r lets n calls through no sooner than (n - b) / r after the first; every bucket
    binds at once, so the minimum is the largest of: the DM opens, the busiest conversation (the review
    channel: the review and its thread replies, which cannot start before it) and the workspace's posts.
    The last DM's post may follow its open at once (its channel and the workspace have room), so it adds
    nothing."""

    def span(calls: int, limit: tuple[float, int]) -> float:
        rate, burst = limit
        return max(0, calls - burst) / rate

    busiest = max(plan.posts_per_conversation.values(), default=0)
    return {
        "opens": span(plan.dm_recipients, limits.opens),
        "channel": span(busiest, limits.post_per_channel),
        "workspace": span(plan.posts, limits.post_per_workspace),
    }


async def planned(db: Database) -> tuple[dict[int, Planned], dict[str, int]]:
    """What was planned, per engagement; and every delivery key with its engagement."""
    async with db.session() as session:
        grouped = (
            await session.execute(
                select(Delivery.engagement_id, Delivery.recipient, func.count()).group_by(
                    Delivery.engagement_id, Delivery.recipient
                )
            )
        ).all()
        keys = {key: e for key, e in (await session.execute(select(Delivery.key, Delivery.engagement_id))).all()}
    plans: dict[int, Planned] = {}
    for engagement_id, recipient, count in grouped:
        plan = plans.setdefault(engagement_id, Planned(0, {}))
        plan.posts_per_conversation[recipient] = count
        if recipient.startswith("person:"):
            plans[engagement_id] = Planned(plan.dm_recipients + 1, plan.posts_per_conversation)
    return plans, keys


# --- a run ---------------------------------------------------------------------------------------------


def pacer_limits() -> dict[str, Any]:
    """The bots' pacer settings (bench/_fanout_worker.py reads them): Slack's limits as the fakes enforce
    them, less `HEADROOM` of each burst, `MARGIN` slower."""

    def paced(limit: tuple[float, int]) -> list[float]:
        rate, burst = limit
        return [1 / rate, max(1, burst - HEADROOM)]

    return {
        "channel": paced(LIMITS.post_per_channel),
        "workspace": paced(LIMITS.post_per_workspace),
        "opens": paced(LIMITS.opens),
        "margin": MARGIN,
    }


async def spawn_worker(url: str, config: Path, name: str, size: Size) -> asyncio.subprocess.Process:
    per_engagement = 10
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        "--database-url",
        url,
        "--config",
        str(config),
        "--name",
        name,
        "--concurrency",
        str(2 * per_engagement * size.workspaces),  # 10 DMs and 10 channel posts of every workspace at once
        "--per-engagement",
        str(per_engagement),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def run(backend: str, processes: int, size: Size) -> dict[str, Any]:
    label = f"{backend}, {processes} process{'es' if processes > 1 else ''}"
    async with fresh_database(backend) as db:
        began = time.perf_counter()
        workspaces = await build(db, size)
        built = time.perf_counter()
        occurrences = await plan_monday(db, parallel=8 if backend == "postgresql" else 1)
        plans, keys = await planned(db)
        planned_at = time.perf_counter()
        print(
            f"{label}: built {size.workspaces} workspaces in {built - began:.1f} s, planned {occurrences} "
            f"occurrences ({len(keys)} deliveries) in {planned_at - built:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        fakes = {w.engagement_id: fake_workspace(n, size.reps) for n, w in enumerate(workspaces)}
        async with AsyncExitStack() as stack:
            for fake in fakes.values():
                await stack.enter_async_context(fake)
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cadence-fanout-")))
            config = tmp / "workspaces.json"
            config.write_text(
                json.dumps(
                    {
                        "start": MONDAY.isoformat(),
                        "limits": pacer_limits(),
                        "workspaces": [asdict(w) | {"api_url": fakes[w.engagement_id].api_url} for w in workspaces],
                    }
                )
            )
            workers = [await spawn_worker(db.url, config, f"w{i + 1}", size) for i in range(processes)]
            try:
                for worker in workers:
                    assert worker.stdout is not None
                    line = await asyncio.wait_for(worker.stdout.readline(), 120)
                    if line.decode().strip() != "ready":
                        raise RuntimeError(f"a worker did not start: {line!r}")
                go = time.monotonic()
                for worker in workers:
                    assert worker.stdin is not None
                    worker.stdin.write(b"go\n")
                    await worker.stdin.drain()
                reports = []
                for worker in workers:
                    assert worker.stdout is not None
                    reports.append(json.loads(await asyncio.wait_for(worker.stdout.readline(), 1800)))
                    await worker.wait()
            finally:
                for worker in workers:
                    if worker.returncode is None:
                        worker.kill()
                        await worker.wait()
            return tally(label, backend, processes, fakes, plans, keys, go, reports, await statuses(db))


async def statuses(db: Database) -> dict[str, int]:
    async with db.session() as session:
        rows = (await session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))).all()
    return {status: count for status, count in rows}


def tally(
    label: str,
    backend: str,
    processes: int,
    fakes: dict[int, FakeSlack],
    plans: dict[int, Planned],
    keys: dict[str, int],
    go: float,
    reports: list[dict[str, Any]],
    db_statuses: dict[str, int],
) -> dict[str, Any]:
    """Compare what Slack saw with what was planned."""
    posted: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    throttled: Counter[str] = Counter()
    first = last = go
    for fake in fakes.values():
        for message in fake.posts():
            key = ((message.metadata or {}).get("event_payload") or {}).get("delivery_key")
            if key:
                posted[key] += 1
        calls.update(c.method for c in fake.calls)
        throttled.update(c.method for c in fake.throttled)
        refused = {id(c) for c in fake.throttled}
        accepted = [c.at for c in fake.calls_to("chat.postMessage") if id(c) not in refused]
        first = min([first, *(c.at for c in fake.calls)]) if fake.calls else first
        last = max([last, *accepted])
    per_workspace = {e: minimum_seconds(plans[e]) for e in plans}
    minimum = max(max(parts.values()) for parts in per_workspace.values())
    binding = max(per_workspace.values(), key=lambda parts: max(parts.values()))
    wall = last - go
    lost = sorted(k for k in keys if posted[k] == 0)
    duplicated = sum(n - 1 for n in posted.values() if n > 1)
    unexpected = sorted(k for k in posted if k not in keys)
    total_calls = sum(calls.values())
    dm_posts = sum(p.dm_recipients for p in plans.values())
    return {
        "run": label,
        "backend": backend,
        "processes": processes,
        "deliveries": len(keys),
        "dm_deliveries": dm_posts,
        "channel_deliveries": len(keys) - dm_posts,
        "minimum_s": round(minimum, 2),
        "minimum_parts_s": {k: round(v, 2) for k, v in binding.items()},
        "wall_s": round(wall, 2),
        "first_call_after_go_s": round(first - go, 3),
        "ratio": round(wall / minimum, 3) if minimum else None,
        "lost": len(lost),
        "lost_keys": lost[:20],
        "duplicated": duplicated,
        "unexpected": len(unexpected),
        "calls": dict(calls),
        "calls_total": total_calls,
        "throttled": dict(throttled),
        "throttled_total": sum(throttled.values()),
        "throttled_share": round(sum(throttled.values()) / total_calls, 4) if total_calls else 0.0,
        "db_statuses": db_statuses,
        "workers": reports,
    }


# --- the report ----------------------------------------------------------------------------------------


def explain(size: Size) -> str:
    return (
        "minimum = max over workspaces (each is limited on its own, all run in parallel) of the largest of\n"
        f"  DM opens:          (DM recipients - {LIMITS.opens[1]}) / ({LIMITS.opens[0] * 60:g}/min)"
        f"   e.g. ({size.reps} - {LIMITS.opens[1]}) x 1.2 s\n"
        f"  busiest channel:   (posts - {LIMITS.post_per_channel[1]}) / ({LIMITS.post_per_channel[0]:g}/s)"
        "      the review and its thread replies\n"
        f"  workspace posts:   (posts - {LIMITS.post_per_workspace[1]}) / ({LIMITS.post_per_workspace[0]:g}/s)\n"
        "(DM channel ids are not known before the first Monday, so every DM needs a conversations.open;\n"
        " the last DM's post can follow its open at once.) Wall time runs from 'go' to the last post Slack\n"
        " accepted."
    )


def table_rows(results: Sequence[dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for r in results:
        met = (
            r["ratio"] is not None
            and r["ratio"] <= 1.15
            and r["lost"] == 0
            and r["duplicated"] == 0
            and r["throttled_share"] <= 0.02
        )
        rows.append(
            [
                r["run"],
                f"{r['dm_deliveries']} DMs + {r['channel_deliveries']} posts",
                f"{r['minimum_s']:.1f}",
                f"{r['wall_s']:.1f}",
                f"{r['ratio']:.3f}" if r["ratio"] is not None else "n/a",
                r["lost"],
                r["duplicated"],
                f"{r['throttled_total']} / {r['calls_total']} ({r['throttled_share']:.1%})",
                "yes" if met else "NO",
            ]
        )
    return rows


async def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description="Fan-out at Slack's rate limits (benchmark 2).")
    parser.add_argument("--quick", action="store_true", help="3 workspaces x 6 reps, under a minute (what CI runs)")
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="only this database's runs (repeatable)")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    facts = await machine()
    wanted = [(b, p) for b, p in RUNS if b in (args.backend or BACKENDS)]
    results: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for backend, processes in wanted:
        if backend == "postgresql" and (reason := await postgres_unavailable()):
            skipped[f"{backend}:{processes}"] = reason
            print(f"skipping PostgreSQL: {reason}", file=sys.stderr)
            continue
        results.append(await run(backend, processes, size))
    rows = table_rows(results)
    print_table(
        f"Fan-out at Slack's rate limits ({'quick' if args.quick else 'full'}: {size.workspaces} workspaces x "
        f"{size.reps} reps; target <= 1.15 x minimum, 0 lost, 0 duplicated, 429s <= 2% of calls)",
        ["run", "deliveries", "minimum s", "wall s", "x minimum", "lost", "dup", "429s / calls", "met?"],
        rows,
    )
    print("\n" + explain(size))
    for r in results:
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in r["minimum_parts_s"].items())
        print(f"{r['run']}: binding workspace {parts}; calls {r['calls']}; 429s {r['throttled'] or 'none'}")
    path = write_result(
        "fanout-quick" if args.quick else "fanout",
        {
            "mode": "quick" if args.quick else "full",
            "size": asdict(size),
            "limits": asdict(LIMITS),
            "pacer": pacer_limits(),
            "minimum_formula": explain(size),
            "results": results,
            "skipped": skipped,
            "table": rows,
            "verdicts": {r["run"]: verdict(r["ratio"], 1.15) for r in results},
        },
        facts,
    )
    print(f"\nwrote {path}")
    return 1 if any(r["lost"] or r["duplicated"] or r["unexpected"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
