"""One bot process of the fan-out benchmark (bench/fanout.py starts one or two of these).

It is the delivery half of `cadence run`: the real Engine sending concurrently (`concurrency`,
`per_engagement`), a real SlackPort per workspace against the benchmark's fake Slacks, and the pacer
`pacer_for` picks for the database — shared through PostgreSQL, so two of these spend one budget per
workspace. It prints `ready` once connected, starts on `go` (a line on stdin), delivers until no
delivery is pending or being sent by anyone, then prints one JSON line of what it did and exits.

The engine's clock starts at the benchmark's Monday morning and runs at the wall clock's pace, so the
planned deliveries are due at once and leases and retries behave as they would in production.

    python bench/_fanout_worker.py --database-url URL --config FILE --name w1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bot.slack.pacing import Rate, SlackLimits, pacer_for
from bot.slack.port import SlackPort, create_client
from cadences.engine import Engine
from cadences.ports import ChatPort
from cadences.ritual_catalog import all_rituals
from storage.db import Database
from storage.models import Delivery, Engagement

READY = "ready"
GO = "go"
IDLE_SECONDS = 0.05


class RunningClock:
    """Virtual time that starts at `start` and moves with the wall clock."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.began = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.began)


def limits_from(config: dict[str, Any]) -> SlackLimits:
    """The pacer's limits: the ones the benchmark's fake Slack enforces, as `fanout.py` wrote them."""
    return SlackLimits(
        channel=Rate(*config["channel"]),
        workspace=Rate(*config["workspace"]),
        opens=Rate(*config["opens"]),
        margin=config["margin"],
    )


async def outstanding(db: Database) -> int:
    """Deliveries still pending or being sent, by any process."""
    async with db.session() as session:
        stmt = select(func.count()).where(Delivery.status.in_(("pending", "sending")))
        return int((await session.execute(stmt)).scalar_one())


async def work(args: argparse.Namespace) -> dict[str, Any]:
    config = json.loads(Path(args.config).read_text())
    db = Database(args.database_url, pool_size=args.pool)
    pacer = pacer_for(db, limits_from(config["limits"]))
    ports: dict[int, ChatPort] = {
        w["engagement_id"]: SlackPort(
            create_client(w["token"], base_url=w["api_url"]), workspace=w["team_id"], pacer=pacer
        )
        for w in config["workspaces"]
    }

    def port_for(engagement: Engagement) -> ChatPort:
        return ports[engagement.id]

    clock = RunningClock(datetime.fromisoformat(config["start"]))
    engine = Engine(
        db,
        clock,
        all_rituals(),
        port_for,
        worker=args.name,
        concurrency=args.concurrency,
        per_engagement=args.per_engagement,
    )
    await outstanding(db)  # connect before the clock starts
    print(READY, flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != GO:
        raise SystemExit(f"expected {GO!r}, got {line!r}")
    began = time.perf_counter()
    sent = failed = rounds = 0
    while True:
        s, f = await engine.deliver()
        sent, failed, rounds = sent + s, failed + f, rounds + 1
        if not await outstanding(db):
            break
        await asyncio.sleep(IDLE_SECONDS)  # another process holds the rest, or a retry is not due yet
    await db.dispose()
    return {"name": args.name, "sent": sent, "failed": failed, "rounds": rounds, "seconds": time.perf_counter() - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--config", required=True, help="the JSON file fanout.py writes: workspaces and limits")
    parser.add_argument("--name", required=True)
    parser.add_argument("--concurrency", type=int, default=400)
    parser.add_argument("--per-engagement", type=int, default=10)
    parser.add_argument("--pool", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format=f"{args.name} %(levelname)s %(message)s")
    print(json.dumps(asyncio.run(work(args))), flush=True)


if __name__ == "__main__":
    main()
