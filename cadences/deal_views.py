"""How deals read in chat: one summary line, a card, a change confirmation and the history.

These build platform-neutral `Message`s only; every platform renders the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cadences.context import Context
from cadences.messages import Button, DealItem, DealList, FieldItem, Fields, Header, Message, Paragraph
from cadences.parsing import format_money
from storage.models import Deal, DealHistory, Person, Stage

FORECAST_LABELS = {"commit": "Commit", "best_case": "Best case", "pipeline": "Pipeline", "omitted": "Omitted"}
FIELD_LABELS = {
    "name": "name",
    "stage": "stage",
    "amount": "amount",
    "close_date": "close date",
    "forecast_category": "forecast",
    "next_step": "next step",
    "next_step_date": "next step date",
    "risk": "risk",
    "account": "account",
    "source": "source",
    "segment": "segment",
    "owner": "owner",
    "loss_reason": "loss reason",
    "competitor": "competitor",
    "crm_id": "CRM id",
}


@dataclass(frozen=True)
class Names:
    """Stage and people names for an engagement: small tables, loaded once per request."""

    stages: dict[int, Stage]
    people: dict[int, Person]
    currency: str

    def stage_by_key(self, key: str) -> Stage | None:
        return next((s for s in self.stages.values() if s.key == key), None)

    def person_by_key(self, key: str) -> Person | None:
        return next((p for p in self.people.values() if p.key == key), None)


async def load_names(session: AsyncSession, engagement_id: int, currency: str) -> Names:
    stages = (await session.execute(select(Stage).where(Stage.engagement_id == engagement_id))).scalars().all()
    people = (await session.execute(select(Person).where(Person.engagement_id == engagement_id))).scalars().all()
    return Names({s.id: s for s in stages}, {p.id: p for p in people}, currency)


def short_date(d: date | None) -> str:
    return d.strftime("%b %-d, %Y") if d else "no date"


def money(amount: Decimal | None, currency: str) -> str:
    return format_money(amount, currency) if amount is not None else "no amount"


def summary(deal: Deal, names: Names, *, with_owner: bool = True) -> str:
    """'Proposal · $48,000 · closes Dec 15, 2026 · Commit · Jordan Lee' — the one line a deal reads as."""
    parts = [
        names.stages[deal.stage_id].name,
        money(deal.amount, deal.currency),
        f"closes {short_date(deal.close_date)}" if deal.is_open else f"closed {short_date(deal.closed_on)}",
    ]
    if deal.is_open:
        parts.append(FORECAST_LABELS.get(deal.forecast_category, deal.forecast_category))
    if with_owner:
        parts.append(names.people[deal.owner_id].name)
    return " · ".join(parts)


def deal_buttons(deal: Deal) -> list[Button]:
    quoted = _quote(deal.name)
    return [
        Button(
            label="Update", action_id="deal_update", value=str(deal.id), command=f"/deal {quoted} stage=... close=..."
        ),
        Button(
            label="Still accurate",
            action_id="deal_confirm",
            value=str(deal.id),
            command=f"/deal {quoted} ok",
            style="primary",
        ),
    ]


def deal_item(deal: Deal, names: Names, reasons: Sequence[str] = (), buttons: Sequence[Button] = ()) -> DealItem:
    return DealItem(
        deal_id=deal.id, name=deal.name, summary=summary(deal, names), reasons=list(reasons), buttons=list(buttons)
    )


def deal_fields(deal: Deal, names: Names) -> Fields:
    items = [
        FieldItem(label="Stage", value=names.stages[deal.stage_id].name),
        FieldItem(label="Amount", value=money(deal.amount, deal.currency)),
        FieldItem(label="Close date", value=short_date(deal.close_date)),
        FieldItem(label="Forecast", value=FORECAST_LABELS.get(deal.forecast_category, deal.forecast_category)),
        FieldItem(label="Owner", value=names.people[deal.owner_id].name),
        FieldItem(label="Next step", value=_next_step(deal)),
    ]
    for label, value in (
        ("Account", deal.account),
        ("Risk", deal.risk),
        ("Source", deal.source),
        ("Segment", deal.segment),
        ("Loss reason", deal.loss_reason),
        ("Competitor", deal.competitor),
    ):
        if value:
            items.append(FieldItem(label=label, value=value))
    if deal.slip_count:
        items.append(FieldItem(label="Slipped", value=f"{deal.slip_count} time{'s' if deal.slip_count > 1 else ''}"))
    return Fields(items=items)


def _next_step(deal: Deal) -> str:
    if not deal.next_step:
        return "none"
    return f"{deal.next_step} (by {short_date(deal.next_step_date)})" if deal.next_step_date else deal.next_step


def deal_card(deal: Deal, names: Names, *, intro: str | None = None) -> Message:
    blocks: list[Any] = []
    if intro:
        blocks.append(Paragraph(text=intro))
    blocks += [Header(text=deal.name), deal_fields(deal, names)]
    return Message(text=intro or f"{deal.name}: {summary(deal, names)}", blocks=blocks, ephemeral=True)


def _shown(field: str, value: Any, names: Names) -> str:
    if value is None or value == "":
        return "—"
    if field == "stage":
        stage = names.stage_by_key(str(value))
        return stage.name if stage else str(value)
    if field == "owner":
        person = names.person_by_key(str(value))
        return person.name if person else str(value)
    if field == "amount":
        return format_money(Decimal(str(value)), names.currency)
    if field in ("close_date", "next_step_date"):
        return short_date(date.fromisoformat(str(value)))
    if field == "forecast_category":
        return FORECAST_LABELS.get(str(value), str(value))
    return str(value)


def change_lines(changes: dict[str, list[Any]], names: Names) -> list[str]:
    """'stage: Discovery → Proposal' for each changed field."""
    return [
        f"{FIELD_LABELS.get(f, f)}: {_shown(f, before, names)} → {_shown(f, after, names)}"
        for f, (before, after) in changes.items()
    ]


def history_message(deal: Deal, rows: Sequence[DealHistory], names: Names, tz: ZoneInfo) -> Message:
    """Who changed what, when and from where, newest first."""
    lines = []
    for row in rows:
        who = names.people[row.actor_id].name if row.actor_id in names.people else "Cadence"
        when = row.at.astimezone(tz).strftime("%b %-d %H:%M")
        what = "; ".join(change_lines(row.changes, names)) if row.kind != "create" else "created"
        if row.kind == "confirm":
            what = "confirmed still accurate"
        if row.note and row.kind != "confirm":
            what = f"{what}; note: {row.note}" if row.changes else f"note: {row.note}"
        lines.append(f"{when} · {who} ({row.channel}) · {row.kind}: {what}")
    body = "\n".join(lines) or "No history yet."
    return Message(
        text=f"History of {deal.name}",
        blocks=[Header(text=f"History of {deal.name}"), Paragraph(text=body)],
        ephemeral=True,
    )


def deal_list(title: str, deals: Sequence[Deal], names: Names, *, empty: str) -> Message:
    items = [deal_item(d, names) for d in deals]
    return Message(text=title, blocks=[DealList(title=title, items=items, empty_text=empty)], ephemeral=True)


async def conflict_card(ctx: Context, deal: Deal, message: str) -> Message:
    """The deal as it is now, for someone whose edit lost a race: they see what changed before retrying."""
    async with ctx.db.session() as session:
        names = await load_names(session, ctx.engagement.id, ctx.engagement.currency)
        current = await session.get(Deal, deal.id)
    return deal_card(current or deal, names, intro=message)


def _quote(name: str) -> str:
    return f'"{name}"' if " " in name else name
