"""The deal form as data — its fields with their labels and choices, the values a deal fills it with, the
deals a person may pick, and what a submission asks the deal service to do — decided once, so the Slack
modal and the Teams card differ only in how they draw it (Block Kit, Adaptive Card) and read it back.

Field keys are the `/deal` grammar's names (`stage`, `amount`, `close`, `next`, ...): what a form
submits goes to `update_deal` / `create_deal` as if typed, and each `FieldErrors` entry comes back
under the field it names. A submission sends only the fields the person changed, so a value they did
not touch (a close date already in the past) is not refused on their behalf.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from cadences import forms
from cadences.authz import Action, allowed
from cadences.context import Context
from cadences.deal_views import FORECAST_LABELS
from cadences.deals import Conflict, DealError, FieldErrors, Outcome, check_can_edit, create_deal, update_deal
from storage import deals as deal_repo
from storage import engagements as engagement_repo
from storage.models import Deal, Person, StageKind

Choice = tuple[str, str]
"""(value, label) of one option of a choice field."""
FORECASTS: tuple[Choice, ...] = tuple(FORECAST_LABELS.items())
NOTHING_CHANGED = "Nothing changed: edit a field or add a note."
GONE = "That deal is no longer in the pipeline."


class FieldKind(StrEnum):
    TEXT = "text"
    LONG_TEXT = "long_text"
    AMOUNT = "amount"
    DATE = "date"
    CHOICE = "choice"


@dataclass(frozen=True)
class FormField:
    """One input of the deal form. `placeholder` is an example of what to type; `hint` a sentence on
    what happens to the value."""

    key: str
    label: str
    kind: FieldKind
    choices: tuple[Choice, ...] = ()
    placeholder: str = ""
    hint: str = ""
    required: bool = False


def fields(stages: Sequence[Choice], *, new: bool) -> list[FormField]:
    """The deal form's inputs, in order: a new deal also needs a name and a close date; risk is kept for
    deals that exist (it is what the review asks about an existing deal)."""
    found: list[FormField] = []
    if new:
        found.append(FormField("name", "Deal name", FieldKind.TEXT, placeholder="Globex Corp", required=True))
    found += [
        FormField("stage", "Stage", FieldKind.CHOICE, choices=tuple(stages)),
        FormField("amount", "Amount", FieldKind.AMOUNT, placeholder="48k, $48,000, 1.2m"),
        FormField("close", "Close date", FieldKind.DATE, required=new),
        FormField("forecast", "Forecast", FieldKind.CHOICE, choices=FORECASTS),
        FormField("next", "Next step", FieldKind.TEXT, placeholder="Send the MSA"),
        FormField("next_date", "Next step by", FieldKind.DATE),
    ]
    if not new:
        found.append(FormField("risk", "Risk", FieldKind.LONG_TEXT))
    found.append(FormField("note", "Note", FieldKind.LONG_TEXT, hint="Kept in the deal's history with your name."))
    return found


NEW_DEAL_KEYS = tuple(f.key for f in fields((), new=True) if f.key != "name")
"""What the new-deal form hands to `create_deal` besides the name."""


# --- a deal's values ------------------------------------------------------------------------------


def amount_text(amount: Decimal | None) -> str:
    """An amount as a person would type it back: 48000, 48000.5 (no separators, no currency)."""
    if amount is None:
        return ""
    text = f"{amount:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class DealValues:
    """A deal's editable fields as the form shows them, and the version the person saw."""

    id: int
    version: int
    name: str
    stage: str
    amount: Decimal | None
    close: date | None
    forecast: str
    next_step: str | None
    next_date: date | None
    risk: str | None

    @classmethod
    def of(cls, deal: Deal, stage_key: str) -> DealValues:
        return cls(
            id=deal.id,
            version=deal.version,
            name=deal.name,
            stage=stage_key,
            amount=deal.amount,
            close=deal.close_date,
            forecast=deal.forecast_category,
            next_step=deal.next_step,
            next_date=deal.next_step_date,
            risk=deal.risk,
        )

    def as_raw(self) -> dict[str, str]:
        """What the form would submit untouched, in the `/deal` grammar's field names."""
        return {
            "stage": self.stage,
            "amount": amount_text(self.amount),
            "close": self.close.isoformat() if self.close else "",
            "forecast": self.forecast,
            "next": self.next_step or "",
            "next_date": self.next_date.isoformat() if self.next_date else "",
            "risk": self.risk or "",
        }


@dataclass(frozen=True)
class FormStages:
    """The engagement's stages as the stage input offers them — (key, name) in pipeline order — and each
    stage's key by id, to fill the form with a deal's values."""

    choices: list[Choice]
    keys: dict[int, str] = field(default_factory=dict)

    def values(self, deal: Deal) -> DealValues:
        return DealValues.of(deal, self.keys[deal.stage_id])


async def form_stages(session: AsyncSession, engagement_id: int, *, new: bool = False) -> FormStages:
    """The stages to offer; only the open ones for a new deal (it starts in an open stage)."""
    stages = [s for s in await engagement_repo.stages(session, engagement_id) if not new or s.kind == StageKind.OPEN]
    return FormStages([(s.key, s.name) for s in stages], {s.id: s.key for s in stages})


async def values_to_edit(ctx: Context, deal_id: int) -> tuple[DealValues, list[Choice]]:
    """What the form to edit one deal (a nudge's Update button) is filled with, and the stages it offers.
    Raises `DealError` with what to tell the person instead when the deal has left the engagement or
    they may not change it, before they fill in a form they could not submit."""
    async with ctx.db.session() as session:
        stages = await form_stages(session, ctx.engagement.id)
        deal = await session.get(Deal, deal_id)
    if deal is None or deal.engagement_id != ctx.engagement.id:
        raise DealError(GONE)
    await check_can_edit(ctx, deal)
    return stages.values(deal), stages.choices


# --- the deals a person may pick ------------------------------------------------------------------


class DealChoice(NamedTuple):
    """A deal as a picker shows it."""

    id: int
    label: str


async def editable_choices(
    session: AsyncSession, engagement_id: int, person: Person, *, search: str = "", limit: int = 100
) -> tuple[list[DealChoice], int]:
    """The open deals `person` may change — a rep's own; everyone's for a manager or the CRO, labelled
    with the owner — matching `search`, by name, at most `limit`; and how many there are in all."""
    operator = allowed(person, Action.EDIT_DEAL)
    deals, total = await deal_repo.editable_deals(
        session, engagement_id, owner_id=None if operator else person.id, search=search, limit=limit
    )
    owners = {p.id: p.name for p in await engagement_repo.people(session, engagement_id, active_only=False)}
    choices = [DealChoice(d.id, f"{d.name} · {owners.get(d.owner_id, '?')}" if operator else d.name) for d in deals]
    return choices, total


# --- submissions ----------------------------------------------------------------------------------


def changed_fields(submitted: Mapping[str, str], current: DealValues) -> dict[str, str]:
    """The fields the person changed, in the `/deal` grammar (untouched fields are not re-sent, so a
    close date already in the past is not refused when they only changed the next step). A note
    always counts."""
    before = current.as_raw()
    raw = {key: value.strip() for key, value in submitted.items() if key in before and value.strip() != before[key]}
    note = submitted.get("note", "").strip()
    if note:
        raw["note"] = note
    return raw


def new_deal_fields(submitted: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """(name, fields) of the new-deal form, empty fields left out."""
    raw = {key: value.strip() for key, value in submitted.items() if key in NEW_DEAL_KEYS and value.strip()}
    return submitted.get("name", "").strip(), raw


async def save_update(
    ctx: Context, deal: Deal, submitted: Mapping[str, str], changes: Mapping[str, str], *, seen: int | None
) -> Outcome:
    """Save `changes` (what the person changed of `submitted`, see `changed_fields`) as `ctx.actor`, at the
    version they saw (`seen`; None when the form did not carry one: the deal's version now).

    Raises `Conflict` when the deal changed since they saw it, `DealError` (outcome "unchanged") when
    they changed nothing, and whatever `update_deal` refuses. Every attempt that reaches the deal is
    audited with the form as typed and the version seen."""
    target = f"deal:{deal.id}"
    detail: dict[str, Any] = {"form": {k: v for k, v in submitted.items() if v}, "version": seen}
    if seen is not None and deal.version != seen:
        await forms.record(ctx, "deal.update", "conflict", target, detail)
        raise Conflict(deal)
    if not changes:
        raise DealError(NOTHING_CHANGED, outcome="unchanged")
    try:
        outcome = await update_deal(ctx, deal.id, changes, expected_version=seen if seen is not None else deal.version)
    except DealError as exc:
        errors = {"errors": exc.errors} if isinstance(exc, FieldErrors) else {}
        await forms.record(ctx, "deal.update", exc.outcome, target, {**detail, **errors})
        raise
    await forms.record(
        ctx, f"deal.{outcome.kind}", "ok", target, {**detail, "changes": outcome.changes, "events": outcome.events}
    )
    return outcome


async def save_new(ctx: Context, submitted: Mapping[str, str]) -> Outcome:
    """Create the deal of a new-deal form as `ctx.actor`; audited like `save_update`, refused like
    `create_deal`."""
    name, raw = new_deal_fields(submitted)
    detail: dict[str, Any] = {"form": {"name": name, **raw}}
    try:
        outcome = await create_deal(ctx, name, raw)
    except DealError as exc:
        errors = {"errors": exc.errors} if isinstance(exc, FieldErrors) else {}
        await forms.record(ctx, "deal.create", exc.outcome, None, {**detail, **errors})
        raise
    await forms.record(ctx, "deal.create", "ok", f"deal:{outcome.deal.id}", {**detail, "changes": outcome.changes})
    return outcome
