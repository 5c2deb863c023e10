"""`/cadence schedule`, `pause`, `resume`: what people see matches what the engine fires."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from storage.models import Occurrence


async def test_schedule_lists_the_review_at_its_local_time(world: Any) -> None:
    text = await world.text("jordan", "/cadence schedule")
    assert "Mon Nov 30 09:00" in text and "Pipeline review" in text
    assert "Founder digest" in text and "Fri Nov 27 16:00" in text


async def test_only_the_cro_pauses_and_a_paused_cadence_skips_silently(engine_world: Any) -> None:
    assert "Only the CRO" in await engine_world.text("maya", "/cadence pause")
    assert "Paused" in await engine_world.text("dana", "/cadence pause")
    engine_world.engagement.paused = True
    assert "paused" in await engine_world.text("dana", "/cadence schedule")
    await engine_world.run_until(datetime(2026, 11, 30, 18, tzinfo=UTC))  # past Monday's 09:00 review
    assert engine_world.port.sent == []
    async with engine_world.db.session() as session:
        review = (await session.execute(select(Occurrence).where(Occurrence.ritual == "pipeline_review"))).scalar_one()
    assert (review.status, review.skip_reason) == ("skipped", "cadence paused")
    assert "Resumed" in await engine_world.text("dana", "/cadence resume")
