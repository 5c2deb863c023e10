"""Modals: opened as Slack would show them, submitted as Slack would send them; refusals come back in the
ack next to their field (`response_action: errors`), and nothing is saved unless all of it is valid."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from slack_sdk.models.views import View
from sqlalchemy import select

from storage.models import AuditLog, Deal, DealHistory, Debrief
from support.fake_slack import FakeSlack
from support.slack_app import SlackDriver, date_input, serve_slack, text_input, words
from support.slack_app import select as choose


@pytest.fixture
async def slack(world: Any, fake_slack: FakeSlack) -> AsyncIterator[SlackDriver]:
    async with serve_slack(world, fake_slack) as driver:
        await driver.setup()
        await world.say("jordan", '/deal new "Acme" amount=48k close=2026-12-15 stage=discovery')
        await world.say("priya", '/deal new "Globex" amount=90k close=2026-12-20 stage=discovery')
        yield driver


async def _deal(slack: SlackDriver, name: str) -> Deal:
    async with slack.world.db.session() as session:
        return (await session.execute(select(Deal).where(Deal.name == name))).scalar_one()


async def _opened(slack: SlackDriver, who: str, text: str = "") -> dict[str, Any]:
    """Open the deal form with /deal and pick `Acme`-like deal by its id: the view Slack would show."""
    await slack.command(who, "/deal", text)
    await slack.settle()
    method, view = slack.fake.views[-1]
    assert method == "views.open"
    View(**{k: v for k, v in view.items() if k not in ("id", "trigger_id")}).validate_json()  # a valid modal
    return view


async def _pick(slack: SlackDriver, who: str, view: dict[str, Any], deal: Deal) -> dict[str, Any]:
    """Choose a deal in the picker: Slack sends a block action; the app fills the form in place."""
    body = slack.button(who, "deal_pick", "")
    body.pop("message")
    body["container"] = {"type": "view", "view_id": view["id"]}
    body["view"] = {**view, "hash": "h1"}
    body["actions"] = [
        {
            "action_id": "deal_pick",
            "block_id": "deal",
            "type": "static_select",
            "selected_option": {"text": {"type": "plain_text", "text": deal.name}, "value": str(deal.id)},
        }
    ]
    assert (await slack.interaction(body)).status == 200
    await slack.settle()
    method, updated = slack.fake.views[-1]
    assert method == "views.update" and updated["id"] == view["id"]
    return updated


def _form_values(deal: Deal, **changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The form's state as it was filled in (Acme's values), with `changes` applied."""
    values: dict[str, dict[str, Any]] = {
        "deal": choose(str(deal.id)),
        "stage": choose("discovery"),
        "amount": text_input("48000"),
        "close": date_input(deal.close_date.isoformat() if deal.close_date else None),
        "forecast": choose(deal.forecast_category),
        "next": text_input(""),
        "next_date": date_input(None),
        "risk": text_input(""),
        "note": text_input(""),
    }
    return {**values, **changes}


async def test_picking_a_deal_fills_the_form_with_its_values_and_version(slack: SlackDriver) -> None:
    view = await _opened(slack, "jordan")
    acme = await _deal(slack, "Acme")
    filled = await _pick(slack, "jordan", view, acme)
    blocks = {b.get("block_id"): b for b in filled["blocks"]}
    assert blocks["amount"]["element"]["initial_value"] == "48000"
    assert blocks["close"]["element"]["initial_date"] == "2026-12-15"
    assert blocks["stage"]["element"]["initial_option"]["value"] == "discovery"
    assert f'"deal":{acme.id}' in filled["private_metadata"] and '"version":1' in filled["private_metadata"]


async def test_a_submitted_form_updates_the_deal_and_confirms(slack: SlackDriver) -> None:
    view = await _opened(slack, "jordan")
    acme = await _deal(slack, "Acme")
    filled = await _pick(slack, "jordan", view, acme)
    values = _form_values(
        acme, stage=choose("qualification"), amount=text_input("52k"), note=text_input("Budget confirmed")
    )
    response = await slack.interaction(slack.submission("jordan", filled, values))
    assert (response.status, response.text) == (200, "")  # the modal closes
    await slack.settle()
    deal = await _deal(slack, "Acme")
    assert (deal.amount, deal.version, deal.close_date) == (Decimal("52000.00"), 2, date(2026, 12, 15))
    [confirmation] = slack.sink.to("jordan")
    assert confirmation["text"] == "Updated Acme."
    assert "amount: $48,000 → $52,000" in words(confirmation) and "Note: Budget confirmed" in words(confirmation)
    async with slack.world.db.session() as session:
        row = (
            await session.execute(
                select(DealHistory).where(DealHistory.deal_id == deal.id, DealHistory.kind == "update")
            )
        ).scalar_one()
    assert row.channel == "slack" and row.note == "Budget confirmed" and set(row.changes) == {"stage", "amount"}


async def test_invalid_fields_come_back_next_to_each_field_and_nothing_is_saved(slack: SlackDriver) -> None:
    view = await _opened(slack, "jordan")
    acme = await _deal(slack, "Acme")
    filled = await _pick(slack, "jordan", view, acme)
    values = _form_values(acme, amount=text_input("lots"), close=date_input("2026-11-01"), stage=choose("proposal"))
    response = await slack.interaction(slack.submission("jordan", filled, values))
    assert response.status == 200
    answer = response.json()
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"amount", "close"}
    assert "Nov 01, 2026 is in the past" in answer["errors"]["close"]
    deal = await _deal(slack, "Acme")
    assert (deal.amount, deal.version) == (Decimal("48000.00"), 1)
    skip = await slack.interaction(slack.submission("jordan", filled, _form_values(acme, stage=choose("proposal"))))
    assert set(skip.json()["errors"]) == {"stage"} and "skips Qualification" in skip.json()["errors"]["stage"]


async def test_a_rep_cannot_update_another_reps_deal_from_a_modal(slack: SlackDriver) -> None:
    globex = await _deal(slack, "Globex")
    # The form as if opened on Priya's deal (e.g. a forwarded button): Jordan submits it.
    from bot.slack import modals
    from cadences.deal_form import DealValues

    form = modals.deal_form(
        None,
        [("discovery", "Discovery"), ("qualification", "Qualification")],
        DealValues(
            globex.id,
            globex.version,
            "Globex",
            "discovery",
            globex.amount,
            globex.close_date,
            "pipeline",
            None,
            None,
            None,
        ),
        {},
    )
    values = _form_values(globex, amount=text_input("1"))
    values.pop("deal")
    response = await slack.interaction(slack.submission("jordan", form, values))
    answer = response.json()
    assert answer["response_action"] == "errors"
    assert answer["errors"] == {
        "stage": "Reps can change only their own deals; ask the deal's owner, a manager or the CRO."
    }
    assert (await _deal(slack, "Globex")).amount == Decimal("90000.00")
    async with slack.world.db.session() as session:
        outcome = (await session.execute(select(AuditLog.outcome).where(AuditLog.action == "deal.update"))).scalar_one()
    assert outcome == "denied"


async def test_a_deal_changed_meanwhile_is_a_conflict_showing_its_new_values(slack: SlackDriver) -> None:
    view = await _opened(slack, "jordan")
    acme = await _deal(slack, "Acme")
    filled = await _pick(slack, "jordan", view, acme)
    await slack.world.say("maya", "/deal Acme amount=60k")  # the manager changes it while the form is open
    response = await slack.interaction(slack.submission("jordan", filled, _form_values(acme, amount=text_input("50k"))))
    answer = response.json()
    assert answer["response_action"] == "errors" and list(answer["errors"]) == ["deal"]
    assert "changed by someone else" in answer["errors"]["deal"] and "$60,000" in answer["errors"]["deal"]
    assert (await _deal(slack, "Acme")).amount == Decimal("60000.00")


async def test_the_new_deal_form_creates_a_deal_or_says_what_is_wrong(slack: SlackDriver) -> None:
    await slack.command("jordan", "/deal", "new")
    await slack.settle()
    _, view = slack.fake.views[-1]
    values = {
        "name": text_input("Initech"),
        "stage": choose("discovery"),
        "amount": text_input("$75,000"),
        "close": date_input("2027-01-29"),
        "forecast": choose("best_case"),
        "next": text_input("Demo"),
        "next_date": date_input(None),
        "note": text_input(""),
    }
    duplicate = await slack.interaction(slack.submission("jordan", view, {**values, "name": text_input("acme")}))
    assert duplicate.json()["errors"] == {"name": 'There is already an open deal called "Acme". Update it instead.'}
    created = await slack.interaction(slack.submission("jordan", view, values))
    assert created.text == ""
    await slack.settle()
    deal = await _deal(slack, "Initech")
    assert (deal.amount, deal.forecast_category, deal.next_step) == (Decimal("75000.00"), "best_case", "Demo")
    assert slack.sink.to("jordan")[-1]["text"] == "Created Initech."


async def test_the_debrief_form_saves_answers(slack: SlackDriver) -> None:
    await slack.world.say("jordan", '/deal Acme lost reason="no decision"')
    async with slack.world.db.session() as session:
        debrief = (await session.execute(select(Debrief))).scalar_one()
    body = slack.button("jordan", "debrief_open", str(debrief.id))
    await slack.interaction(body)
    await slack.settle()
    _, view = slack.fake.views[-1]
    assert view["callback_id"] == "debrief_form"
    blocks = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert blocks["reason"]["element"]["initial_option"]["value"] == "no decision"  # known from the update
    values = {
        "reason": choose("no decision"),
        "competitor": text_input("Initech"),
        "differently": text_input("Multi-thread earlier"),
    }
    response = await slack.interaction(slack.submission("jordan", view, values))
    assert response.text == ""
    await slack.settle()
    async with slack.world.db.session() as session:
        saved = await session.get(Debrief, debrief.id)
    assert saved is not None and saved.status == "answered"
    assert saved.answers["differently"] == "Multi-thread earlier"
    assert "is complete" in slack.sink.texts("jordan")[-1]


async def test_the_forecast_form_checks_amounts_then_records_the_call(slack: SlackDriver) -> None:
    await slack.command("dana", "/pipeline", "forecast")
    await slack.settle()
    _, view = slack.fake.views[-1]
    bad = await slack.interaction(
        slack.submission(
            "dana", view, {"commit": text_input("400k"), "best_case": text_input("300k"), "note": text_input("")}
        )
    )
    assert bad.json()["errors"] == {"best_case": "Best case includes commit, so it can't be below it."}
    ok = await slack.interaction(
        slack.submission(
            "dana", view, {"commit": text_input("400k"), "best_case": text_input("650k"), "note": text_input("")}
        )
    )
    assert ok.text == ""
    await slack.settle()
    assert "Forecast for FY2027 Q4 recorded: commit $400k, best case $650k." in slack.sink.texts("dana")[-1]


async def test_a_pipeline_over_100_deals_gets_a_searchable_picker(slack: SlackDriver) -> None:
    from bot.slack import modals
    from cadences.deal_form import DealChoice

    picker = modals.deal_picker([DealChoice(i, f"Deal {i}") for i in range(100)], total=101)
    assert picker["element"]["type"] == "external_select" and picker["element"]["action_id"] == "deal_pick"
    suggestion = {
        "type": "block_suggestion",
        "action_id": "deal_pick",
        "block_id": "deal",
        "value": "glo",
        "team": {"id": "T0TEST", "domain": "testco"},
        "user": {"id": "U0MAYA", "team_id": "T0TEST"},
        "api_app_id": "A0CADENCE",
        "container": {"type": "view", "view_id": "V0FORM"},
        "view": {"id": "V0FORM", "type": "modal", "callback_id": "deal_form", "private_metadata": "{}"},
    }
    response = await slack.interaction(suggestion)
    assert response.status == 200
    globex = await _deal(slack, "Globex")
    assert response.json() == {
        "options": [{"text": {"type": "plain_text", "text": "Globex · Priya Natarajan"}, "value": str(globex.id)}]
    }
    suggestion["user"]["id"] = "U0JORDAN"  # a rep finds only their own deals
    assert (await slack.interaction(suggestion)).json() == {"options": []}
