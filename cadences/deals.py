"""Deal updates: the one service behind every way a deal changes (chat text, Slack modal, Teams card,
CRM import, a nudge button), so the rules are decided once.

Rules: a rep changes only their own deals; a close date must not be in the past while the deal is open;
a forward stage move may not skip a stage (each stage's exit criteria are the buyer's commitments, and
skipping one is how pipelines fill with wishful deals); amounts are never negative. A rejected change
writes nothing. An accepted change writes the deal and an append-only history row in one transaction,
and a write that raced another one is refused with the deal's new values instead of overwriting them.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from cadences.authz import Action, allowed, denial
from cadences.context import Context
from cadences.parsing import ParseError, parse_amount, parse_date
from storage import engagements as engagement_repo
from storage.deals import deal_names
from storage.models import Deal, DealHistory, ForecastCategory, Person, Role, Stage, StageKind

MAX_TEXT = 2000
FORECAST_ALIASES: Mapping[str, ForecastCategory] = {
    "commit": ForecastCategory.COMMIT,
    "committed": ForecastCategory.COMMIT,
    "best_case": ForecastCategory.BEST_CASE,
    "best case": ForecastCategory.BEST_CASE,
    "bestcase": ForecastCategory.BEST_CASE,
    "best-case": ForecastCategory.BEST_CASE,
    "best": ForecastCategory.BEST_CASE,
    "upside": ForecastCategory.BEST_CASE,
    "pipeline": ForecastCategory.PIPELINE,
    "pipe": ForecastCategory.PIPELINE,
    "omitted": ForecastCategory.OMITTED,
    "omit": ForecastCategory.OMITTED,
}
LOSS_REASONS = ("price", "no decision", "competitor", "timing", "product gap", "champion left", "other")
TEXT_FIELDS = {"next": "next_step", "risk": "risk", "account": "account", "source": "source", "segment": "segment"}
CLOSED_ONLY_FIELDS = ("reason", "competitor")


class DealError(Exception):
    """A change that is refused as a whole, with the sentence to say to the person."""

    def __init__(self, message: str, outcome: str = "rejected") -> None:
        super().__init__(message)
        self.message = message
        self.outcome = outcome


class FieldErrors(DealError):
    """One message per offending field, so a modal or card can show each error next to its field."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__(" ".join(errors.values()))


class AmbiguousDeal(DealError):
    def __init__(self, typed: str, candidates: Sequence[tuple[int, str]]) -> None:
        self.typed = typed
        self.candidates = list(candidates)
        names = ", ".join(name for _, name in self.candidates[:8])
        super().__init__(f'"{typed}" matches {len(self.candidates)} deals: {names}. Which one did you mean?')


class Conflict(DealError):
    """Someone else changed the deal since this person last saw it."""

    def __init__(self, deal: Deal) -> None:
        self.deal = deal
        super().__init__(
            f"{deal.name} was changed by someone else while you were editing, so nothing was saved. "
            "Here are its current values; send your update again if it still applies.",
            outcome="conflict",
        )


@dataclass
class Outcome:
    """What an accepted change did: the deal after it, field-by-field before/after, and its events."""

    deal: Deal
    kind: str
    changes: dict[str, list[Any]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    note: str | None = None
    history_id: int | None = None


# --- finding deals --------------------------------------------------------------------------------


async def resolve_deal(session: AsyncSession, engagement_id: int, typed: str) -> Deal:
    """The deal someone means by `typed`: exact name, then unique prefix, then a close fuzzy match.

    Open deals win over closed ones with the same match, because a closed deal is rarely updated.
    Two or more equally good candidates raise `AmbiguousDeal` (a question back, never a guess).
    """
    needle = " ".join(typed.split()).casefold()
    if not needle:
        raise DealError("Which deal? Give its name, e.g. /deal Acme stage=proposal.")
    rows = await deal_names(session, engagement_id)
    open_ids = set(
        (await session.execute(select(Deal.id).where(Deal.engagement_id == engagement_id, Deal.is_open.is_(True))))
        .scalars()
        .all()
    )
    folded = [(i, n, n.casefold()) for i, n in rows]
    for matches in (
        [(i, n) for i, n, f in folded if f == needle],
        [(i, n) for i, n, f in folded if f.startswith(needle)],
        [(i, n) for i, n, f in folded if needle in f],
    ):
        if matches:
            return await _pick(session, engagement_id, typed, matches, open_ids)
    close = difflib.get_close_matches(needle, [f for _, _, f in folded], n=5, cutoff=0.75)
    fuzzy = [(i, n) for i, n, f in folded if f in close]
    if fuzzy:
        return await _pick(session, engagement_id, typed, fuzzy, open_ids)
    raise DealError(f'No deal matches "{typed}". Try /deal list to see your deals, or /deal new "{typed}" to add it.')


async def _pick(
    session: AsyncSession, engagement_id: int, typed: str, matches: list[tuple[int, str]], open_ids: set[int]
) -> Deal:
    if len(matches) > 1:
        open_matches = [m for m in matches if m[0] in open_ids]
        if len(open_matches) == 1:
            matches = open_matches
    if len(matches) > 1:
        raise AmbiguousDeal(typed, sorted(matches, key=lambda m: m[1].casefold()))
    deal = await session.get(Deal, matches[0][0])
    assert deal is not None and deal.engagement_id == engagement_id
    return deal


# --- parsing a change set ---------------------------------------------------------------------------


@dataclass
class _Parsed:
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _match_stage(stages: Sequence[Stage], typed: str) -> Stage | list[Stage]:
    needle = typed.strip().casefold().replace(" ", "_")
    for pool in (
        [s for s in stages if s.key.casefold() == needle or s.name.casefold().replace(" ", "_") == needle],
        [s for s in stages if s.key.casefold().startswith(needle) or s.name.casefold().startswith(typed.casefold())],
    ):
        if len(pool) == 1:
            return pool[0]
        if pool:
            return pool
    return []


def _text(value: str, label: str, parsed: _Parsed, key: str) -> str | None:
    value = value.strip()
    if len(value) > MAX_TEXT:
        parsed.errors[key] = f"The {label} is {len(value)} characters; keep it under {MAX_TEXT}."
        return None
    return value or None


async def parse_changes(
    session: AsyncSession, ctx: Context, deal: Deal | None, raw: Mapping[str, str], *, closing: bool = False
) -> dict[str, Any]:
    """Turn typed field values into typed deal attributes, collecting every error before refusing.

    `deal` is None for a new deal. `closing` allows a past close date (a win or loss happened already).
    Raises `FieldErrors` mapping each bad field to a sentence that says what is wrong and what works.
    """
    eng = ctx.engagement
    today = ctx.today()
    parsed = _Parsed()
    stages = await engagement_repo.stages(session, eng.id)
    for key, value in raw.items():
        try:
            if key == "stage":
                found = _match_stage(stages, value)
                if isinstance(found, list):
                    names = ", ".join(s.key for s in (found or stages))
                    parsed.errors[key] = (
                        f'"{value}" matches several stages ({names}).'
                        if found
                        else f'There is no stage "{value}". Stages: {names}.'
                    )
                else:
                    parsed.values["stage"] = found
            elif key == "amount":
                money = parse_amount(value, eng.currency)
                currency = deal.currency if deal else eng.currency
                if money.currency != currency:
                    parsed.errors[key] = (
                        f"This engagement reports in {currency}; give the amount in {currency} "
                        f"(Cadence doesn't convert {money.currency})."
                    )
                else:
                    parsed.values["amount"] = money.amount
            elif key in ("close", "next_date"):
                if not value.strip():
                    if key == "close":
                        parsed.errors[key] = "A deal needs a close date; give one like 2026-12-15, Dec 15 or eoq."
                    else:
                        parsed.values["next_step_date"] = None
                    continue
                when = parse_date(value, today, eng.fiscal_year_start_month)
                if when < today and not (key == "close" and closing):
                    what = "close date" if key == "close" else "next step date"
                    parsed.errors[key] = f"The {what} {when:%b %d, %Y} is in the past. Pick today or later" + (
                        " — or, if the deal has closed, mark it won or lost." if key == "close" else "."
                    )
                elif key == "close" and closing and when > today:
                    parsed.errors[key] = f"A closed deal's close date can't be in the future ({when:%b %d, %Y})."
                else:
                    parsed.values["close_date" if key == "close" else "next_step_date"] = when
            elif key == "forecast":
                category = FORECAST_ALIASES.get(value.strip().casefold().replace("-", "_").replace("  ", " "))
                if category is None:
                    parsed.errors[key] = (
                        f'"{value}" is not a forecast category; use commit, best_case, pipeline or omitted.'
                    )
                else:
                    parsed.values["forecast_category"] = category.value
            elif key in TEXT_FIELDS:
                parsed.values[TEXT_FIELDS[key]] = _text(value, TEXT_FIELDS[key].replace("_", " "), parsed, key)
            elif key == "name":
                name = _text(value, "name", parsed, key)
                if name is None and key not in parsed.errors:
                    parsed.errors[key] = "A deal's name can't be empty."
                elif name is not None and len(name) > 200:
                    parsed.errors[key] = "Keep the deal name under 200 characters."
                else:
                    parsed.values["name"] = name
            elif key == "owner":
                people = [p for p in await engagement_repo.find_people(session, eng.id, value) if p.active]
                owners = [p for p in people if p.role in (Role.REP, Role.MANAGER, Role.CRO)]
                if len(owners) != 1:
                    parsed.errors[key] = (
                        f'"{value}" matches {len(owners)} people who can own deals'
                        + (": " + ", ".join(p.name for p in owners) if owners else "")
                        + ". Use their handle, e.g. owner=@jordan."
                    )
                else:
                    parsed.values["owner"] = owners[0]
            elif key == "note":
                parsed.values["note"] = _text(value, "note", parsed, key)
            elif key == "reason":
                reason = value.strip().casefold()
                parsed.values["loss_reason"] = next((r for r in LOSS_REASONS if r == reason), None) or _text(
                    value, "reason", parsed, key
                )
            elif key == "competitor":
                parsed.values["competitor"] = _text(value, "competitor", parsed, key)
            elif key == "crm_id":
                parsed.values["crm_id"] = _text(value, "CRM id", parsed, key)
            else:
                parsed.errors[key] = f'"{key}" is not a deal field.'
        except ParseError as exc:
            parsed.errors[key] = exc.message
    if parsed.errors:
        raise FieldErrors(parsed.errors)
    return parsed.values


def _check_stage_move(current: Stage, target: Stage, stages: Sequence[Stage]) -> None:
    """Refuse a forward move that jumps over an open stage: each skipped exit criterion is named."""
    if current.kind != StageKind.OPEN or target.kind != StageKind.OPEN or target.position <= current.position:
        return
    between = [s for s in stages if current.position <= s.position < target.position and s.kind == StageKind.OPEN]
    skipped = [s for s in between if s.id != current.id]
    if skipped:
        criteria = "; ".join(f"{s.name}: {s.exit_criteria or 'no criteria written'}" for s in [current, *skipped])
        nxt = skipped[0]
        raise FieldErrors(
            {
                "stage": f"Moving from {current.name} to {target.name} skips {', '.join(s.name for s in skipped)}. "
                f"Each stage's exit criteria must be met first ({criteria}). "
                f"Move one stage at a time: stage={nxt.key}."
            }
        )


# --- applying changes -------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Stage):
        return value.key
    if isinstance(value, Person):
        return value.key
    return value


async def _lock(session: AsyncSession, deal_id: int) -> Deal:
    stmt = select(Deal).where(Deal.id == deal_id).with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one()


def _require(ctx: Context, action: Action, *, owns: bool = False) -> Person:
    if ctx.actor is None:
        raise DealError(not_in_engagement(ctx), outcome="denied")
    if not allowed(ctx.actor, action, owns=owns):
        raise DealError(denial(action), outcome="denied")
    return ctx.actor


def not_in_engagement(ctx: Context) -> str:
    return (
        f"You're not part of the {ctx.engagement.company} engagement in Cadence, so I can't show or change "
        "its deals. Ask the CRO to add you to the engagement file."
    )


async def update_deal(
    ctx: Context,
    deal_id: int,
    raw: Mapping[str, str],
    *,
    expected_version: int | None = None,
    kind: str = "update",
) -> Outcome:
    """Apply typed field changes to a deal as `ctx.actor`. `kind` is update, won or lost.

    `expected_version` is the version the person saw (a modal or card carries it); a mismatch raises
    `Conflict` carrying the current deal. A typed command passes none: it applies to the deal as it is.
    """
    try:
        async with ctx.db.write() as session:
            deal = await _lock(session, deal_id)
            if expected_version is not None and deal.version != expected_version:
                raise StaleDataError(f"deal {deal_id} is at version {deal.version}, not {expected_version}")
            actor = _require(ctx, Action.EDIT_DEAL, owns=ctx.actor is not None and deal.owner_id == ctx.actor.id)
            outcome = await _apply(session, ctx, actor, deal, raw, kind)
            await session.flush()
    except StaleDataError:
        # The rollback expired what this transaction saw; show the person the deal as it is now.
        async with ctx.db.session() as session:
            current = await session.get(Deal, deal_id)
        assert current is not None
        raise Conflict(current) from None
    return outcome


async def _apply(
    session: AsyncSession, ctx: Context, actor: Person, deal: Deal, raw: Mapping[str, str], kind: str
) -> Outcome:
    stages = await engagement_repo.stages(session, deal.engagement_id)
    by_id = {s.id: s for s in stages}
    current = by_id[deal.stage_id]
    values = await parse_changes(session, ctx, deal, raw, closing=kind in ("won", "lost"))
    today, now = ctx.today(), ctx.now()
    if kind in ("won", "lost"):
        target = next((s for s in stages if s.kind == kind), None)
        if target is None:
            raise DealError(f"This engagement has no {kind} stage defined.")
        if not current.kind == StageKind.OPEN:
            raise DealError(f"{deal.name} is already closed ({current.name}). Reopen it with stage=<an open stage>.")
        values["stage"] = target
        values.setdefault(
            "close_date", today if deal.close_date is None or deal.close_date > today else deal.close_date
        )
    elif any(k in raw for k in CLOSED_ONLY_FIELDS) and current.kind != StageKind.LOST and "stage" not in values:
        raise FieldErrors(
            {k: f"{k} applies to a lost deal: /deal {deal.name} lost {k}=..." for k in CLOSED_ONLY_FIELDS if k in raw}
        )
    note = values.pop("note", None)
    owner = values.pop("owner", None)
    if owner is not None and owner.id != deal.owner_id:
        if not allowed(actor, Action.REASSIGN_DEAL):
            raise DealError(denial(Action.REASSIGN_DEAL), outcome="denied")
        values["owner_id"] = owner.id
    target_stage: Stage | None = values.pop("stage", None)
    events: list[str] = []
    if target_stage is not None and target_stage.id != current.id:
        if kind == "update" and target_stage.kind != StageKind.OPEN and current.kind == StageKind.OPEN:
            kind = target_stage.kind
        _check_stage_move(current, target_stage, stages)
        values["stage_id"] = target_stage.id
        if target_stage.kind == StageKind.OPEN:
            if current.kind != StageKind.OPEN:
                values.update(is_open=True, closed_on=None)
                events.append("reopened")
            elif target_stage.position < current.position:
                events.append("regressed")
            else:
                events.append("advanced")
        else:
            values.update(is_open=False, closed_on=today)
            events.append(target_stage.kind)
            if "close_date" not in values and (deal.close_date is None or deal.close_date > today):
                values["close_date"] = today
    new_close = values.get("close_date")
    if deal.is_open and values.get("is_open", True) and new_close and deal.close_date:
        if new_close > deal.close_date:
            values["slip_count"] = deal.slip_count + 1
            events.append("slipped")
        elif new_close < deal.close_date:
            events.append("pulled_in")
    changes: dict[str, list[Any]] = {}
    for attr, after in values.items():
        before = getattr(deal, attr)
        if before != after:
            label = {"stage_id": "stage", "owner_id": "owner"}.get(attr, attr)
            shown_before: Any = by_id[before].key if attr == "stage_id" else before
            shown_after: Any = by_id[after].key if attr == "stage_id" else after
            if attr == "owner_id":
                shown_before = (await session.get(Person, before)).key if before else None  # type: ignore[union-attr]
                shown_after = owner.key if owner else after
            if attr not in ("is_open", "closed_on", "slip_count"):
                changes[label] = [_jsonable(shown_before), _jsonable(shown_after)]
            setattr(deal, attr, after)
    if not changes and not note:
        raise DealError(f"Nothing to change: {deal.name} already has those values.", outcome="unchanged")
    deal.touched_at = now
    deal.updated_at = now
    if "stage" in changes:
        deal.stage_changed_at = now
    row = DealHistory(
        engagement_id=deal.engagement_id,
        deal_id=deal.id,
        actor_id=actor.id,
        at=now,
        channel=ctx.channel,
        kind=kind if changes else "note",
        changes=changes,
        note=note,
    )
    session.add(row)
    await session.flush()
    return Outcome(deal=deal, kind=row.kind, changes=changes, events=events, note=note, history_id=row.id)


async def create_deal(ctx: Context, name: str, raw: Mapping[str, str]) -> Outcome:
    """A new open deal owned by the actor (or `owner=` for managers and the CRO), in the first stage by default."""
    actor = _require(ctx, Action.CREATE_DEAL)
    async with ctx.db.write() as session:
        values = await parse_changes(session, ctx, None, {"name": name, **raw})
        stages = await engagement_repo.stages(session, ctx.engagement.id)
        open_stages = [s for s in stages if s.kind == StageKind.OPEN]
        stage: Stage = values.pop("stage", None) or open_stages[0]
        if stage.kind != StageKind.OPEN:
            raise FieldErrors({"stage": "A new deal starts in an open stage; create it, then mark it won or lost."})
        if stage.position > open_stages[0].position + 1 and "crm_id" not in raw:
            # A new deal may enter at the first or second stage; deeper means skipping exit criteria.
            _check_stage_move(open_stages[0], stage, stages)
        if "close_date" not in values:
            raise FieldErrors(
                {"close": "A new deal needs a close date, e.g. close=2026-12-15, close=Dec 15 or close=eoq."}
            )
        owner: Person = values.pop("owner", None) or actor
        if owner.id != actor.id and not allowed(actor, Action.REASSIGN_DEAL):
            raise DealError(denial(Action.REASSIGN_DEAL), outcome="denied")
        duplicate = next(
            (
                n
                for _, n in await deal_names(session, ctx.engagement.id, open_only=True)
                if n.casefold() == values["name"].casefold()
            ),
            None,
        )
        if duplicate:
            raise FieldErrors({"name": f'There is already an open deal called "{duplicate}". Update it instead.'})
        note = values.pop("note", None)
        for closed_only in ("loss_reason", "competitor"):
            values.pop(closed_only, None)
        values.setdefault("forecast_category", ForecastCategory.PIPELINE.value)
        now, today = ctx.now(), ctx.today()
        deal = Deal(
            engagement_id=ctx.engagement.id,
            owner_id=owner.id,
            stage_id=stage.id,
            currency=ctx.engagement.currency,
            created_on=today,
            stage_changed_at=now,
            touched_at=now,
            created_at=now,
            updated_at=now,
            is_open=True,
            slip_count=0,
            **values,
        )
        session.add(deal)
        await session.flush()
        changes = {k: [None, _jsonable(v)] for k, v in values.items() if v is not None}
        changes["stage"] = [None, stage.key]
        changes["owner"] = [None, owner.key]
        row = DealHistory(
            engagement_id=deal.engagement_id,
            deal_id=deal.id,
            actor_id=actor.id,
            at=now,
            channel=ctx.channel,
            kind="create",
            changes=changes,
            note=note,
        )
        session.add(row)
        await session.flush()
        return Outcome(deal=deal, kind="create", changes=changes, events=["created"], note=note, history_id=row.id)


async def confirm_deal(ctx: Context, deal_id: int) -> Outcome:
    """'Still accurate': the owner vouches for the deal as it stands, which counts as fresh for hygiene."""
    async with ctx.db.write() as session:
        deal = await _lock(session, deal_id)
        actor = _require(ctx, Action.EDIT_DEAL, owns=ctx.actor is not None and deal.owner_id == ctx.actor.id)
        now = ctx.now()
        deal.touched_at = now
        row = DealHistory(
            engagement_id=deal.engagement_id,
            deal_id=deal.id,
            actor_id=actor.id,
            at=now,
            channel=ctx.channel,
            kind="confirm",
            changes={},
            note="Still accurate",
        )
        session.add(row)
        await session.flush()
        return Outcome(deal=deal, kind="confirm", history_id=row.id)


async def check_can_edit(ctx: Context, deal: Deal) -> None:
    """Raise the denial a person would get, before showing them an edit form they could not submit."""
    _require(ctx, Action.EDIT_DEAL, owns=ctx.actor is not None and deal.owner_id == ctx.actor.id)
