"""Engagement as code: one YAML file describes a whole fractional CRO engagement.

A fractional CRO reuses a playbook across clients, so the engagement (calendar, quota, people, pipeline
stages, ritual settings, debrief questions, the 30/60/90 plan and the hand-over list) lives in a file
that can be copied, reviewed and versioned, rather than in clicks nobody can audit. This module

- parses that file with line numbers, so every problem is reported as ``file:line: key.path: what``
  (one line per problem, all problems at once, so a CRO fixes the file in one pass);
- validates it, including cross-references (every person or stage named anywhere exists) and the
  calendar traps (a 02:30 ritual is skipped or doubled on daylight-saving days);
- applies it to the database idempotently (``apply_engagement``): re-applying the same file changes
  nothing, people removed from the file are deactivated rather than deleted (their deal history must
  survive), and stages that deals still sit in are retired rather than deleted;
- exports the database back to a file (``export_engagement``) such that applying the export is a no-op.

YAML is read with YAML 1.2 scalar rules rather than PyYAML's YAML 1.1 defaults: under 1.1 an unquoted
``time: 10:00`` is the sexagesimal integer 600, ``choices: [yes, no]`` are booleans and ``2026-13-01``
crashes the loader. Here those stay strings, and dates and times are parsed by the validators, which
can point at the offending line.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database
from storage.engagements import get_engagement
from storage.models import (
    ChatIdentity,
    Deal,
    Engagement,
    HandoffTask,
    Person,
    PlanDeliverable,
    Role,
    Stage,
    StageKind,
)

__all__ = [
    "DEFAULT_DEBRIEF_QUESTIONS",
    "DEFAULT_HANDOFF",
    "DEFAULT_PLAN",
    "EXAMPLE_ENGAGEMENT",
    "ApplyReport",
    "DebriefQuestion",
    "DebriefQuestions",
    "EngagementFile",
    "EngagementFileError",
    "EngagementSection",
    "HandoffItem",
    "OutOfOffice",
    "PersonSpec",
    "PlanItem",
    "Problem",
    "RitualSettings",
    "Rituals",
    "StageSpec",
    "apply_engagement",
    "check_engagement_file",
    "dump_engagement_file",
    "engagement_settings",
    "export_engagement",
    "load_engagement_file",
    "parse_engagement_yaml",
]

EXAMPLE_ENGAGEMENT: Path = Path(__file__).parent / "examples" / "engagement.yaml"
"""The complete example engagement shipped as package data (``examples/engagement.yaml`` links to it)."""

DST_MESSAGE = "rituals between 02:00 and 03:00 local time can be skipped or doubled by daylight-saving changes"

Loc = tuple[str | int, ...]


# --------------------------------------------------------------------------------------------------
# Field validators: each raises ValueError with a message a CRO can act on, never a type name.
# --------------------------------------------------------------------------------------------------

_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_TIME_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_SLACK_RE = re.compile(r"^[UW][A-Z0-9]{2,}$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CENT = Decimal("0.01")


def _need_text(value: Any, example: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text like {example}, got {value!r}")
    return value.strip()


def _check_key(value: Any) -> str:
    """Keys are what people type in chat (`@sam`, `move to proposal`), so they are short and lowercase."""
    text = _need_text(value, "'sam' or 'closed_won'")
    if not _KEY_RE.match(text):
        raise ValueError(
            f"{text!r} is not a valid key: use up to 64 lowercase letters, digits, '_' or '-', starting with a letter"
        )
    return text


def _check_slug(value: Any) -> str:
    text = _need_text(value, "'northwind'")
    if not _SLUG_RE.match(text):
        raise ValueError(f"{text!r} is not a valid slug: use lowercase letters, digits and '-' (e.g. 'northwind')")
    return text


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _check_timezone(value: Any) -> str:
    """Only real IANA names: an abbreviation like 'PST' has no daylight-saving rules to schedule by."""
    text = _need_text(value, "'America/Los_Angeles'")
    if text not in _zones():
        close = difflib.get_close_matches(text, sorted(_zones()), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else " (e.g. 'America/New_York', 'Europe/London')"
        raise ValueError(f"{text!r} is not an IANA time zone{hint}")
    return text


def _check_currency(value: Any) -> str:
    text = _need_text(value, "'USD'")
    if not re.fullmatch(r"[A-Za-z]{3}", text):
        raise ValueError(f"{text!r} is not a 3-letter currency code like USD, EUR or GBP")
    return text.upper()


def _check_date(value: Any) -> date:
    """Dates must be written as dates: an integer would otherwise be read as a Unix timestamp."""
    if isinstance(value, datetime):
        raise ValueError(f"expected a date like 2026-09-07, got a date and time {value.isoformat()!r}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            try:
                return date.fromisoformat(text)
            except ValueError as exc:
                raise ValueError(f"{text!r} is not a valid date: {exc}") from None
    raise ValueError(f"expected a date like 2026-09-07, got {value!r}")


def _check_ritual_time(value: Any) -> time:
    """A wall-clock time in the ritual's zone; 02:xx is refused because DST skips or repeats it."""
    if isinstance(value, time):
        parsed = value
    else:
        text = _need_text(value, '"09:00"')
        match = _TIME_RE.match(text)
        if not match:
            raise ValueError(f'{text!r} is not a time like "09:00" (24-hour HH:MM)')
        parsed = time(int(match.group(1)), int(match.group(2)))
    if parsed.hour == 2:
        raise ValueError(f"{parsed:%H:%M} is not allowed: {DST_MESSAGE}")
    return parsed


def _format_time(value: time) -> str:
    return f"{value:%H:%M}"


def _lower(value: Any) -> Any:
    """Enumerated words are matched case-insensitively: 'Monday' is as clear as 'monday'."""
    return value.strip().lower() if isinstance(value, str) else value


def _quantize_money(value: Decimal) -> Decimal:
    """Money is stored as cents, so the model holds cents too; otherwise re-applying would see a change."""
    return value.quantize(_CENT)


def _check_slack(value: Any) -> str:
    text = _need_text(value, "'U04ABCD1234'")
    if not _SLACK_RE.match(text):
        raise ValueError(f"{text!r} is not a Slack user id (they look like U04ABCD1234; see the profile's ⋮ menu)")
    return text


def _check_teams(value: Any) -> str:
    text = _need_text(value, "'3f2b8c1e-...'")
    if not _UUID_RE.match(text):
        raise ValueError(f"{text!r} is not a Microsoft Entra (AAD) object id, which is a UUID")
    return text.lower()


def _check_email(value: Any) -> str:
    text = _need_text(value, "'dana@example.com'")
    if not _EMAIL_RE.match(text):
        raise ValueError(f"{text!r} is not an email address")
    return text


def _dedupe_sorted(values: list[date]) -> list[date]:
    return sorted(set(values))


Key = Annotated[str, BeforeValidator(_check_key)]
Slug = Annotated[str, BeforeValidator(_check_slug)]
TimeZoneName = Annotated[str, BeforeValidator(_check_timezone)]
Currency = Annotated[str, BeforeValidator(_check_currency)]
FileDate = Annotated[date, BeforeValidator(_check_date)]
RitualTime = Annotated[time, BeforeValidator(_check_ritual_time), PlainSerializer(_format_time, return_type=str)]
Money = Annotated[Decimal, Field(ge=0, decimal_places=2), AfterValidator(_quantize_money)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True)]
SlackId = Annotated[str, BeforeValidator(_check_slack)]
TeamsId = Annotated[str, BeforeValidator(_check_teams)]
Email = Annotated[str, BeforeValidator(_check_email)]
Weekday = Annotated[
    Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"], BeforeValidator(_lower)
]
RoleField = Annotated[Role, BeforeValidator(_lower)]
StageKindField = Annotated[StageKind, BeforeValidator(_lower)]
Phase = Annotated[Literal["diagnose", "build", "operationalize"], BeforeValidator(_lower)]
HandoffRitual = Annotated[Literal["pipeline_review", "forecast", "debriefs", "digest"], BeforeValidator(_lower)]
PositiveDays = Annotated[int, Field(ge=1)]


class _Spec(BaseModel):
    """Base of every section: unknown keys are errors, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_attribute_docstrings=True)


# --------------------------------------------------------------------------------------------------
# The file's sections
# --------------------------------------------------------------------------------------------------


class EngagementSection(_Spec):
    """The `engagement:` block: which company, when, and what the number is."""

    slug: Slug
    """Stable identifier (lowercase letters, digits, '-'); the file is upserted by it."""
    company: Text
    """The client's name as people say it."""
    start: FileDate
    """Day 1 of the engagement: the 30/60/90 plan counts from here."""
    exit: FileDate
    """The agreed exit date: the hand-over list counts back from here."""
    timezone: TimeZoneName
    """IANA zone of the company: rituals run on its wall clock."""
    currency: Currency
    """ISO 4217 code of quota and deal amounts."""
    quota_per_quarter: Money
    """New-business quota per fiscal quarter, a plain number (no '900k')."""
    fiscal_year_start_month: int = Field(default=1, ge=1, le=12)
    """Month (1-12) the fiscal year starts in; quarters follow from it."""
    coverage_target: float = Field(default=3.0, gt=0, le=20)
    """Target ratio of open pipeline to remaining quota (3.0 means 3x)."""
    forecast_owner: Key | None = None
    """Person key of whoever calls the forecast; the first CRO when omitted."""


class OutOfOffice(_Spec):
    """An absence: the bot stops nudging the person and says so when someone asks about their deals."""

    from_: FileDate = Field(alias="from")
    """First day away."""
    to: FileDate
    """Last day away (inclusive)."""
    note: str | None = None
    """Optional reason shown to others ('Holidays', 'Parental leave')."""

    @model_validator(mode="after")
    def _ordered(self) -> OutOfOffice:
        if self.to < self.from_:
            raise ValueError(f"'to' {self.to} is before 'from' {self.from_}")
        return self


class PersonSpec(_Spec):
    """Someone in the engagement. Removing a person from the file deactivates them; nothing is deleted."""

    key: Key
    """Short handle used in chat and in this file (`@sam`)."""
    name: Text
    """Full name as shown in messages."""
    role: RoleField
    """cro | founder | manager | rep: decides what the person may see and change."""
    email: Email | None = None
    """Used to match CRM owners on import."""
    timezone: TimeZoneName | None = None
    """Their own zone for personal nudges and the digest; the engagement's when omitted."""
    slack: SlackId | None = None
    """Slack user id (U…), so Slack messages are attributed to this person."""
    teams: TeamsId | None = None
    """Microsoft Entra (AAD) object id, so Teams messages are attributed to this person."""
    manager: Key | None = None
    """Person key of their manager: debrief escalations go there."""
    out_of_office: list[OutOfOffice] = Field(default_factory=list)
    """Absences; nudges pause during them."""


class StageSpec(_Spec):
    """A pipeline stage defined by buyer behaviour. List order is pipeline order."""

    key: Key
    """Handle reps type ('move to proposal')."""
    name: Text
    """Display name."""
    probability: int = Field(ge=0, le=100)
    """Win probability in percent, used for the weighted pipeline."""
    kind: StageKindField = StageKind.OPEN
    """open | won | lost: exactly one won and at least one lost stage are required."""
    entry: LongText = ""
    """What the buyer has done for a deal to enter this stage."""
    exit: LongText = ""
    """What must be true for the deal to leave it."""
    crm_names: list[Text] = Field(default_factory=list)
    """Stage labels/ids in HubSpot or Salesforce exports that map to this stage (case-insensitive)."""


class NudgeSettings(_Spec):
    """Reminders to update deals before the pipeline review."""

    time: RitualTime = time(15, 0)
    """Time of the reminder on the business day before the review."""
    last_call_minutes_before: int = Field(default=60, ge=0, le=24 * 60)
    """A last reminder this many minutes before the review to reps who have not updated (0: none)."""


class PipelineReviewSettings(_Spec):
    """The weekly pipeline review: when it runs and what it calls out."""

    day: Weekday = "monday"
    """Day of the week it runs."""
    time: RitualTime = time(9, 0)
    """Start time in the engagement's zone."""
    channel: Text = "pipeline-review"
    """Channel (without '#') the review is posted in."""
    host: Key | None = None
    """Person key running it; the forecast owner when omitted. Moves to the internal owner at hand-over."""
    duration_minutes: int = Field(default=60, ge=5, le=480)
    """Length of the meeting."""
    nudge: NudgeSettings = Field(default_factory=NudgeSettings)
    """Pre-review reminders."""
    stale_days: PositiveDays = 7
    """A deal with no update at all for this many days is stale."""
    stalled_days: PositiveDays = 21
    """A deal with no stage change for this many days is stalled."""
    close_soon_days: PositiveDays = 14
    """Deals closing within this many days are called out."""
    early_stages: list[Key] | None = None
    """Open stages where a late close date is expected; derived (probability < 50) when omitted."""
    large_deal_amount: Money = Decimal("100000.00")
    """Deals at or above this amount are always discussed."""
    late_stages: list[Key] | None = None
    """Open stages whose deals need a next step and close date; derived (probability >= 50) when omitted."""
    grace_hours: int = Field(default=4, ge=0, le=72)
    """Updates made this many hours after the review starts still count towards its hygiene score."""


class DebriefSettings(_Spec):
    """Deal debriefs: who is asked, when, and who hears when they are not answered."""

    stalled_days: PositiveDays = 21
    """A deal stalled this long triggers a 'stalled' debrief."""
    remind_after_business_days: list[PositiveDays] = Field(default_factory=lambda: [1, 3])
    """Reminders to the rep this many business days after the debrief was asked; the last one escalates."""
    escalate_to: Key = "manager"
    """'manager' (the rep's manager, else the forecast owner) or a person key."""
    late_stage: Key | None = None
    """Losses from this open stage or a later one get a full debrief; the first late stage when omitted."""
    time: RitualTime = time(10, 0)
    """Time of day debrief requests and reminders are sent."""


class MilestoneSettings(_Spec):
    """Check-ins on the 30/60/90 plan."""

    checkin_business_days_before: PositiveDays = 5
    """Ask each deliverable's owner for a status this many business days before its milestone day."""
    time: RitualTime = time(10, 0)
    """Time of day of the check-in."""


class HandoffSettings(_Spec):
    """Reminders that move responsibilities from the CRO to internal owners before the exit."""

    reminder_days_before_due: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [60, 30, 14, 7, 1])
    """Remind the task's owners this many days before each task is due."""
    exit_planning_month: int = Field(default=6, ge=1, le=18)
    """Engagement month in which exit planning starts (hand-over status joins the digest)."""
    owner_warning_days_before_exit: int = Field(default=60, ge=0)
    """From this many days before the exit, tasks without an internal owner are flagged every week."""
    time: RitualTime = time(10, 0)
    """Time of day of the reminders."""


class DigestSettings(_Spec):
    """The founder digest against the agreed KPIs."""

    day: Weekday = "friday"
    """Day of the week it is sent."""
    time: RitualTime = time(16, 0)
    """Time it is sent, in each recipient's own zone."""
    recipients: list[Key] | None = None
    """Person keys; every founder (else the forecast owner) when omitted."""


class Rituals(_Spec):
    """The `rituals:` block. Every ritual has defaults, so the whole block may be omitted."""

    pipeline_review: PipelineReviewSettings = Field(default_factory=PipelineReviewSettings)
    """The weekly pipeline review."""
    debriefs: DebriefSettings = Field(default_factory=DebriefSettings)
    """Deal debriefs."""
    milestones: MilestoneSettings = Field(default_factory=MilestoneSettings)
    """30/60/90 check-ins."""
    handoff: HandoffSettings = Field(default_factory=HandoffSettings)
    """Hand-over reminders."""
    digest: DigestSettings = Field(default_factory=DigestSettings)
    """The founder digest."""


class DebriefQuestion(_Spec):
    """One question of a debrief; with `choices` the bot offers buttons, otherwise it takes free text."""

    key: Key
    """Where the answer is stored (e.g. 'reason' also fills the deal's loss reason)."""
    text: Text
    """The question as asked."""
    choices: list[Text] | None = None
    """Allowed answers, offered as buttons; free text when omitted."""


def _questions(*items: tuple[str, str, list[str] | None]) -> tuple[DebriefQuestion, ...]:
    return tuple(DebriefQuestion(key=k, text=t, choices=c) for k, t, c in items)


DEFAULT_DEBRIEF_QUESTIONS: dict[str, tuple[DebriefQuestion, ...]] = {
    "won": _questions(
        (
            "reason",
            "What was the main reason we won?",
            ["champion", "business case", "product fit", "relationship", "price", "timing", "other"],
        ),
        ("turning_point", "What was the moment the deal turned in our favour?", None),
        ("repeat", "What should every rep repeat from this deal?", None),
    ),
    "lost": _questions(
        (
            "reason",
            "What was the main reason we lost?",
            ["price", "no decision", "competitor", "timing", "product gap", "champion left", "other"],
        ),
        ("competitor", "Which competitor, if any?", None),
        ("differently", "What would you do differently?", None),
    ),
    "slipped": _questions(
        (
            "reason",
            "Why did the close date move?",
            [
                "buyer timing",
                "budget",
                "legal or procurement",
                "champion unavailable",
                "no decision yet",
                "competing priority",
                "other",
            ],
        ),
        ("next_step", "What has to happen for it to close on the new date, and by when?", None),
        ("confidence", "How confident are you in the new date?", ["high", "medium", "low"]),
    ),
    "stalled": _questions(
        ("blocker", "What is blocking the next stage?", None),
        ("next_step", "What is the next step, with whom, and when?", None),
        ("still_qualified", "Is the deal still qualified?", ["yes", "no", "unsure"]),
    ),
    "regressed": _questions(
        ("what_changed", "What changed that moved the deal back?", None),
        ("recover", "What would it take to move it forward again?", None),
    ),
}
"""The playbook's debrief questions per trigger, used for any trigger the file leaves out."""


def _default_questions(trigger: str) -> list[DebriefQuestion]:
    return [q.model_copy(deep=True) for q in DEFAULT_DEBRIEF_QUESTIONS[trigger]]


class DebriefQuestions(_Spec):
    """The `debrief_questions:` block, one list per trigger; an empty list turns that debrief off."""

    won: list[DebriefQuestion] = Field(default_factory=lambda: _default_questions("won"))
    """Asked when a deal is won."""
    lost: list[DebriefQuestion] = Field(default_factory=lambda: _default_questions("lost"))
    """Asked when a deal is lost (late-stage losses get all of them)."""
    slipped: list[DebriefQuestion] = Field(default_factory=lambda: _default_questions("slipped"))
    """Asked when a close date moves out of the current period."""
    stalled: list[DebriefQuestion] = Field(default_factory=lambda: _default_questions("stalled"))
    """Asked when a deal has not changed stage for `debriefs.stalled_days`."""
    regressed: list[DebriefQuestion] = Field(default_factory=lambda: _default_questions("regressed"))
    """Asked when a deal moves to an earlier stage."""


class PlanItem(_Spec):
    """A 30/60/90 deliverable. Its status is reported in chat and survives re-applying the file."""

    key: Key
    """Stable handle; the deliverable is upserted by it."""
    phase: Phase
    """diagnose (days 1-30) | build (31-60) | operationalize (61-90)."""
    day: PositiveDays
    """The milestone day (counted from the engagement start, day 1) it is due by."""
    title: Text
    """What is delivered."""
    owner: Key | None = None
    """Person key responsible; the first CRO when omitted."""


class HandoffItem(_Spec):
    """A responsibility that moves from the CRO to an internal owner before the exit date."""

    key: Key
    """Stable handle; the task is upserted by it."""
    title: Text
    """The responsibility, phrased as what the new owner will do."""
    from_: Key | None = Field(default=None, alias="from")
    """Person key handing it over; the first CRO when omitted."""
    to: Key | None = None
    """Person key taking it over; null while there is no internal owner yet (the bot warns)."""
    ritual: HandoffRitual | None = None
    """pipeline_review | forecast | debriefs | digest: the ritual whose host moves with this task."""
    due_days_before_exit: int = Field(ge=0)
    """Due this many days before the exit date, leaving time to prove it runs without the CRO."""


def _plan(phase: str, day: int, *items: tuple[str, str]) -> list[PlanItem]:
    return [PlanItem(key=k, phase=phase, day=day, title=t) for k, t in items]


DEFAULT_PLAN: tuple[PlanItem, ...] = (
    *_plan(
        "diagnose",
        30,
        ("revenue_audit", "Revenue audit: pipeline, process, talent, tech/data"),
        ("icp_defined", "ICP defined: size, team structure, tech stack, trigger events, buying committee"),
        ("current_motion", "Current sales motion documented"),
        ("biggest_constraint", "Single biggest constraint named"),
    ),
    *_plan(
        "build",
        60,
        ("stage_definitions", "Stages defined by buyer behaviour, with entry and exit criteria"),
        ("crm_architecture", "CRM architecture that reflects the buying journey"),
        ("onboarding_playbook", "Onboarding and ramp playbook"),
        ("metrics_cadence", "Metrics cadence: what is reviewed weekly, monthly and quarterly, and by whom"),
    ),
    *_plan(
        "operationalize",
        90,
        ("full_cycle", "Run the system for one full cycle"),
        ("playbook_documented", "Playbook documented"),
        ("internal_owners", "Internal owners named for each ritual"),
        ("handover_begun", "Hand-over of operating responsibilities begun"),
    ),
)
"""The standard 30/60/90 plan, used when the file has no `plan:`; owners default to the CRO."""


def _handoff(key: str, title: str, due: int, ritual: str | None = None) -> HandoffItem:
    return HandoffItem.model_validate({"key": key, "title": title, "due_days_before_exit": due, "ritual": ritual})


DEFAULT_HANDOFF: tuple[HandoffItem, ...] = (
    _handoff("review_host", "Host the weekly pipeline review", 30, "pipeline_review"),
    _handoff("forecast_call", "Call the forecast each week", 30, "forecast"),
    _handoff("deal_coaching", "Run deal coaching and debriefs", 45, "debriefs"),
    _handoff("playbook_home", "Own the sales playbook: where it lives and keeping it current", 45),
    _handoff("stage_definitions", "Own the stage definitions and their entry/exit criteria", 60),
    _handoff("onboarding_playbook", "Own the onboarding and ramp playbook", 45),
    _handoff("dashboards", "Own the pipeline and forecast dashboards", 45),
    _handoff("hiring_plan", "Own the sales hiring plan", 60),
)
"""The standard hand-over list, used when the file has no `handoff:`: from the CRO, to nobody yet."""


class RitualSettings(Rituals):
    """What `Engagement.settings` holds: the rituals plus the engagement-level knobs the engine reads.

    `apply_engagement` stores it with every derived default resolved (host, early/late stages, digest
    recipients, forecast owner), so the engine never has to guess; `engagement_settings` reads it back.
    """

    debrief_questions: DebriefQuestions = Field(default_factory=DebriefQuestions)
    """Debrief question sets per trigger."""
    forecast_owner: Key | None = None
    """Person key of whoever calls the forecast (None only when the engagement has no CRO and none is set)."""
    coverage_target: float = Field(default=3.0, gt=0)
    """Target pipeline coverage ratio."""
    retired_stages: list[Key] = Field(default_factory=list)
    """Stages removed from the file but kept because deals still sit in them; export leaves them out."""


class EngagementFile(_Spec):
    """The whole engagement file."""

    engagement: EngagementSection
    """Company, dates, zone, currency and quota."""
    holidays: Annotated[list[FileDate], AfterValidator(_dedupe_sorted)] = Field(default_factory=list)
    """Company holidays: no rituals or nudges, and they are not business days."""
    people: list[PersonSpec] = Field(min_length=1)
    """Everyone in the engagement."""
    stages: list[StageSpec] = Field(min_length=2)
    """Pipeline stages in pipeline order."""
    rituals: Rituals = Field(default_factory=Rituals)
    """Ritual settings."""
    debrief_questions: DebriefQuestions = Field(default_factory=DebriefQuestions)
    """Debrief questions per trigger."""
    plan: list[PlanItem] | None = None
    """The 30/60/90 plan; the standard playbook (`DEFAULT_PLAN`) when omitted."""
    handoff: list[HandoffItem] | None = None
    """The hand-over list; the standard one (`DEFAULT_HANDOFF`) when omitted."""

    def cro_key(self) -> str | None:
        """The first person with role cro: the default owner of everything the file leaves unowned."""
        return next((p.key for p in self.people if p.role == Role.CRO), None)

    def plan_items(self) -> list[PlanItem]:
        """The plan with defaults applied (the standard plan; the CRO as owner where none is named)."""
        items = self.plan if self.plan is not None else list(DEFAULT_PLAN)
        cro = self.cro_key()
        return [item.model_copy(update={"owner": item.owner or cro}) for item in items]

    def handoff_items(self) -> list[HandoffItem]:
        """The hand-over list with defaults applied (the standard list; from the CRO where not named)."""
        items = self.handoff if self.handoff is not None else list(DEFAULT_HANDOFF)
        cro = self.cro_key()
        return [item.model_copy(update={"from_": item.from_ or cro}) for item in items]

    def ritual_settings(self, *, retired_stages: Iterable[str] = ()) -> RitualSettings:
        """The settings to store, with every derived default resolved against this file's people and stages."""
        owner = self.engagement.forecast_owner or self.cro_key()
        open_stages = [s for s in self.stages if s.kind == StageKind.OPEN]
        review = self.rituals.pipeline_review
        early = review.early_stages
        if early is None:
            early = [s.key for s in open_stages if s.probability < 50]
        late = review.late_stages
        if late is None:
            late = [s.key for s in open_stages if s.probability >= 50]
        debriefs = self.rituals.debriefs
        late_stage = debriefs.late_stage
        if late_stage is None:
            late_stage = late[0] if late else (open_stages[-1].key if open_stages else None)
        recipients = self.rituals.digest.recipients
        if recipients is None:
            recipients = [p.key for p in self.people if p.role == Role.FOUNDER] or ([owner] if owner else [])
        return RitualSettings(
            pipeline_review=review.model_copy(
                update={"host": review.host or owner, "early_stages": early, "late_stages": late}, deep=True
            ),
            debriefs=debriefs.model_copy(update={"late_stage": late_stage}, deep=True),
            milestones=self.rituals.milestones.model_copy(deep=True),
            handoff=self.rituals.handoff.model_copy(deep=True),
            digest=self.rituals.digest.model_copy(update={"recipients": recipients}, deep=True),
            debrief_questions=self.debrief_questions.model_copy(deep=True),
            forecast_owner=owner,
            coverage_target=self.engagement.coverage_target,
            retired_stages=sorted(set(retired_stages)),
        )


def engagement_settings(engagement: Engagement) -> RitualSettings:
    """The typed ritual settings of an applied engagement, with defaults for anything not stored."""
    return RitualSettings.model_validate(engagement.settings or {})


# --------------------------------------------------------------------------------------------------
# Problems and their locations
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an engagement file, located as precisely as the file allows."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class EngagementFileError(ValueError):
    """The file is unreadable or invalid; `str()` is one `file:line: key.path: problem` line per problem."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    """The line of the deepest part of `loc` present in the file (a missing key points at its parent)."""
    for end in range(len(loc), -1, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return None


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The section model that a key path points into, to suggest the keys it allows."""
    tp: Any = EngagementFile
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            args = typing.get_args(tp)
            if typing.get_origin(tp) is not list or not args:
                return None
            tp = args[0]
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            found = [f.annotation for n, f in tp.model_fields.items() if (f.alias or n) == part]
            if not found:
                return None
            tp = found[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _describe(error: ErrorDetails) -> str:
    """A pydantic error in the words of the file: what was written and what would be accepted."""
    kind = error["type"]
    loc: Loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing":
        return "required but missing"
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = _allowed_keys(model) if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        if close:
            return f"unknown key {loc[-1]!r} (did you mean {close[0]!r}?)"
        return f"unknown key {loc[-1]!r}" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
    if kind in ("enum", "literal_error"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"{value!r} is not one of {', '.join(choices)}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys to values, got {_kind_of(value)}"
    if kind in ("decimal_parsing", "decimal_type"):
        return f"{_kind_of(value)} is not a number (write amounts in full, e.g. 900000)"
    if kind == "list_type":
        return f"expected a list, got {_kind_of(value)}"
    message = error["msg"]
    message = message[:1].lower() + message[1:]
    return f"{message} (got {_kind_of(value)})"


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------------------------------
# YAML with line numbers and YAML 1.2 scalars
# --------------------------------------------------------------------------------------------------

_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars: no sexagesimal numbers, no yes/no/on/off booleans, and
    dates left as strings for the validators (which report a bad date with its line instead of crashing)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _INT_TAG, _FLOAT_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _index_lines(
    node: yaml.Node,
    path: Loc,
    lines: dict[Loc, int],
    duplicates: list[tuple[Loc, int, str]],
    seen_nodes: frozenset[int] = frozenset(),
) -> None:
    """Record the line of every mapping key and sequence item, and find duplicate keys (which PyYAML
    would otherwise resolve silently to the last one)."""
    if id(node) in seen_nodes:
        return
    seen_nodes = seen_nodes | {id(node)}
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                _index_lines(value_node, path, lines, duplicates, seen_nodes)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                duplicates.append(((*path, key), line, f"duplicate key {key!r} (first at line {first_line[key]})"))
                continue
            first_line[key] = line
            lines.setdefault((*path, key), line)
            _index_lines(value_node, (*path, key), lines, duplicates, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.setdefault((*path, i), item.start_mark.line + 1)
            _index_lines(item, (*path, i), lines, duplicates, seen_nodes)


def _yaml_problem(source: str, exc: yaml.YAMLError) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        what = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        return Problem(source, exc.problem_mark.line + 1, "", f"YAML syntax error: {what}{context}")
    return Problem(source, None, "", f"YAML syntax error: {exc}")


def parse_engagement_yaml(text: str, source: str = "<engagement file>") -> EngagementFile:
    """Parse and validate engagement YAML; `source` names the file in error messages."""
    loader = _Loader(text)
    lines: dict[Loc, int] = {}
    duplicates: list[tuple[Loc, int, str]] = []
    try:
        node = loader.get_single_node()
        if node is None:
            raise EngagementFileError([Problem(source, 1, "", "the file is empty; see examples/engagement.yaml")])
        lines[()] = node.start_mark.line + 1
        _index_lines(node, (), lines, duplicates)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise EngagementFileError([_yaml_problem(source, exc)]) from None
    finally:
        loader.dispose()

    problems = [Problem(source, line, _format_loc(loc), msg) for loc, line, msg in duplicates]
    try:
        spec = EngagementFile.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            problems.append(Problem(source, _line_for(loc, lines), _format_loc(loc), _describe(error)))
        raise EngagementFileError(_sorted(problems)) from None
    if problems:
        raise EngagementFileError(_sorted(problems))
    reference_problems = check_engagement_file(spec)
    if reference_problems:
        raise EngagementFileError(
            _sorted([Problem(source, _line_for(loc, lines), _format_loc(loc), msg) for loc, msg in reference_problems])
        )
    return spec


def load_engagement_file(path: Path) -> EngagementFile:
    """Read, parse and validate an engagement file; raises `EngagementFileError` listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise EngagementFileError([Problem(str(path), None, "", f"cannot read the file: {reason}")]) from None
    return parse_engagement_yaml(text, str(path))


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line or 0, p.path))


# --------------------------------------------------------------------------------------------------
# Cross-reference checks
# --------------------------------------------------------------------------------------------------


def _suggest(value: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _dst_trap(at: time, zone: str, first: date, last: date) -> str | None:
    """Whether `at` is skipped or repeated by a DST change in `zone` between `first` and `last`.

    The 02:xx rule covers North America; elsewhere the change happens at other hours (01:00 in London,
    00:00 in some zones), so the file's own dates are checked against the zone's real transitions."""
    tz = ZoneInfo(zone)
    last = min(last, first + timedelta(days=400))  # DST rules repeat yearly; a typo'd exit must not hang us
    day = first
    while day <= last:
        naive = datetime.combine(day, at)
        early, late = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
        if early.utcoffset() != late.utcoffset():
            skipped = early.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive
            what = "does not exist" if skipped else "happens twice"
            return f"{at:%H:%M} {what} on {day} in {zone} (a daylight-saving change); pick another time"
        day += timedelta(days=1)
    return None


def check_engagement_file(spec: EngagementFile) -> list[tuple[Loc, str]]:
    """Checks that span sections: unique keys, existing references, stage kinds, dates and DST.

    Kept apart from the field validators so each problem keeps its own key path (a model-level
    validator would collapse them into one error), and so `apply_engagement` can run them on a spec
    built in code rather than loaded from a file."""
    problems: list[tuple[Loc, str]] = []
    eng = spec.engagement
    if eng.exit <= eng.start:
        problems.append((("engagement", "exit"), f"exit {eng.exit} must be after start {eng.start}"))

    people = {p.key: p for p in spec.people}
    problems += _duplicates("people", [p.key for p in spec.people], "person key")
    problems += _duplicates("stages", [s.key for s in spec.stages], "stage key")

    def person(loc: Loc, key: str | None) -> None:
        if key is not None and key not in people:
            problems.append((loc, f"{key!r} is not a person key in this file{_suggest(key, people)}"))

    stages = {s.key: s for s in spec.stages}

    def open_stage(loc: Loc, key: str | None) -> None:
        if key is None:
            return
        if key not in stages:
            problems.append((loc, f"{key!r} is not a stage key in this file{_suggest(key, stages)}"))
        elif stages[key].kind != StageKind.OPEN:
            problems.append((loc, f"{key!r} is a {stages[key].kind.value} stage; only open stages fit here"))

    # Stages: one won, at least one lost and one open, unambiguous CRM labels.
    for kind, rule in (
        (StageKind.WON, "exactly one"),
        (StageKind.LOST, "at least one"),
        (StageKind.OPEN, "at least one"),
    ):
        keys = [s.key for s in spec.stages if s.kind == kind]
        if (kind == StageKind.WON and len(keys) != 1) or not keys:
            found = f"found {len(keys)}" + (f" ({', '.join(keys)})" if keys else "")
            problems.append((("stages",), f"needs {rule} stage with kind {kind.value}; {found}"))
    crm_owner: dict[str, str] = {}
    for i, stage in enumerate(spec.stages):
        for j, label in enumerate(stage.crm_names):
            folded = label.casefold()
            if folded in crm_owner and crm_owner[folded] != stage.key:
                problems.append(
                    (
                        (("stages", i, "crm_names", j)),
                        f"CRM name {label!r} is already mapped to stage {crm_owner[folded]!r}",
                    )
                )
            crm_owner.setdefault(folded, stage.key)

    # People: managers exist, no cycles, chat ids not shared.
    for i, p in enumerate(spec.people):
        person(("people", i, "manager"), p.manager)
        if p.manager == p.key:
            problems.append((("people", i, "manager"), f"{p.key!r} cannot be their own manager"))
    for i, p in enumerate(spec.people):
        chain, current = [p.key], people.get(p.manager) if p.manager else None
        while current is not None and current.key not in chain:
            chain.append(current.key)
            current = people.get(current.manager) if current.manager else None
        if current is not None and current.key == p.key and p.manager != p.key:
            problems.append((("people", i, "manager"), f"managers form a loop: {' → '.join([*chain, p.key])}"))
    for platform in ("slack", "teams", "email"):
        owners: dict[str, str] = {}
        for i, p in enumerate(spec.people):
            ident = getattr(p, platform)
            if ident is None:
                continue
            folded = ident.casefold()
            if folded in owners:
                problems.append((("people", i, platform), f"{ident!r} is also {owners[folded]!r}'s {platform}"))
            owners.setdefault(folded, p.key)

    # Engagement-level and ritual references.
    person(("engagement", "forecast_owner"), eng.forecast_owner)
    review = spec.rituals.pipeline_review
    person(("rituals", "pipeline_review", "host"), review.host)
    for name in ("early_stages", "late_stages"):
        for j, key in enumerate(getattr(review, name) or []):
            open_stage(("rituals", "pipeline_review", name, j), key)
    debriefs = spec.rituals.debriefs
    open_stage(("rituals", "debriefs", "late_stage"), debriefs.late_stage)
    if debriefs.escalate_to != "manager":
        person(("rituals", "debriefs", "escalate_to"), debriefs.escalate_to)
    for j, key in enumerate(spec.rituals.digest.recipients or []):
        person(("rituals", "digest", "recipients", j), key)

    for trigger in DebriefQuestions.model_fields:
        questions: list[DebriefQuestion] = getattr(spec.debrief_questions, trigger)
        problems += _duplicates(("debrief_questions", trigger), [q.key for q in questions], "question key")

    if spec.plan is not None:
        problems += _duplicates("plan", [item.key for item in spec.plan], "deliverable key")
        for i, item in enumerate(spec.plan):
            person(("plan", i, "owner"), item.owner)
    if spec.handoff is not None:
        problems += _duplicates("handoff", [item.key for item in spec.handoff], "hand-over key")
        for i, h in enumerate(spec.handoff):
            person(("handoff", i, "from"), h.from_)
            person(("handoff", i, "to"), h.to)

    problems += _dst_problems(spec)
    return problems


def _duplicates(section: str | Loc, keys: list[str], what: str) -> list[tuple[Loc, str]]:
    base: Loc = (section,) if isinstance(section, str) else section
    first: dict[str, int] = {}
    out: list[tuple[Loc, str]] = []
    for i, key in enumerate(keys):
        if key in first:
            out.append(((*base, i, "key"), f"duplicate {what} {key!r} (also {_format_loc((*base, first[key]))})"))
        else:
            first[key] = i
    return out


def _dst_problems(spec: EngagementFile) -> list[tuple[Loc, str]]:
    eng = spec.engagement
    if eng.exit <= eng.start:
        return []
    r = spec.rituals
    timed: list[tuple[Loc, time, str]] = [
        (("rituals", "pipeline_review", "time"), r.pipeline_review.time, eng.timezone),
        (("rituals", "pipeline_review", "nudge", "time"), r.pipeline_review.nudge.time, eng.timezone),
        (("rituals", "debriefs", "time"), r.debriefs.time, eng.timezone),
        (("rituals", "milestones", "time"), r.milestones.time, eng.timezone),
        (("rituals", "handoff", "time"), r.handoff.time, eng.timezone),
    ]
    people = {p.key: p for p in spec.people}
    recipients = spec.ritual_settings().digest.recipients or []
    for zone in sorted({(people[k].timezone or eng.timezone) for k in recipients if k in people}):
        timed.append((("rituals", "digest", "time"), r.digest.time, zone))
    out: list[tuple[Loc, str]] = []
    for loc, at, zone in timed:
        trap = _dst_trap(at, zone, eng.start, eng.exit)
        if trap:
            out.append((loc, trap))
    return out


# --------------------------------------------------------------------------------------------------
# Apply
# --------------------------------------------------------------------------------------------------


@dataclass
class ApplyReport:
    """What applying a file did. `changes` lists every change; zero changes means the file was in force."""

    slug: str
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    deleted: int = 0
    warnings: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def total_changes(self) -> int:
        return self.created + self.updated + self.deactivated + self.deleted

    def summary(self) -> str:
        """A short human summary for the CLI and the bot: counts, then each change and warning."""
        verb = "would apply" if self.dry_run else "applied"
        if self.total_changes == 0:
            head = f"Engagement {self.slug!r}: no changes (the file is already in force)."
        else:
            head = (
                f"Engagement {self.slug!r} {verb}: {self.created} created, {self.updated} updated, "
                f"{self.deactivated} deactivated, {self.deleted} deleted."
            )
        lines = [head, *(f"  - {c}" for c in self.changes)]
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines)


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


def _show(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    text = "none" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Changes:
    """Sets attributes only when they differ, and remembers what changed, for an honest report."""

    def __init__(self) -> None:
        self.fields: list[str] = []

    def set(self, obj: Any, attr: str, value: Any, label: str | None = None) -> None:
        old = getattr(obj, attr)
        if old != value:
            setattr(obj, attr, value)
            self.fields.append(f"{label or attr} {_show(old)} → {_show(value)}")

    def note(self, text: str) -> None:
        self.fields.append(text)

    def record(self, report: ApplyReport, what: str) -> None:
        if self.fields:
            report.updated += 1
            report.changes.append(f"{what} updated: {'; '.join(self.fields)}")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _settings_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before, after = _flatten(old), _flatten(new)
    return [
        f"settings.{k} {_show(before.get(k))} → {_show(after.get(k))}"
        for k in sorted(before.keys() | after.keys())
        if before.get(k) != after.get(k)
    ]


async def apply_engagement(db: Database, spec: EngagementFile, *, now: datetime, dry_run: bool = False) -> ApplyReport:
    """Create or update the engagement described by `spec`, in one transaction; idempotent.

    Upserts by engagement slug and by person, stage, deliverable and hand-over key. People missing from
    the file are deactivated, never deleted (their deals and history point at them); stages missing
    from the file are deleted unless deals still sit in them, in which case they are retired (kept,
    listed in the warnings and in `settings.retired_stages`). Deliverables and hand-over tasks missing
    from the file are deleted. Reported statuses of deliverables and tasks are runtime state, not file
    content, so re-applying never resets them. With `dry_run` the transaction is rolled back.
    """
    if now.tzinfo is None:
        raise ValueError("apply_engagement needs an aware `now`")
    problems = check_engagement_file(spec)
    if problems:
        raise EngagementFileError([Problem("<engagement file>", None, _format_loc(loc), m) for loc, m in problems])
    report = ApplyReport(slug=spec.engagement.slug, dry_run=dry_run)
    try:
        async with db.session() as session:
            await _apply(session, spec, now, report)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return report


async def _apply(session: AsyncSession, spec: EngagementFile, now: datetime, report: ApplyReport) -> None:
    eng_spec = spec.engagement
    engagement = (
        await session.execute(select(Engagement).where(Engagement.slug == eng_spec.slug))
    ).scalar_one_or_none()
    holidays = [d.isoformat() for d in spec.holidays]
    engagement_changes = _Changes()
    if engagement is None:
        engagement = Engagement(
            slug=eng_spec.slug,
            company=eng_spec.company,
            start_date=eng_spec.start,
            exit_date=eng_spec.exit,
            timezone=eng_spec.timezone,
            currency=eng_spec.currency,
            quota_per_quarter=eng_spec.quota_per_quarter,
            fiscal_year_start_month=eng_spec.fiscal_year_start_month,
            holidays=holidays,
            settings={},
            paused=False,
            created_at=now,
            updated_at=now,
        )
        session.add(engagement)
        await session.flush()
        report.created += 1
        report.changes.append(f"engagement {eng_spec.slug!r} created")
        new_engagement = True
    else:
        new_engagement = False
        c = engagement_changes
        c.set(engagement, "company", eng_spec.company)
        c.set(engagement, "start_date", eng_spec.start, "start")
        c.set(engagement, "exit_date", eng_spec.exit, "exit")
        c.set(engagement, "timezone", eng_spec.timezone)
        c.set(engagement, "currency", eng_spec.currency)
        c.set(engagement, "quota_per_quarter", eng_spec.quota_per_quarter)
        c.set(engagement, "fiscal_year_start_month", eng_spec.fiscal_year_start_month)
        if list(engagement.holidays or []) != holidays:
            engagement.holidays = holidays
            c.note("holidays changed")

    people_by_key = await _apply_people(session, engagement.id, spec, report)
    retired = await _apply_stages(session, engagement.id, spec, report)

    settings = spec.ritual_settings(retired_stages=retired).model_dump(mode="json")
    if (engagement.settings or {}) != settings:
        if not new_engagement:
            engagement_changes.fields += _settings_changes(engagement.settings or {}, settings)
        engagement.settings = settings
    if engagement_changes.fields:
        engagement.updated_at = now
    engagement_changes.record(report, f"engagement {eng_spec.slug!r}")

    await _apply_plan(session, engagement.id, spec, people_by_key, report)
    await _apply_handoff(session, engagement.id, spec, people_by_key, report)
    report.warnings += _warnings(spec)


def _ooo_json(items: list[OutOfOffice]) -> list[Any]:
    return [o.model_dump(mode="json", by_alias=True) for o in items]


async def _apply_people(
    session: AsyncSession, engagement_id: int, spec: EngagementFile, report: ApplyReport
) -> dict[str, Person]:
    existing = {
        p.key: p for p in (await session.execute(select(Person).where(Person.engagement_id == engagement_id))).scalars()
    }
    key_by_id = {p.id: k for k, p in existing.items()}
    changes: dict[str, _Changes] = {}
    created: set[str] = set()
    for ps in spec.people:
        person = existing.get(ps.key)
        if person is None:
            person = Person(
                engagement_id=engagement_id,
                key=ps.key,
                name=ps.name,
                email=ps.email,
                role=ps.role.value,
                timezone=ps.timezone,
                active=True,
                out_of_office=_ooo_json(ps.out_of_office),
            )
            session.add(person)
            existing[ps.key] = person
            created.add(ps.key)
            report.created += 1
            report.changes.append(f"person {ps.key!r} created ({ps.role.value})")
            continue
        c = changes.setdefault(ps.key, _Changes())
        c.set(person, "name", ps.name)
        c.set(person, "email", ps.email)
        c.set(person, "role", ps.role.value)
        c.set(person, "timezone", ps.timezone)
        c.set(person, "active", True)
        if list(person.out_of_office or []) != _ooo_json(ps.out_of_office):
            person.out_of_office = _ooo_json(ps.out_of_office)
            c.note("out_of_office changed")
    await session.flush()

    in_file = {ps.key for ps in spec.people}
    for ps in spec.people:
        person = existing[ps.key]
        manager_id = existing[ps.manager].id if ps.manager else None
        if person.manager_id != manager_id:
            if ps.key not in created:
                old = key_by_id.get(person.manager_id) if person.manager_id else None
                changes[ps.key].note(f"manager {_show(old)} → {_show(ps.manager)}")
            person.manager_id = manager_id
    for key, person in existing.items():
        if key not in in_file and person.active:
            person.active = False
            report.deactivated += 1
            report.changes.append(f"person {key!r} deactivated (kept for their deal history)")

    await _apply_identities(session, engagement_id, spec, existing, changes, created)
    for ps in spec.people:
        if ps.key in changes:
            changes[ps.key].record(report, f"person {ps.key!r}")
    return existing


async def _apply_identities(
    session: AsyncSession,
    engagement_id: int,
    spec: EngagementFile,
    people: dict[str, Person],
    changes: dict[str, _Changes],
    created: set[str],
) -> None:
    """Chat identities follow the file; rows are re-pointed in place (never deleted and re-inserted) so
    an id moving between two people cannot trip the (platform, user_id) unique constraint mid-flush.
    Identities of people no longer in the file are kept, so the bot still recognises (and refuses) them, and
    so are identities learned in chat (a Slack id found by email) on a platform the file does not declare
    for that person: re-applying the file must not make the bot forget who someone is."""
    desired: dict[tuple[str, str], Person] = {}
    declared = {(ps.key, "console") for ps in spec.people}
    declared |= {(ps.key, "slack") for ps in spec.people if ps.slack}
    declared |= {(ps.key, "teams") for ps in spec.people if ps.teams}
    for ps in spec.people:
        person = people[ps.key]
        desired[("console", ps.key)] = person
        if ps.slack:
            desired[("slack", ps.slack)] = person
        if ps.teams:
            desired[("teams", ps.teams)] = person
    key_by_id = {p.id: k for k, p in people.items()}
    in_file = {ps.key for ps in spec.people}

    def note(key: str | None, text: str) -> None:
        if key is not None and key in in_file and key not in created:
            changes.setdefault(key, _Changes()).note(text)

    rows = list(
        (await session.execute(select(ChatIdentity).where(ChatIdentity.engagement_id == engagement_id))).scalars()
    )
    present: set[tuple[str, str]] = set()
    for row in rows:
        ident = (row.platform, row.user_id)
        owner_key = key_by_id.get(row.person_id)
        if ident in desired:
            present.add(ident)
            target = desired[ident]
            if row.person_id != target.id:
                note(owner_key, f"{row.platform} {row.user_id} moved to {target.key!r}")
                note(target.key, f"{row.platform} → {row.user_id}")
                row.person_id = target.id
        elif owner_key in in_file and (owner_key, row.platform) in declared:
            note(owner_key, f"{row.platform} {row.user_id} removed")
            await session.delete(row)
    for (platform, user_id), person in desired.items():
        if (platform, user_id) not in present:
            note(person.key, f"{platform} → {user_id}")
            session.add(
                ChatIdentity(engagement_id=engagement_id, person_id=person.id, platform=platform, user_id=user_id)
            )
    await session.flush()


async def _apply_stages(
    session: AsyncSession, engagement_id: int, spec: EngagementFile, report: ApplyReport
) -> list[str]:
    """Upsert stages in file order; returns the keys of removed stages kept because deals use them."""
    existing = {
        s.key: s for s in (await session.execute(select(Stage).where(Stage.engagement_id == engagement_id))).scalars()
    }
    for position, ss in enumerate(spec.stages):
        stage = existing.get(ss.key)
        if stage is None:
            session.add(
                Stage(
                    engagement_id=engagement_id,
                    key=ss.key,
                    name=ss.name,
                    position=position,
                    probability_pct=ss.probability,
                    kind=ss.kind.value,
                    entry_criteria=ss.entry,
                    exit_criteria=ss.exit,
                    crm_names=list(ss.crm_names),
                )
            )
            report.created += 1
            report.changes.append(f"stage {ss.key!r} created")
            continue
        c = _Changes()
        c.set(stage, "name", ss.name)
        c.set(stage, "position", position)
        c.set(stage, "probability_pct", ss.probability, "probability")
        c.set(stage, "kind", ss.kind.value)
        c.set(stage, "entry_criteria", ss.entry, "entry")
        c.set(stage, "exit_criteria", ss.exit, "exit")
        if list(stage.crm_names or []) != list(ss.crm_names):
            stage.crm_names = list(ss.crm_names)
            c.note("crm_names changed")
        c.record(report, f"stage {ss.key!r}")

    in_file = {ss.key for ss in spec.stages}
    removed = sorted((s for k, s in existing.items() if k not in in_file), key=lambda s: (s.position, s.key))
    if not removed:
        return []
    rows = await session.execute(
        select(Deal.stage_id, func.count())
        .where(Deal.engagement_id == engagement_id, Deal.stage_id.in_([s.id for s in removed]))
        .group_by(Deal.stage_id)
    )
    counts: dict[int, int] = {stage_id: count for stage_id, count in rows}
    retired: list[str] = []
    for stage in removed:
        deals = counts.get(stage.id, 0)
        if deals:
            retired.append(stage.key)
            c = _Changes()
            c.set(stage, "position", len(spec.stages) + len(retired) - 1)
            c.record(report, f"stage {stage.key!r}")
            report.warnings.append(
                f"stage {stage.key!r} is no longer in the file but {deals} deal(s) are still in it; it is kept "
                "(retired) until they move to another stage, then the next apply deletes it"
            )
        else:
            await session.delete(stage)
            report.deleted += 1
            report.changes.append(f"stage {stage.key!r} deleted")
    await session.flush()
    return retired


async def _apply_plan(
    session: AsyncSession,
    engagement_id: int,
    spec: EngagementFile,
    people: dict[str, Person],
    report: ApplyReport,
) -> None:
    existing = {
        d.key: d
        for d in (
            await session.execute(select(PlanDeliverable).where(PlanDeliverable.engagement_id == engagement_id))
        ).scalars()
    }
    items = spec.plan_items()
    for position, item in enumerate(items):
        owner_id = people[item.owner].id if item.owner else None
        row = existing.get(item.key)
        if row is None:
            session.add(
                PlanDeliverable(
                    engagement_id=engagement_id,
                    key=item.key,
                    phase=item.phase,
                    milestone_day=item.day,
                    title=item.title,
                    owner_id=owner_id,
                    status="not_started",
                    position=position,
                )
            )
            report.created += 1
            report.changes.append(f"deliverable {item.key!r} created")
            continue
        c = _Changes()
        c.set(row, "phase", item.phase)
        c.set(row, "milestone_day", item.day, "day")
        c.set(row, "title", item.title)
        c.set(row, "owner_id", owner_id, "owner")
        c.set(row, "position", position)
        c.record(report, f"deliverable {item.key!r}")
    keys = {item.key for item in items}
    for key, row in existing.items():
        if key not in keys:
            await session.delete(row)
            report.deleted += 1
            report.changes.append(f"deliverable {key!r} deleted")
    await session.flush()


async def _apply_handoff(
    session: AsyncSession,
    engagement_id: int,
    spec: EngagementFile,
    people: dict[str, Person],
    report: ApplyReport,
) -> None:
    existing = {
        t.key: t
        for t in (
            await session.execute(select(HandoffTask).where(HandoffTask.engagement_id == engagement_id))
        ).scalars()
    }
    items = spec.handoff_items()
    for position, item in enumerate(items):
        from_id = people[item.from_].id if item.from_ else None
        to_id = people[item.to].id if item.to else None
        row = existing.get(item.key)
        if row is None:
            session.add(
                HandoffTask(
                    engagement_id=engagement_id,
                    key=item.key,
                    title=item.title,
                    from_id=from_id,
                    to_id=to_id,
                    ritual=item.ritual,
                    due_days_before_exit=item.due_days_before_exit,
                    status="open",
                    position=position,
                )
            )
            report.created += 1
            report.changes.append(f"hand-over {item.key!r} created")
            continue
        c = _Changes()
        c.set(row, "title", item.title)
        c.set(row, "from_id", from_id, "from")
        c.set(row, "to_id", to_id, "to")
        c.set(row, "ritual", item.ritual)
        c.set(row, "due_days_before_exit", item.due_days_before_exit)
        c.set(row, "position", position)
        c.record(report, f"hand-over {item.key!r}")
    keys = {item.key for item in items}
    for key, row in existing.items():
        if key not in keys:
            await session.delete(row)
            report.deleted += 1
            report.changes.append(f"hand-over {key!r} deleted")
    await session.flush()


def _warnings(spec: EngagementFile) -> list[str]:
    """Things that are valid but that the CRO should hear about at apply time."""
    out: list[str] = []
    settings = spec.ritual_settings()
    if settings.forecast_owner is None:
        out.append("nobody calls the forecast: there is no cro in people and no engagement.forecast_owner")
    unowned = [h.key for h in spec.handoff_items() if h.to is None]
    if unowned:
        out.append(f"{len(unowned)} hand-over task(s) have no internal owner yet: {', '.join(unowned)}")
    eng = spec.engagement
    for h in spec.handoff_items():
        due = eng.exit - timedelta(days=h.due_days_before_exit)
        if due < eng.start:
            out.append(f"hand-over {h.key!r} is due {due}, before the engagement starts ({eng.start})")
    return out


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Writes numbers as numbers, enums as their values, and short scalar lists inline."""


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.Node:
    if value == value.to_integral_value():
        return dumper.represent_int(int(value))
    return dumper.represent_scalar(_FLOAT_TAG, str(value))


def _represent_enum(dumper: yaml.SafeDumper, value: Enum) -> yaml.Node:
    return dumper.represent_str(str(value.value))


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    scalars = all(isinstance(v, str | int | float | date | Decimal) for v in value)
    inline = scalars and sum(len(str(v)) + 2 for v in value) < 90
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=inline)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Quote times so the file reads the same under any YAML parser (YAML 1.1 makes 10:00 the number 600).
    style = '"' if re.fullmatch(r"\d{1,2}:\d{2}", value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(Decimal, _represent_decimal)
_Dumper.add_multi_representer(Enum, _represent_enum)
_Dumper.add_representer(list, _represent_list)


def dump_engagement_file(spec: EngagementFile, *, header: str | None = None) -> str:
    """YAML text for `spec` that `parse_engagement_yaml` reads back to an equal spec."""
    data = spec.model_dump(mode="python", by_alias=True, exclude_none=True)
    for item in data.get("handoff") or []:
        item.setdefault("to", None)  # an explicit null reads as "no internal owner yet"
    for person in data.get("people") or []:
        if not person.get("out_of_office"):
            person.pop("out_of_office", None)
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
    text = re.sub(r"\n(?=[a-z_]+:)", "\n\n", text)  # a blank line between top-level sections
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + "\n" + text
    return text


async def export_engagement(db: Database, slug: str | None) -> str:
    """The engagement as an engagement file; applying it back changes nothing.

    Inactive people and retired stages are left out (they are not part of the engagement as it now
    stands), and every derived default is written explicitly so the file says what is in force."""
    async with db.session() as session:
        engagement = await get_engagement(session, slug)
        if engagement is None:
            raise LookupError(
                f"no engagement {slug!r}" if slug else "no engagement, or several: name one with --engagement"
            )
        people = list(
            (
                await session.execute(select(Person).where(Person.engagement_id == engagement.id).order_by(Person.id))
            ).scalars()
        )
        identities = list(
            (
                await session.execute(
                    select(ChatIdentity).where(ChatIdentity.engagement_id == engagement.id).order_by(ChatIdentity.id)
                )
            ).scalars()
        )
        stages = list(
            (
                await session.execute(
                    select(Stage).where(Stage.engagement_id == engagement.id).order_by(Stage.position, Stage.id)
                )
            ).scalars()
        )
        plan = list(
            (
                await session.execute(
                    select(PlanDeliverable)
                    .where(PlanDeliverable.engagement_id == engagement.id)
                    .order_by(PlanDeliverable.position, PlanDeliverable.id)
                )
            ).scalars()
        )
        handoff = list(
            (
                await session.execute(
                    select(HandoffTask)
                    .where(HandoffTask.engagement_id == engagement.id)
                    .order_by(HandoffTask.position, HandoffTask.id)
                )
            ).scalars()
        )

    settings = engagement_settings(engagement)
    active = {p.id: p.key for p in people if p.active}
    chat: dict[tuple[int, str], str] = {(i.person_id, i.platform): i.user_id for i in identities}
    retired = set(settings.retired_stages)
    rituals = Rituals.model_validate(settings.model_dump(include=set(Rituals.model_fields)))
    spec = EngagementFile(
        engagement=EngagementSection(
            slug=engagement.slug,
            company=engagement.company,
            start=engagement.start_date,
            exit=engagement.exit_date,
            timezone=engagement.timezone,
            currency=engagement.currency,
            quota_per_quarter=engagement.quota_per_quarter,
            fiscal_year_start_month=engagement.fiscal_year_start_month,
            coverage_target=settings.coverage_target,
            forecast_owner=settings.forecast_owner,
        ),
        holidays=[date.fromisoformat(h) for h in engagement.holidays or []],
        people=[
            PersonSpec(
                key=p.key,
                name=p.name,
                role=Role(p.role),
                email=p.email,
                timezone=p.timezone,
                slack=chat.get((p.id, "slack")),
                teams=chat.get((p.id, "teams")),
                manager=active.get(p.manager_id) if p.manager_id else None,
                out_of_office=[OutOfOffice.model_validate(o) for o in p.out_of_office or []],
            )
            for p in people
            if p.active
        ],
        stages=[
            StageSpec(
                key=s.key,
                name=s.name,
                probability=s.probability_pct,
                kind=StageKind(s.kind),
                entry=s.entry_criteria,
                exit=s.exit_criteria,
                crm_names=list(s.crm_names or []),
            )
            for s in stages
            if s.key not in retired
        ],
        rituals=rituals,
        debrief_questions=settings.debrief_questions,
        plan=[
            PlanItem.model_validate(
                {
                    "key": d.key,
                    "phase": d.phase,
                    "day": d.milestone_day,
                    "title": d.title,
                    "owner": active.get(d.owner_id) if d.owner_id else None,
                }
            )
            for d in plan
        ],
        handoff=[
            HandoffItem.model_validate(
                {
                    "key": t.key,
                    "title": t.title,
                    "from": active.get(t.from_id) if t.from_id else None,
                    "to": active.get(t.to_id) if t.to_id else None,
                    "ritual": t.ritual,
                    "due_days_before_exit": t.due_days_before_exit,
                }
            )
            for t in handoff
        ],
    )
    header = (
        f"Engagement file for {engagement.company}, exported by `cadence engagement export`.\n"
        "Edit it and run `cadence engagement apply FILE`; see examples/engagement.yaml for every knob."
    )
    return dump_engagement_file(spec, header=header)
