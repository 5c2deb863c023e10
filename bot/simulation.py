"""Wire `cadence simulate`: a throwaway SQLite database, a virtual clock, the real engine and rituals,
the console port printing every message, and the scripted population."""

from __future__ import annotations

import random
import sys
import tempfile
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.console.port import ConsolePort
from cadences.catalog import build_router
from cadences.clock import ManualClock
from cadences.demo_seed import seed_demo_pipeline
from cadences.engagement_file import apply_engagement, load_engagement_file
from cadences.engine import Engine
from cadences.ritual_catalog import all_rituals
from cadences.rituals import at_local
from cadences.simulate import Population, Simulation
from storage import engagements as engagement_repo
from storage.db import Database
from storage.models import Delivery, Occurrence


async def run_simulation(path: Path, *, days: int, seed: int) -> int:
    spec = load_engagement_file(path)
    tz = ZoneInfo(spec.engagement.timezone)
    from datetime import time

    clock = ManualClock(at_local(spec.engagement.start, time(7), tz))
    with tempfile.TemporaryDirectory(prefix="cadence-sim-") as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'simulate.db'}")
        try:
            await db.upgrade()
            await apply_engagement(db, spec, now=clock.now())
            async with db.session() as session:
                engagement = await engagement_repo.get_engagement(session, spec.engagement.slug)
            assert engagement is not None
            await seed_demo_pipeline(db, engagement.slug, today=spec.engagement.start, seed=seed)
            out = sys.stdout
            out.write(
                f"Simulating {engagement.company}: {days} days from {spec.engagement.start} "
                f"({spec.engagement.timezone}), seed {seed}\n"
            )
            port = ConsolePort(clock.now, tz, out)
            engine = Engine(db, clock, all_rituals(), lambda _e: port, worker="simulate")
            population = Population(random.Random(seed))
            await Simulation(db, clock, engine, build_router(), engagement, population, print).run(days)
            async with db.session() as session:
                sent = Counter(
                    (
                        await session.execute(
                            select(Occurrence.ritual)
                            .join(Delivery, Delivery.occurrence_id == Occurrence.id)
                            .where(Delivery.status == "sent")
                        )
                    ).scalars()
                )
                skipped = Counter(
                    (await session.execute(select(Occurrence.ritual).where(Occurrence.status == "skipped"))).scalars()
                )
            out.write("\nMessages sent by ritual: " + ", ".join(f"{k} {v}" for k, v in sorted(sent.items())) + "\n")
            if skipped:
                out.write("Skipped occurrences: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) + "\n")
        finally:
            await db.dispose()
    return 0
