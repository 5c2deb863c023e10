"""Teams as a new user meets it through `cadence run`'s chat service (here in the Emulator's no-auth mode,
against a fake Bot Connector): a typed `deal` command updates a deal, `pipeline start` posts the review
to the linked channel with its flagged deals in the thread, and the founder digest arrives as a card
with its chart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import CadenceApp, start_chat
from bot.settings import Settings
from cadences.catalog import build_router
from storage.models import Deal, DealHistory, Stage
from support.teams_bot import TeamsFake, apply_teams_engagement, channel_message


@pytest.fixture
async def served(world: Any, tmp_path: Path) -> AsyncIterator[tuple[Any, TeamsFake, str]]:
    await apply_teams_engagement(world, tmp_path)
    settings = Settings(database_url=world.db.url, teams_emulator=True)
    app = CadenceApp(settings=settings, db=world.db, clock=world.clock, router=build_router())
    async with TeamsFake() as fake:
        service = await start_chat(app, host="127.0.0.1", port=0, run_scheduler=False)
        try:
            yield world, fake, service
        finally:
            await service.stop()


async def say(http: aiohttp.ClientSession, service: Any, fake: TeamsFake, who: str, text: str, n: int) -> int:
    body = channel_message(who, text, service_url=fake.service_url, activity_id=f"17640073{n:05d}")
    async with http.post(f"{service.url}/api/messages", json=body) as response:
        return response.status


async def test_deal_update_review_and_digest_through_the_running_service(served: Any) -> None:
    world, fake, service = served
    await world.say("jordan", '/deal new "Acme" amount=150k close=2026-12-15 stage=discovery')
    for stage in ("qualification", "solution"):
        await world.say("jordan", f"/deal Acme stage={stage}")
    async with aiohttp.ClientSession() as http:
        assert await say(http, service, fake, "dana", "<at>Cadence</at> cadence setup acme-test", 1) == 200
        assert await say(http, service, fake, "jordan", "<at>Cadence</at> deal Acme stage=proposal", 2) == 200
        async with world.db.session() as session:
            stage = (
                await session.execute(
                    select(Stage.key).join(Deal, Deal.stage_id == Stage.id).where(Deal.name == "Acme")
                )
            ).scalar_one()
            last = (await session.execute(select(DealHistory).order_by(DealHistory.id.desc()).limit(1))).scalar_one()
        assert stage == "proposal" and last.channel == "teams" and last.changes["stage"] == ["solution", "proposal"]

        before = len(fake.activities)
        assert await say(http, service, fake, "dana", "<at>Cadence</at> pipeline start", 3) == 200
        posted = fake.activities[before:]
        review = [a for a in posted if "Pipeline review" in str(a.card)]
        assert review, "the review card was posted to the channel"
        assert any("Acme" in str(a.card) and a.thread for a in posted), "the flagged deal is in the review's thread"

        before = len(fake.activities)
        assert await say(http, service, fake, "dana", "<at>Cadence</at> digest send", 4) == 200
        sent = fake.activities[before:]
        assert any("Weekly digest" in str(a.card) for a in sent)
        assert any("data:image/png;base64," in str(a.body) for a in sent), "the chart went with the digest"
