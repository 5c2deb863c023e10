"""Benchmark 1, ack latency: how long Slack waits for `cadence run` to answer a slash command.

A real `cadence run` process (`python -m bot.cli run`, on a SQLite file or PostgreSQL) serves two
workspaces of a fake Slack hosted in this process, each linked by a signed `/cadence setup`:
- the commands' workspace: an engagement of 50 reps with a pipeline of 1,000 deals (applied from a real
  engagement file; deals written in bulk);
- the fan-out's workspace: another client's engagement with 1,000 reps, one deal each — a hosted
  Cadence serves many workspaces, and one of them having its Monday must not slow the others' commands.

2,000 signed `/deal <name> amount=…` slash commands, spread over the 1,000 deals, each from the deal's
owner, go to `POST /slack/events` over 50 concurrent connections (aiohttp; each connection sends its next
command when the last is answered). A latency runs from just before a request is sent to its HTTP
response — the ack; the update itself runs after it and answers through the command's response_url,
which a local sink counts to prove that every command did its work.

Twice per database, each on a freshly started `cadence run` (a few warm-up commands are not measured):
- alone;
- while a 1,000-recipient nudge fan-out runs: every rep of the second engagement has a pre-review nudge
  planned by the real ritual (`Engine.trigger`, left pending) before the start, so the scheduler's first
  heartbeat delivers the 1,000 DMs (conversations.open + chat.postMessage against the fake) while the
  commands arrive. The share of commands sent while DMs were being posted is reported.

The per-user command limit (CADENCE_COMMANDS_PER_MINUTE, 20 by default) is raised to 1,000 for the run:
here 50 people send 40 commands each within seconds, which the limit exists to refuse.

Targets: p99 <= 100 ms, 0 errors, and p99 during the fan-out <= 1.5 x p99 alone.

    python bench/ack.py            # full: 1,000 deals, 2,000 commands, 50 connections, 1,000 DMs
    python bench/ack.py --quick    # small sizes, under a minute (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the fake Slack and the signing helpers live with the tests

from common import (  # noqa: E402
    RESULTS,
    apply_yaml,
    engagement_yaml,
    fast_insert,
    fresh_database,
    machine,
    ms,
    percentile,
    postgres_unavailable,
    print_table,
    table_of,
    verdict,
    write_result,
)
from sqlalchemy import func, select  # noqa: E402

from cadences.clock import SystemClock  # noqa: E402
from cadences.engine import Engine  # noqa: E402
from cadences.pipeline_review import NUDGE  # noqa: E402
from cadences.ports import ChatPort  # noqa: E402
from cadences.ritual_catalog import all_rituals  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import Deal, DealHistory, Delivery, Engagement, Person, Stage  # noqa: E402
from storage.secrets import SECRET_KEY_ENV, new_key  # noqa: E402
from support.fake_slack import FakeChannel, FakeSlack, FakeUser  # noqa: E402
from support.slack_app import SIGNING_SECRET, ResponseSink, payload, sign  # noqa: E402

SLUG = "ack-bench"
FAN_SLUG = "fan-bench"
TEAM, FAN_TEAM = "T0TEST", "T1FAN"
TARGET_P99_MS = 100.0
TARGET_RATIO = 1.5


@dataclass(frozen=True)
class Size:
    deals: int
    reps: int
    """Reps of the commands' engagement; deal n is owned by rep n mod reps."""
    recipients: int
    """Reps of the fan-out's engagement: one nudge each."""
    commands: int
    connections: int
    warmup: int


FULL = Size(deals=1000, reps=50, recipients=1000, commands=2000, connections=50, warmup=100)
QUICK = Size(deals=100, reps=10, recipients=60, commands=300, connections=50, warmup=20)


# --- the workspaces and their pipelines ------------------------------------------------------------


def managers(reps: int) -> int:
    return max(1, reps // 50)


def fan_yaml(size: Size) -> str:
    """The fan-out's engagement: engagement_yaml with Slack ids of its own (U1…) and emails of its own."""
    source = engagement_yaml(FAN_SLUG, reps=size.recipients, managers=managers(size.recipients))
    return source.replace("slack: U0", "slack: U1").replace("@bench.example", "@fan.example")


def fake_slack(size: Size) -> FakeSlack:
    """Both workspaces' people (the fake answers for both teams): everyone engagement_yaml gives a Slack id."""
    users = []
    for prefix, domain, reps in (("U0", "bench", size.reps), ("U1", "fan", size.recipients)):
        users += [
            FakeUser(f"{prefix}DANA", "Dana Whitfield", f"dana@{domain}.example", "America/New_York"),
            FakeUser(f"{prefix}SAM", "Sam Okafor", f"sam@{domain}.example"),
        ]
        users += [
            FakeUser(f"{prefix}MGR{m}", f"Manager {m}", f"mgr{m}@{domain}.example") for m in range(managers(reps))
        ]
        users += [FakeUser(f"{prefix}REP{r}", f"Rep {r:03d}", f"rep{r}@{domain}.example") for r in range(reps)]
    return FakeSlack(users=users, channels=[FakeChannel("C0REVIEW", "pipeline-review")])


def deal_name(n: int) -> str:
    return f"Acct{n:04d}"


async def seed(db: Database, source: str, deals: int, now: datetime) -> int:
    """Apply an engagement file and give its reps `deals` deals, round robin: open, with their creation in
    the history, and a next step three days overdue — which the amount updates leave as it is, so every
    owner still has something to be nudged about."""
    engagement_id = await apply_yaml(db, source, now)
    async with db.engine.begin() as conn:
        stage = (
            await conn.execute(
                select(Stage.id).where(Stage.engagement_id == engagement_id, Stage.key == "qualification")
            )
        ).scalar_one()
        reps = (
            (
                await conn.execute(
                    select(Person.id)
                    .where(Person.engagement_id == engagement_id, Person.role == "rep")
                    .order_by(Person.id)
                )
            )
            .scalars()
            .all()
        )
        first = int((await conn.execute(select(func.coalesce(func.max(Deal.id), 0)))).scalar_one()) + 1
        touched = now - timedelta(days=10)
        rows = [
            {
                "id": first + n,
                "engagement_id": engagement_id,
                "crm_id": None,
                "name": deal_name(n),
                "account": f"Account {n}",
                "owner_id": reps[n % len(reps)],
                "stage_id": stage,
                "is_open": True,
                "amount": Decimal(10_000 + 100 * n),
                "currency": "USD",
                "close_date": date(2027, 1, 29),
                "forecast_category": "pipeline",
                "next_step": "Discovery call",
                "next_step_date": now.date() - timedelta(days=3),
                "risk": None,
                "source": "inbound",
                "segment": "smb",
                "loss_reason": None,
                "competitor": None,
                "created_on": (now - timedelta(days=40)).date(),
                "closed_on": None,
                "slip_count": 0,
                "stage_changed_at": touched,
                "touched_at": touched,
                "created_at": now - timedelta(days=40),
                "updated_at": touched,
                "version": 1,
            }
            for n in range(deals)
        ]
        await fast_insert(conn, table_of(Deal), rows)
        history = [
            {
                "engagement_id": engagement_id,
                "deal_id": d["id"],
                "actor_id": d["owner_id"],
                "at": d["created_at"],
                "channel": "import",
                "kind": "create",
                "changes": {"name": [None, d["name"]], "amount": [None, str(d["amount"])]},
                "note": None,
            }
            for d in rows
        ]
        await fast_insert(conn, table_of(DealHistory), history)
        if db.is_postgres:
            await conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('deal', 'id'), {first + deals})")
    return engagement_id


def _no_sending(engagement: Engagement) -> ChatPort:
    raise AssertionError("the benchmark only plans: `cadence run` sends")


async def plan_nudges(db: Database, engagement_id: int, parallel: int) -> int:
    """Every rep's pre-review nudge, planned by the real ritual and left pending for `cadence run`."""
    clock = SystemClock()
    engine = Engine(db, clock, all_rituals(), _no_sending, worker="bench-planner")
    now = clock.now()
    week = now.strftime("%G-W%V")
    detail = {"review_day": (now + timedelta(days=5)).date().isoformat(), "review_at": now.isoformat()}
    async with db.session() as session:
        engagement = await session.get(Engagement, engagement_id)
        reps = (
            await session.execute(
                select(Person.id, Person.key).where(Person.engagement_id == engagement_id, Person.role == "rep")
            )
        ).all()
    assert engagement is not None
    slots = asyncio.Semaphore(parallel)

    async def nudge(rep_id: int, key: str) -> bool:
        async with slots:
            occurrence = await engine.trigger(
                engagement,
                NUDGE,
                f"{week}/{key}",
                detail={**detail, "rep_id": rep_id, "nudge_at": now.isoformat()},
                deliver=False,
            )
        return occurrence is not None

    await asyncio.gather(*(nudge(rep_id, key) for rep_id, key in reps))
    async with db.session() as session:
        return int((await session.execute(select(func.count()).where(Delivery.status == "pending"))).scalar_one())


# --- `cadence run` ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    url: str
    process: asyncio.subprocess.Process
    log: Path


@contextlib.asynccontextmanager
async def cadence_run(database_url: str, fake: FakeSlack, log: Path) -> AsyncIterator[Served]:
    """`python -m bot.cli run` against the fake, as a person would start it; stopped with SIGTERM (it
    finishes the work it acknowledged first)."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": fake.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.api_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "CADENCE_COMMANDS_PER_MINUTE": "1000",
    }
    with log.open("ab") as errors:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", stdout=asyncio.subprocess.PIPE, stderr=errors, env=env, cwd=ROOT
        )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 120)).decode()
        if "Cadence is serving Slack" not in line:
            raise RuntimeError(f"cadence run did not start: {line!r} (see {log})")
        yield Served(f"http://127.0.0.1:{port}/slack/events", process, log)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 300)
            except TimeoutError:
                process.kill()
                await process.wait()


# --- the load ----------------------------------------------------------------------------------------


def command_body(user: str, text: str, response_url: str, command: str = "/deal", team: str = TEAM) -> str:
    form = payload("slash_command")
    form.update(
        team_id=team, user_id=user, user_name=user.lower(), command=command, text=text, response_url=response_url
    )
    return urlencode(form)


@dataclass(frozen=True)
class Load:
    latencies: tuple[float, ...]
    errors: int
    seconds: float
    sent_at: tuple[float, ...]
    """When each request was sent (time.monotonic), to place it against the fan-out."""


async def fire(http: aiohttp.ClientSession, url: str, bodies: Sequence[str], connections: int) -> Load:
    """Send every body, `connections` at a time (each connection sends its next as soon as it is
    answered); the latency of each from just before sending to the response."""
    latencies: list[float] = []
    sent_at: list[float] = []
    errors = 0
    pending = iter(bodies)

    async def connection() -> None:
        nonlocal errors
        for body in pending:
            headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body, int(time.time()))}
            sent_at.append(time.monotonic())
            began = time.perf_counter()
            try:
                async with http.post(url, data=body.encode(), headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            latencies.append(time.perf_counter() - began)
            errors += not ok

    began = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return Load(tuple(latencies), errors, time.perf_counter() - began, tuple(sent_at))


async def answered(sink: ResponseSink, name: str, count: int) -> float:
    """Seconds until `count` answers to `name` have reached the response_url sink (at most ten minutes)."""
    began = time.perf_counter()
    async with asyncio.timeout(600):
        await sink.wait_for(name, count)
    return time.perf_counter() - began


def bodies_for(size: Size, sink: ResponseSink, first: int, count: int, name: str) -> list[str]:
    """`count` deal updates, from command number `first` on: command i updates deal i mod deals, as its
    owner, with an amount no earlier command gave it."""
    out = []
    for i in range(first, first + count):
        n = i % size.deals
        out.append(command_body(f"U0REP{n % size.reps}", f"{deal_name(n)} amount={20_000 + i}", sink.url(name)))
    return out


def figures(load: Load) -> dict[str, Any]:
    lat = load.latencies
    return {
        "requests": len(lat),
        "errors": load.errors,
        "p50_ms": ms(percentile(lat, 50)),
        "p95_ms": ms(percentile(lat, 95)),
        "p99_ms": ms(percentile(lat, 99)),
        "max_ms": ms(max(lat)),
        "seconds": round(load.seconds, 2),
        "per_second": round(len(lat) / load.seconds, 1),
    }


async def one_run(
    database_url: str, fake: FakeSlack, sink: ResponseSink, size: Size, first: int, log: Path, with_fanout: bool
) -> dict[str, Any]:
    """Start `cadence run`, warm it up, fire the commands, wait for every answer, stop it."""
    name = "fanout" if with_fanout else "alone"
    posts_before, messages_before = len(fake.calls_to("chat.postMessage")), len(fake.messages)
    async with cadence_run(database_url, fake, log) as served, aiohttp.ClientSession() as http:
        warm = await fire(
            http, served.url, bodies_for(size, sink, first, size.warmup, f"{name}-warmup"), size.connections
        )
        if with_fanout:
            await fanout_started(fake, posts_before)
        bodies = bodies_for(size, sink, first + size.warmup, size.commands, name)
        load = await fire(http, served.url, bodies, size.connections)
        drained = await answered(sink, name, size.commands)
        result = figures(load) | {"warmup_errors": warm.errors, "all_answered_after_s": round(drained, 2)}
        if with_fanout:
            result |= await fanout_overlap(fake, posts_before, load, size.recipients)
    if with_fanout:  # counted once `cadence run` has stopped: a late duplicate would be seen
        result |= nudges_delivered(fake, messages_before, size.recipients)
    answers = sink.texts(name)
    result["answers_updated"] = sum(text.startswith("Updated") for text in answers)
    result["answers_other"] = [text[:300] for text in answers if not text.startswith("Updated")][:5]
    return result


async def fanout_started(fake: FakeSlack, posts_before: int) -> None:
    """Wait (up to two minutes) for the first nudge to reach Slack: the scheduler's first heartbeat after
    start-up begins the fan-out, and the commands must arrive while it runs, not before it."""
    for _ in range(2400):
        if any(_is_dm(c.body) for c in fake.calls_to("chat.postMessage")[posts_before:]):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("no nudge reached Slack within two minutes of `cadence run` starting")


async def fanout_overlap(fake: FakeSlack, posts_before: int, load: Load, recipients: int) -> dict[str, Any]:
    """When the nudges went out, against when the commands were sent (waits up to ten minutes for the
    last nudge)."""
    for _ in range(6000):
        dms = [c.at for c in fake.calls_to("chat.postMessage")[posts_before:] if _is_dm(c.body)]
        if len(dms) >= recipients:
            break
        await asyncio.sleep(0.1)
    if not dms:
        return {"fanout_dms": 0, "fanout_seconds": None, "commands_sent_during_fanout_share": 0.0}
    first, last = min(dms), max(dms)
    during = sum(first <= t <= last for t in load.sent_at)
    return {
        "fanout_dms": len(dms),
        "fanout_seconds": round(last - first, 2),
        "commands_sent_during_fanout": during,
        "commands_sent_during_fanout_share": round(during / len(load.sent_at), 3),
    }


def nudges_delivered(fake: FakeSlack, messages_before: int, recipients: int) -> dict[str, int]:
    """The nudges the fake received, by the delivery key each carries: how many were lost or doubled."""
    keys = Counter(
        str(((m.metadata or {}).get("event_payload") or {}).get("delivery_key"))
        for m in fake.messages[messages_before:]
        if m.channel.startswith("D")
    )
    return {
        "fanout_lost": max(0, recipients - len(keys)),
        "fanout_duplicated": sum(n - 1 for n in keys.values() if n > 1),
    }


def _is_dm(body: dict[str, Any]) -> bool:
    return str(body.get("channel", "")).startswith("D")


async def setup(served: Served, sink: ResponseSink, team: str, cro: str, slug: str) -> str:
    """`/cadence setup <slug>` by the CRO, as Slack sends it; what Cadence answered."""
    async with aiohttp.ClientSession() as http:
        body = command_body(cro, f"setup {slug}", sink.url(f"setup-{slug}"), "/cadence", team)
        load = await fire(http, served.url, [body], 1)
    async with asyncio.timeout(600):
        [linked] = await sink.wait_for(f"setup-{slug}")
    if load.errors:
        raise RuntimeError(f"/cadence setup {slug} was not acknowledged")
    return str(linked.get("text", ""))


async def bench(backend: str, size: Size) -> dict[str, Any]:
    async with fresh_database(backend) as db:
        now = datetime.now(UTC)
        began = time.perf_counter()
        await seed(db, engagement_yaml(SLUG, reps=size.reps, managers=managers(size.reps)), size.deals, now)
        fan_id = await seed(db, fan_yaml(size), size.recipients, now)
        seeded = time.perf_counter() - began
        log = Path(os.environ.get("BENCH_RESULTS_DIR") or RESULTS) / f"ack-{backend}-cadence-run.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        sink = ResponseSink()
        await sink.start()
        try:
            async with fake_slack(size) as fake:
                async with cadence_run(db.url, fake, log) as served:
                    linked = [
                        await setup(served, sink, TEAM, "U0DANA", SLUG),
                        await setup(served, sink, FAN_TEAM, "U1DANA", FAN_SLUG),
                    ]
                print(f"{backend}: seeded in {seeded:.1f} s; {' / '.join(linked)}", file=sys.stderr, flush=True)
                alone = await one_run(db.url, fake, sink, size, 0, log, with_fanout=False)
                print(f"{backend}: alone p99 {alone['p99_ms']} ms", file=sys.stderr, flush=True)
                began = time.perf_counter()
                pending = await plan_nudges(db, fan_id, parallel=8 if db.is_postgres else 1)
                planned = time.perf_counter() - began
                print(f"{backend}: planned {pending} nudges in {planned:.1f} s", file=sys.stderr, flush=True)
                during = await one_run(db.url, fake, sink, size, size.warmup + size.commands, log, with_fanout=True)
                print(f"{backend}: with the fan-out p99 {during['p99_ms']} ms", file=sys.stderr, flush=True)
        finally:
            await sink.stop()
        logged = log.read_text(errors="replace")
    return {
        "seeded_s": round(seeded, 2),
        "linked": linked,
        "nudges_planned": pending,
        "nudges_planned_s": round(planned, 2),
        "alone": alone,
        "with_fanout": during,
        "server_log_errors": logged.count(" ERROR ") + logged.count("Traceback"),
        "server_log": str(log),
    }


def table_rows(results: dict[str, dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for backend, r in results.items():
        alone, during = r["alone"], r["with_fanout"]
        ratio = during["p99_ms"] / alone["p99_ms"] if alone["p99_ms"] else None
        for label, f in (("alone", alone), (f"during {during.get('fanout_dms', 0):,}-DM fan-out", during)):
            ok = f["p99_ms"] <= TARGET_P99_MS and f["errors"] == 0
            if f is during:
                ok = ok and ratio is not None and ratio <= TARGET_RATIO
            rows.append(
                [
                    backend,
                    label,
                    f["requests"],
                    f["errors"],
                    f["p50_ms"],
                    f["p95_ms"],
                    f["p99_ms"],
                    f["max_ms"],
                    f["per_second"],
                    f"{ratio:.2f}" if f is during and ratio is not None else "",
                    "yes" if ok else "NO",
                ]
            )
    return rows


async def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description="Ack latency of `cadence run` (benchmark 1).")
    parser.add_argument("--quick", action="store_true", help="100 deals, 300 commands, under a minute (what CI runs)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), action="append", help="only this database")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    os.environ.setdefault(SECRET_KEY_ENV, new_key())  # production mode (PostgreSQL) seals tokens at rest
    facts = await machine()
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for backend in args.backend or ["sqlite", "postgresql"]:
        if backend == "postgresql" and (reason := await postgres_unavailable()):
            skipped[backend] = reason
            print(f"skipping PostgreSQL: {reason}", file=sys.stderr)
            continue
        results[backend] = await bench(backend, size)
    rows = table_rows(results)
    print_table(
        f"Ack latency, send to HTTP response ({'quick' if args.quick else 'full'}: {size.deals:,} deals, "
        f"{size.commands:,} /deal commands, {size.connections} connections; target p99 <= {TARGET_P99_MS:g} ms, "
        f"0 errors, p99 with the fan-out <= {TARGET_RATIO:g} x alone)",
        ["database", "load", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms", "req/s", "x alone", "met?"],
        rows,
    )
    for backend, r in results.items():
        during = r["with_fanout"]
        print(
            f"{backend}: fan-out of {during['fanout_dms']} DMs over {during['fanout_seconds']} s; "
            f"{during['commands_sent_during_fanout_share']:.0%} of the commands were sent while it ran; "
            f"every command answered {r['alone']['all_answered_after_s']} s / {during['all_answered_after_s']} s "
            f"after the last ack; server log errors: {r['server_log_errors']}"
        )
        for run in (r["alone"], r["with_fanout"]):
            for text in run["answers_other"]:
                print(f"{backend}: an answer that is not an update: {text!r}")
    path = write_result(
        "ack-quick" if args.quick else "ack",
        {
            "mode": "quick" if args.quick else "full",
            "size": asdict(size),
            "results": results,
            "skipped": skipped,
            "table": rows,
            "verdicts": {b: verdict(r["with_fanout"]["p99_ms"], TARGET_P99_MS) for b, r in results.items()},
        },
        facts,
    )
    print(f"\nwrote {path}")
    failed = any(
        run["errors"] or run["answers_updated"] != size.commands
        for r in results.values()
        for run in (r["alone"], r["with_fanout"])
    ) or any(r["with_fanout"]["fanout_lost"] or r["with_fanout"]["fanout_duplicated"] for r in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
