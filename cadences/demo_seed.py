"""A realistic, deterministic demo pipeline: open deals with planted hygiene problems and a year of history.

Why: a demo (or a trial before the first CRM import) is only convincing if the Monday review has
something to say. An empty pipeline shows nothing; a random one shows noise. This seed builds what a
fractional CRO typically finds on day one at a $1–20M ARR B2B SaaS company: about forty open deals
spread over the reps, most of them healthy, a few with exactly the problems the cadence exists to catch
(close dates already passed, no update in weeks, no next step, no amount, slipped twice, stalled in a
stage, a couple of big late-stage deals everyone is counting on), plus twelve months of won and lost
deals so win rates, cycle lengths and loss reasons have data. The past week has movement of every kind
the review reports: new deals, advances, a regression, slips, a pull-in, wins and losses.

Every deal is built as a timeline of events (create, stage moves, amount revisions, slips, forecast
changes, next-step updates, "still accurate" confirmations, the win or the loss), and the deal's final
columns are whatever that timeline leaves behind. So `DealHistory`, `touched_at`, `stage_changed_at`,
`created_at` and `slip_count` always agree, and "movement since last week" finds real rows.

Everything comes from `random.Random(seed)` and `today`: the same seed, day, people and stages give the
same pipeline, which keeps demos repeatable and tests exact. Every event happens before `today` (on a
weekday, in business hours in the engagement's time zone), so nothing is in the future whenever the
seed runs that day.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from cadences.deals import LOSS_REASONS
from cadences.parsing import format_money_short
from storage import engagements as engagement_repo
from storage.db import Database
from storage.deals import count_deals
from storage.models import Deal, DealHistory, ForecastCategory, Person, Role, Stage, StageKind

__all__ = [
    "COMPANIES",
    "COMPETITORS",
    "SEGMENTS",
    "SOURCES",
    "SeedError",
    "SeedReport",
    "seed_demo_pipeline",
]

# Fictional B2B companies (TV/sample-data classics and invented names); none is meant to be real.
COMPANIES: tuple[str, ...] = (
    "Globex Corp", "Initech", "Umbrella Health", "Brightline Logistics", "Northwind Analytics",
    "Contoso Retail", "Fabrikam Systems", "Tailspin Aviation", "Wingtip Outfitters", "Proseware",
    "Adatum Security", "Litware Labs", "Lamna Healthcare", "Coho Vineyard", "Fourth Coffee",
    "Trey Research", "Wide World Importers", "Humongous Insurance", "Woodgrove Credit", "Relecloud",
    "VanArsdel Furniture", "Quillfield Software", "Harborview Dental Group", "Cobaltline Freight",
    "Ferncrest Property", "Silverpine Credit Union", "Tidewater Marine Supply", "Ironbark Manufacturing",
    "Lumenpath Learning", "Clearbrook Clinics", "Redwater Energy Services", "Stonegate Insurance Partners",
    "Meadowlark Foods", "Pinecrest Payroll", "Kestrel Robotics", "Orchard Lane Retail", "Bluefin Fleet",
    "Copperleaf Accounting", "Sablewood Legal", "Northgate Biotech", "Verdant Acres Farms",
    "Granite Peak Construction", "Lakeshore Hospitality", "Summitview Analytics", "Driftwood Media",
    "Beaconridge Schools", "Foxglove Pharma", "Willowbend Senior Living", "Cinderfield Games",
    "Ashgrove Realty", "Halcyon Travel", "Marigold Insurance", "Oakhurst Components", "Riverstone Wealth",
    "Starling Telehealth", "Thistle & Pine Outfitters", "Uplander Solar", "Vantagepoint HR", "Wrenfield Labs",
    "Yellowtail Logistics", "Zephyr Cloudworks", "Amberfield Dairy", "Birchline Capital",
    "Cascade Ridge Clinics", "Dunmore Shipping", "Emberly Home", "Fairhaven Credit", "Goldcrest Hotels",
    "Hollowbrook Studios", "Inkwell Publishing", "Juniper Grove Health", "Kingfisher Supply",
    "Larkspur Legal", "Mossbank Engineering", "Nettlefield Brewing", "Oxbow Data", "Palisade Security",
    "Quarry Hill Materials", "Rookwood Ventures", "Saltmarsh Seafood", "Tallgrass Agritech",
    "Underhill Insurance", "Vesper Fintech", "Whitmore Dental", "Yarrow Wellness", "Zinfield Software",
    "Arbor Peak Payments", "Brackenridge Energy", "Calloway Freight", "Dovetail Interiors",
    "Everkeen Learning", "Fernwood Analytics", "Glenmoor Health", "Hearthstone Realty", "Jasperline Telecom",
    "Knollwood Clinics", "Lanternfish Security", "Millbrook Manufacturing", "Northbeam Retail",
    "Oakenshaw Partners", "Pelican Point Resorts", "Quickmoor Staffing", "Ravenhill Media",
    "Shorebird Logistics", "Umberfield Foods", "Vinewood Property", "Westerly Marine", "Yardley Robotics",
    "Zestful Kitchens", "Acorn Ridge Bank", "Bramblegate Insurance", "Crestmoor Biotech", "Duskwood Games",
    "Evergale Energy", "Flintlock Security", "Greywater Analytics", "Heronsgate Hospitality",
    "Islebrook Pharma", "Jadestone Capital", "Kettlebrook Farms", "Lodestar Fleet", "Moonvale Health",
    "Nimbus Ridge Cloud",
)  # fmt: skip
COMPETITORS: tuple[str, ...] = ("Pipewise", "Forecastly", "Quotaflow", "Revkit", "Closewell", "In-house build")
SOURCES: tuple[str, ...] = ("Inbound", "Outbound", "Partner", "Event")
SEGMENTS: tuple[str, ...] = ("SMB", "Mid-market", "Enterprise")
# What the deal is called after the company, by segment: nobody sells an "Enterprise license" for $12k.
DEAL_KINDS: dict[str, tuple[str, ...]] = {
    "SMB": ("New business", "Annual plan", "Pilot", "Team plan", "Starter plan", "Upgrade"),
    "Mid-market": ("New business", "Platform", "Annual plan", "Pilot", "Team rollout", "Expansion"),
    "Enterprise": ("Platform", "Enterprise license", "Multi-year", "Expansion", "Global rollout", "Pilot"),
}
# The README walks a new user through `/deal new "Globex Corp"`; keeping Globex out of the seeded open
# pipeline means that walkthrough never hits an "already exists" or "which Globex?" question.
_KEPT_OUT_OF_OPEN = frozenset({"Globex Corp"})

OPEN_DEALS = 40
WON_DEALS = 60
LOST_DEALS = 45
HISTORY_DAYS = 365
BIG_DEAL = Decimal(150_000)
MIN_AMOUNT, MAX_AMOUNT = Decimal(8_000), Decimal(220_000)

# Planted problems, disjoint so each is counted once: (label used in the report, how many deals).
_PROBLEMS: tuple[tuple[str, int], ...] = (
    ("past_close", 3),
    ("stale", 4),
    ("no_next_step", 3),
    ("no_amount", 2),
    ("slipped", 3),
    ("stalled", 2),
    ("big_late", 2),
)
PROBLEM_LABELS: dict[str, str] = {
    "past_close": "close date passed",
    "stale": "no update for 10+ days",
    "no_next_step": "no next step",
    "no_amount": "no amount",
    "slipped": "slipped",
    "stalled": "stalled 25+ days in stage",
    "big_late": "big late-stage",
}

# Next steps people actually write, by how far along the deal is (five buckets, early to late).
_NEXT_STEPS: tuple[tuple[str, ...], ...] = (
    ("Discovery call with VP Sales", "Send case study and book discovery", "Intro call with RevOps lead",
     "Map the buying committee"),
    ("Confirm budget with CFO", "Qualification call: MEDDPICC gaps", "Identify economic buyer",
     "Confirm timeline and trigger event"),
    ("Technical demo with the ops team", "Security questionnaire back to IT", "Solution workshop",
     "Integration review with their engineers"),
    ("Walk economic buyer through proposal", "Send pricing options", "Mutual action plan review",
     "Business case review with CFO"),
    ("Redlines back from legal", "Procurement call", "Order form to signature", "Final pricing approval"),
)  # fmt: skip
_RISKS: tuple[str, ...] = (
    "Champion on leave until the 20th",
    "Competing priority: ERP migration this quarter",
    "Procurement wants three quotes",
    "New CFO reviewing all software spend",
    "Legal review of the DPA is slow",
)
_LOSS_WEIGHTS: dict[str, int] = {
    "price": 20, "no decision": 25, "competitor": 25, "timing": 15, "product gap": 10, "champion left": 5,
    "other": 3,
}  # fmt: skip


class SeedError(RuntimeError):
    """The engagement can't hold a demo pipeline (missing, or without reps or won/lost stages)."""


@dataclass(frozen=True)
class SeedReport:
    """What the seed did, for the CLI and the tests. `seeded` is False when the pipeline already had deals."""

    engagement: str
    seeded: bool
    currency: str = "USD"
    existing_deals: int = 0
    open_deals: int = 0
    won_deals: int = 0
    lost_deals: int = 0
    open_amount: Decimal = Decimal(0)
    history_rows: int = 0
    recent_changes: int = 0
    problems: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """Two lines: what was created, and which hygiene problems were planted for the review to find."""
        if not self.seeded:
            return (
                f"{self.engagement} already has {self.existing_deals} deal{'s' if self.existing_deals != 1 else ''}, "
                "so the demo pipeline was not seeded (it only fills an empty pipeline)."
            )
        first = (
            f"Seeded the demo pipeline for {self.engagement}: {self.open_deals} open deals "
            f"({format_money_short(self.open_amount, self.currency)}), {self.won_deals} won and "
            f"{self.lost_deals} lost in the last 12 months, {self.history_rows} history rows "
            f"({self.recent_changes} changes in the last 7 days)."
        )
        planted = ", ".join(f"{n} {PROBLEM_LABELS[k]}" for k, n in self.problems.items() if n)
        return first + (f"\nPlanted for the review to find: {planted}." if planted else "")


# --- building one deal as a timeline ---------------------------------------------------------------


def _json(value: Any) -> Any:
    """History values as the deal service writes them: keys for stages/people, ISO dates, decimal strings."""
    if isinstance(value, Decimal):
        return str(value.quantize(Decimal("0.01")))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Stage | Person):
        return value.key
    return value


@dataclass
class _Event:
    at: datetime
    kind: str
    changes: dict[str, list[Any]]
    note: str | None = None


class _Timeline:
    """One deal's life: each event changes `state`, and the deal row is the state after the last event."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.events: list[_Event] = []
        self.slips = 0

    def _next_time(self, at: datetime) -> datetime:
        # Two events can land on the same (weekend-shifted) day; keep the order of the story.
        if self.events and at <= self.events[-1].at:
            return self.events[-1].at + timedelta(minutes=37)
        return at

    def create(self, at: datetime, values: dict[str, Any]) -> None:
        self.state = dict(values)
        changes = {k: [None, _json(v)] for k, v in values.items() if v is not None}
        self.events.append(_Event(at, "create", changes))

    def change(self, at: datetime, kind: str = "update", **values: Any) -> None:
        at = self._next_time(at)
        changes: dict[str, list[Any]] = {}
        for attr, after in values.items():
            before = self.state.get(attr)
            if before != after:
                changes[attr] = [_json(before), _json(after)]
                self.state[attr] = after
        if changes:
            self.events.append(_Event(at, kind, changes))

    def slip(self, at: datetime, close: date) -> None:
        """Push the close date later: the move the review counts as a slip."""
        assert close > self.state["close_date"]
        self.slips += 1
        self.change(at, close_date=close)

    def confirm(self, at: datetime) -> None:
        self.events.append(_Event(self._next_time(at), "confirm", {}, "Still accurate"))

    @property
    def created_at(self) -> datetime:
        return self.events[0].at

    @property
    def touched_at(self) -> datetime:
        return self.events[-1].at

    @property
    def stage_changed_at(self) -> datetime:
        return next((e.at for e in reversed(self.events) if "stage" in e.changes), self.created_at)


@dataclass
class _Seeder:
    """Holds the engagement's shape (stages, reps, zone) and the random source while deals are built."""

    rng: random.Random
    today: date
    tz: ZoneInfo
    reps: Sequence[Person]
    open_stages: Sequence[Stage]
    won: Stage
    lost: Stage
    names: set[str] = field(default_factory=set)

    # -- time --------------------------------------------------------------------------------------

    def at(self, days_ago: int) -> datetime:
        """A plausible working moment `days_ago` days before today (weekends move back to Friday)."""
        day = self.today - timedelta(days=max(days_ago, 1))
        while day.weekday() >= 5:
            day -= timedelta(days=1)
        minute = self.rng.choice((0, 5, 10, 15, 20, 30, 40, 45, 50))
        return datetime.combine(day, time(self.rng.randint(8, 17), minute), tzinfo=self.tz).astimezone(UTC)

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    # -- values ------------------------------------------------------------------------------------

    def amount(self, segment: str) -> Decimal:
        """Mostly $20–80k, SMB deals smaller and enterprise ones up to $220k, rounded like reps round."""
        low, high, mode = {"SMB": (8_000, 35_000, 22_000), "Mid-market": (20_000, 85_000, 45_000)}.get(
            segment, (60_000, 220_000, 90_000)
        )
        raw = self.rng.triangular(low, high, mode)
        step = 500 if raw < 50_000 else 1_000
        return Decimal(round(raw / step) * step)

    def deal_name(self, company: str, segment: str) -> str:
        kinds = list(DEAL_KINDS[segment])
        self.rng.shuffle(kinds)
        for kind in kinds:
            name = f"{company} - {kind}"
            if name not in self.names:
                self.names.add(name)
                return name
        name = f"{company} - {len(self.names)}"
        self.names.add(name)
        return name

    def next_step(self, stage: Stage, previous: str | None = None) -> str:
        index = self.open_stages.index(stage) if stage in self.open_stages else len(self.open_stages) - 1
        bucket = _NEXT_STEPS[round(index * (len(_NEXT_STEPS) - 1) / max(len(self.open_stages) - 1, 1))]
        choices = [s for s in bucket if s != previous] or list(bucket)
        return self.rng.choice(choices)

    def forecast(self, stage: Stage) -> str:
        """Consistent with the stage: late stages mostly commit or best case, early ones pipeline."""
        p = stage.probability_pct
        if p >= 80:
            options, weights = ["commit", "best_case"], [75, 25]
        elif p >= 60:
            options, weights = ["commit", "best_case", "pipeline"], [25, 60, 15]
        elif p >= 40:
            options, weights = ["best_case", "pipeline"], [30, 70]
        else:
            return ForecastCategory.PIPELINE.value
        return self.rng.choices(options, weights)[0]

    def open_stage_index(self) -> int:
        n = len(self.open_stages)
        return self.rng.choices(range(n), [n + 1 - i for i in range(n)])[0]

    # -- deals -------------------------------------------------------------------------------------

    def _walk_stages(
        self, line: _Timeline, entries: Sequence[datetime], upto: int, *, with_next_steps: bool, revise_amount: bool
    ) -> None:
        """Move a deal one stage at a time (never skipping exit criteria), as the deal service would."""
        revision_at = self.rng.randint(1, upto) if revise_amount and upto >= 1 else -1
        for j in range(1, upto + 1):
            stage = self.open_stages[j]
            values: dict[str, Any] = {"stage": stage}
            forecast = self.forecast(stage)
            if forecast != ForecastCategory.PIPELINE.value:  # a rep rarely downgrades a forecast on a move
                values["forecast_category"] = forecast
            if with_next_steps:
                values["next_step"] = self.next_step(stage, line.state.get("next_step"))
                values["next_step_date"] = self.local_date(entries[j]) + timedelta(days=self.rng.randint(2, 9))
            if j == revision_at and line.state.get("amount") is not None:
                factor = Decimal(self.rng.choice((80, 85, 90, 110, 115, 120, 125))) / 100
                revised = (line.state["amount"] * factor / 500).quantize(Decimal(1)) * 500
                values["amount"] = min(max(revised, MIN_AMOUNT), MAX_AMOUNT)
            line.change(entries[j], **values)

    def _stage_entries(self, created_days_ago: int, last_change_days_ago: int, upto: int) -> list[int]:
        """Days-ago of entering each stage 0..upto, strictly decreasing from creation to the last move."""
        if upto == 0:
            return [created_days_ago]
        span = created_days_ago - last_change_days_ago
        cuts = sorted(self.rng.sample(range(1, max(span, upto + 1)), upto - 1)) if upto > 1 else []
        return [created_days_ago, *(created_days_ago - c for c in cuts), last_change_days_ago]

    def open_deal(self, company: str, owner: Person, problem: str) -> _Timeline:
        """One open deal; `problem` is a planted hygiene problem, or a healthy deal's role in this week's
        movement: "mover" (advanced), "new" (created), "regressed" (moved back a stage), "pulled_in" (close
        date moved earlier), or "healthy"."""
        rng = self.rng
        n = len(self.open_stages)
        if problem == "regressed" and n < 3:
            problem = "mover"
        if problem == "big_late":
            stage_i = rng.randint(max(n - 2, 0), n - 1)
        elif problem in ("stalled", "past_close"):
            stage_i = rng.randint(min(1, n - 1), max(n - 2, min(1, n - 1)))
        elif problem == "mover":
            stage_i = rng.randint(min(1, n - 1), n - 1)
        elif problem == "new":
            stage_i = 0
        elif problem == "regressed":
            stage_i = rng.randint(1, n - 2)
        else:
            stage_i = self.open_stage_index()
        segment = "Enterprise" if problem == "big_late" else rng.choices(SEGMENTS, [25, 60, 15])[0]
        amount: Decimal | None = (
            Decimal(rng.randrange(150_000, 220_001, 5_000)) if problem == "big_late" else self.amount(segment)
        )
        if problem == "no_amount":
            amount = None

        # When did it last move, and when was it last touched (days ago)?
        if problem == "stalled":
            last_move = rng.randint(26, 45)
            touched = rng.randint(1, 5)
        elif problem == "stale":
            touched = rng.randint(11, 18)
            last_move = touched + rng.randint(0, 23 - touched)  # stale, but not the planted 25+ day stall
        elif problem == "past_close":
            last_move = rng.randint(9, 18)
            touched = rng.randint(5, 7)
        elif problem in ("mover", "new"):
            last_move = rng.randint(1, 4)
            touched = last_move
        elif problem == "regressed":
            last_move = rng.randint(6, 15)  # into the stage it falls back from this week
            touched = rng.randint(1, 4)
        else:
            last_move = rng.randint(4, 18)
            touched = rng.randint(1, 4)
        touched = min(touched, last_move)
        reached = stage_i + 1 if problem == "regressed" else stage_i
        created = last_move + sum(rng.randint(5, 16) for _ in range(reached))
        entries_days = self._stage_entries(created, last_move, reached)
        entries = [self.at(d) for d in entries_days]

        # The close date it ends with, and what it started at (earlier if it slipped).
        depth = stage_i / max(n - 1, 1)
        if problem == "past_close":
            final_close = self.today - timedelta(days=rng.randint(2, min(20, last_move - 2)))
        elif problem == "big_late":
            final_close = self.today + timedelta(days=rng.randint(7, 35))
        else:
            final_close = self.today + timedelta(
                days=rng.randint(int(10 + (1 - depth) * 30), int(40 + (1 - depth) * 80))
            )
        created_on = self.local_date(entries[0])
        deltas = [rng.randint(14, 30) for _ in range(rng.randint(1, 2) if problem == "slipped" else 0)]
        room = (final_close - created_on).days - 14
        if deltas and sum(deltas) > room:
            deltas = [max(room // len(deltas), 1)] * len(deltas)
        initial_close = final_close - timedelta(days=sum(deltas))
        if problem == "pulled_in":
            initial_close = final_close + timedelta(days=rng.randint(14, 30))

        line = _Timeline()
        first = self.open_stages[0]
        no_next = problem == "no_next_step"
        line.create(
            entries[0],
            {
                "name": self.deal_name(company, segment),
                "account": company,
                "amount": amount,
                "close_date": initial_close,
                "forecast_category": ForecastCategory.PIPELINE.value,
                "next_step": None if no_next else self.next_step(first),
                "next_step_date": None if no_next else created_on + timedelta(days=rng.randint(2, 7)),
                "source": rng.choices(SOURCES, [40, 30, 15, 15])[0],
                "segment": segment,
                "stage": first,
                "owner": owner,
            },
        )
        self._walk_stages(
            line,
            entries,
            reached,
            with_next_steps=not no_next,
            revise_amount=problem != "big_late" and rng.random() < 0.35,
        )
        if problem == "big_late":
            line.change(entries[-1] + timedelta(hours=2), risk=rng.choice(_RISKS))

        # Slips happen after the last stage move; the most recent one lands in the past week.
        if deltas:
            slip_days = sorted((rng.randint(touched, max(touched, last_move - 1)) for _ in deltas), reverse=True)
            slip_days[-1] = rng.randint(1, 5)
            close = initial_close
            for days_ago, delta in zip(sorted(slip_days, reverse=True), deltas, strict=True):
                close += timedelta(days=delta)
                line.slip(self.at(days_ago), close)
        if problem == "regressed":  # the buyer's committee reopened the evaluation
            back = self.open_stages[stage_i]
            line.change(
                self.at(touched),
                stage=back,
                forecast_category=ForecastCategory.PIPELINE.value,
                next_step=self.next_step(back, line.state.get("next_step")),
            )
        elif problem == "pulled_in":  # the buyer wants it live before their quarter ends
            line.change(self.at(touched), close_date=final_close)

        # The last touch before the review: a next-step update or a "still accurate".
        when = self.at(touched)
        if problem != "stale" and line.touched_at < when - timedelta(hours=1):
            if no_next or rng.random() < 0.5:
                line.confirm(when)
            else:
                stage = line.state["stage"]
                line.change(
                    when,
                    next_step=self.next_step(stage, line.state.get("next_step")),
                    next_step_date=self.today + timedelta(days=rng.randint(1, 10)),
                )
        return line

    def closed_deal(self, company: str, owner: Person, won: bool, close_days_ago: int) -> _Timeline:
        rng = self.rng
        n = len(self.open_stages)
        reached = n - 1 if won else rng.choices(range(n), [n + 1 - i for i in range(n)])[0]
        segment = rng.choices(SEGMENTS, [35, 50, 15] if won else [30, 45, 25])[0]
        source = rng.choices(SOURCES, [40, 20, 25, 15] if won else [30, 40, 10, 20])[0]
        cycle = int(rng.triangular(20, 120, 45 if won else 60))
        cycle = max(cycle, reached + 2)
        created = close_days_ago + cycle
        closed_at = self.at(close_days_ago)
        close_day = self.local_date(closed_at)
        entries_days = self._stage_entries(created, close_days_ago + 1 + rng.randint(0, cycle // 4), reached)
        entries = [self.at(d) for d in entries_days]
        created_on = self.local_date(entries[0])
        planned = created_on + timedelta(days=rng.randint(30, 90))

        line = _Timeline()
        first = self.open_stages[0]
        line.create(
            entries[0],
            {
                "name": self.deal_name(company, segment),
                "account": company,
                "amount": self.amount(segment),
                "close_date": planned,
                "forecast_category": ForecastCategory.PIPELINE.value,
                "next_step": self.next_step(first),
                "next_step_date": created_on + timedelta(days=rng.randint(2, 7)),
                "source": source,
                "segment": segment,
                "stage": first,
                "owner": owner,
            },
        )
        self._walk_stages(line, entries, reached, with_next_steps=True, revise_amount=rng.random() < 0.3)
        if planned < close_day:
            # It slipped once on the way: the rep pushed the date when it came due.
            slip_at = entries[-1] + (closed_at - entries[-1]) / 2
            line.slip(slip_at, close_day)
        values: dict[str, Any] = {"stage": self.won if won else self.lost, "close_date": close_day}
        if not won:
            reason = rng.choices(list(_LOSS_WEIGHTS), list(_LOSS_WEIGHTS.values()))[0]
            assert reason in LOSS_REASONS
            values["loss_reason"] = reason
            if reason == "competitor" or rng.random() < 0.25:
                values["competitor"] = rng.choice(COMPETITORS)
        line.change(closed_at, "won" if won else "lost", **values)
        return line


def _deal_from(line: _Timeline, engagement_id: int, currency: str, closed_on: date | None) -> Deal:
    s = line.state
    return Deal(
        engagement_id=engagement_id,
        crm_id=None,
        name=s["name"],
        account=s["account"],
        owner_id=s["owner"].id,
        stage_id=s["stage"].id,
        is_open=closed_on is None,
        amount=s.get("amount"),
        currency=currency,
        close_date=s["close_date"],
        forecast_category=s["forecast_category"],
        next_step=s.get("next_step"),
        next_step_date=s.get("next_step_date"),
        risk=s.get("risk"),
        source=s["source"],
        segment=s["segment"],
        loss_reason=s.get("loss_reason"),
        competitor=s.get("competitor"),
        created_on=s["created_on"],
        closed_on=closed_on,
        slip_count=line.slips,
        stage_changed_at=line.stage_changed_at,
        touched_at=line.touched_at,
        created_at=line.created_at,
        updated_at=line.touched_at,
    )


def _weighted_owner(rng: random.Random, reps: Sequence[Person], won: bool) -> Person:
    """Reps differ (as they do): the first-listed reps win more, so win rate by rep has a story."""
    skill = [1.5, 1.2, 1.0, 0.75]
    weights = [skill[i % len(skill)] if won else 1 / skill[i % len(skill)] for i in range(len(reps))]
    return rng.choices(list(reps), weights)[0]


# --- the entry point ---------------------------------------------------------------------------------


async def seed_demo_pipeline(db: Database, engagement_slug: str, *, today: date, seed: int = 7) -> SeedReport:
    """Fill an empty engagement with the demo pipeline; do nothing (and say so) if it has any deal.

    The engagement file must already be applied: stages and reps come from the database, so the seed
    fits whatever pipeline the engagement defines. One write transaction: the emptiness check and the
    inserts are atomic, and a failure leaves nothing behind.
    """
    async with db.write() as session:
        eng = await engagement_repo.get_engagement(session, engagement_slug)
        if eng is None:
            raise SeedError(f"There is no engagement {engagement_slug!r}; apply the engagement file first.")
        existing = await count_deals(session, eng.id)
        if existing:
            return SeedReport(engagement=eng.slug, seeded=False, currency=eng.currency, existing_deals=existing)
        stages = await engagement_repo.stages(session, eng.id)
        open_stages = [s for s in stages if s.kind == StageKind.OPEN]
        won = next((s for s in stages if s.kind == StageKind.WON), None)
        lost = next((s for s in stages if s.kind == StageKind.LOST), None)
        if not open_stages or won is None or lost is None:
            raise SeedError(f"{eng.slug} needs open stages plus a won and a lost stage to seed a demo pipeline.")
        reps = [p for p in await engagement_repo.people(session, eng.id) if p.role == Role.REP]
        if not reps:
            raise SeedError(f"{eng.slug} has no active reps to own the demo deals; add some to the engagement file.")

        tz = ZoneInfo(eng.timezone)
        rng = random.Random(seed)
        seeder = _Seeder(rng, today, tz, reps, open_stages, won, lost)

        # Open pipeline: problems planted on shuffled slots so they land across reps and stages.
        roles = [label for label, count in _PROBLEMS for _ in range(count)]
        roles += ["healthy"] * (OPEN_DEALS - len(roles))
        rng.shuffle(roles)
        healthy_slots = [i for i, r in enumerate(roles) if r == "healthy"]
        for i, slot in enumerate(rng.sample(healthy_slots, min(11, len(healthy_slots)))):
            roles[slot] = "mover" if i < 6 else "new" if i < 9 else ("regressed", "pulled_in")[i - 9]
        open_companies = rng.sample([c for c in COMPANIES if c not in _KEPT_OUT_OF_OPEN], OPEN_DEALS)
        owners = [reps[i % len(reps)] for i in range(OPEN_DEALS)]
        rng.shuffle(owners)
        open_lines = [seeder.open_deal(company, owners[i], roles[i]) for i, company in enumerate(open_companies)]

        # A year of closed deals; a few closed in the past week so the review has wins and losses to call.
        others = [c for c in COMPANIES if c not in open_companies]
        outcomes = [True] * WON_DEALS + [False] * LOST_DEALS
        rng.shuffle(outcomes)
        closed_lines: list[tuple[_Timeline, bool]] = []
        closed_this_week = {outcomes.index(True), outcomes.index(False), rng.randrange(len(outcomes))}
        for i, won_it in enumerate(outcomes):
            close_days_ago = rng.randint(1, 5) if i in closed_this_week else rng.randint(6, HISTORY_DAYS)
            owner = _weighted_owner(rng, reps, won_it)
            closed_lines.append((seeder.closed_deal(rng.choice(others), owner, won_it, close_days_ago), won_it))

        all_lines: list[tuple[_Timeline, Deal]] = []
        for line in open_lines:
            line.state["created_on"] = seeder.local_date(line.created_at)
            all_lines.append((line, _deal_from(line, eng.id, eng.currency, None)))
        for line, _ in closed_lines:
            line.state["created_on"] = seeder.local_date(line.created_at)
            all_lines.append((line, _deal_from(line, eng.id, eng.currency, line.state["close_date"])))
        session.add_all([deal for _, deal in all_lines])
        await session.flush()

        history = [
            DealHistory(
                engagement_id=eng.id,
                deal_id=deal.id,
                actor_id=deal.owner_id,
                at=event.at,
                channel="import",
                kind=event.kind,
                changes=event.changes,
                note=event.note,
            )
            for line, deal in all_lines
            for event in line.events
        ]
        session.add_all(history)
        await session.flush()

        today_start = datetime.combine(today, time(0), tzinfo=tz).astimezone(UTC)
        week_ago = today_start - timedelta(days=7)
        recent = sum(1 for row in history if row.at >= week_ago and row.changes)
        open_deals = [deal for _, deal in all_lines[: len(open_lines)]]
        return SeedReport(
            engagement=eng.slug,
            seeded=True,
            currency=eng.currency,
            open_deals=len(open_deals),
            won_deals=sum(1 for _, w in closed_lines if w),
            lost_deals=sum(1 for _, w in closed_lines if not w),
            open_amount=sum((d.amount or Decimal(0) for d in open_deals), Decimal(0)),
            history_rows=len(history),
            recent_changes=recent,
            problems=_problems(open_deals, open_stages, today, today_start),
        )


def _problems(
    deals: Sequence[Deal], open_stages: Sequence[Stage], today: date, today_start: datetime
) -> dict[str, int]:
    """Count the hygiene problems as the review would see them (measured, not just what was planted)."""
    late = {s.id for s in open_stages[-2:]}
    return {
        "past_close": sum(1 for d in deals if d.close_date is not None and d.close_date < today),
        "stale": sum(1 for d in deals if d.touched_at <= today_start - timedelta(days=10)),
        "no_next_step": sum(1 for d in deals if not d.next_step),
        "no_amount": sum(1 for d in deals if d.amount is None),
        "slipped": sum(1 for d in deals if d.slip_count > 0),
        "stalled": sum(1 for d in deals if d.stage_changed_at <= today_start - timedelta(days=25)),
        "big_late": sum(1 for d in deals if d.stage_id in late and (d.amount or 0) >= BIG_DEAL),
    }
