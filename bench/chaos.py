"""The crash-safety run: two bot processes on one PostgreSQL, SIGKILLed at random, must deliver every due
message exactly once — or skip it with a recorded reason.

Three engagements in three time zones (Los Angeles, Berlin, Sydney, built from the test engagement
file and applied through `cadences.engagement_file`) with a few deals each run a simulated month that
crosses the DST changes (Sydney Oct 4, Berlin Oct 25, Los Angeles Nov 1 2026). Two worker processes
(bench/_worker.py: the real Engine with every ritual, the real CadenceScheduler and its clock lock, the
real SlackPort) post to one fake Slack that this harness hosts and that records every post with its
delivery key. Virtual time lives in one row of the database; the harness moves it through every due
time (`Engine.next_wakeup`) while people update deals, and kills a worker with SIGKILL, then restarts it:

- after a random short delay following a clock move (mid-tick, mid-planning, mid-claim, mid-fan-out),
- the instant the fake Slack has recorded a post, before answering it (the post went out, the process
  never learns it: only `find_sent` can stop a duplicate),
- a random moment just after answering a post (before or after the process records it).

When only a killed process's claims are left, the harness moves time past their lease, as the wall
clock would, so the survivor takes them over. At the end it drains (time moves on until nothing is
pending or sending) and checks the database against the fake's record:

- no delivery key posted twice (duplicates);
- every delivery sent was posted, and every post belongs to a delivery recorded as sent;
- every delivery is sent, or failed/skipped with its reason;
- every occurrence due in the window exists, planned or skipped with its reason.

It exits non-zero on any duplicate or unexplained miss, on fewer kills than promised, or when no kill
landed between a post and its record (the case this run exists to prove).

The honest limit. Posting to Slack and recording it in the database cannot be one transaction, so a
process can die after Slack took a post and before the row says "sent". Such a claim is taken over when
its lease runs out, and the new holder first asks Slack (`find_sent`: the recent history of the
conversation, where every post carries its delivery key in message metadata) — the run counts these as
"recovered by find_sent" and requires at least one. What that recovery cannot restore are a message's
follow-up parts sent after its first post (the digest's chart upload, overflow replies): they are
counted as "lost a follow-up part", not as misses, because the delivery itself did go out once. A
platform that cannot be asked at all would send such a message twice (tests/cadences/test_engine.py).

    .venv/bin/python bench/chaos.py            # full: >= 50 kills, a month and a few days
    .venv/bin/python bench/chaos.py --quick    # CI: >= 10 kills, two weeks across two DST changes
"""

# ruff: noqa: E402  (the test support directory joins the path before the imports that need it)
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import aliased

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the fake Slack lives with the test support code

from _worker import create_clock_table, set_clock

from bot.slack.port import EVENT_TYPE
from cadences.catalog import build_router
from cadences.clock import ManualClock
from cadences.context import Context
from cadences.engagement_file import EngagementFile, apply_engagement, load_engagement_file
from cadences.engine import LEASE, Engine
from cadences.messages import Image, Message
from cadences.pipeline_review import REVIEW
from cadences.ritual_catalog import all_rituals
from cadences.rituals import Due, load_facts
from cadences.scheduler import WAKEUP_HORIZON
from storage import engagements as engagement_repo
from storage.db import Database
from storage.models import Deal, Delivery, Engagement, Occurrence, Person, Role
from support.fake_slack import FakeChannel, FakeSlack, FakeUser

SMALL = ROOT / "tests" / "fixtures" / "engagement_small.yaml"
RESULTS = ROOT / "bench" / "results"
WORKER = ROOT / "bench" / "_worker.py"
ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
WORKERS = 2
POLL_SECONDS = 0.01
STEP_TIMEOUT_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 60.0
TIMER_KILL_MAX_SECONDS = 0.12
AFTER_REPLY_MAX_SECONDS = 0.01
DRAIN_STEPS = 100


@dataclass(frozen=True)
class Mode:
    """A run: its window of virtual time, how many kills it aims for and how many it must reach (a
    kill waits for the restarted process, so the aim is set a little above the promise)."""

    name: str
    start: datetime
    end: datetime
    kills: int
    min_kills: int


QUICK = Mode("quick", datetime(2026, 10, 19, 12, tzinfo=UTC), datetime(2026, 11, 3, 12, tzinfo=UTC), 12, 10)
FULL = Mode("full", datetime(2026, 10, 1, 12, tzinfo=UTC), datetime(2026, 11, 4, 12, tzinfo=UTC), 60, 50)


class Aborted(Exception):
    """The run could not go on (a worker that will not start or crashed by itself, work that never
    finishes); reported as a problem of the run."""


@dataclass(frozen=True)
class Place:
    """One engagement of the run: slug, company, zone, and the digit in its people's Slack ids."""

    slug: str
    company: str
    timezone: str
    tag: str


PLACES = (
    Place("chaos-la", "Pacific Widgets", "America/Los_Angeles", "1"),
    Place("chaos-berlin", "Spree Software", "Europe/Berlin", "2"),
    Place("chaos-sydney", "Harbour Data", "Australia/Sydney", "3"),
)

SEED_DEALS = (
    ("jordan", '"{co} Globex" amount=120k close=+9d stage=proposal crm_id=CH-1 next="Send MSA" next_date=+3d'),
    ("jordan", '"{co} Initech" amount=40k close=+40d stage=qualification'),
    ("jordan", '"{co} Stark" amount=210k close=+20d stage=negotiation crm_id=CH-2'),
    ("priya", '"{co} Umbrella" amount=80k close=+16d stage=solution crm_id=CH-3'),
    ("priya", '"{co} Hooli" amount=25k close=+55d stage=discovery'),
)


# --- the engagements ------------------------------------------------------------------------------


def engagement_spec(base: EngagementFile, place: Place) -> EngagementFile:
    """The test engagement moved to another company, zone, set of Slack users and review channel."""
    people = [
        p.model_copy(update={"slack": f"U{place.tag}{p.key.upper()}", "email": f"{p.key}@{place.slug}.example"})
        for p in base.people
    ]
    review = base.rituals.pipeline_review.model_copy(update={"channel": f"pipeline-review-{place.slug}"})
    return base.model_copy(
        update={
            "engagement": base.engagement.model_copy(
                update={"slug": place.slug, "company": place.company, "timezone": place.timezone}
            ),
            "people": people,
            "rituals": base.rituals.model_copy(update={"pipeline_review": review}),
        }
    )


def slack_workspace(specs: Iterable[EngagementFile]) -> tuple[list[FakeUser], list[FakeChannel]]:
    users, channels = [], []
    for n, spec in enumerate(specs, 1):
        for p in spec.people:
            assert p.slack is not None
            users.append(FakeUser(p.slack, f"{p.name} ({spec.engagement.slug})", p.email, p.timezone or "UTC"))
        channels.append(FakeChannel(f"C{n}REVIEW", spec.rituals.pipeline_review.channel))
    return users, channels


# --- the fake Slack, with kill switches -----------------------------------------------------------


class ChaosSlack(FakeSlack):
    """The fake Slack Web API that also remembers which process posted each delivery key (by its token)
    and in which call, and can kill the poster the instant a post is recorded ("before reply") or just
    after it is answered ("after reply")."""

    def __init__(self, users: list[FakeUser], channels: list[FakeChannel]) -> None:
        super().__init__(users=users, channels=channels)
        self.posters: dict[str, list[tuple[str, int]]] = {}
        self.trap: str | None = None
        self.workers: Workers | None = None

    def _m_chat_postMessage(self, body: dict[str, Any]) -> dict[str, Any]:
        result = super()._m_chat_postMessage(body)
        metadata = body.get("metadata") or {}
        key = (metadata.get("event_payload") or {}).get("delivery_key")
        if metadata.get("event_type") != EVENT_TYPE or not key:
            return result
        token = self.calls[-1].token or "?"  # the call being answered: recorded just before this handler
        self.posters.setdefault(str(key), []).append((token, len(self.calls) - 1))
        if self.trap is not None and self.workers is not None:
            poster = self.workers.by_token(token)
            if poster is not None and self.workers.others_ready(poster):
                mode, self.trap = self.trap, None
                if mode == "before reply":
                    self.workers.kill(poster, mode)
                else:
                    delay = random.uniform(0, AFTER_REPLY_MAX_SECONDS)
                    asyncio.get_running_loop().call_later(delay, self.workers.kill, poster, mode)
        return result

    def follow_ups_sent(self, key: str) -> bool:
        """Whether the process that first posted `key` went on to send its follow-up parts (an image
        upload, an overflow reply) before its next delivery — or its death."""
        token, index = self.posters[key][0]
        for call in self.calls[index + 1 :]:
            if call.token != token:
                continue
            if call.method == "chat.postMessage" and call.body.get("metadata"):
                return False
            if call.method in ("files.completeUploadExternal", "chat.postMessage"):
                return True
        return False


# --- the worker processes --------------------------------------------------------------------------


@dataclass
class Incarnation:
    """One worker process: a slot's current life, with its own name and Slack token."""

    slot: int
    name: str
    token: str
    pid: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    killed: bool = False


@dataclass
class Kill:
    """One SIGKILL: which process, how it was chosen, the virtual time, and whether the harness was
    still waiting for that moment's work to finish (False: the processes were idle)."""

    worker: str
    mode: str
    virtual: str
    mid_work: bool


class Workers:
    """Two worker slots, each always running one process: a killed one is replaced at once by a new
    process with a new name and Slack token, so every post can be traced to the process that made it.
    The processes are forked by bench/_worker.py (a fork server that has done the imports)."""

    def __init__(self, database_url: str, fake: ChaosSlack, log: Any, log_path: Path, clock: ManualClock) -> None:
        self.database_url = database_url
        self.fake = fake
        self.log = log
        self.log_path = log_path
        self.clock = clock
        self.current: dict[int, Incarnation] = {}
        self.kills: list[Kill] = []
        self.dead: set[str] = set()
        self.mid_work = False
        self.failure: str | None = None
        self._server: asyncio.subprocess.Process | None = None
        self._count = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._server = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "--database-url",
            self.database_url,
            "--slack-url",
            self.fake.api_url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self.log,
            cwd=ROOT,
        )
        self._spawn(self._listen())
        for slot in range(1, WORKERS + 1):
            await self.start(slot)

    async def start(self, slot: int) -> None:
        assert self._server is not None and self._server.stdin is not None
        self._count += 1
        incarnation = Incarnation(slot, f"w{slot}-{self._count}", f"xoxb-chaos-w{slot}-{self._count}")
        self.fake.tokens.add(incarnation.token)
        self.current[slot] = incarnation
        self._server.stdin.write(f"start {incarnation.name} {incarnation.token}\n".encode())
        await self._server.stdin.drain()

    async def _listen(self) -> None:
        assert self._server is not None and self._server.stdout is not None
        async for raw in self._server.stdout:
            word, name, *rest = raw.decode().split()
            found = next((i for i in self.current.values() if i.name == name), None)
            if word == "ready" and found is not None:
                found.pid = int(rest[0])
                found.ready.set()
            elif word == "crashed":
                self.failure = f"worker {name} died by itself: see {self.log_path}"

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def running(self, incarnation: Incarnation) -> bool:
        return incarnation.ready.is_set() and not incarnation.killed

    def by_token(self, token: str) -> Incarnation | None:
        return next((i for i in self.current.values() if i.token == token and self.running(i)), None)

    def others_ready(self, incarnation: Incarnation) -> bool:
        """Whether killing `incarnation` leaves a running process (the run never kills the last one)."""
        return all(self.running(i) for i in self.current.values() if i is not incarnation)

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not all(self.running(i) for i in self.current.values()):
            if self.failure:
                raise Aborted(self.failure)
            if time.monotonic() > deadline:
                raise Aborted(f"the workers did not start: see {self.log_path}")
            await asyncio.sleep(POLL_SECONDS)

    def kill(self, incarnation: Incarnation, mode: str) -> None:
        if not self.running(incarnation) or incarnation.pid is None:
            return
        pidfd = os.pidfd_open(incarnation.pid)  # a handle on this very process: no pid-reuse race
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        incarnation.killed = True
        self.dead.add(incarnation.name)
        self.kills.append(Kill(incarnation.name, mode, self.clock.now().isoformat(), self.mid_work))
        self._spawn(self._replace(incarnation, pidfd))

    async def _replace(self, incarnation: Incarnation, pidfd: int) -> None:
        """Start the slot's next process once the killed one is gone (its connections with it): a pidfd
        becomes readable when its process has exited."""
        loop = asyncio.get_running_loop()
        gone = asyncio.Event()
        loop.add_reader(pidfd, gone.set)
        try:
            await gone.wait()
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        await self.start(incarnation.slot)

    def kill_later(self, delay: float) -> None:
        """Kill a random running worker after `delay` seconds (if the other one is up by then)."""

        def fire() -> None:
            candidates = [i for i in self.current.values() if self.running(i) and self.others_ready(i)]
            if candidates:
                self.kill(random.choice(candidates), "timer")

        asyncio.get_running_loop().call_later(delay, fire)

    async def close(self) -> None:
        """Stop everything: the fork server kills every worker when its input closes."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for incarnation in self.current.values():
            incarnation.killed = True
        if self._server is not None and self._server.stdin is not None:
            self._server.stdin.close()
            await self._server.wait()


# --- the run ------------------------------------------------------------------------------------------


@dataclass
class State:
    """What the harness waits on after moving time: work due now that nobody has finished yet."""

    pending_occurrences: int
    ready_pending: int
    sending: list[tuple[str | None, datetime | None]]
    next_not_before: datetime | None

    def settled(self) -> bool:
        return not (self.pending_occurrences or self.ready_pending or self.sending)


async def read_state(db: Database, now: datetime) -> State:
    """One consistent snapshot (REPEATABLE READ), so a claim or a finish committing between two of
    these queries cannot make work in flight look finished."""
    parent = aliased(Delivery)
    ready = or_(Delivery.parent_id.is_(None), parent.status == "sent")
    async with db.engine.connect() as plain:
        conn = await plain.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            pending_occurrences = (
                await conn.execute(select(func.count()).where(Occurrence.status == "pending"))
            ).scalar_one()
            ready_pending = (
                await conn.execute(
                    select(func.count())
                    .select_from(Delivery)
                    .outerjoin(parent, parent.id == Delivery.parent_id)
                    .where(Delivery.status == "pending", Delivery.not_before <= now, ready)
                )
            ).scalar_one()
            sending = (
                await conn.execute(
                    select(Delivery.claimed_by, Delivery.lease_until).where(Delivery.status == "sending")
                )
            ).all()
            next_not_before = (
                await conn.execute(
                    select(func.min(Delivery.not_before)).where(Delivery.status == "pending", Delivery.not_before > now)
                )
            ).scalar_one()
    return State(pending_occurrences, ready_pending, [(c, u) for c, u in sending], next_not_before)


class Run:
    def __init__(self, mode: Mode, db: Database, engine: Engine, clock: ManualClock, workers: Workers) -> None:
        self.mode = mode
        self.db = db
        self.engine = engine
        self.clock = clock
        self.workers = workers
        self.rng = random.Random()
        self.steps = 0
        self.lease_moves = 0
        self.lease_moves_at: list[str] = []
        self.actions = 0
        self.expected: list[tuple[int, Due]] = []
        self.missing: set[tuple[int, str, str]] = set()

    async def move_to(self, when: datetime) -> None:
        self.clock.set(when)
        await set_clock(self.db, when)

    async def settle(self) -> None:
        """Wait until everything due by now is done; when only killed processes' claims are left, move
        time past their leases (as the wall clock would) so a running process takes them over."""
        deadline = time.monotonic() + STEP_TIMEOUT_SECONDS
        self.workers.mid_work = True
        while True:
            if self.workers.failure:
                raise Aborted(self.workers.failure)
            now = self.clock.now()
            # Dues first, then the rest: an occurrence seen to exist here shows up below until its
            # deliveries are done, so the two reads cannot both miss work in flight.
            missing = await self.dues_missing(now)
            state = await read_state(self.db, now)
            if state.settled() and not missing:
                self.workers.mid_work = False
                return
            orphaned = [lease for claimer, lease in state.sending if claimer in self.workers.dead]
            latest = max((lease for lease in orphaned if lease is not None), default=None)
            if (
                latest is not None
                and latest >= now
                and len(orphaned) == len(state.sending)
                and not (missing or state.pending_occurrences or state.ready_pending)
            ):
                await self.move_to(latest + timedelta(seconds=1))
                self.lease_moves += 1
                self.lease_moves_at.append(f"{now.isoformat()} ({len(orphaned)} claims)")
                continue
            if time.monotonic() > deadline:
                due = ", ".join(f"{r}/{p}" for _, r, p in sorted(missing)[:5]) or "none"
                raise Aborted(f"stuck at {now.isoformat()}: {state}; due but not created: {due}")
            await asyncio.sleep(POLL_SECONDS)

    async def dues_missing(self, now: datetime) -> set[tuple[int, str, str]]:
        """The occurrences due by `now` that nobody has created yet."""
        due_now = {(e, d.ritual, d.period) for e, d in self.expected if d.due_at <= now} & self.missing
        if not due_now:
            return set()
        async with self.db.session() as session:
            rows = await session.execute(
                select(Occurrence.engagement_id, Occurrence.ritual, Occurrence.period).where(
                    Occurrence.due_at >= min(d.due_at for _, d in self.expected) - timedelta(days=1)
                )
            )
            existing = {(e, r, p) for e, r, p in rows.all()}
        self.missing -= existing
        return due_now - existing

    def kill_now(self, remaining_steps: int) -> str | None:
        """Whether this step kills a worker, and how: spread so the promised number of kills lands
        over the run's due times (None: no kill, or a post trap is still waiting to fire)."""
        left = self.mode.kills - len(self.workers.kills)
        if left <= 0 or self.workers.fake.trap is not None:
            return None
        if self.rng.random() >= min(0.9, 1.5 * left / max(1, remaining_steps)):
            return None
        if not any(k.mode == "before reply" for k in self.workers.kills):
            return "before reply"  # first of all, the case the run exists to prove: posted, never recorded
        roll = self.rng.random()
        return "timer" if roll < 0.5 else "before reply" if roll < 0.75 else "after reply"

    async def execute(self, people: PeopleAtWork) -> None:
        instants = sorted({d.due_at for _, d in self.expected if d.due_at <= self.mode.end})
        while self.clock.now() < self.mode.end:
            now = self.clock.now()
            nxt = await self.engine.next_wakeup(now, WAKEUP_HORIZON)
            state = await read_state(self.db, now)
            candidates = [t for t in (nxt, state.next_not_before, self.mode.end) if t is not None and t > now]
            when = min(candidates)
            kill = self.kill_now(len([t for t in instants if t >= when]))
            if kill is not None:
                await self.workers.wait_ready()  # never kill the only process left
            await self.move_to(when)
            self.steps += 1
            if kill == "timer":
                self.workers.kill_later(self.rng.uniform(0, TIMER_KILL_MAX_SECONDS))
            elif kill is not None:
                self.workers.fake.trap = kill
            if self.rng.random() < 0.35:
                self.actions += await people.act(self.rng)
            await self.settle()
        await self.drain()

    async def drain(self) -> None:
        """Move time on until nothing is left to send (retries waiting for their time included)."""
        self.workers.fake.trap = None
        for _ in range(DRAIN_STEPS):
            await self.settle()
            state = await read_state(self.db, self.clock.now())
            if state.next_not_before is None:
                return
            await self.move_to(state.next_not_before)
        raise Aborted(f"deliveries still waiting after {DRAIN_STEPS} drain steps")


class PeopleAtWork:
    """Reps updating deals through the command router while the workers tick: stage moves, slips,
    confirmations, the odd loss (which opens a debrief the follow-up ritual then sends)."""

    def __init__(self, db: Database, clock: ManualClock, engagements: list[Engagement]) -> None:
        self.db = db
        self.clock = clock
        self.engagements = engagements
        self.router = build_router()

    async def act(self, rng: random.Random) -> int:
        engagement = rng.choice(self.engagements)
        async with self.db.session() as session:
            reps = (
                (
                    await session.execute(
                        select(Person)
                        .where(Person.engagement_id == engagement.id, Person.role == Role.REP)
                        .order_by(Person.id)
                    )
                )
                .scalars()
                .all()
            )
            rep = rng.choice(list(reps))
            deals = (
                (
                    await session.execute(
                        select(Deal).where(Deal.owner_id == rep.id, Deal.is_open.is_(True)).order_by(Deal.id)
                    )
                )
                .scalars()
                .all()
            )
        if not deals:
            return 0
        deal = rng.choice(list(deals))
        roll = rng.random()
        if roll < 0.08:
            line = f'/deal "{deal.name}" lost reason="{rng.choice(["price", "timing", "competitor"])}"'
        elif roll < 0.3:
            line = f'/deal "{deal.name}" close=+{rng.choice([14, 21, 30])}d'
        elif roll < 0.6:
            line = f'/deal "{deal.name}" next="Call with the buyer" next_date=+{rng.choice([2, 5, 7])}d'
        else:
            line = f'/deal "{deal.name}" ok'
        ctx = Context(self.db, self.clock, engagement, rep, "chaos", rep.key)
        await self.router.handle_text(ctx, line)
        return 1


# --- verification --------------------------------------------------------------------------------


@dataclass
class Report:
    """What the run did and found; printed as a table and written as JSON (with the kill log, every
    recovery and every lease takeover, for a post-mortem)."""

    mode: str
    window: str
    dst_changes: list[str]
    engagements: int
    occurrences: int = 0
    occurrences_planned: int = 0
    occurrences_skipped: int = 0
    deliveries: int = 0
    deliveries_sent: int = 0
    deliveries_failed_or_skipped: int = 0
    posts: int = 0
    duplicates: int = 0
    unexplained_misses: int = 0
    kills: int = 0
    kills_by_mode: dict[str, int] = field(default_factory=dict)
    kills_mid_work: int = 0
    reviews_posted: int = 0
    recovered_by_find_sent: int = 0
    recovered_follow_ups_cut: int = 0
    lease_takeovers: int = 0
    steps: int = 0
    people_actions: int = 0
    wall_seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    kill_log: list[Kill] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    lease_moves_at: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        kills = ", ".join(f"{n} {m}" for m, n in sorted(self.kills_by_mode.items()))
        rows = [
            ("window", self.window),
            ("DST changes crossed", "; ".join(self.dst_changes)),
            (
                "occurrences",
                f"{self.occurrences} ({self.occurrences_planned} planned, {self.occurrences_skipped} "
                "skipped with a reason)",
            ),
            ("deliveries sent", f"{self.deliveries_sent} of {self.deliveries}"),
            ("reviews at 09:00 local", f"{self.reviews_posted} (across the DST changes)"),
            ("failed or skipped", f"{self.deliveries_failed_or_skipped} (each with a reason)"),
            ("duplicates", str(self.duplicates)),
            ("unexplained misses", str(self.unexplained_misses)),
            ("kills", f"{self.kills} ({kills or 'none'}; {self.kills_mid_work} while work was in flight)"),
            ("post-then-kill recovered by find_sent", str(self.recovered_by_find_sent)),
            (
                "  of which lost a follow-up part",
                f"{self.recovered_follow_ups_cut} (the honest limit: see the docstring)",
            ),
            ("lease takeovers", str(self.lease_takeovers)),
            ("wall time", f"{self.wall_seconds:.0f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"Crash-safety run ({self.mode})"] + [f"  {k.ljust(width)}  {v}" for k, v in rows]
        lines += [f"  PROBLEM: {p}" for p in self.problems[:20]]
        lines.append("  result: " + ("OK" if self.ok else "FAILED"))
        return "\n".join(lines)


def dst_changes(start: datetime, end: datetime) -> list[str]:
    """The days in the window on which an engagement's zone changes its UTC offset."""
    found = []
    for place in PLACES:
        zone = ZoneInfo(place.timezone)
        day = start.date()
        while day < end.date():
            before = datetime(day.year, day.month, day.day, tzinfo=zone).utcoffset()
            nxt = day + timedelta(days=1)
            if datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).utcoffset() != before:
                found.append(f"{place.timezone} {day.isoformat()}")
            day = nxt
    return found


def has_follow_ups(payload: dict[str, Any]) -> bool:
    """Whether a message posts more than its first part (thread replies, images): what a crash right
    after the first post can cut, since `find_sent` then finds the delivery already out."""
    message = Message.model_validate(payload)
    return bool(message.thread) or any(isinstance(b, Image) for b in message.blocks)


async def verify(run: Run, fake: ChaosSlack, report: Report) -> None:
    """Compare the database with what the fake Slack recorded; fill in the report's counts and list
    every duplicate and every unexplained miss among its problems."""
    misses: list[str] = []
    async with run.db.session() as session:
        occurrences = (await session.execute(select(Occurrence))).scalars().all()
        deliveries = (await session.execute(select(Delivery))).scalars().all()
    by_key = {(o.engagement_id, o.ritual, o.period): o for o in occurrences}
    report.occurrences = len(occurrences)
    report.occurrences_planned = sum(o.status == "planned" for o in occurrences)
    report.occurrences_skipped = sum(o.status == "skipped" for o in occurrences)
    reasons: Counter[str] = Counter()
    for engagement_id, due in run.expected:
        if due.due_at <= run.clock.now() and (engagement_id, due.ritual, due.period) not in by_key:
            misses.append(f"due but never created: {due.ritual}/{due.period} (engagement {engagement_id})")
    for occ in occurrences:
        if occ.status == "skipped":
            if not occ.skip_reason:
                misses.append(f"occurrence {occ.ritual}/{occ.period} skipped without a reason")
            reasons[f"occurrence skipped: {occ.skip_reason}"] += 1
        elif occ.status != "planned":
            misses.append(f"occurrence {occ.ritual}/{occ.period} left {occ.status}")
    report.deliveries = len(deliveries)
    for delivery in deliveries:
        posts = [token for token, _ in fake.posters.get(delivery.key, [])]
        if delivery.status == "sent":
            report.deliveries_sent += 1
            if not posts:
                misses.append(f"recorded as sent, never posted: {delivery.key}")
            elif len(posts) == 1 and posts[0].removeprefix("xoxb-chaos-") != delivery.claimed_by:
                # posted by a process killed before it could record it; another one's find_sent found it
                report.recovered_by_find_sent += 1
                cut = has_follow_ups(delivery.payload) and not fake.follow_ups_sent(delivery.key)
                report.recovered_follow_ups_cut += cut
                report.recovered.append(
                    f"{delivery.key}: posted by {posts[0]}, recorded by {delivery.claimed_by} "
                    f"after {delivery.attempts} claims" + (", its follow-up parts cut" if cut else "")
                )
        elif delivery.status in ("failed", "skipped"):
            report.deliveries_failed_or_skipped += 1
            if not delivery.error:
                misses.append(f"delivery {delivery.key} {delivery.status} without a reason")
            reasons[f"delivery {delivery.status}: {delivery.error}"] += 1
        else:
            misses.append(f"delivery {delivery.key} left {delivery.status}")
    review_times = await review_post_times(run.db)
    report.reviews_posted = len(review_times)
    misses += [f"review {where} posted at {at} local, not 09:00 (within the lease)" for where, at in review_times if at]
    sent = {d.key for d in deliveries if d.status == "sent"}
    duplicates = [
        f"posted {len(posts)} times: {key} (by {', '.join(token for token, _ in posts)})"
        for key, posts in fake.posters.items()
        if len(posts) > 1
    ]
    misses += [f"posted but not recorded as sent: {k}" for k in fake.posters if k not in sent]
    report.posts = sum(len(posts) for posts in fake.posters.values())
    report.duplicates = len(duplicates)
    report.unexplained_misses = len(misses)
    report.reasons = dict(reasons)
    kills = run.workers.kills
    report.kills = len(kills)
    report.kills_by_mode = dict(Counter(k.mode for k in kills))
    report.kills_mid_work = sum(k.mid_work for k in kills)
    report.kill_log = kills
    report.lease_takeovers = run.lease_moves
    report.lease_moves_at = run.lease_moves_at
    report.steps = run.steps
    report.people_actions = run.actions
    report.problems += duplicates + misses
    if report.kills < run.mode.min_kills:
        report.problems.append(f"only {report.kills} kills (at least {run.mode.min_kills} promised)")
    if report.recovered_by_find_sent == 0:
        report.problems.append("no kill landed between a post and its record: the find_sent path went untested")


async def review_post_times(db: Database) -> list[tuple[str, str | None]]:
    """Each pipeline review post and, when it is off, its local time: the reviews of every engagement
    must go out at 09:00 on its own wall clock before and after its DST change, a lease takeover late at
    most. (None: on time.)"""
    async with db.session() as session:
        rows = (
            await session.execute(
                select(Engagement.slug, Engagement.timezone, Occurrence.period, Delivery.sent_at)
                .join(Occurrence, Occurrence.id == Delivery.occurrence_id)
                .join(Engagement, Engagement.id == Delivery.engagement_id)
                .where(Occurrence.ritual == REVIEW, Delivery.purpose == "review", Delivery.status == "sent")
                .order_by(Delivery.sent_at)
            )
        ).all()
    found: list[tuple[str, str | None]] = []
    for slug, zone, period, sent_at in rows:
        assert sent_at is not None
        local = sent_at.astimezone(ZoneInfo(zone))
        late = local - local.replace(hour=9, minute=0, second=0, microsecond=0)
        on_time = timedelta(0) <= late <= LEASE * 3
        found.append((f"{slug} {period}", None if on_time else f"{local:%Y-%m-%d %H:%M %Z}"))
    return found


# --- setting up ------------------------------------------------------------------------------------


async def create_database() -> tuple[str, str]:
    name = f"cadence_chaos_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return name, ADMIN_URL.rsplit("/", 1)[0] + "/" + name


async def drop_database(name: str) -> None:
    admin = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


async def seed(db: Database, clock: ManualClock, specs: list[EngagementFile]) -> list[Engagement]:
    router = build_router()
    engagements = []
    for spec in specs:
        await apply_engagement(db, spec, now=clock.now())
        async with db.session() as session:
            engagement = await engagement_repo.get_engagement(session, spec.engagement.slug)
        assert engagement is not None
        engagements.append(engagement)
        for key, line in SEED_DEALS:
            async with db.session() as session:
                person = await engagement_repo.person_by_key(session, engagement.id, key)
            ctx = Context(db, clock, engagement, person, "chaos", key)
            [reply, *_] = await router.handle_text(ctx, "/deal new " + line.format(co=engagement.company))
            if not reply.text.startswith("Created"):
                raise RuntimeError(f"seeding {engagement.slug}: {reply.text}")
    return engagements


async def expected_dues(db: Database, engine: Engine, start: datetime, end: datetime) -> list[tuple[int, Due]]:
    found = []
    async with db.session() as session:
        for engagement in await engagement_repo.list_engagements(session):
            facts = await load_facts(session, engagement)
            found += [(engagement.id, d) for d in engine.dues(facts, start, end)]
    return found


async def main_async(mode: Mode, seed_value: int, out: Path, keep: bool) -> Report:
    started = time.monotonic()
    random.seed(seed_value)
    name, url = await create_database()
    db = Database(url, pool_size=5)
    clock = ManualClock(mode.start)
    base = load_engagement_file(SMALL)
    specs = [engagement_spec(base, place) for place in PLACES]
    users, channels = slack_workspace(specs)
    report = Report(
        mode=mode.name,
        window=f"{mode.start:%Y-%m-%d %H:%M} → {mode.end:%Y-%m-%d %H:%M} UTC",
        dst_changes=dst_changes(mode.start, mode.end),
        engagements=len(specs),
    )
    log_path = out.with_name(out.stem + "-workers.log")
    out.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        try:
            await db.upgrade()
            await create_clock_table(db, mode.start)
            engagements = await seed(db, clock, specs)
            engine = Engine(db, clock, all_rituals(), lambda _e: _no_port(), worker="chaos-harness")
            fake = ChaosSlack(users, channels)
            async with fake:
                workers = Workers(url, fake, log, log_path, clock)
                fake.workers = workers
                run = Run(mode, db, engine, clock, workers)
                run.rng.seed(seed_value)
                run.expected = await expected_dues(db, engine, mode.start, mode.end + timedelta(days=1))
                run.missing = {(e, d.ritual, d.period) for e, d in run.expected}
                try:
                    await workers.open()
                    await workers.wait_ready()
                    await run.execute(PeopleAtWork(db, clock, engagements))
                except Aborted as exc:
                    report.problems.append(f"run aborted: {exc}")
                finally:
                    await workers.close()
                await verify(run, fake, report)
        finally:
            await db.dispose()
            if not keep:
                await drop_database(name)
    report.wall_seconds = time.monotonic() - started
    out.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    return report


def _no_port() -> Any:
    raise RuntimeError("the harness never sends: its engine only computes due times")


def main() -> None:
    parser = argparse.ArgumentParser(description="Crash-safety run: two processes, SIGKILLs, exactly-once.")
    parser.add_argument("--quick", action="store_true", help="the CI run: two weeks, at least 10 kills")
    parser.add_argument("--seed", type=int, default=20261025)
    parser.add_argument("--out", type=Path, default=RESULTS / "chaos.json")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards, to inspect it")
    args = parser.parse_args()
    report = asyncio.run(main_async(QUICK if args.quick else FULL, args.seed, args.out, args.keep))
    print(report.table())
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
