"""The forecast call form, decided once for every platform: the numbers it starts from and how what was
typed becomes the `/pipeline forecast` command.

The call itself is that command, so its rules (who may call, a note for a big change) and its audit are
the command's; the form only checks the amounts first, so each problem shows next to its field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from cadences.context import Context
from cadences.deal_form import amount_text
from cadences.deals import FieldErrors
from cadences.parsing import ParseError, parse_amount
from cadences.pipeline_metrics import quarter_numbers

AMOUNTS = ("commit", "best_case")


@dataclass(frozen=True)
class ForecastStart:
    """The quarter called and the amounts the form starts from, as a person would type them."""

    quarter: str
    commit: str
    best_case: str


async def starting_point(ctx: Context) -> ForecastStart:
    """This quarter's roll-up: closed won + commit, and that + best case."""
    async with ctx.db.session() as session:
        numbers = await quarter_numbers(session, ctx.engagement, ctx.today())
    commit = numbers.won + numbers.rollup.commit
    best = commit + numbers.rollup.best_case
    return ForecastStart(numbers.label, amount_text(commit), amount_text(best))


async def quarter_label(ctx: Context) -> str:
    """The quarter a call made today is for (to show the form again after a refusal)."""
    async with ctx.db.session() as session:
        return (await quarter_numbers(session, ctx.engagement, ctx.today())).label


def call_args(submitted: Mapping[str, str], currency: str) -> str:
    """The `/pipeline` arguments for what was typed (`forecast commit=... best=... note="..."`). Raises
    `FieldErrors` for an amount that does not read, is in another currency, or a best case below commit."""
    errors: dict[str, str] = {}
    amounts: dict[str, Decimal] = {}
    for key in AMOUNTS:
        try:
            money = parse_amount(submitted.get(key, ""), currency)
        except ParseError as exc:
            errors[key] = exc.message
            continue
        if money.currency != currency:
            errors[key] = f"This engagement reports in {currency}; give the amount in {currency}."
        amounts[key] = money.amount
    if not errors and amounts["best_case"] < amounts["commit"]:
        errors["best_case"] = "Best case includes commit, so it can't be below it."
    if errors:
        raise FieldErrors(errors)
    note = submitted.get("note", "").strip().replace('"', "'")
    return f"forecast commit={amounts['commit']} best={amounts['best_case']}" + (f' note="{note}"' if note else "")
