"""The debrief form, decided once for every platform: whether a person may open it and with which
questions, which answers a submission gives, and what they are told once it is saved.

A debrief answered in a form goes through `answer_debrief` like `/debrief`, and every attempt is audited
with the answers given, accepted or not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cadences import forms
from cadences.context import Context
from cadences.deals import DealError, FieldErrors
from cadences.debriefs import answer_debrief, get_debrief, load_view, may_answer
from cadences.engagement_file import DebriefQuestion, engagement_settings

NO_ANSWERS = "Answer at least one question."


@dataclass(frozen=True)
class DebriefForm:
    """What the form shows: its title, why the debrief was asked, the questions left, the answers so far."""

    debrief_id: int
    title: str
    reason: str
    questions: Sequence[DebriefQuestion]
    answers: Mapping[str, Any]


async def form_for(ctx: Context, debrief_id: int) -> DebriefForm:
    """The form of debrief `debrief_id` for `ctx.actor`. Raises `DealError` with what to tell them instead:
    not part of the engagement, no such debrief, someone else's to answer, or nothing left to answer."""
    person = forms.opener(ctx)
    settings = engagement_settings(ctx.engagement)
    async with ctx.db.session() as session:
        debrief = await get_debrief(session, ctx.engagement.id, debrief_id)
        if not may_answer(person, debrief):
            raise DealError(f"Debrief #{debrief_id} is for its deal's owner to answer (or a manager, or the CRO).")
        view = await load_view(session, settings, ctx.tz, debrief)
    if debrief.status == "answered" and not view.questions:
        raise DealError(f"Debrief #{debrief_id} has no questions left to answer.")
    return DebriefForm(debrief_id, f"Debrief #{debrief_id}", f"{view.reason}.", view.questions, debrief.answers)


async def answers_so_far(ctx: Context, debrief_id: int) -> dict[str, Any]:
    """The debrief's saved answers, by question key; raises `DealError` when there is no such debrief."""
    async with ctx.db.session() as session:
        return dict((await get_debrief(session, ctx.engagement.id, debrief_id)).answers)


def changed_answers(typed: Mapping[str, str], answers: Mapping[str, Any]) -> dict[str, str]:
    """The answers given or changed in the form, by question key (empty inputs are not answers)."""
    return {
        key: value.strip()
        for key, value in typed.items()
        if value.strip() and value.strip() != str(answers.get(key) or "")
    }


async def save_answers(ctx: Context, debrief_id: int, raw: Mapping[str, str]) -> str:
    """Save `raw` (see `changed_answers`) as `ctx.actor` and say what became of the debrief; refused like
    `answer_debrief`."""
    target = f"debrief:{debrief_id}"
    try:
        answered = await answer_debrief(ctx, debrief_id, raw)
    except DealError as exc:
        errors = {"errors": exc.errors} if isinstance(exc, FieldErrors) else {}
        await forms.record(ctx, "debrief.answer", exc.outcome, target, {"answers": dict(raw), **errors})
        raise
    await forms.record(ctx, "debrief.answer", "ok", target, {"answers": answered.saved, "complete": answered.completed})
    deal = answered.view.deal.name
    if answered.completed:
        return f"Thanks — debrief #{debrief_id} on {deal} is complete."
    if answered.still_missing:
        return f"Saved. Still to answer for debrief #{debrief_id}: " + "; ".join(q.text for q in answered.still_missing)
    return f"Updated debrief #{debrief_id} on {deal}."
