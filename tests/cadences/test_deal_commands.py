"""`/deal` end to end through the router, on SQLite and PostgreSQL: every rule, and every kind of bad
input leaves the database exactly as it was."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from cadences.deals import Conflict, update_deal
from storage.models import AuditLog, Deal, DealHistory

NEW_GLOBEX = '/deal new "Globex Corp" amount=$120,000 close=eoq stage=discovery'


async def snapshot(world: Any) -> tuple[list[tuple[Any, ...]], int]:
    """Every deal's columns and the history row count: what 'changes nothing' is checked against."""
    async with world.db.session() as session:
        deals = (await session.execute(select(Deal).order_by(Deal.id))).scalars().all()
        rows = [tuple(getattr(d, c.key) for c in Deal.__table__.columns) for d in deals]
        history = (await session.execute(select(func.count(DealHistory.id)))).scalar_one()
    return rows, history


async def deal(world: Any, name: str) -> Deal:
    async with world.db.session() as session:
        return (await session.execute(select(Deal).where(Deal.name == name))).scalar_one()


async def test_create_update_and_history_record_who_changed_what(world: Any) -> None:
    text = await world.text("jordan", NEW_GLOBEX)
    assert "Created Globex Corp." in text and "$120,000" in text and "Jan 31, 2027" in text  # fiscal Q ends Jan

    text = await world.text("jordan", '/deal glob stage=qualification amount=48k next="Send MSA" forecast=best case')
    assert "amount: $120,000 → $48,000" in text
    assert "stage: Discovery → Qualification" in text

    created = await deal(world, "Globex Corp")
    assert created.amount == Decimal("48000.00") and created.forecast_category == "best_case"
    assert created.next_step == "Send MSA" and created.version == 2

    history = await world.text("jordan", "/deal history Globex")
    assert "Jordan Lee (console) · update: amount: $120,000 → $48,000" in history
    assert "create: created" in history


async def test_a_new_deal_can_carry_its_forecast_category(world: Any) -> None:
    await world.say("jordan", '/deal new "Hooli" amount=5k close=eoq forecast=commit')
    assert (await deal(world, "Hooli")).forecast_category == "commit"


async def test_amount_and_date_forms(world: Any) -> None:
    await world.say("jordan", NEW_GLOBEX)
    for typed, expected in [
        ("48k", "48000.00"),
        ("$48,000", "48000.00"),
        ("1.2m", "1200000.00"),
        ("48000.50", "48000.50"),
    ]:
        await world.say("jordan", f"/deal Globex amount={typed}")
        assert (await deal(world, "Globex Corp")).amount == Decimal(expected)
    await world.say("jordan", "/deal Globex close=Dec 15")
    assert str((await deal(world, "Globex Corp")).close_date) == "2026-12-15"
    await world.say("jordan", "/deal Globex close=+30d")
    assert str((await deal(world, "Globex Corp")).close_date) == "2026-12-24"
    await world.say("jordan", "/deal Globex close=eom")
    assert str((await deal(world, "Globex Corp")).close_date) == "2026-11-30"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("/deal Globex close=2026-01-01", "in the past"),
        ("/deal Globex amount=-5k", "can't be negative"),
        ("/deal Globex amount=fifty", "couldn't read"),
        ("/deal Globex amount=€50k", "reports in USD"),
        ("/deal Globex colour=red", "colour"),
        ("/deal Globex stage=proposal", "skips Qualification, Solution"),
        ("/deal Globex stage=banana", 'no stage "banana"'),
        ("/deal Globex forecast=maybe", "not a forecast category"),
        ("/deal Globex close=12/11", "which did you mean"),
        ("/deal Nonexistent amount=5k", "No deal matches"),
        ("/deal Globex amount=120k", "Nothing to change"),
    ],
)
async def test_bad_input_is_explained_and_changes_nothing(world: Any, line: str, says: str) -> None:
    await world.say("jordan", NEW_GLOBEX)
    before = await snapshot(world)
    text = await world.text("jordan", line)
    assert says in text
    assert await snapshot(world) == before


async def test_ambiguous_deal_name_gets_a_question_with_each_candidate(world: Any) -> None:
    await world.say("jordan", '/deal new "Acme Corp" amount=10k close=eoq')
    await world.say("jordan", '/deal new "Acorn Labs" amount=10k close=eoq')
    before = await snapshot(world)
    [question] = await world.say("jordan", "/deal Ac amount=20k")
    assert "matches 2 deals" in question.text
    commands = [b.command for block in question.blocks if block.type == "actions" for b in block.buttons]
    assert commands == ['/deal "Acme Corp" amount=20k', '/deal "Acorn Labs" amount=20k']
    assert await snapshot(world) == before
    await world.say("jordan", commands[1])
    assert (await deal(world, "Acorn Labs")).amount == Decimal("20000.00")


async def test_fuzzy_and_prefix_matching(world: Any) -> None:
    await world.say("jordan", NEW_GLOBEX)
    await world.say("jordan", "/deal GLOBEX CORP amount=1k")
    await world.say("jordan", "/deal Globx Corp next=call")
    found = await deal(world, "Globex Corp")
    assert found.amount == Decimal("1000.00") and found.next_step == "call"


@pytest.mark.parametrize(
    ("who", "allowed"), [("jordan", True), ("maya", True), ("dana", True), ("priya", False), ("sam", False)]
)
async def test_who_may_edit_a_reps_deal(world: Any, who: str, allowed: bool) -> None:
    await world.say("jordan", NEW_GLOBEX)
    before = await snapshot(world)
    text = await world.text(who, "/deal Globex amount=99k")
    if allowed:
        assert "Updated Globex Corp." in text
        assert (await deal(world, "Globex Corp")).amount == Decimal("99000.00")
    else:
        assert "only their own deals" in text or "can read every deal" in text or "permission" in text
        assert await snapshot(world) == before


async def test_everyone_reads_and_a_stranger_is_told_they_are_not_in_the_engagement(world: Any) -> None:
    await world.say("jordan", NEW_GLOBEX)
    assert "Globex Corp" in await world.text("sam", "/deal list @jordan")
    assert "Globex Corp" in await world.text("priya", "/deal show Globex")
    stranger = await world.text(None, "/deal list")
    assert "not part of the Testco engagement" in stranger
    async with world.db.session() as session:
        denied = (await session.execute(select(AuditLog).where(AuditLog.outcome == "denied"))).scalars().all()
    assert [row.detail["text"] for row in denied] == ["/deal list"]


async def test_only_managers_and_the_cro_reassign(world: Any) -> None:
    await world.say("jordan", NEW_GLOBEX)
    assert "Only a manager or the CRO" in await world.text("jordan", "/deal Globex owner=@priya")
    assert "owner: Jordan Lee → Priya Natarajan" in await world.text("maya", "/deal Globex owner=@priya")


async def test_won_and_lost_close_the_deal_and_reopen_is_recorded(world: Any) -> None:
    await world.say("jordan", NEW_GLOBEX)
    await world.say("jordan", '/deal new "Initech" amount=30k close=eoq')
    assert "is won" in await world.text("jordan", "/deal Globex won")
    won = await deal(world, "Globex Corp")
    assert not won.is_open and str(won.closed_on) == "2026-11-24" and str(won.close_date) == "2026-11-24"
    await world.say("jordan", '/deal Initech lost reason="no decision" competitor=Hooli')
    lost = await deal(world, "Initech")
    assert (lost.loss_reason, lost.competitor, lost.is_open) == ("no decision", "Hooli", False)
    assert "already closed" in await world.text("jordan", "/deal Initech won")


async def test_slips_are_counted(world: Any) -> None:
    await world.say("jordan", '/deal new "Globex" amount=10k close=2026-12-15')
    await world.say("jordan", "/deal Globex close=2027-01-10")
    await world.say("jordan", "/deal Globex close=2027-01-20")
    await world.say("jordan", "/deal Globex close=2027-01-05")
    assert (await deal(world, "Globex")).slip_count == 2


async def test_still_accurate_refreshes_without_changing_fields(world: Any) -> None:
    await world.say("jordan", NEW_GLOBEX)
    first = await deal(world, "Globex Corp")
    world.clock.advance(__import__("datetime").timedelta(days=3))
    assert "still accurate" in await world.text("jordan", "/deal Globex ok")
    after = await deal(world, "Globex Corp")
    assert after.touched_at > first.touched_at and after.amount == first.amount


async def test_a_stale_edit_loses_and_sees_the_new_values(world: Any) -> None:
    await world.say("jordan", NEW_GLOBEX)
    seen = await deal(world, "Globex Corp")
    await update_deal(await world.ctx("maya"), seen.id, {"amount": "90k"}, expected_version=seen.version)
    before = await snapshot(world)
    with pytest.raises(Conflict) as conflict:
        await update_deal(await world.ctx("jordan"), seen.id, {"amount": "80k"}, expected_version=seen.version)
    assert conflict.value.deal.amount == Decimal("90000.00")
    assert await snapshot(world) == before


async def test_concurrent_typed_updates_of_one_deal_all_apply_in_turn(world: Any) -> None:
    """A typed command carries no version the person saw, so commands that arrive together are applied one
    after another (none is told it edited a stale form), and each leaves its history row."""
    await world.say("jordan", NEW_GLOBEX)
    ctx = await world.ctx("jordan")
    router = world.router
    answers = await asyncio.gather(
        *(router.run(ctx, "deal", f"Globex amount={i + 1}k", raw=f"/deal Globex amount={i + 1}k") for i in range(8))
    )
    texts = [message.text for messages in answers for message in messages]
    assert not [t for t in texts if "someone else" in t] and sum(t.startswith("Updated") for t in texts) == 8
    async with world.db.session() as session:
        updates = (await session.execute(select(func.count()).where(DealHistory.kind == "update"))).scalar_one()
    assert updates == 8


async def test_concurrent_edits_of_one_version_one_wins_the_rest_conflict(world: Any) -> None:
    await world.say("jordan", NEW_GLOBEX)
    seen = await deal(world, "Globex Corp")
    ctx = await world.ctx("maya")

    async def attempt(i: int) -> str:
        try:
            await update_deal(ctx, seen.id, {"amount": f"{i + 1}k"}, expected_version=seen.version)
            return "won"
        except Conflict:
            return "conflict"

    results = await asyncio.gather(*(attempt(i) for i in range(8)))
    assert sorted(results) == ["conflict"] * 7 + ["won"]
    async with world.db.session() as session:
        updates = (await session.execute(select(func.count()).where(DealHistory.kind == "update"))).scalar_one()
    assert updates == 1
    assert (await deal(world, "Globex Corp")).version == seen.version + 1


async def test_every_attempt_is_audited_with_what_was_typed(world: Any) -> None:
    await world.say("jordan", NEW_GLOBEX)
    await world.say("jordan", "/deal Globex amount=-1")
    await world.say("priya", "/deal Globex amount=1k")
    async with world.db.session() as session:
        rows = (await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all()
    assert [(r.action, r.outcome) for r in rows] == [("deal.create", "ok"), ("deal", "rejected"), ("deal", "denied")]
    assert rows[1].detail["text"] == "/deal Globex amount=-1"


async def test_list_shows_mine_sorted_by_close_date(world: Any) -> None:
    await world.say("jordan", '/deal new "Later" amount=1k close=2027-01-15')
    await world.say("jordan", '/deal new "Sooner" amount=1k close=2026-12-01')
    text = await world.text("jordan", "/deal list")
    assert text.index("Sooner") < text.index("Later")
    assert "no open deals" in await world.text("priya", "/deal list")
