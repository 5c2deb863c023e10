"""The pipeline's figures and call-outs: what the weekly review, `/pipeline` and the digest say about it.

Every total is a SQL aggregate (`SUM`, `COUNT`, `CASE`, `GROUP BY`), never a Python loop over the
pipeline, so the review costs the same for forty deals or four thousand. Lists (flagged deals, deals
needing attention, open action items) are bounded with a LIMIT. Money stays `Decimal` end to end:
amounts are stored as integer cents, so a sum is exact on SQLite and PostgreSQL alike, and the
weighted pipeline sums `cents × probability` as an integer before dividing in Python — dividing in
SQL would be integer division on SQLite.

The definitions follow the domain document exactly: open pipeline and closed won are counted by close
date within the fiscal quarter; remaining quota is `max(quota − won, 0)`; coverage is open ÷ remaining
(None meaning "covered" once nothing remains); weighted is Σ amount × stage probability; forecast
accuracy is `1 − |call − actual| ÷ actual`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, false, func, or_, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from cadences.engagement_file import engagement_settings
from cadences.parsing import format_money_short
from cadences.periods import fiscal_quarter_bounds, quarter_label
from cadences.rituals import EngagementFacts, at_local
from storage import engagements as engagement_repo
from storage.models import (
    ActionItem,
    Deal,
    DealHistory,
    Engagement,
    ForecastCategory,
    Person,
    PipelineSnapshot,
    Role,
    Stage,
    StageKind,
)
from storage.types import Money

ZERO = Decimal(0)
MAX_LISTED = 50
"""At most this many deals needing attention in one list: a nudge longer than that is not read."""
MAX_FLAGGED = 15
"""At most this many deals are discussed in one review (the largest first): an hour holds no more."""
WEEK = timedelta(days=7)
MOVES = ("stage", "close_date", "amount")
"""The changes the movement is made of; a history row changing none of them moves nothing."""


def short_day(d: date) -> str:
    """'Nov 20': how a date reads in a sentence about this quarter's pipeline."""
    return f"{d:%b} {d.day}"


def plural(n: int, word: str) -> str:
    """'1 deal', '2 deals'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _amount(value: Any) -> Decimal:
    """A summed Money column: None (no rows) reads as zero."""
    return value if isinstance(value, Decimal) else ZERO


def _weighted(value: Any) -> Decimal:
    """`SUM(cents × percent)` typed as Money is `amount × percent`; one more ÷100 makes it a weighted amount."""
    return _amount(value) / 100


# --- the quarter ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollup:
    """Open deals closing in the period, summed by forecast category, and the weighted pipeline."""

    commit: Decimal = ZERO
    best_case: Decimal = ZERO
    pipeline: Decimal = ZERO
    omitted: Decimal = ZERO
    weighted: Decimal = ZERO

    @property
    def commit_best_case(self) -> Decimal:
        return self.commit + self.best_case


@dataclass(frozen=True)
class QuarterNumbers:
    """The fiscal quarter containing a day, with its quota and pipeline figures."""

    label: str
    start: date
    end: date
    quota: Decimal
    won: Decimal
    open_pipeline: Decimal
    coverage_target: Decimal
    rollup: Rollup

    @property
    def remaining(self) -> Decimal:
        return max(self.quota - self.won, ZERO)

    @property
    def coverage(self) -> Decimal | None:
        """Open pipeline ÷ remaining quota; None when nothing remains (the quarter is covered)."""
        return self.open_pipeline / self.remaining if self.remaining else None


def _in_period(engagement_id: int, start: date, end: date) -> Any:
    return and_(Deal.engagement_id == engagement_id, Deal.close_date >= start, Deal.close_date <= end)


async def closed_won(session: AsyncSession, engagement_id: int, start: date, end: date) -> Decimal:
    """Sum of won deals whose close date is in [start, end] (both inclusive, like a fiscal quarter)."""
    stmt = (
        select(func.sum(Deal.amount))
        .join(Stage, Stage.id == Deal.stage_id)
        .where(_in_period(engagement_id, start, end), Stage.kind == StageKind.WON.value)
    )
    return _amount((await session.execute(stmt)).scalar_one())


async def rollup(session: AsyncSession, engagement_id: int, start: date, end: date) -> Rollup:
    """Open deals with a close date in [start, end], by forecast category, in one grouped query."""
    stmt = (
        select(
            Deal.forecast_category,
            func.sum(Deal.amount),
            type_coerce(func.sum(Deal.amount * Stage.probability_pct), Money()),
        )
        .join(Stage, Stage.id == Deal.stage_id)
        .where(_in_period(engagement_id, start, end), Deal.is_open.is_(True))
        .group_by(Deal.forecast_category)
    )
    return _rollup_of([(c, a, w) for c, a, w in (await session.execute(stmt)).all()])


async def _rollup_and_won(session: AsyncSession, engagement_id: int, start: date, end: date) -> tuple[Rollup, Decimal]:
    """`rollup` and `closed_won` from one grouped scan of the period's deals (the review needs both, and
    on a large pipeline each scan is the bulk of the cost)."""
    stmt = (
        select(
            Deal.is_open,
            Stage.kind,
            Deal.forecast_category,
            func.sum(Deal.amount),
            type_coerce(func.sum(Deal.amount * Stage.probability_pct), Money()),
        )
        .join(Stage, Stage.id == Deal.stage_id)
        .where(_in_period(engagement_id, start, end))
        .group_by(Deal.is_open, Stage.kind, Deal.forecast_category)
    )
    rows = (await session.execute(stmt)).all()
    won = sum((_amount(amount) for _, kind, _, amount, _ in rows if kind == StageKind.WON.value), ZERO)
    return _rollup_of([(c, a, w) for is_open, _, c, a, w in rows if is_open]), won


def _rollup_of(rows: Sequence[tuple[str, Any, Any]]) -> Rollup:
    """A roll-up from (forecast category, SUM(amount), SUM(cents × percent)) rows of open deals."""
    by_category: dict[str, Decimal] = {}
    weighted = ZERO
    for category, amount, cents_pct in rows:
        by_category[category] = by_category.get(category, ZERO) + _amount(amount)
        weighted += _weighted(cents_pct)
    known = {c.value for c in ForecastCategory}
    # A category outside the four (a raw CRM value) is still open pipeline; it is shown with `pipeline`.
    stray = sum((v for k, v in by_category.items() if k not in known), ZERO)
    return Rollup(
        commit=by_category.get(ForecastCategory.COMMIT.value, ZERO),
        best_case=by_category.get(ForecastCategory.BEST_CASE.value, ZERO),
        pipeline=by_category.get(ForecastCategory.PIPELINE.value, ZERO) + stray,
        omitted=by_category.get(ForecastCategory.OMITTED.value, ZERO),
        weighted=weighted,
    )


def quarter_of(engagement: Engagement, day: date) -> tuple[str, date, date]:
    """(label, first day, last day) of the fiscal quarter containing `day`."""
    start, end = fiscal_quarter_bounds(day, engagement.fiscal_year_start_month)
    return quarter_label(day, engagement.fiscal_year_start_month), start, end


async def quarter_numbers(session: AsyncSession, engagement: Engagement, today: date) -> QuarterNumbers:
    """Quota, closed won, open pipeline, coverage and the roll-up for the quarter containing `today`."""
    label, start, end = quarter_of(engagement, today)
    by_category, won = await _rollup_and_won(session, engagement.id, start, end)
    settings = engagement_settings(engagement)
    return QuarterNumbers(
        label=label,
        start=start,
        end=end,
        quota=engagement.quota_per_quarter,
        won=won,
        open_pipeline=by_category.commit + by_category.best_case + by_category.pipeline + by_category.omitted,
        coverage_target=Decimal(str(settings.coverage_target)),
        rollup=by_category,
    )


# --- movement since the last review -------------------------------------------------------------------


@dataclass(frozen=True)
class DealEvent:
    """A deal created, won or lost in the window, with its amount."""

    deal_id: int
    deal: str
    owner: str
    amount: Decimal | None


@dataclass(frozen=True)
class StageMove:
    deal_id: int
    deal: str
    owner: str
    before: str
    after: str
    amount: Decimal | None = field(default=None, compare=False)
    """The deal's amount now: what ranks the move among the others the review lists."""


@dataclass(frozen=True)
class DateMove:
    """A close date moved in the window: first value before → last value after, net.

    `moves` counts the moves in that direction within the window; `slip_count` is the deal's total;
    `slipped_out` says the new date is past the end of the current quarter while the old one was not."""

    deal_id: int
    deal: str
    owner: str
    before: date
    after: date
    moves: int
    slip_count: int
    slipped_out: bool = False
    amount: Decimal | None = field(default=None, compare=False)
    """The deal's amount and whether it is open now: what ranks it among the deals the review discusses."""
    is_open: bool = field(default=True, compare=False)


@dataclass(frozen=True)
class AmountChange:
    deal_id: int
    deal: str
    owner: str
    before: Decimal | None
    after: Decimal | None

    @property
    def delta(self) -> Decimal:
        return (self.after or ZERO) - (self.before or ZERO)


@dataclass
class Movement:
    """What changed in the pipeline between two instants, read from the deals' history."""

    since: datetime
    until: datetime
    new: list[DealEvent] = field(default_factory=list)
    advanced: list[StageMove] = field(default_factory=list)
    regressed: list[StageMove] = field(default_factory=list)
    slipped: list[DateMove] = field(default_factory=list)
    pulled_in: list[DateMove] = field(default_factory=list)
    won: list[DealEvent] = field(default_factory=list)
    lost: list[DealEvent] = field(default_factory=list)
    amount_changes: list[AmountChange] = field(default_factory=list)

    @property
    def net_amount_delta(self) -> Decimal:
        return sum((c.delta for c in self.amount_changes), ZERO)

    @property
    def is_empty(self) -> bool:
        return not any(
            (
                self.new,
                self.advanced,
                self.regressed,
                self.slipped,
                self.pulled_in,
                self.won,
                self.lost,
                self.amount_changes,
            )
        )


@dataclass
class _Trail:
    """One deal's changes within the window, folded in time order."""

    deal: str
    owner: str
    amount: Decimal | None
    slip_count: int
    is_open: bool
    created: Decimal | None = None
    is_new: bool = False
    stage: list[str | None] = field(default_factory=list)  # [first before, last after]
    close: list[date] = field(default_factory=list)
    later: int = 0
    earlier: int = 0
    money: list[Decimal | None] = field(default_factory=list)


def _money_value(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def _fold(trail: _Trail, row_kind: str, changes: dict[str, Any], closed_keys: set[str]) -> None:
    if row_kind == "create":
        trail.is_new = True
        trail.created = _money_value((changes.get("amount") or [None, None])[1])
        return
    if "stage" in changes:
        before, after = changes["stage"]
        if not trail.stage:
            trail.stage = [before, after]
        trail.stage[1] = after
    closing = row_kind in ("won", "lost") or ("stage" in changes and changes["stage"][1] in closed_keys)
    if "close_date" in changes and not closing and None not in changes["close_date"]:
        before_d, after_d = (date.fromisoformat(v) for v in changes["close_date"])
        if not trail.close:
            trail.close = [before_d, after_d]
        trail.close[1] = after_d
        trail.later += after_d > before_d
        trail.earlier += after_d < before_d
    if "amount" in changes:
        before_m, after_m = (_money_value(v) for v in changes["amount"])
        if not trail.money:
            trail.money = [before_m, after_m]
        trail.money[1] = after_m


async def movement(session: AsyncSession, engagement_id: int, since: datetime, until: datetime) -> Movement:
    """New, advanced, regressed, slipped, pulled-in, won and lost deals and amount changes in [since, until).

    Each deal's changes in the window are folded into one net move per kind (Discovery → Proposal, not
    two rows), because the review asks where a deal stands against last week, not how it got there."""
    engagement = await session.get(Engagement, engagement_id)
    assert engagement is not None
    tz = ZoneInfo(engagement.timezone)
    _, _, quarter_end = quarter_of(engagement, until.astimezone(tz).date())
    stages = {s.key: s for s in await engagement_repo.stages(session, engagement_id)}
    closed_keys = {k for k, s in stages.items() if s.kind != StageKind.OPEN}
    rows = await session.execute(
        select(
            DealHistory.deal_id,
            DealHistory.kind,
            DealHistory.changes,
            Deal.name,
            Person.name,
            Deal.amount,
            Deal.slip_count,
            Deal.is_open,
        )
        .join(Deal, Deal.id == DealHistory.deal_id)
        .join(Person, Person.id == Deal.owner_id)
        .where(
            DealHistory.engagement_id == engagement_id,
            DealHistory.at >= since,
            DealHistory.at < until,
            # Only rows that `_fold` reads: creations and changes of stage, close date or amount. A busy
            # week is mostly confirmations and next steps, which are not even sent back from the database.
            DealHistory.kind.not_in(("confirm", "note")),
            or_(
                DealHistory.kind == "create",
                *(DealHistory.changes[key].as_string().is_not(None) for key in MOVES),
            ),
        )
        .order_by(DealHistory.at, DealHistory.id)
    )
    trails: dict[int, _Trail] = {}
    for deal_id, kind, changes, name, owner, amount, slips, is_open in rows:
        trail = trails.get(deal_id)
        if trail is None:
            trail = trails[deal_id] = _Trail(name, owner, amount, slips, is_open)
        _fold(trail, kind, changes or {}, closed_keys)
    result = Movement(since=since, until=until)
    for deal_id, t in trails.items():
        if t.is_new:
            result.new.append(DealEvent(deal_id, t.deal, t.owner, t.created))
        if t.stage and t.stage[0] != t.stage[1]:
            before, after = stages.get(t.stage[0] or ""), stages.get(t.stage[1] or "")
            if after is not None and after.kind == StageKind.WON:
                result.won.append(DealEvent(deal_id, t.deal, t.owner, t.amount))
            elif after is not None and after.kind == StageKind.LOST:
                result.lost.append(DealEvent(deal_id, t.deal, t.owner, t.amount))
            elif before is not None and after is not None and before.kind == StageKind.OPEN:
                move = StageMove(deal_id, t.deal, t.owner, before.name, after.name, t.amount)
                (result.advanced if after.position > before.position else result.regressed).append(move)
        if t.close and t.close[0] != t.close[1]:
            later = t.close[1] > t.close[0]
            out = later and t.close[0] <= quarter_end < t.close[1]
            move_d = DateMove(
                deal_id,
                t.deal,
                t.owner,
                t.close[0],
                t.close[1],
                t.later if later else t.earlier,
                t.slip_count,
                out,
                amount=t.amount,
                is_open=t.is_open,
            )
            (result.slipped if later else result.pulled_in).append(move_d)
        if t.money and t.money[0] != t.money[1]:
            result.amount_changes.append(AmountChange(deal_id, t.deal, t.owner, t.money[0], t.money[1]))
    return result


# --- hygiene -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepHygiene:
    """A rep's open deals and how many were updated or confirmed "still accurate" since the last review."""

    person_id: int
    key: str
    name: str
    open_deals: int
    fresh: int
    excused: bool = False

    @property
    def share(self) -> Decimal | None:
        return Decimal(self.fresh) / Decimal(self.open_deals) if self.open_deals else None


def _away(out_of_office: Sequence[dict[str, str]], day: date) -> bool:
    return any(date.fromisoformat(o["from"]) <= day <= date.fromisoformat(o["to"]) for o in out_of_office)


async def hygiene(session: AsyncSession, engagement_id: int, since: datetime, on: date) -> list[RepHygiene]:
    """Per active rep: open deals, fresh ones (touched at or after `since`), and whether they are excused
    (out of office on `on`, the review day). Both an update and a "still accurate" set `touched_at`."""
    counts = (
        select(
            Deal.owner_id.label("owner_id"),
            func.count(Deal.id).label("open_deals"),
            func.sum(case((Deal.touched_at >= since, 1), else_=0)).label("fresh"),
        )
        .where(Deal.engagement_id == engagement_id, Deal.is_open.is_(True))
        .group_by(Deal.owner_id)
        .subquery()
    )
    stmt = (
        select(Person.id, Person.key, Person.name, Person.out_of_office, counts.c.open_deals, counts.c.fresh)
        .outerjoin(counts, counts.c.owner_id == Person.id)
        .where(Person.engagement_id == engagement_id, Person.role == Role.REP.value, Person.active.is_(True))
        .order_by(Person.name)
    )
    return [
        RepHygiene(pid, key, name, int(open_deals or 0), int(fresh or 0), _away(ooo or [], on))
        for pid, key, name, ooo, open_deals, fresh in (await session.execute(stmt)).all()
    ]


# --- deals needing attention and deals flagged for the review ----------------------------------------------


@dataclass(frozen=True)
class Attention:
    """An open deal its owner should fix before the review, with each reason in plain words."""

    deal: Deal
    reasons: list[str]


@dataclass(frozen=True)
class Flag:
    """A deal the review discusses, with why."""

    deal: Deal
    reasons: list[str]


def _open_stages(stages: Sequence[Stage]) -> list[Stage]:
    return [s for s in stages if s.kind == StageKind.OPEN]


def stage_ids(stages: Sequence[Stage], keys: Sequence[str] | None, default: slice) -> set[int]:
    """Ids of the named stages; with no names, the `default` slice of the open stages in pipeline order."""
    open_stages = _open_stages(stages)
    if keys is None:
        return {s.id for s in open_stages[default]}
    return {s.id for s in open_stages if s.key in keys}


async def attention(
    session: AsyncSession, facts: EngagementFacts, today: date, now: datetime, owner_id: int | None = None
) -> list[Attention]:
    """Open deals (of one owner, or everyone's) with something to fix, soonest close date first.

    Reasons: no update in `stale_days`+ days; close date passed; closing within `close_soon_days` while
    still in an early stage; no next step; next step date overdue; no amount; no close date."""
    settings = facts.settings.pipeline_review
    stages = await engagement_repo.stages(session, facts.id)
    by_id = {s.id: s for s in stages}
    early = stage_ids(stages, settings.early_stages, slice(0, 2))
    stale_before = at_local(today - timedelta(days=settings.stale_days - 1), time(0), facts.tz)
    soon = today + timedelta(days=settings.close_soon_days)
    needs = or_(
        Deal.touched_at < stale_before,
        Deal.close_date.is_(None),
        Deal.close_date < today,
        and_(Deal.close_date <= soon, Deal.stage_id.in_(early)),
        Deal.next_step.is_(None),
        Deal.next_step == "",
        Deal.next_step_date < today,
        Deal.amount.is_(None),
    )
    stmt = select(Deal).where(Deal.engagement_id == facts.id, Deal.is_open.is_(True), needs)
    if owner_id is not None:
        stmt = stmt.where(Deal.owner_id == owner_id)
    stmt = stmt.order_by(Deal.close_date.is_(None), Deal.close_date, Deal.name).limit(MAX_LISTED)
    found = []
    for deal in (await session.execute(stmt)).scalars():
        reasons = []
        idle = (today - deal.touched_at.astimezone(facts.tz).date()).days
        if idle >= settings.stale_days:
            reasons.append(f"No update in {idle} days")
        if deal.close_date is None:
            reasons.append("No close date")
        elif deal.close_date < today:
            reasons.append(f"Close date {short_day(deal.close_date)} has passed")
        elif deal.close_date <= soon and deal.stage_id in early:
            reasons.append(f"Closes {short_day(deal.close_date)} but is still in {by_id[deal.stage_id].name}")
        if not deal.next_step:
            reasons.append("No next step")
        elif deal.next_step_date is not None and deal.next_step_date < today:
            reasons.append(f"Next step date {short_day(deal.next_step_date)} is overdue")
        if deal.amount is None:
            reasons.append("No amount")
        found.append(Attention(deal, reasons))
    return found


def _largest_open(moves: Sequence[DateMove], limit: int) -> list[int]:
    """Ids of the open deals among `moves` that could rank in the first `limit` by amount (no amount
    last): the first `limit`, and any tied with the last of them, since the database breaks ties by name
    in its own collation."""
    ranked = sorted(((m.amount is None, -(m.amount or ZERO)), m.deal_id) for m in moves if m.is_open)
    if len(ranked) <= limit:
        return [deal_id for _, deal_id in ranked]
    cut = ranked[limit - 1][0]
    return [deal_id for key, deal_id in ranked if key <= cut]


async def flagged_for_review(
    session: AsyncSession,
    facts: EngagementFacts,
    today: date,
    now: datetime,
    *,
    since: datetime | None = None,
    moved: Movement | None = None,
) -> list[Flag]:
    """The deals the review discusses, largest first, at most `MAX_FLAGGED`.

    A deal is flagged when it slipped since the last review (`since`, default a week ago) or has slipped
    twice or more in all; when its stage has not changed for `stalled_days`; when it is large
    (`large_deal_amount`+) and in a late stage; or when it has open action items. `moved` is the
    movement over [since, now) when the caller already has it (the review does), so it is read once."""
    settings = facts.settings.pipeline_review
    since = since or now - WEEK
    stages = await engagement_repo.stages(session, facts.id)
    by_id = {s.id: s for s in stages}
    late = stage_ids(stages, settings.late_stages, slice(-2, None))
    if moved is None:
        moved = await movement(session, facts.id, since, now)
    slipped = {m.deal_id: m for m in moved.slipped}
    # Only the largest slipped deals can make the list, so only they go into the query: a busy week
    # slips thousands, and an IN list that long costs more than the rest of the query.
    slipped_candidates = _largest_open(moved.slipped, MAX_FLAGGED)
    stalled_before = now - timedelta(days=settings.stalled_days)
    has_actions = Deal.id.in_(
        select(ActionItem.deal_id).where(
            ActionItem.engagement_id == facts.id, ActionItem.status == "open", ActionItem.deal_id.is_not(None)
        )
    )
    flagged = or_(
        Deal.slip_count >= 2,
        Deal.id.in_(slipped_candidates) if slipped_candidates else false(),
        Deal.stage_changed_at < stalled_before,
        and_(Deal.amount >= settings.large_deal_amount, Deal.stage_id.in_(late)),
        has_actions,
    )
    stmt = (
        select(Deal)
        .where(Deal.engagement_id == facts.id, Deal.is_open.is_(True), flagged)
        .order_by(Deal.amount.is_(None), Deal.amount.desc(), Deal.name)
        .limit(MAX_FLAGGED)
    )
    deals = list((await session.execute(stmt)).scalars())
    actions = dict(
        (
            await session.execute(
                select(ActionItem.deal_id, func.count(ActionItem.id))
                .where(ActionItem.deal_id.in_([d.id for d in deals]), ActionItem.status == "open")
                .group_by(ActionItem.deal_id)
            )
        ).all()
    )
    result = []
    for deal in deals:
        reasons = []
        slips = plural(deal.slip_count, "time")
        if deal.id in slipped:
            move = slipped[deal.id]
            reasons.append(
                f"Slipped {slips}: close date moved {short_day(move.before)} → {short_day(move.after)}"
                " since the last review"
            )
        elif deal.slip_count >= 2:
            reasons.append(f"Slipped {slips}")
        stage = by_id[deal.stage_id]
        if deal.stage_changed_at < stalled_before:
            days = (now - deal.stage_changed_at).days
            reasons.append(f"No stage change in {days} days (still in {stage.name})")
        if deal.amount is not None and deal.amount >= settings.large_deal_amount and deal.stage_id in late:
            reasons.append(f"Large late-stage deal ({format_money_short(deal.amount, deal.currency)} in {stage.name})")
        if actions.get(deal.id):
            reasons.append(plural(actions[deal.id], "open action item"))
        result.append(Flag(deal, reasons))
    return result


# --- action items ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenAction:
    """An open action item, with its owner's and deal's names already joined in."""

    id: int
    text: str
    owner_id: int
    owner: str
    due: date | None
    deal_id: int | None
    deal: str | None
    created_at: datetime

    def overdue(self, today: date) -> bool:
        return self.due is not None and self.due < today


async def open_action_items(
    session: AsyncSession,
    engagement_id: int,
    *,
    owner_id: int | None = None,
    deal_ids: Sequence[int] | None = None,
    due_by: date | None = None,
    created_before: datetime | None = None,
    limit: int = 100,
) -> list[OpenAction]:
    """Open action items, soonest due first (undated last), optionally narrowed by owner, deals, due date
    (on or before `due_by`) or creation time."""
    stmt = (
        select(
            ActionItem.id,
            ActionItem.text,
            ActionItem.owner_id,
            Person.name,
            ActionItem.due_date,
            ActionItem.deal_id,
            Deal.name,
            ActionItem.created_at,
        )
        .join(Person, Person.id == ActionItem.owner_id)
        .outerjoin(Deal, Deal.id == ActionItem.deal_id)
        .where(ActionItem.engagement_id == engagement_id, ActionItem.status == "open")
    )
    if owner_id is not None:
        stmt = stmt.where(ActionItem.owner_id == owner_id)
    if deal_ids is not None:
        stmt = stmt.where(ActionItem.deal_id.in_(deal_ids))
    if due_by is not None:
        stmt = stmt.where(ActionItem.due_date <= due_by)
    if created_before is not None:
        stmt = stmt.where(ActionItem.created_at < created_before)
    stmt = stmt.order_by(ActionItem.due_date.is_(None), ActionItem.due_date, ActionItem.id).limit(limit)
    return [OpenAction(*row) for row in (await session.execute(stmt)).all()]


# --- forecast, win rate, pipeline created, snapshots --------------------------------------------------------


def forecast_accuracy(call: Decimal, actual: Decimal) -> Decimal | None:
    """1 − |call − actual| ÷ actual; None when nothing closed (the ratio has no meaning). It goes below
    zero when the call was off by more than the actual — that is reported as is, not clamped."""
    if actual == 0:
        return None
    return 1 - abs(call - actual) / actual


@dataclass(frozen=True)
class WinRate:
    won: int
    lost: int
    won_amount: Decimal
    lost_amount: Decimal

    @property
    def by_count(self) -> Decimal | None:
        total = self.won + self.lost
        return Decimal(self.won) / total if total else None

    @property
    def by_value(self) -> Decimal | None:
        total = self.won_amount + self.lost_amount
        return self.won_amount / total if total else None


async def win_rate(session: AsyncSession, engagement_id: int, start: date, end: date) -> WinRate:
    """Won ÷ (won + lost), by count and by value, over deals closed with a close date in [start, end)."""
    stmt = (
        select(Stage.kind, func.count(Deal.id), func.sum(Deal.amount))
        .join(Stage, Stage.id == Deal.stage_id)
        .where(
            Deal.engagement_id == engagement_id,
            Deal.is_open.is_(False),
            Deal.close_date >= start,
            Deal.close_date < end,
            Stage.kind.in_((StageKind.WON.value, StageKind.LOST.value)),
        )
        .group_by(Stage.kind)
    )
    found = {kind: (int(n), _amount(total)) for kind, n, total in (await session.execute(stmt)).all()}
    won, won_amount = found.get(StageKind.WON.value, (0, ZERO))
    lost, lost_amount = found.get(StageKind.LOST.value, (0, ZERO))
    return WinRate(won, lost, won_amount, lost_amount)


async def pipeline_created(session: AsyncSession, engagement_id: int, start: date, end: date) -> Decimal:
    """Sum of the amounts of deals created in [start, end)."""
    stmt = select(func.sum(Deal.amount)).where(
        Deal.engagement_id == engagement_id, Deal.created_on >= start, Deal.created_on < end
    )
    return _amount((await session.execute(stmt)).scalar_one())


SNAPSHOT_FIGURES = ("quota", "won", "open", "commit", "best_case", "pipeline", "weighted")


def snapshot_totals(numbers: QuarterNumbers) -> dict[str, str | None]:
    """The review's figures as JSON (decimals as strings, so nothing is rounded on the way in)."""
    coverage = numbers.coverage
    values = {
        "quota": numbers.quota,
        "won": numbers.won,
        "open": numbers.open_pipeline,
        "commit": numbers.rollup.commit,
        "best_case": numbers.rollup.best_case,
        "pipeline": numbers.rollup.pipeline,
        "weighted": numbers.rollup.weighted,
    }
    return {
        "quarter": numbers.label,
        **{k: str(v) for k, v in values.items()},
        "coverage": None if coverage is None else str(coverage),
    }


@dataclass(frozen=True)
class SnapshotPoint:
    """One week's review figures, read back from `PipelineSnapshot` for week-over-week charts."""

    week: str
    taken_at: datetime
    quarter: str
    figures: dict[str, Decimal]
    coverage: Decimal | None


async def rolling_snapshot_totals(session: AsyncSession, engagement_id: int, weeks: int = 13) -> list[SnapshotPoint]:
    """The last `weeks` review snapshots, oldest first (ISO week keys sort chronologically)."""
    stmt = (
        select(PipelineSnapshot)
        .where(PipelineSnapshot.engagement_id == engagement_id)
        .order_by(PipelineSnapshot.week.desc())
        .limit(weeks)
    )
    points = []
    for snap in reversed((await session.execute(stmt)).scalars().all()):
        totals = snap.totals
        points.append(
            SnapshotPoint(
                week=snap.week,
                taken_at=snap.taken_at.astimezone(UTC),
                quarter=str(totals.get("quarter", "")),
                figures={k: Decimal(str(totals[k])) for k in SNAPSHOT_FIGURES if totals.get(k) is not None},
                coverage=None if totals.get("coverage") is None else Decimal(str(totals["coverage"])),
            )
        )
    return points
