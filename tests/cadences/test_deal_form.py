"""The deal form as data, on SQLite and PostgreSQL: its fields, the deals a person may pick, what a
submission changes and how it is audited, and the confirmation both platforms show."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from cadences import deal_form
from cadences.deal_commands import change_intro, confirmation
from cadences.deal_form import DealChoice, DealValues, FieldKind
from cadences.deals import Conflict, DealError, Outcome
from cadences.messages import Paragraph
from storage.models import AuditLog, Deal

STAGES = [("discovery", "Discovery"), ("proposal", "Proposal")]


async def deal(world: Any, name: str) -> Deal:
    async with world.db.session() as session:
        return (await session.execute(select(Deal).where(Deal.name == name))).scalar_one()


async def audit_rows(world: Any) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    async with world.db.session() as session:
        rows = (
            await session.execute(select(AuditLog).where(AuditLog.channel == "slack").order_by(AuditLog.id))
        ).scalars()
        return [(r.action, r.outcome, r.target, r.detail) for r in rows]


def test_the_fields_of_the_update_and_the_new_deal_forms() -> None:
    update = deal_form.fields(STAGES, new=False)
    assert [f.key for f in update] == ["stage", "amount", "close", "forecast", "next", "next_date", "risk", "note"]
    new = deal_form.fields(STAGES, new=True)
    assert [f.key for f in new] == ["name", "stage", "amount", "close", "forecast", "next", "next_date", "note"]
    by_key = {f.key: f for f in new}
    assert by_key["stage"].choices == tuple(STAGES) and by_key["stage"].kind is FieldKind.CHOICE
    assert [v for v, _ in by_key["forecast"].choices] == ["commit", "best_case", "pipeline", "omitted"]
    assert by_key["name"].required and by_key["close"].required  # a new deal needs both
    assert not {f.key: f for f in update}["close"].required
    assert by_key["note"].hint == "Kept in the deal's history with your name."
    assert deal_form.NEW_DEAL_KEYS == ("stage", "amount", "close", "forecast", "next", "next_date", "note")


def test_a_submission_sends_what_changed_and_a_new_deal_what_its_form_has() -> None:
    acme = DealValues(7, 3, "Acme", "discovery", Decimal("48000.50"), None, "pipeline", "Send MSA", None, None)
    assert acme.as_raw()["amount"] == "48000.5"
    untouched = {**acme.as_raw(), "note": " "}
    assert deal_form.changed_fields(untouched, acme) == {}
    typed = {**untouched, "amount": "50k", "next": "", "name": "ignored", "note": " Budget confirmed "}
    assert deal_form.changed_fields(typed, acme) == {"amount": "50k", "next": "", "note": "Budget confirmed"}
    name, raw = deal_form.new_deal_fields({"name": " Initech ", "amount": "5k", "close": "", "risk": "not on the form"})
    assert (name, raw) == ("Initech", {"amount": "5k"})


def test_the_first_line_after_a_change() -> None:
    renamed = Deal(name="Acme Corp")
    assert change_intro("Acme", Outcome(renamed, "update", changes={"name": ["Acme", "Acme Corp"]})) == (
        "Updated Acme Corp."
    )
    assert change_intro("Acme", Outcome(renamed, "note", note="Called")) == "Note added to Acme."
    assert (
        change_intro("Acme", Outcome(renamed, "won", changes={"stage": ["a", "b"]})) == "Congratulations — Acme is won!"
    )
    assert change_intro("Acme", Outcome(renamed, "lost", changes={"stage": ["a", "b"]})) == "Acme marked as lost."


async def test_the_deals_offered_are_a_reps_own_or_everyones_with_their_owner(world: Any) -> None:
    await world.say("jordan", '/deal new "Acme" amount=48k close=eoq')
    await world.say("jordan", '/deal new "apex 100%" amount=10k close=eoq')
    await world.say("jordan", '/deal new "Initech" amount=5k close=eoq')
    await world.say("jordan", "/deal Initech lost reason=price")  # closed: no longer offered
    await world.say("priya", '/deal new "Globex" amount=20k close=eoq')
    acme, apex, globex = [(await deal(world, n)).id for n in ("Acme", "apex 100%", "Globex")]
    jordan, maya = await world.person("jordan"), await world.person("maya")
    engagement = world.engagement.id
    async with world.db.session() as session:
        mine = await deal_form.editable_choices(session, engagement, jordan)
        everyone = await deal_form.editable_choices(session, engagement, maya)
        searched = await deal_form.editable_choices(session, engagement, maya, search=" GLO ")
        literal = await deal_form.editable_choices(session, engagement, maya, search="%")
        first = await deal_form.editable_choices(session, engagement, maya, limit=1)
    assert mine == ([DealChoice(acme, "Acme"), DealChoice(apex, "apex 100%")], 2)
    assert everyone == (
        [
            DealChoice(acme, "Acme · Jordan Lee"),
            DealChoice(apex, "apex 100% · Jordan Lee"),
            DealChoice(globex, "Globex · Priya Natarajan"),
        ],
        3,
    )
    assert searched == ([DealChoice(globex, "Globex · Priya Natarajan")], 1)
    assert literal == ([DealChoice(apex, "apex 100% · Jordan Lee")], 1)  # % is a character, not a wildcard
    assert first == ([DealChoice(acme, "Acme · Jordan Lee")], 3)


async def test_the_form_to_edit_a_deal_is_refused_before_it_opens(world: Any) -> None:
    await world.say("priya", '/deal new "Globex" amount=20k close=2026-12-15 stage=qualification')
    globex = await deal(world, "Globex")
    values, stages = await deal_form.values_to_edit(await world.ctx("priya", "slack"), globex.id)
    assert values == DealValues(
        globex.id, 1, "Globex", "qualification", Decimal("20000.00"), globex.close_date, "pipeline", None, None, None
    )
    assert [key for key, _ in stages][:2] == ["discovery", "qualification"] and len(stages) == 7
    with pytest.raises(DealError) as denied:
        await deal_form.values_to_edit(await world.ctx("jordan", "slack"), globex.id)
    assert denied.value.message.startswith("Reps can change only their own deals")
    with pytest.raises(DealError) as gone:
        await deal_form.values_to_edit(await world.ctx("priya", "slack"), globex.id + 100)
    assert gone.value.message == deal_form.GONE
    async with world.db.session() as session:
        new = await deal_form.form_stages(session, world.engagement.id, new=True)
    assert [key for key, _ in new.choices] == ["discovery", "qualification", "solution", "proposal", "negotiation"]


async def test_saving_the_form_checks_the_version_seen_and_audits_each_attempt(world: Any) -> None:
    await world.say("jordan", '/deal new "Acme" amount=48k close=eoq')
    acme = await deal(world, "Acme")
    ctx = await world.ctx("jordan", "slack")
    submitted = {"amount": "52k", "note": ""}
    with pytest.raises(Conflict):
        await deal_form.save_update(ctx, acme, submitted, {"amount": "52k"}, seen=acme.version - 1)
    with pytest.raises(DealError) as unchanged:
        await deal_form.save_update(ctx, acme, submitted, {}, seen=acme.version)
    assert (unchanged.value.outcome, unchanged.value.message) == ("unchanged", deal_form.NOTHING_CHANGED)
    outcome = await deal_form.save_update(ctx, acme, submitted, {"amount": "52k"}, seen=acme.version)
    assert (outcome.kind, outcome.changes) == ("update", {"amount": ["48000.00", "52000.00"]})
    assert (await deal(world, "Acme")).amount == Decimal("52000.00")
    target = f"deal:{acme.id}"
    assert await audit_rows(world) == [  # the empty submission is not audited: nothing was attempted
        ("deal.update", "conflict", target, {"form": {"amount": "52k"}, "version": 0}),
        (
            "deal.update",
            "ok",
            target,
            {"form": {"amount": "52k"}, "version": 1, "changes": {"amount": ["48000.00", "52000.00"]}, "events": []},
        ),
    ]
    message = await confirmation(ctx, outcome, "Updated Acme.")
    assert message.text == "Updated Acme." and message.ephemeral
    assert message.blocks[1] == Paragraph(text="amount: $48,000 → $52,000")


async def test_a_new_deal_from_the_form_is_audited_with_what_was_typed(world: Any) -> None:
    ctx = await world.ctx("jordan", "slack")
    with pytest.raises(DealError):
        await deal_form.save_new(ctx, {"name": "Hooli", "amount": "5k"})  # no close date
    outcome = await deal_form.save_new(ctx, {"name": " Hooli ", "amount": "5k", "close": "2026-12-15", "risk": "x"})
    assert outcome.deal.name == "Hooli" and outcome.deal.risk is None
    rows = await audit_rows(world)
    assert [(a, o, t) for a, o, t, _ in rows] == [
        ("deal.create", "rejected", None),
        ("deal.create", "ok", f"deal:{outcome.deal.id}"),
    ]
    assert rows[0][3]["form"] == {"name": "Hooli", "amount": "5k"} and "close" in rows[0][3]["errors"]
    assert rows[1][3]["form"] == {"name": "Hooli", "amount": "5k", "close": "2026-12-15"}
