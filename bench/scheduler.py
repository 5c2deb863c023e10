"""Benchmark 4, scheduler load: 2,000 engagements with every ritual, on SQLite and PostgreSQL.

What a bot process serving that many engagements pays: start-up (building the Engine, the first
`next_wakeup`, starting APScheduler through `CadenceScheduler`), resident memory, the first heartbeat
(an idle tick: nothing due), and the lateness of a batch due in the same minute — every engagement's
review (and its 09:00 action-item reminder) at Monday 09:00 in Los Angeles. The clock is virtual (a
ManualClock set to that minute), so lateness is measured on the wall clock from the start of the tick
to the moment each occurrence row is committed.

Each database is measured in a fresh child process, so its memory is a bot's, not the data generator's:
the parent creates the engagements (one engagement file applied through the real `apply_engagement`,
then copied row for row), starts the child, and prints the table.

    python bench/scheduler.py            # full: 2,000 engagements
    python bench/scheduler.py --quick    # 100 engagements, under a minute (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time as wall
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    BACKENDS,
    apply_yaml,
    clone_engagement,
    engagement_yaml,
    fresh_database,
    machine,
    percentile,
    postgres_unavailable,
    print_table,
    verdict,
    write_result,
)
from sqlalchemy import func, select

from cadences.clock import ManualClock
from cadences.engine import Engine, TickReport
from cadences.messages import Message
from cadences.ports import SentRef, Target
from cadences.ritual_catalog import all_rituals
from cadences.scheduler import Beat, CadenceScheduler
from storage.db import Database
from storage.models import Engagement

START = datetime(2026, 11, 30, 16, 58, tzinfo=UTC)
"""Monday 30 November 2026, 08:58 in Los Angeles: the bot starts two minutes before the batch."""
BATCH = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
"""09:00 in Los Angeles: every engagement's review and action-item reminder are due."""
STARTUP_TARGET_S = 5.0
RSS_TARGET_MB = 300.0
LATENESS_TARGET_S = 2.0
FULL_ENGAGEMENTS = 2_000
QUICK_ENGAGEMENTS = 100


class NullPort:
    """A chat platform that accepts everything at once: the benchmark measures the scheduler, not Slack."""

    platform = "bench"

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, target: Target, message: Message, *, delivery_key: str) -> SentRef:
        self.sent += 1
        return SentRef(platform=self.platform, conversation=f"{target.kind}", message_id=str(self.sent))

    async def find_sent(self, target: Target, delivery_key: str) -> SentRef | None:
        return None

    async def update(self, ref: SentRef, message: Message) -> None:
        return None


class TimedEngine(Engine):
    """The real engine, noting the wall-clock moment each occurrence row its tick creates is committed
    (the tick inserts them in batches, each committed on its own)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.committed: list[float] = []

    async def _insert_batch(self, rows: Sequence[dict[str, Any]]) -> list[tuple[int, int, str, str]]:
        created = await super()._insert_batch(rows)
        self.committed += [wall.perf_counter()] * len(created)
        return created


def rss_mb() -> tuple[float, float]:
    """(resident now, peak resident) of this process in MB, from /proc/self/status (VmRSS, VmHWM)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return round(fields["VmRSS"], 1), round(fields["VmHWM"], 1)


# --- the child: one bot process ---------------------------------------------------------------------------


class FirstHeartbeat:
    """Times the heartbeat APScheduler runs the moment the scheduler starts: at 08:58 nothing is due, so
    it is an idle tick — what every heartbeat of a quiet minute costs."""

    def __init__(self, scheduler: CadenceScheduler) -> None:
        self.finished: asyncio.Future[tuple[float, Beat]] = asyncio.get_running_loop().create_future()
        original = scheduler.beat

        async def timed() -> Beat:
            t0 = wall.perf_counter()
            beat = await original()
            if not self.finished.done():
                self.finished.set_result((wall.perf_counter() - t0, beat))
            return beat

        scheduler.beat = timed  # type: ignore[method-assign]


async def child(url: str) -> dict[str, Any]:
    clock = ManualClock(START)
    port = NullPort()
    load = os.getloadavg()
    started, cpu = wall.perf_counter(), wall.process_time()
    db = Database(url)
    engine = TimedEngine(db, clock, all_rituals(), lambda _engagement: port, worker="bench")
    first = await engine.next_wakeup(clock.now())
    scheduler = CadenceScheduler(engine)
    heartbeat = FirstHeartbeat(scheduler)
    scheduler.start()
    startup_s, startup_cpu_s = wall.perf_counter() - started, wall.process_time() - cpu
    rss_started, _ = rss_mb()
    idle_s, idle = await heartbeat.finished
    # From here time is virtual (as in `cadence simulate` and the tests): the engine is ticked by hand.
    await scheduler.stop()

    t0 = wall.perf_counter()
    again = await engine.next_wakeup(clock.now())
    wakeup_s = wall.perf_counter() - t0

    clock.set(BATCH)
    engine.committed.clear()
    t0 = wall.perf_counter()
    report: TickReport = await engine.tick()
    tick_s = wall.perf_counter() - t0
    lateness = [mark - t0 for mark in engine.committed]
    rss_after, peak = rss_mb()
    async with db.session() as session:
        engagements = (await session.execute(select(func.count()).select_from(Engagement))).scalar_one()
    await db.dispose()
    return {
        "engagements": engagements,
        "load_average_at_start": load,
        "startup_s": round(startup_s, 3),
        "startup_cpu_s": round(startup_cpu_s, 3),
        "first_wakeup": first.isoformat() if first else None,
        "rss_after_startup_mb": rss_started,
        "idle_heartbeat_s": round(idle_s, 3),
        "idle_heartbeat_created": idle.report.created if idle.report else None,
        "next_wakeup_warm_s": round(wakeup_s, 3),
        "next_wakeup_after_idle": again.isoformat() if again else None,
        "batch": {
            "created": report.created,
            "planned": report.planned,
            "sent": report.sent,
            "failed": report.failed,
            "tick_s": round(tick_s, 2),
            "lateness_p50_s": round(percentile(lateness, 50), 3) if lateness else None,
            "lateness_p99_s": round(percentile(lateness, 99), 3) if lateness else None,
            "lateness_max_s": round(max(lateness), 3) if lateness else None,
        },
        "rss_after_batch_mb": rss_after,
        "rss_peak_mb": peak,
    }


# --- the parent: data, child processes, the table -----------------------------------------------------------


async def populate(db: Database, count: int) -> float:
    """`count` engagements with every ritual at its default, the review at Monday 09:00 Los Angeles:
    one engagement file applied for real, then copied. Returns the seconds it took."""
    started = wall.perf_counter()
    template = await apply_yaml(db, engagement_yaml("sched-0000", reps=2), START)
    await clone_engagement(db, template, [f"sched-{n:04d}" for n in range(1, count)])
    return wall.perf_counter() - started


def run_child(url: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", url], capture_output=True, text=True, check=False, timeout=3600
    )
    if out.returncode != 0:
        raise RuntimeError(f"the measuring process failed:\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def measure(backend: str, count: int) -> dict[str, Any]:
    async with fresh_database(backend) as db:
        load_s = await populate(db, count)
        result = await asyncio.to_thread(run_child, db.url)
    result["load_s"] = round(load_s, 1)
    return result


def report(results: dict[str, dict[str, Any] | None], count: int) -> list[list[str]]:
    rows: list[list[str]] = []

    def cell(result: dict[str, Any] | None, *path: str) -> Any:
        value: Any = result
        for key in path:
            value = None if not isinstance(value, dict) else value.get(key)
        return value

    def add(metric: str, path: tuple[str, ...], unit: str, target: float | None) -> None:
        values = [cell(results.get(b), *path) for b in BACKENDS]
        shown = ["skipped" if v is None else f"{v}{unit}" for v in values]
        met = (
            ", ".join(f"{b}: {verdict(v, target)}" for b, v in zip(BACKENDS, values, strict=True) if v is not None)
            if target is not None
            else "—"
        )
        rows.append([metric, *shown, "—" if target is None else f"≤ {target:g}{unit}", met or "—"])

    add("start-up: Engine + first next_wakeup + scheduler start", ("startup_s",), " s", STARTUP_TARGET_S)
    add("start-up, CPU time of the process", ("startup_cpu_s",), " s", None)
    add("resident memory after start-up", ("rss_after_startup_mb",), " MB", RSS_TARGET_MB)
    add("resident memory after the batch (peak)", ("rss_peak_mb",), " MB", RSS_TARGET_MB)
    add("first heartbeat: idle tick + arming the next wake-up", ("idle_heartbeat_s",), " s", None)
    add("next_wakeup, warm", ("next_wakeup_warm_s",), " s", None)
    add("batch: occurrences created", ("batch", "created"), "", None)
    add("batch lateness p50 (tick start → row)", ("batch", "lateness_p50_s"), " s", None)
    add("batch lateness p99", ("batch", "lateness_p99_s"), " s", LATENESS_TARGET_S)
    add("batch lateness max", ("batch", "lateness_max_s"), " s", None)
    add("batch tick: create + plan + deliver all", ("batch", "tick_s"), " s", None)
    add("batch messages sent", ("batch", "sent"), "", None)
    return rows


async def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description="Scheduler load (benchmark 4).")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ENGAGEMENTS} engagements (what CI runs)")
    parser.add_argument("--engagements", type=int, help="override the number of engagements")
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="only this database (repeatable)")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(await child(args.child)))
        return 0
    count = args.engagements or (QUICK_ENGAGEMENTS if args.quick else FULL_ENGAGEMENTS)
    facts = await machine()
    results: dict[str, dict[str, Any] | None] = {}
    skipped: dict[str, str] = {}
    for backend in args.backend or list(BACKENDS):
        if backend == "postgresql" and (reason := await postgres_unavailable()):
            skipped[backend] = reason
            results[backend] = None
            print(f"skipping PostgreSQL: {reason}", file=sys.stderr)
            continue
        print(f"{backend}: {count:,} engagements …", file=sys.stderr, flush=True)
        results[backend] = await measure(backend, count)
    rows = report(results, count)
    print_table(
        f"Scheduler load: {count:,} engagements, every ritual ({'quick' if args.quick else 'full'})",
        ["metric", "SQLite", "PostgreSQL", "target", "met?"],
        rows,
    )
    name = "scheduler-quick" if args.quick else "scheduler"
    path = write_result(
        name,
        {
            "mode": "quick" if args.quick else "full",
            "engagements": count,
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
