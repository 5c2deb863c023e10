"""The debrief form on any platform (SQLite and PostgreSQL): who may open it, which answers a submission
gives, and what the person is told once they are saved (the rendering: tests/bot)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from cadences import debrief_form
from cadences.deals import DealError
from storage.models import AuditLog, Debrief


def test_only_answers_given_or_changed_count() -> None:
    typed = {"reason": "price", "competitor": " Initech ", "lesson": "  ", "next": "Call earlier"}
    assert debrief_form.changed_answers(typed, {"reason": "price", "next": "Call earlier"}) == {"competitor": "Initech"}


async def test_the_form_of_a_lost_deal_and_its_answers(world: Any) -> None:
    await world.say("jordan", '/deal new "Acme" amount=10k close=eoq')
    await world.say("jordan", '/deal Acme lost reason="no decision"')
    async with world.db.session() as session:
        debrief = (await session.execute(select(Debrief))).scalar_one()
    with pytest.raises(DealError) as stranger:
        await debrief_form.form_for(await world.ctx(None, "slack"), debrief.id)
    assert "not part of the Testco engagement" in stranger.value.message
    with pytest.raises(DealError) as other_rep:
        await debrief_form.form_for(await world.ctx("priya", "slack"), debrief.id)
    assert (
        other_rep.value.message
        == f"Debrief #{debrief.id} is for its deal's owner to answer (or a manager, or the CRO)."
    )
    form = await debrief_form.form_for(await world.ctx("jordan", "slack"), debrief.id)
    assert (form.debrief_id, form.title) == (debrief.id, f"Debrief #{debrief.id}")
    assert form.reason.endswith(".")
    ctx = await world.ctx("jordan", "slack")
    assert [q.key for q in form.questions] == ["reason", "competitor", "differently"]
    assert form.answers == {"reason": "no decision"}  # known from the update
    answers = {"competitor": "None", "differently": "Find the budget owner"}
    text = await debrief_form.save_answers(ctx, debrief.id, answers)
    assert text == f"Thanks — debrief #{debrief.id} on Acme is complete."
    assert await debrief_form.answers_so_far(ctx, debrief.id) == {"reason": "no decision", **answers}
    async with world.db.session() as session:
        audited = (await session.execute(select(AuditLog).where(AuditLog.action == "debrief.answer"))).scalars().all()
    assert [(a.outcome, a.target, a.detail["answers"]) for a in audited] == [("ok", f"debrief:{debrief.id}", answers)]
