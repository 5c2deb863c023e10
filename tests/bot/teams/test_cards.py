"""The input cards: the deal form (inputs, prefill, errors under their fields, the version in the submit
data), the picker, the new-deal, debrief and forecast forms, reading a submission back, and settling a
sent message once a button worked. Pure: no connector, no database."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from bot.teams import cards
from bot.teams.render import CARD_LIMIT, card_size
from cadences.deal_form import DealValues, new_deal_fields
from cadences.debrief_form import DebriefForm
from cadences.engagement_file import DebriefQuestion
from cadences.messages import Actions, Button, DealItem, DealList, Message, Paragraph
from support import fake_connector
from support.fake_connector import card_problems

STAGES = [("discovery", "Discovery"), ("qualification", "Qualification"), ("proposal", "Proposal")]
ACME = DealValues(
    id=7,
    version=3,
    name="Acme [EMEA]",
    stage="qualification",
    amount=Decimal("48000.00"),
    close=date(2026, 12, 15),
    forecast="commit",
    next_step="Send the MSA",
    next_date=None,
    risk=None,
)


@pytest.fixture(autouse=True)
def _fake_knows_every_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake's structural check lists the inputs the renderer uses; the forms also use Input.Number and
    Input.Date (both Adaptive Cards 1.0 elements)."""
    monkeypatch.setitem(fake_connector.CARD_ELEMENTS, "Input.Number", ("id",))
    monkeypatch.setitem(fake_connector.CARD_ELEMENTS, "Input.Date", ("id",))


def inputs(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in card["body"] if str(e["type"]).startswith("Input.")}


def following(card: dict[str, Any], input_id: str) -> dict[str, Any] | None:
    """The element right after an input (where its error line goes)."""
    body = card["body"]
    index = next(i for i, e in enumerate(body) if e.get("id") == input_id)
    return body[index + 1] if index + 1 < len(body) else None


def test_the_deal_form_is_filled_with_the_deal_and_carries_its_version() -> None:
    card = cards.deal_form(ACME, STAGES)
    assert card_problems(card) == []
    assert card["version"] == "1.5"
    assert card["body"][0]["text"] == "Update Acme \\[EMEA\\]"  # the name is Markdown-escaped
    found = inputs(card)
    assert list(found) == ["stage", "amount", "close", "forecast", "next", "next_date", "risk", "note"]
    assert {k: found[k]["type"] for k in ("stage", "amount", "close", "next")} == {
        "stage": "Input.ChoiceSet",
        "amount": "Input.Number",
        "close": "Input.Date",
        "next": "Input.Text",
    }
    assert found["stage"]["value"] == "qualification"
    assert [c["value"] for c in found["stage"]["choices"]] == ["discovery", "qualification", "proposal"]
    assert found["amount"]["value"] == 48000
    assert found["close"]["value"] == "2026-12-15"
    assert found["forecast"]["value"] == "commit"
    assert found["next"]["value"] == "Send the MSA"
    assert "value" not in found["next_date"] and "value" not in found["risk"] and "value" not in found["note"]
    [save] = card["actions"]
    assert save["type"] == "Action.Submit"
    assert save["data"] == {cards.FORM_KEY: {"form": "deal_form", "deal": 7, "version": 3}}


def test_each_error_is_a_red_line_under_its_field_and_the_rest_on_top() -> None:
    errors = {"close": "The close date Nov 02, 2026 is in the past.", "owner": "Only managers reassign deals."}
    submitted = {"stage": "proposal", "amount": "52000", "close": "2026-11-02", "next": "Call", "note": "hi"}
    card = cards.deal_form(ACME, STAGES, submitted=submitted, errors=errors)
    assert card_problems(card) == []
    assert following(card, "close") == {
        "type": "TextBlock",
        "text": "The close date Nov 02, 2026 is in the past.",
        "wrap": True,
        "color": "Attention",
        "size": "Small",
        "spacing": "None",
    }
    assert following(card, "stage")["type"] == "Input.Number"  # type: ignore[index]  # no error: the next input
    assert card["body"][1]["text"] == "Only managers reassign deals." and card["body"][1]["color"] == "Attention"
    found = inputs(card)  # what they typed is kept, except the note (it was not saved)
    assert (found["stage"]["value"], found["amount"]["value"], found["close"]["value"]) == (
        "proposal",
        52000,
        "2026-11-02",
    )
    assert "value" not in found["note"]


def test_only_changed_fields_are_submitted() -> None:
    untouched = {**ACME.as_raw(), "amount": "48000.0", "note": ""}
    assert cards.changed_fields(untouched, ACME) == {}
    changed = {**untouched, "stage": "proposal", "next_date": "2026-12-01", "note": " Called the CFO "}
    assert cards.changed_fields(changed, ACME) == {
        "stage": "proposal",
        "next_date": "2026-12-01",
        "note": "Called the CFO",
    }
    assert cards.changed_fields({**untouched, "amount": "52000"}, ACME) == {"amount": "52000"}
    assert cards.changed_fields({**untouched, "next": ""}, ACME) == {"next": ""}  # clearing is a change


def test_a_submission_is_read_back_and_a_button_is_not_a_form() -> None:
    value = {cards.FORM_KEY: {"form": "deal_form", "deal": 7, "version": 3}, "stage": "proposal", "amount": 52000}
    assert cards.form_data(value) == (
        "deal_form",
        {"form": "deal_form", "deal": 7, "version": 3},
        {"stage": "proposal", "amount": "52000"},
    )
    assert cards.form_data({"action_id": "deal_update", "value": "7", "command": None}) is None
    assert cards.form_data({cards.FORM_KEY: {"form": "something_else"}}) is None
    assert cards.form_data(None) is None


def test_the_picker_new_deal_and_forecast_forms_are_valid_cards() -> None:
    picker = cards.deal_picker([(1, "Acme · Jordan Lee"), (2, "Globex · Priya Natarajan")], error="Choose a deal.")
    assert card_problems(picker) == []
    assert inputs(picker)["deal"]["choices"][1] == {"title": "Globex · Priya Natarajan", "value": "2"}
    assert picker["body"][1]["text"] == "Choose a deal."
    new = cards.new_deal_form(STAGES, submitted={"name": "Initech", "close": "2026-12-31"}, errors={"amount": "bad"})
    assert card_problems(new) == []
    assert inputs(new)["name"]["value"] == "Initech" and inputs(new)["name"]["isRequired"] is True
    assert following(new, "amount")["text"] == "bad"  # type: ignore[index]
    assert new_deal_fields({"name": " Initech ", "amount": "", "close": "2026-12-31", "note": ""}) == (
        "Initech",
        {"close": "2026-12-31"},
    )
    forecast = cards.forecast_form("FY27 Q4", "450000", "600000", errors={"best_case": "Too low."})
    assert card_problems(forecast) == []
    assert inputs(forecast)["commit"]["value"] == "450000"
    assert following(forecast, "best_case")["text"] == "Too low."  # type: ignore[index]
    assert forecast["actions"][0]["data"] == {cards.FORM_KEY: {"form": "forecast_form", "quarter": "FY27 Q4"}}


def test_the_debrief_form_asks_each_question_and_reads_new_answers() -> None:
    questions = [
        DebriefQuestion(key="reason", text="Why did we lose?", choices=["price", "timing"]),
        DebriefQuestion(key="lesson", text="What would you do differently?"),
    ]
    card = cards.debrief_form(
        DebriefForm(12, "Debrief #12", "Acme was lost", questions, {"reason": "price"}), errors={"lesson": "Too long."}
    )
    assert card_problems(card) == []
    found = inputs(card)
    assert found["answer_reason"]["value"] == "price" and found["answer_reason"]["type"] == "Input.ChoiceSet"
    assert found["answer_lesson"]["type"] == "Input.Text" and "value" not in found["answer_lesson"]
    assert following(card, "answer_lesson")["text"] == "Too long."  # type: ignore[index]
    assert card["actions"][0]["data"] == {cards.FORM_KEY: {"form": "debrief_form", "debrief": 12}}
    submitted = {"answer_reason": "price", "answer_lesson": " Multi-thread earlier ", "note": "x"}
    assert cards.debrief_answers(submitted, {"reason": "price"}) == {"lesson": "Multi-thread earlier"}


def test_a_picker_of_many_deals_stays_within_the_card_limit() -> None:
    choices = [(i, f"Deal number {i} with a fairly long name · Someone Important") for i in range(101)]
    card = cards.deal_picker(choices)
    assert len(inputs(card)["deal"]["choices"]) == cards.CHOICES_MAX
    assert card_size(card) < CARD_LIMIT


def test_settle_replaces_the_used_buttons_with_what_was_done() -> None:
    buttons = [
        Button(label="Update", action_id="deal_update", value="7"),
        Button(label="Still accurate", action_id="deal_confirm", value="7"),
    ]
    other = [Button(label="Update", action_id="deal_update", value="8")]
    message = Message(
        text="Your deals",
        blocks=[
            DealList(items=[DealItem(deal_id=7, name="Acme", summary="s", buttons=buttons)]),
            DealList(items=[DealItem(deal_id=8, name="Globex", summary="s", buttons=other)]),
            Actions(buttons=[Button(label="Done", action_id="handoff_status", value="3:done")]),
        ],
    )
    settled = cards.settle(message, lambda b: b.value == "7", "✓ Still accurate")
    first, second, actions = settled.blocks
    assert isinstance(first, DealList) and first.items[0].buttons == []
    assert first.items[0].reasons == ["✓ Still accurate"]
    assert second == message.blocks[1] and actions == message.blocks[2]
    done = cards.settle(message, lambda b: b.action_id == "handoff_status", "✓ Handover: done")
    assert done.blocks[2] == Paragraph(text="✓ Handover: done")
