"""What ritual message buttons do on any platform (SQLite and PostgreSQL): "Still accurate" is recorded
and audited, a status button runs its command and says what was done once the status is reached."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from cadences import button_actions
from cadences.deals import DealError
from storage.models import AuditLog, Deal, DealHistory, HandoffTask


async def test_still_accurate_is_recorded_audited_and_said(world: Any) -> None:
    await world.say("jordan", '/deal new "Acme" amount=10k close=eoq')
    async with world.db.session() as session:
        acme = (await session.execute(select(Deal).where(Deal.name == "Acme"))).scalar_one()
    line = await button_actions.still_accurate(await world.ctx("jordan", "teams"), acme.id, "card")
    assert line == "✓ Still accurate — Acme, confirmed by Jordan Lee"
    with pytest.raises(DealError):
        await button_actions.still_accurate(await world.ctx("priya", "teams"), acme.id, "card")  # not hers
    async with world.db.session() as session:
        audited = (await session.execute(select(AuditLog).where(AuditLog.action == "deal.confirm"))).scalars().all()
        kinds = (await session.execute(select(DealHistory.kind).where(DealHistory.deal_id == acme.id))).scalars().all()
    assert [(a.outcome, a.target, a.detail) for a in audited] == [
        ("ok", f"deal:{acme.id}", {"via": "card"}),
        ("denied", f"deal:{acme.id}", {"via": "card"}),
    ]
    assert sorted(kinds) == ["confirm", "create"]


async def test_a_button_for_something_gone_says_so(world: Any) -> None:
    ctx = await world.ctx("dana", "slack")
    with pytest.raises(DealError) as task:
        await button_actions.handoff_task(ctx, 999)
    assert task.value.message == "That hand-over task is no longer on the list."
    with pytest.raises(DealError) as deliverable:
        await button_actions.deliverable_status(ctx, world.router, "999:done")
    assert deliverable.value.message == "That deliverable is no longer in the plan."


async def test_mark_done_runs_the_handoff_command_and_says_what_was_done(world: Any) -> None:
    async with world.db.session() as session:
        task = (await session.execute(select(HandoffTask).order_by(HandoffTask.id))).scalars().first()
    assert task is not None  # the engagement file's hand-over plan
    change = await button_actions.handoff_status(await world.ctx("dana", "slack"), world.router, f"{task.id}:done")
    assert change.target_id == task.id
    assert change.done == f"✓ {task.title}: done (by Dana Whitfield)"
