"""One bot process of the crash-safety harness (bench/chaos.py starts, SIGKILLs and restarts these).

It is a `cadence run` process minus the HTTP side: the real Engine with every ritual, the real
CadenceScheduler with its PostgreSQL clock lock (so only one worker ticks and the other takes the clock
over when the holder is killed), and the real SlackPort against the harness's fake Slack. The only
difference is time: instead of APScheduler on the wall clock, it beats in a loop on the harness's
virtual time, which every process reads from one row (`chaos_clock`), so leases expire for all of them
at once when the harness moves time on.

    python bench/_worker.py --database-url URL --slack-url URL --token TOKEN --name w1-3
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import datetime

from sqlalchemy import text

from bot.slack.pacing import ChannelPacer
from bot.slack.port import SlackPort, create_client, stored_attachments
from cadences.engine import Engine
from cadences.ritual_catalog import all_rituals
from cadences.scheduler import CadenceScheduler
from storage.db import Database

CLOCK_TABLE = "chaos_clock"
IDLE_SECONDS = 0.02
READY = "ready"


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


async def run(database_url: str, slack_url: str, token: str, name: str) -> None:
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
    print(READY, flush=True)
    while True:
        moved = await clock.refresh()
        beat = await scheduler.beat()
        busy = beat.report is not None and (beat.report.planned or beat.report.sent or beat.report.failed)
        if not (moved or busy):
            await asyncio.sleep(IDLE_SECONDS)  # a wall-clock pause between idle heartbeats, to spare the CPU


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--slack-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format=f"{args.name} %(levelname)s %(message)s")
    asyncio.run(run(args.database_url, args.slack_url, args.token, args.name))


if __name__ == "__main__":
    main()
