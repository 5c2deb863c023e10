"""What every benchmark shares: the machine it ran on, fresh databases, fast data, timing and output.

A benchmark's figures mean nothing without the machine and the exact command, so every result file
carries both. Data is generated with bulk inserts (SQLAlchemy Core executemany in chunks) into a fresh
database — a SQLite file in a temporary directory, or a PostgreSQL database created for the run and
dropped after it — so a run never touches anyone's data and two runs start from the same state.
Engagements are created by applying a real engagement file once and copying the rows that apply wrote,
so thousands of engagements hold exactly what `cadence engagement apply` would have written.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from cadences.engagement_file import apply_engagement, parse_engagement_yaml
from storage.db import Database
from storage.models import Base, ChatIdentity, Engagement, HandoffTask, Person, PlanDeliverable, Stage

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PG_ADMIN_URL = os.environ.get(
    "BENCH_PG_URL", os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
)
CHUNK = 5_000
BACKENDS = ("sqlite", "postgresql")


# --- the machine -----------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


async def postgres_version() -> str | None:
    """The PostgreSQL server's version, or None when no server answers."""
    engine = create_async_engine(PG_ADMIN_URL)
    try:
        async with engine.connect() as conn:
            return str((await conn.execute(text("SHOW server_version"))).scalar_one())
    except Exception:  # no server: the result says so instead of failing
        return None
    finally:
        await engine.dispose()


async def machine() -> dict[str, Any]:
    """The facts a reader needs to compare figures: CPU, cores, memory, Python and database versions."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": await postgres_version(),
        "sqlalchemy": _version("sqlalchemy"),
        "asyncpg": _version("asyncpg"),
        "aiosqlite": _version("aiosqlite"),
        "commit": _git_commit(),
        "load_average_at_start": os.getloadavg(),
    }


def command_line() -> str:
    """The command that produced a result, as one would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(ROOT))
    except ValueError:
        shown = str(script)
    return shlex.join(["python", shown, *sys.argv[1:]])


def write_result(name: str, payload: dict[str, Any], machine_facts: dict[str, Any]) -> Path:
    """Write `bench/results/<name>.json` (or into `$BENCH_RESULTS_DIR`, which the CI smoke test uses so a
    quick run leaves the checked-in results alone) with the machine facts and the exact command."""
    folder = Path(os.environ.get("BENCH_RESULTS_DIR") or RESULTS)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    document = {
        "benchmark": name,
        "command": command_line(),
        "load_average_at_end": os.getloadavg(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts,
        **payload,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


# --- figures and tables ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Repeated measurements of one operation, in seconds: wall-clock time, and (when measured) the CPU
    time this process spent on each, which a busy machine does not inflate the way it inflates wall time."""

    samples: tuple[float, ...]
    cpu: tuple[float, ...] = ()

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 95)

    def as_json(self) -> dict[str, Any]:
        found = {"n": len(self.samples), "median_ms": ms(self.median), "p95_ms": ms(self.p95)}
        if self.cpu:
            found |= {"cpu_median_ms": ms(statistics.median(self.cpu)), "cpu_p95_ms": ms(percentile(self.cpu, 95))}
        return found


def percentile(values: Iterable[float], pct: float) -> float:
    """The nearest-rank percentile: the smallest sample with at least `pct`% of samples at or below it."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain-text table, columns padded to fit (what the README's Performance section pastes)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()

    print(f"\n{title}")
    print(line(cells[0]))
    print(line(["-" * w for w in widths]))
    for row in cells[1:]:
        print(line(row))


def verdict(value: float | None, target: float) -> str:
    return "n/a" if value is None else ("yes" if value <= target else "NO")


# --- fresh databases ------------------------------------------------------------------------------------


async def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used (None when it can)."""
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("select 1"))
        return None
    except Exception as exc:  # any failure to connect means "no PostgreSQL here"
        return f"PostgreSQL not reachable at {make_url(PG_ADMIN_URL).render_as_string()}: {exc.__class__.__name__}"
    finally:
        await engine.dispose()


async def _admin(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@asynccontextmanager
async def fresh_database(backend: str) -> AsyncIterator[Database]:
    """A migrated, empty database for one run: a SQLite file in a temporary directory, or a new
    PostgreSQL database (dropped afterwards, whatever happens)."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="cadence-bench-") as tmp:
            db = Database(f"sqlite+aiosqlite:///{tmp}/bench.db")
            try:
                await db.upgrade()
                yield db
            finally:
                await db.dispose()
        return
    name = f"cadence_bench_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    db = Database(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name)
    try:
        await db.upgrade()
        yield db
    finally:
        await db.dispose()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def analyze(db: Database) -> None:
    """Refresh the planner's statistics after a bulk load, as autovacuum (PostgreSQL) or a long-running
    bot would have: without them both planners guess from empty tables."""
    async with db.engine.connect() as conn:
        await conn.execute(text("ANALYZE"))
        await conn.commit()


# --- bulk data -----------------------------------------------------------------------------------------------


def table_of(model: type[Base]) -> Table:
    """A mapped class's table, typed as one."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


async def bulk_insert(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows with executemany, in chunks (one statement per chunk, all in the caller's transaction)."""
    for start in range(0, len(rows), CHUNK):
        await conn.execute(insert(table), list(rows[start : start + CHUNK]))


async def bulk_insert_returning_ids(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert rows and return their new ids in the order given (needed to point children at them)."""
    ids: list[int] = []
    for start in range(0, len(rows), CHUNK):
        stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        result = await conn.execute(stmt, list(rows[start : start + CHUNK]))
        ids += [row[0] for row in result.all()]
    return ids


async def fast_insert(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many rows at the driver's full speed: COPY on PostgreSQL (asyncpg's `copy_records_to_table`),
    one prepared executemany on SQLite. Values go through the same column types (money to cents, aware
    times, JSON) that SQLAlchemy applies, so the rows are byte-for-byte what the ORM would write; only
    SQLAlchemy's per-row statement bookkeeping is skipped. A None is written as SQL NULL."""
    if not rows:
        return
    dialect = conn.dialect
    columns = [c for c in table.columns if c.name in rows[0]]
    processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    names = [c.name for c in columns]

    def convert(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            None if (value := row[name]) is None else (process(value) if process else value)
            for name, process in zip(names, processors, strict=True)
        )

    if dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        for start in range(0, len(rows), CHUNK * 10):
            records = [convert(r) for r in rows[start : start + CHUNK * 10]]
            await driver.copy_records_to_table(table.name, records=records, columns=names)
        return
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) VALUES ({', '.join('?' * len(names))})"
    )
    for start in range(0, len(rows), CHUNK * 10):
        await conn.exec_driver_sql(sql, [convert(r) for r in rows[start : start + CHUNK * 10]])


async def next_ids(conn: AsyncConnection, table: Table, count: int) -> list[int]:
    """`count` fresh primary keys for rows about to be inserted with explicit ids (so children can point
    at them without a round trip per row); on PostgreSQL the table's sequence is moved past them."""
    top = int((await conn.execute(select(func.coalesce(func.max(table.c.id), 0)))).scalar_one())
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), :last)"), {"last": top + count}
        )
    return list(range(top + 1, top + count + 1))


def engagement_yaml(
    slug: str,
    *,
    reps: int,
    managers: int = 1,
    timezone: str = "America/Los_Angeles",
    review_time: str = "09:00",
) -> str:
    """A small but complete engagement file: a CRO, a founder, managers and reps, the stages of a B2B
    SaaS pipeline, holidays, and every ritual at its default but the review's time. The 30/60/90 plan
    and the hand-over tasks are the file format's defaults."""
    people = [
        "  - {key: dana, name: Dana Whitfield, role: cro, email: dana@bench.example, timezone: America/New_York,"
        " slack: U0DANA}",
        "  - {key: sam, name: Sam Okafor, role: founder, email: sam@bench.example, slack: U0SAM}",
    ]
    people += [
        f"  - {{key: mgr{m}, name: Manager {m}, role: manager, email: mgr{m}@bench.example, slack: U0MGR{m}}}"
        for m in range(managers)
    ]
    for r in range(reps):
        zone = ", timezone: Europe/London" if r % 5 == 4 else ""
        people.append(
            f"  - {{key: rep{r}, name: Rep {r:03d}, role: rep, email: rep{r}@bench.example,"
            f" manager: mgr{r % managers}, slack: U0REP{r}{zone}}}"
        )
    return "\n".join(
        [
            "engagement:",
            f"  slug: {slug}",
            f"  company: Bench {slug}",
            "  start: 2026-09-07",
            "  exit: 2027-03-05",
            f"  timezone: {timezone}",
            "  currency: USD",
            "  quota_per_quarter: 900000",
            "  fiscal_year_start_month: 2",
            "  coverage_target: 3.0",
            "  forecast_owner: dana",
            "holidays: [2026-11-26, 2026-12-25, 2027-01-01]",
            "people:",
            *people,
            "stages:",
            "  - {key: discovery, name: Discovery, probability: 10, kind: open}",
            "  - {key: qualification, name: Qualification, probability: 25, kind: open}",
            "  - {key: solution, name: Solution, probability: 50, kind: open}",
            "  - {key: proposal, name: Proposal, probability: 70, kind: open}",
            "  - {key: negotiation, name: Negotiation, probability: 85, kind: open}",
            "  - {key: closed_won, name: Closed Won, probability: 100, kind: won}",
            "  - {key: closed_lost, name: Closed Lost, probability: 0, kind: lost}",
            "rituals:",
            f'  pipeline_review: {{day: monday, time: "{review_time}", channel: pipeline-review, host: dana}}',
            '  digest: {day: friday, time: "16:00", recipients: [sam]}',
            "",
        ]
    )


async def apply_yaml(db: Database, source: str, now: datetime) -> int:
    """Apply an engagement file through the real `apply_engagement`; the engagement's id."""
    spec = parse_engagement_yaml(source)
    await apply_engagement(db, spec, now=now)
    async with db.session() as session:
        found = (
            await session.execute(select(Engagement.id).where(Engagement.slug == spec.engagement.slug))
        ).scalar_one()
    return int(found)


async def clone_engagement(db: Database, template_id: int, slugs: Sequence[str]) -> list[int]:
    """Copies of an applied engagement under new slugs: the engagement, people, chat identities, stages,
    plan deliverables and hand-over tasks exactly as apply wrote them, with every reference re-pointed.
    Returns the new engagement ids, in the order of `slugs`."""
    async with db.engine.begin() as conn:

        async def rows(table: Table, where: Any) -> list[dict[str, Any]]:
            return [dict(r._mapping) for r in (await conn.execute(select(table).where(where))).all()]

        eng_t, person_t = table_of(Engagement), table_of(Person)
        template = (await rows(eng_t, eng_t.c.id == template_id))[0]
        people = sorted(await rows(person_t, person_t.c.engagement_id == template_id), key=lambda p: p["id"])
        children: dict[Table, list[dict[str, Any]]] = {
            t: await rows(t, t.c.engagement_id == template_id)
            for t in map(table_of, (ChatIdentity, Stage, PlanDeliverable, HandoffTask))
        }

        def strip(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
            return {k: v for k, v in row.items() if k != "id"} | changes

        engagement_ids = await bulk_insert_returning_ids(
            conn, eng_t, [strip(template, slug=slug, company=f"Bench {slug}") for slug in slugs]
        )
        # People first without managers (a manager is a person of the same copy), then re-point them.
        new_people = [strip(p, engagement_id=e, manager_id=None) for e in engagement_ids for p in people]
        person_ids = await bulk_insert_returning_ids(conn, person_t, new_people)
        maps: list[dict[int, int]] = [
            {p["id"]: person_ids[n * len(people) + i] for i, p in enumerate(people)} for n in range(len(slugs))
        ]
        managed = [
            {"pid": mapping[p["id"]], "mid": mapping[p["manager_id"]]}
            for mapping in maps
            for p in people
            if p["manager_id"] is not None
        ]
        if managed:
            stmt = update(person_t).where(person_t.c.id == bindparam("pid")).values(manager_id=bindparam("mid"))
            for start in range(0, len(managed), CHUNK):
                await conn.execute(stmt, managed[start : start + CHUNK])
        person_columns = ("person_id", "owner_id", "from_id", "to_id")
        for table, template_rows in children.items():
            copies = []
            for engagement_id, mapping in zip(engagement_ids, maps, strict=True):
                for row in template_rows:
                    refs = {c: mapping[row[c]] for c in person_columns if row.get(c) is not None}
                    copies.append(strip(row, engagement_id=engagement_id, **refs))
            await bulk_insert(conn, table, copies)
    return engagement_ids
