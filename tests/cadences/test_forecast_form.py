"""The forecast call form: what was typed becomes the `/pipeline forecast` command, or an error next to
each field; and the amounts it starts from."""

from __future__ import annotations

from typing import Any

import pytest

from cadences.deals import FieldErrors
from cadences.forecast_form import ForecastStart, call_args, starting_point


def test_a_call_becomes_the_pipeline_forecast_command() -> None:
    typed = {"commit": "400k", "best_case": "$650,000", "note": ' Big "yes" from Acme '}
    assert call_args(typed, "USD") == "forecast commit=400000.00 best=650000.00 note=\"Big 'yes' from Acme\""
    assert call_args({"commit": "1m", "best_case": "1m", "note": " "}, "USD") == (
        "forecast commit=1000000.00 best=1000000.00"
    )


@pytest.mark.parametrize(
    ("typed", "errors"),
    [
        ({"commit": "600k", "best_case": "500k"}, {"best_case": "Best case includes commit, so it can't be below it."}),
        (
            {"commit": "€400k", "best_case": "650k"},
            {"commit": "This engagement reports in USD; give the amount in USD."},
        ),
    ],
)
def test_amounts_that_cannot_be_called_are_refused_by_field(typed: dict[str, str], errors: dict[str, str]) -> None:
    with pytest.raises(FieldErrors) as refused:
        call_args(typed, "USD")
    assert refused.value.errors == errors


def test_an_amount_that_does_not_read_is_refused_next_to_its_field() -> None:
    with pytest.raises(FieldErrors) as refused:
        call_args({"commit": "lots", "best_case": ""}, "USD")
    assert set(refused.value.errors) == {"commit", "best_case"}


async def test_the_form_starts_from_this_quarters_roll_up(world: Any) -> None:
    # FY starts in February: Tue 2026-11-24 is in FY2027 Q4 (Nov–Jan). Commit 100k + best case 30k.
    await world.say("jordan", '/deal new "Acme" amount=100k close=2026-12-15 forecast=commit')
    await world.say("jordan", '/deal new "Globex" amount=30k close=2027-01-15 forecast=best_case')
    await world.say("jordan", '/deal new "Initech" amount=99k close=2027-03-15 forecast=commit')  # next quarter
    start = await starting_point(await world.ctx("dana"))
    assert start == ForecastStart("FY2027 Q4", "100000", "130000")
