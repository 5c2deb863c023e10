"""The Teams handler's conversation logic through botbuilder's `TestAdapter` / `TestFlow`: typed commands
(mention and markup taken out, the same grammar as Slack and the console), the forms typed commands open,
and card actions — the deal form with its errors, conflicts and denials shown on the card, updated in
place — as the people of the test engagement, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, Entity
from sqlalchemy import select

from bot.teams import cards
from bot.teams.handler import NOT_LINKED, CadenceTeamsBot, typed_text
from cadences.authz import Action, denial
from storage import chat_workspaces
from storage.models import AuditLog, ConversationRef, Deal, DealHistory, ForecastCall
from support import fake_connector
from support.fake_connector import BOT, card_problems
from support.teams_bot import AAD, apply_teams_engagement, bot_adapter, deps_for, link_tenant

MENTION = Entity().deserialize(
    {"type": "mention", "mentioned": {"id": BOT["id"], "name": "Cadence"}, "text": "<at>Cadence</at>"}
)


@pytest.fixture(autouse=True)
def _fake_knows_every_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fake_connector.CARD_ELEMENTS, "Input.Number", ("id",))
    monkeypatch.setitem(fake_connector.CARD_ELEMENTS, "Input.Date", ("id",))


@pytest.fixture
async def bot(world: Any, tmp_path: Path) -> CadenceTeamsBot:
    """The engagement with Teams ids, linked to the test tenant; Jordan's Acme in Solution, $48,000,
    closing Dec 15; Priya known by her Teams id (as after her first message)."""
    await apply_teams_engagement(world, tmp_path)
    await link_tenant(world)
    await world.say("jordan", "/deal new Acme amount=48k close=2026-12-15 stage=qualification")
    await world.say("jordan", "/deal Acme stage=solution")
    priya = await world.person("priya")
    async with world.db.write() as session:
        await chat_workspaces.remember_identity(session, world.engagement.id, priya.id, "teams", AAD["priya"], None)
    return CadenceTeamsBot(deps_for(world))


async def acme(world: Any) -> Deal:
    async with world.db.session() as session:
        deal: Deal = (await session.execute(select(Deal).where(Deal.name == "Acme"))).scalar_one()
    return deal


def said(text: str) -> Activity:
    """A channel message with the bot @mentioned, as Teams delivers it."""
    return Activity(type="message", text=f"<at>Cadence</at> {text}", entities=[MENTION])


def clicked(value: dict[str, Any], reply_to: str = "card-1") -> Activity:
    return Activity(type="message", value=value, reply_to_id=reply_to)


def card_of(activity: Activity) -> dict[str, Any]:
    [attachment] = activity.attachments
    assert attachment.content_type == "application/vnd.microsoft.card.adaptive"
    card: dict[str, Any] = attachment.content
    assert card_problems(card) == []
    return card


def texts(card: dict[str, Any]) -> list[str]:
    def walk(elements: list[dict[str, Any]]) -> list[str]:
        out: list[str] = []
        for e in elements:
            if e["type"] == "TextBlock":
                out.append(e["text"])
            elif e["type"] == "FactSet":
                out += [f"{f['title']}: {f['value']}" for f in e["facts"]]
            out += walk(e.get("items") or [])
        return out

    return walk(card["body"])


def replies(adapter: TestAdapter) -> list[Activity]:
    found, adapter.activity_buffer[:] = list(adapter.activity_buffer), []
    return found


def form_value(deal: Deal, **inputs: str) -> dict[str, Any]:
    """What Teams sends when the deal form is saved: the form's data and every input's value."""
    untouched = {
        "stage": "solution",
        "amount": "48000",
        "close": "2026-12-15",
        "forecast": "pipeline",
        "next": "",
        "next_date": "",
        "risk": "",
        "note": "",
    }
    return {cards.FORM_KEY: {"form": "deal_form", "deal": deal.id, "version": deal.version}, **untouched, **inputs}


# --- typed commands ---------------------------------------------------------------------------------


def test_the_bots_mention_and_teams_markup_are_taken_out_of_what_was_typed() -> None:
    mention = {"type": "mention", "mentioned": {"id": BOT["id"], "name": "Cadence"}, "text": "<at>Cadence</at>"}
    activity = Activity().deserialize(
        {
            "type": "message",
            "text": '<p><at>Cadence</at>&nbsp;deal &quot;Smith &amp; Co&quot; note="Cadence call went well"</p>\n',
            "entities": [mention],
            "recipient": {"id": BOT["id"]},
        }
    )
    assert typed_text(activity) == 'deal "Smith & Co" note="Cadence call went well"'  # "Cadence" in the note stays
    priya = {"type": "mention", "mentioned": {"id": "29:1p"}, "text": "<at>Priya Natarajan</at>"}
    other = Activity().deserialize(
        {
            "type": "message",
            "text": "<at>Cadence</at> deal list <at>Priya Natarajan</at>",
            "entities": [mention, priya],
            "recipient": {"id": BOT["id"]},
        }
    )
    assert typed_text(other) == "deal list <at>Priya Natarajan</at>"


async def test_a_typed_deal_update_answers_with_the_updated_deal(world: Any, bot: CadenceTeamsBot) -> None:
    adapter = bot_adapter(bot, "jordan")

    async def the_update(reply: Activity, description: str) -> None:
        card = card_of(reply)
        assert reply.summary == "Updated Acme."
        assert texts(card)[:3] == ["Updated Acme.", "stage: Solution → Proposal", "Acme"]
        assert "Stage: Proposal" in texts(card) and "Amount: $48,000" in texts(card)

    await (await adapter.send(said("deal Acme stage=proposal"))).assert_reply(the_update)
    async with world.db.session() as session:
        last = (await session.execute(select(DealHistory).order_by(DealHistory.id.desc()).limit(1))).scalar_one()
    assert (last.channel, last.changes) == ("teams", {"stage": ["solution", "proposal"]})


@pytest.mark.parametrize("typed", ["/deal Acme ok", "deal Acme still accurate", "Deal Acme OK"])
async def test_the_same_grammar_with_or_without_a_slash(world: Any, bot: CadenceTeamsBot, typed: str) -> None:
    adapter = bot_adapter(bot, "jordan")
    await adapter.send(said(typed))
    [reply] = replies(adapter)
    assert texts(card_of(reply))[0] == "Thanks — Acme marked as still accurate."


async def test_an_unlinked_organisation_is_told_how_to_link_it(world: Any, tmp_path: Path) -> None:
    await apply_teams_engagement(world, tmp_path)
    adapter = bot_adapter(CadenceTeamsBot(deps_for(world)), "jordan")
    await adapter.send(said("deal list"))
    [reply] = replies(adapter)
    assert reply.summary == NOT_LINKED


async def test_the_reference_of_every_conversation_is_kept(world: Any, bot: CadenceTeamsBot) -> None:
    await bot_adapter(bot, "priya", conversation="a:1PriyaChat", kind="personal").send("deal list")
    async with world.db.session() as session:
        found = (
            await session.execute(select(ConversationRef).where(ConversationRef.conversation_id == "a:1PriyaChat"))
        ).scalar_one()
    assert (found.aad_object_id, found.engagement_id, found.conversation_type) == (
        AAD["priya"],
        world.engagement.id,
        "personal",
    )


# --- forms opened by typed commands ------------------------------------------------------------------------


async def test_a_bare_deal_offers_the_deals_to_update_then_their_form(world: Any, bot: CadenceTeamsBot) -> None:
    adapter = bot_adapter(bot, "jordan")
    await adapter.send(said("deal"))
    [picker] = replies(adapter)
    choice = card_of(picker)["body"][1]
    deal = await acme(world)
    assert choice["choices"] == [{"title": "Acme", "value": str(deal.id)}]
    await adapter.send(clicked({cards.FORM_KEY: {"form": "deal_pick"}, "deal": str(deal.id)}, reply_to="picker-1"))
    [form] = adapter.updated_activities
    assert form.id == "picker-1"
    assert card_of(form)["actions"][0]["data"] == {
        cards.FORM_KEY: {"form": "deal_form", "deal": deal.id, "version": deal.version}
    }


async def test_the_forecast_call_form_checks_amounts_then_calls_it(world: Any, bot: CadenceTeamsBot) -> None:
    adapter = bot_adapter(bot, "dana")
    await adapter.send(said("pipeline forecast"))
    [form] = replies(adapter)
    card = card_of(form)
    quarter = card["actions"][0]["data"][cards.FORM_KEY]["quarter"]
    data = card["actions"][0]["data"]
    await adapter.send(clicked({**data, "commit": "lots", "best_case": "300k", "note": ""}, reply_to="f-1"))
    [refused] = adapter.updated_activities
    body = card_of(refused)["body"]
    index = next(i for i, e in enumerate(body) if e.get("id") == "commit")
    assert body[index + 1]["color"] == "Attention"
    await adapter.send(clicked({**data, "commit": "200k", "best_case": "300k", "note": ""}, reply_to="f-1"))
    called = card_of(adapter.updated_activities[-1])
    assert texts(called)[0] == f"Forecast for {quarter} recorded: commit $200k, best case $300k."
    async with world.db.session() as session:
        call = (await session.execute(select(ForecastCall))).scalar_one()
    assert (call.quarter, call.commit, call.best_case) == (quarter, Decimal("200000"), Decimal("300000"))


# --- card actions ---------------------------------------------------------------------------------------------


async def test_update_sends_the_deal_form_filled_in(world: Any, bot: CadenceTeamsBot) -> None:
    deal = await acme(world)
    adapter = bot_adapter(bot, "jordan", conversation="a:1JordanChat", kind="personal")
    await adapter.send(clicked({"action_id": "deal_update", "value": str(deal.id), "command": "/deal Acme ..."}))
    [form] = replies(adapter)
    card = card_of(form)
    assert card["body"][0]["text"] == "Update Acme"
    values = {e["id"]: e.get("value") for e in card["body"] if "id" in e}
    assert values["stage"] == "solution" and values["amount"] == 48000 and values["close"] == "2026-12-15"


async def test_a_saved_form_updates_the_deal_and_the_card_in_place(world: Any, bot: CadenceTeamsBot) -> None:
    deal = await acme(world)
    adapter = bot_adapter(bot, "jordan", conversation="a:1JordanChat", kind="personal")
    await adapter.send(clicked(form_value(deal, stage="proposal", amount="52000.0", note="Verbal from the CFO")))
    assert replies(adapter) == []
    [updated] = adapter.updated_activities
    assert updated.id == "card-1"
    shown = texts(card_of(updated))
    assert shown[0] == "Updated Acme."
    assert shown[1:3] == ["Note: Verbal from the CFO", "amount: $48,000 → $52,000\nstage: Solution → Proposal"]
    after = await acme(world)
    assert (after.amount, after.version) == (Decimal("52000"), deal.version + 1)


async def test_field_errors_come_back_under_their_fields_and_nothing_is_saved(world: Any, bot: CadenceTeamsBot) -> None:
    deal = await acme(world)
    adapter = bot_adapter(bot, "jordan", conversation="a:1JordanChat", kind="personal")
    await adapter.send(clicked(form_value(deal, close="2026-11-02", next="Send MSA")))
    [updated] = adapter.updated_activities
    body = card_of(updated)["body"]
    index = next(i for i, e in enumerate(body) if e.get("id") == "close")
    assert body[index]["value"] == "2026-11-02"  # what was typed is kept
    assert body[index + 1]["color"] == "Attention"
    assert body[index + 1]["text"].startswith("The close date Nov 02, 2026 is in the past")
    assert (await acme(world)).version == deal.version


async def test_a_rep_cannot_change_another_reps_deal_from_a_card(world: Any, bot: CadenceTeamsBot) -> None:
    deal = await acme(world)
    adapter = bot_adapter(bot, "priya", conversation="a:1PriyaChat", kind="personal")
    await adapter.send(clicked({"action_id": "deal_update", "value": str(deal.id), "command": None}))
    [refused] = replies(adapter)
    assert texts(card_of(refused)) == [denial(Action.EDIT_DEAL)]
    await adapter.send(clicked(form_value(deal, stage="proposal", amount="1")))
    [denied] = adapter.updated_activities
    assert texts(card_of(denied)) == [denial(Action.EDIT_DEAL)]  # in place of the form
    after = await acme(world)
    assert (after.version, after.amount) == (deal.version, Decimal("48000"))
    async with world.db.session() as session:
        row = (await session.execute(select(AuditLog).order_by(AuditLog.id.desc()).limit(1))).scalar_one()
    assert (row.action, row.outcome, row.actor_ref) == ("deal.update", "denied", f"teams:{AAD['priya']}")


async def test_a_stale_form_shows_the_deals_new_values(world: Any, bot: CadenceTeamsBot) -> None:
    deal = await acme(world)
    await world.say("maya", "/deal Acme amount=60k")
    adapter = bot_adapter(bot, "jordan", conversation="a:1JordanChat", kind="personal")
    await adapter.send(clicked(form_value(deal, stage="proposal")))
    [conflict] = adapter.updated_activities
    card = card_of(conflict)
    assert "changed by someone else" in card["body"][1]["text"]
    values = {e["id"]: e.get("value") for e in card["body"] if "id" in e}
    assert values["amount"] == 60000 and values["stage"] == "solution"
    assert card["actions"][0]["data"][cards.FORM_KEY]["version"] == deal.version + 1
    assert (await acme(world)).stage_id == deal.stage_id


async def test_action_execute_answers_with_the_new_card_for_every_viewer(world: Any, bot: CadenceTeamsBot) -> None:
    deal = await acme(world)
    adapter = bot_adapter(bot, "jordan", conversation="a:1JordanChat", kind="personal")
    invoke = Activity(
        type="invoke",
        name="adaptiveCard/action",
        reply_to_id="card-1",
        value={"action": {"type": "Action.Execute", "verb": "deal_form", "data": form_value(deal, stage="proposal")}},
    )
    await adapter.send(invoke)
    [response] = replies(adapter)
    assert response.type == "invokeResponse" and response.value.status == 200
    body = response.value.body
    assert body["statusCode"] == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
    assert texts(body["value"])[0] == "Updated Acme."
    assert adapter.updated_activities == []  # Teams replaces the card itself from the response


async def test_a_button_that_carries_a_command_runs_it(world: Any, bot: CadenceTeamsBot) -> None:
    adapter = bot_adapter(bot, "jordan", conversation="a:1JordanChat", kind="personal")
    await adapter.send(clicked({"action_id": "run_command", "value": "/deal list", "command": "/deal list"}))
    [listed] = replies(adapter)
    assert "Acme" in texts(card_of(listed))
