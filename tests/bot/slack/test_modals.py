"""The modal builders and parsers, as pure functions: every form is a valid Slack view, and a submission
turns into exactly the fields the person changed."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from slack_sdk.models.views import View

from bot.slack import modals
from cadences.deal_form import DealChoice, DealValues, changed_fields
from cadences.debrief_form import DebriefForm
from cadences.engagement_file import DEFAULT_DEBRIEF_QUESTIONS

STAGES = [("discovery", "Discovery"), ("qualification", "Qualification"), ("closed_won", "Closed Won")]
ACME = DealValues(
    id=7,
    version=3,
    name="<!channel> & Co",
    stage="discovery",
    amount=Decimal("48000.50"),
    close=date(2026, 12, 15),
    forecast="pipeline",
    next_step="Send MSA",
    next_date=None,
    risk=None,
)


def _valid(view: dict[str, object]) -> dict[str, object]:
    View(**view).validate_json()
    assert len(view["blocks"]) <= 100  # type: ignore[arg-type]
    return view


@pytest.mark.parametrize(
    "view",
    [
        modals.deal_form(modals.deal_picker([DealChoice(7, "Acme")], 1), STAGES, None, {}),
        modals.deal_form(modals.deal_picker([DealChoice(7, "Acme")], 1), STAGES, ACME, {"response_url": "u"}),
        modals.deal_form(None, STAGES, ACME, {}),
        modals.new_deal_form(STAGES, {}),
        modals.debrief_form(DebriefForm(3, "Debrief #3", "Acme was lost.", DEFAULT_DEBRIEF_QUESTIONS["lost"], {}), {}),
        modals.forecast_form("FY2027 Q4", "400000", "650000", {}),
        modals.log_note_form(modals.deal_picker([], 150, dispatch=False), "A note", {}),
        modals.action_item_form("Acme", [("jordan", "Jordan Lee")], "jordan", {"deal": 7}),
    ],
)
def test_every_form_is_a_valid_slack_view(view: dict[str, object]) -> None:
    _valid(view)


def test_the_deal_form_escapes_what_it_shows_but_not_what_it_prefills() -> None:
    view = modals.deal_form(None, STAGES, ACME, {})
    assert view["blocks"][0]["text"]["text"] == "&lt;!channel&gt; &amp; Co"
    fields = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert fields["amount"]["element"]["initial_value"] == "48000.5"
    assert fields["next"]["element"]["initial_value"] == "Send MSA"
    assert modals.metadata(view) == {"deal": 7, "version": 3}


def test_only_changed_fields_are_submitted_and_a_note_always_counts() -> None:
    untouched = ACME.as_raw()
    assert changed_fields(untouched, ACME) == {}
    submitted = {**untouched, "amount": "50k", "next": "", "note": "  Budget confirmed ", "deal": "7"}
    assert changed_fields(submitted, ACME) == {"amount": "50k", "next": "", "note": "Budget confirmed"}


def test_field_errors_land_on_their_block_and_the_rest_on_the_fallback() -> None:
    errors = {"amount": "Not an amount.", "owner": "Nobody.", "reason": "Only for lost deals."}
    placed = modals.field_errors(errors, ["deal", "amount", "close"], "deal")
    assert placed == {"amount": "Not an amount.", "deal": "Nobody. Only for lost deals."}


def test_state_values_read_every_kind_of_input() -> None:
    view = {
        "state": {
            "values": {
                "stage": {"stage": {"type": "static_select", "selected_option": {"value": "qualification"}}},
                "close": {"close": {"type": "datepicker", "selected_date": "2026-12-20"}},
                "next_date": {"next_date": {"type": "datepicker", "selected_date": None}},
                "note": {"note": {"type": "plain_text_input", "value": None}},
                "deal": {"deal_pick": {"type": "external_select", "selected_option": {"value": "7"}}},
            }
        }
    }
    assert modals.state_values(view) == {
        "stage": "qualification",
        "close": "2026-12-20",
        "next_date": "",
        "note": "",
        "deal": "7",
    }


def test_a_large_pipeline_gets_an_external_select_keeping_the_chosen_deal() -> None:
    picker = modals.deal_picker([], 250, DealChoice(7, "Acme"))
    assert picker["element"]["type"] == "external_select"
    assert picker["element"]["initial_option"]["value"] == "7"
