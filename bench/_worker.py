"""The bot processes of the crash-safety harness (bench/chaos.py starts, SIGKILLs and restarts them).

Each worker is a `cadence run` process minus the HTTP side: the real Engine with every ritual, the real
CadenceScheduler with its PostgreSQL clock lock (so only one worker ticks and the other takes the clock
over when the holder is killed), and the real SlackPort against the harness's fake Slack. The only
difference is time: instead of APScheduler on the wall clock, it beats in a loop on the harness's
virtual time, which every process reads from one row (`chaos_clock`), so leases expire for all of them
at once when the harness moves time on.

This script is a fork server: it imports everything once, then forks one worker process per
`start NAME TOKEN` line on stdin. A restart then costs milliseconds instead of the two seconds of
Python imports, so the run spends its time on crashes, not on start-ups; what a kill does is the same
(a separate process with its own connections, gone at once). Workers announce themselves on stdout
with one short line each (`ready NAME PID`, or `crashed NAME` when one dies by itself).

    python bench/_worker.py --database-url URL --slack-url URL   # then write "start w1-1 xoxb-..." lines
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import traceback
from datetime import datetime

from sqlalchemy import text

from bot.slack.pacing import ChannelPacer
from bot.slack.port import SlackPort, create_client, stored_attachments
from cadences.engine import Engine
from cadences.ritual_catalog import all_rituals
from cadences.scheduler import CadenceScheduler
from storage.db import Database

CLOCK_TABLE = "chaos_clock"
POLL_SECONDS = 0.01
HEARTBEAT_SECONDS = 0.1


async def create_clock_table(db: Database, start: datetime) -> None:
    """The harness's one-row table of virtual time (harness-only: not part of the app's schema)."""
    async with db.engine.begin() as conn:
        await conn.execute(
            text(f"CREATE TABLE IF NOT EXISTS {CLOCK_TABLE} (id integer PRIMARY KEY, now timestamptz NOT NULL)")
        )
        await conn.execute(text(f"DELETE FROM {CLOCK_TABLE}"))
        await conn.execute(text(f"INSERT INTO {CLOCK_TABLE} (id, now) VALUES (1, :now)"), {"now": start})


async def set_clock(db: Database, now: datetime) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text(f"UPDATE {CLOCK_TABLE} SET now = :now WHERE id = 1"), {"now": now})


class SharedClock:
    """A Clock on the harness's virtual time. `now()` must not do I/O, so the worker `refresh`es it from
    the table before each heartbeat; within one heartbeat time stands still, as it would for a tick."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._now: datetime | None = None

    def now(self) -> datetime:
        if self._now is None:
            raise RuntimeError("the shared clock has not been read yet")
        return self._now

    async def refresh(self) -> bool:
        """Read the virtual time; True when it moved since the last read."""
        async with self.db.engine.connect() as conn:
            now: datetime = (await conn.execute(text(f"SELECT now FROM {CLOCK_TABLE} WHERE id = 1"))).scalar_one()
        moved = now != self._now
        self._now = now
        return moved


def announce(line: str) -> None:
    """One line to the harness. A single write of a short line is atomic on a pipe, so the fork server
    and its workers can share stdout without interleaving."""
    os.write(sys.stdout.fileno(), (line + "\n").encode())


async def work(database_url: str, slack_url: str, token: str, name: str) -> None:
    """Beat forever on virtual time, as one bot process."""
    db = Database(database_url, pool_size=4)
    clock = SharedClock(db)
    port = SlackPort(
        create_client(token, base_url=slack_url),
        workspace="T0TEST",
        pacer=ChannelPacer(interval=0.0),  # virtual time: Slack's per-channel pace is not what is tested
        attachments=stored_attachments(db),
    )
    engine = Engine(db, clock, all_rituals(), lambda _engagement: port, worker=name)
    scheduler = CadenceScheduler(engine)
    await clock.refresh()
    await scheduler.beat()
    announce(f"ready {name} {os.getpid()}")
    loop = asyncio.get_running_loop()
    last, busy = loop.time(), False
    while True:
        # Beat at once when virtual time moved or the last beat found work; otherwise a heartbeat every
        # HEARTBEAT_SECONDS of wall time (how a follower notices the clock holder is gone).
        if await clock.refresh() or busy or loop.time() - last >= HEARTBEAT_SECONDS:
            beat = await scheduler.beat()
            last = loop.time()
            busy = beat.report is not None and bool(beat.report.planned or beat.report.sent or beat.report.failed)
        else:
            await asyncio.sleep(POLL_SECONDS)


def fork_worker(database_url: str, slack_url: str, token: str, name: str) -> int:
    """Fork one worker; its pid (in the fork server)."""
    pid = os.fork()
    if pid != 0:
        return pid
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format=f"{name} %(levelname)s %(message)s")
    try:
        asyncio.run(work(database_url, slack_url, token, name))
    except BaseException:
        traceback.print_exc()
        announce(f"crashed {name}")
    finally:
        os._exit(1)


def reap(children: set[int]) -> None:
    """Collect the workers that have exited. Until then an exited worker is a zombie whose pid cannot
    be reused, so killing every pid in `children` never hits an unrelated process."""
    while children:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)


def serve(database_url: str, slack_url: str) -> None:
    """Fork a worker per `start NAME TOKEN` line until stdin closes, then kill every worker still
    running: closing the pipe (or the harness dying) stops them all."""
    children: set[int] = set()
    for line in sys.stdin:
        reap(children)
        command, name, token = line.split()
        if command == "start":
            children.add(fork_worker(database_url, slack_url, token, name))
    reap(children)
    for pid in children:
        os.kill(pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--slack-url", required=True)
    args = parser.parse_args()
    serve(args.database_url, args.slack_url)


if __name__ == "__main__":
    main()
