"""Import deals from a CRM export (HubSpot deals, Salesforce opportunities, or a generic CSV).

Why: on day one of an engagement the pipeline lives in the CRM, and the first diagnostic (12 months of
won and lost, where deals stall) needs it in Cadence. Later, a weekly re-import keeps the two in step.
So the import must be safe to repeat and safe to get wrong:

* **Idempotent by CRM id.** Re-importing the same file changes nothing. A changed row updates only the
  fields that changed and writes one `DealHistory` row (channel "import", kind "import") with each
  field's before and after, exactly like a change typed in chat — the CRM wins, but nothing is ever
  overwritten without a trace. A row without a CRM id is an error, because it could not be matched
  next time and would be duplicated.
* **All or nothing.** Every row is validated before anything is written; one bad row rejects the file
  with a report naming each row (numbered as a spreadsheet shows it: the header is row 1), column and
  problem. `skip_invalid=True` imports the valid rows instead, and `dry_run=True` reports what would
  happen without writing. The write itself is one transaction.
* **The import reflects the CRM.** Open deals whose close date has passed are imported as they are and
  counted as warnings: flagging hygiene is the pipeline review's job, not the importer's. The chat
  rules (no stage skipping, no past close dates) deliberately do not apply here.

Column names are the ones each CRM's standard export uses (matched case-insensitively), dates are read
with each CRM's own fixed formats (a Salesforce "12/11/2026" is always December 11 — the format is known,
so it is not ambiguous), and amounts go through `parse_amount` in the engagement's currency. Stages match
a stage's `crm_names`, key or name; owners match a person's key, email or full name. A HubSpot owner
written "First Last (email)" is matched by the email first.

What a cell means: a column the file doesn't have leaves that field alone; an empty cell in a column it
does have clears the field (the CRM says there is nothing there), except the create date, which is
only ever set. An empty forecast (or Salesforce's "Closed") follows the stage: pipeline while open,
commit once won, omitted once lost. A close date moved later on an open deal counts as a slip, as it
does in chat. Owners may be anyone in the engagement, founders included: before the engagement the
founder often owns deals, and the import reflects who owns them in the CRM. Loss reason and competitor
are kept only on lost deals, as in chat.

Each attempt (not a dry run) writes one `AuditLog` row, "deal.import", ok or rejected.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cadences.deals import FORECAST_ALIASES, LOSS_REASONS, MAX_TEXT
from cadences.parsing import ParseError, parse_amount
from storage import audit
from storage import engagements as engagement_repo
from storage.db import Database
from storage.models import Deal, DealHistory, Engagement, ForecastCategory, Person, Role, Stage, StageKind

__all__ = [
    "COLUMNS",
    "FORMAT_LABELS",
    "Format",
    "ImportReport",
    "RowChange",
    "RowError",
    "RowWarning",
    "import_deals",
]

Format = Literal["hubspot", "salesforce", "generic"]
FORMAT_LABELS: Mapping[str, str] = {"hubspot": "HubSpot", "salesforce": "Salesforce", "generic": "generic CSV"}
GENERIC_COLUMNS: tuple[str, ...] = (
    "crm_id", "name", "account", "owner", "stage", "amount", "close_date", "forecast", "next_step",
    "next_step_date", "risk", "source", "segment", "created_on", "closed_on", "loss_reason", "competitor",
)  # fmt: skip

# Field -> the column names a CRM's export uses for it (the first is the one named in messages).
# HubSpot's "Deal Type" and Salesforce's "Type" (new/existing business) have no field in Cadence, and
# HubSpot's "Pipeline" is read only to warn when one file mixes several pipelines.
COLUMNS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "hubspot": {
        "crm_id": ("Record ID", "Deal ID", "hs_object_id"),
        "name": ("Deal Name",),
        "stage": ("Deal Stage",),
        "amount": ("Amount",),
        "close_date": ("Close Date",),
        "owner": ("Deal owner",),
        "created_on": ("Create Date",),
        "forecast": ("Forecast category",),
        "next_step": ("Next step",),
        "account": ("Associated Company", "Associated Company (Primary)", "Company name"),
        "source": ("Original Source Type", "Original Traffic Source", "Original Source"),
        "loss_reason": ("Closed Lost Reason",),
        "competitor": ("Competitor",),
        "pipeline": ("Pipeline",),
    },
    "salesforce": {
        "crm_id": ("Opportunity ID", "Opportunity Id", "Id"),
        "name": ("Opportunity Name",),
        "account": ("Account Name",),
        "stage": ("Stage",),
        "amount": ("Amount",),
        "close_date": ("Close Date",),
        "owner": ("Opportunity Owner",),
        "forecast": ("Forecast Category",),
        "next_step": ("Next Step",),
        "created_on": ("Created Date",),
        "source": ("Lead Source",),
        "loss_reason": ("Loss Reason", "Closed Lost Reason"),
        "competitor": ("Competitor", "Main Competitor(s)"),
    },
    "generic": {name: (name,) for name in GENERIC_COLUMNS},
}
REQUIRED: tuple[str, ...] = ("crm_id", "name", "owner", "stage", "amount", "close_date")

# Each CRM writes dates one way (plus what Excel turns them into after a round trip), so no guessing.
_DATE_FORMATS: Mapping[str, tuple[str, ...]] = {
    "hubspot": ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%m/%d/%Y", "%m/%d/%Y %H:%M",
                "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M %p", "%m/%d/%y"),
    "salesforce": ("%m/%d/%Y", "%m/%d/%Y %I:%M %p", "%m/%d/%Y, %I:%M %p", "%m/%d/%Y %H:%M", "%m/%d/%y",
                   "%Y-%m-%d"),
    "generic": ("%Y-%m-%d",),
}  # fmt: skip
_DATE_HINTS: Mapping[str, str] = {
    "hubspot": "YYYY-MM-DD or MM/DD/YYYY",
    "salesforce": "MM/DD/YYYY",
    "generic": "YYYY-MM-DD",
}
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:?\d{2})?")
_OWNER_WITH_EMAIL = re.compile(r"(?P<name>.*?)\s*\((?P<email>[^()\s]+@[^()\s]+)\)")
_EXCEL_NUMBER = re.compile(r"\d(\.\d+)?E\+\d+", re.IGNORECASE)  # 18734920111 saved by Excel as 1.87349E+10
_CLOSED_FORECASTS = frozenset({"closed", "closed won", "closed lost", "closedwon", "closedlost"})
# Column widths in the schema: checked here so PostgreSQL never refuses a write after validation passed.
_MAX_LENGTHS: Mapping[str, int] = {
    "crm_id": 64, "name": 200, "account": 200, "source": 120, "segment": 120, "loss_reason": 200,
    "competitor": 200, "next_step": MAX_TEXT, "risk": MAX_TEXT,
}  # fmt: skip
_LISTED = 50  # errors/warnings shown in the summary; the rest are counted


@dataclass(frozen=True)
class RowError:
    """One problem with one cell (or row, or the whole file when `row` is None), said so it can be fixed."""

    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = "file" if self.row is None else f"row {self.row}"
        return f"{where}, {self.column}: {self.message}" if self.column else f"{where}: {self.message}"


RowWarning = RowError
"""Warnings have the same shape: something imported as-is that a person should know about."""


@dataclass(frozen=True)
class RowChange:
    """A row that creates or updates a deal; `changes` is {field: [before, after]} as written to history."""

    row: int
    crm_id: str
    name: str
    action: Literal["create", "update"]
    changes: dict[str, list[Any]]


@dataclass
class ImportReport:
    """What an import did (or, on a dry run or a rejection, would do), for the CLI and the audit log."""

    file: str
    fmt: Format
    dry_run: bool
    skip_invalid: bool = False
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    written: bool = False
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    changes: list[RowChange] = field(default_factory=list)

    @property
    def rejected(self) -> bool:
        """True when errors stopped the import. With skip_invalid only an unusable file (or no valid row) does."""
        if not self.errors:
            return False
        return not self.skip_invalid or self._file_error or self.invalid >= self.rows

    @property
    def _file_error(self) -> bool:
        return any(e.row is None or e.row == 1 for e in self.errors)

    def summary(self) -> str:
        """The report as the CLI prints it: one headline, then errors, warnings and the updated rows."""
        label = FORMAT_LABELS[self.fmt]
        what = f"{self.file} ({label}, {self.rows} row{'s' if self.rows != 1 else ''})"
        bad_rows = self.invalid
        valid = self.rows - self.invalid
        if self.dry_run:
            head = (
                f"Dry run of {what}: would create {self.created}, update {self.updated}, "
                f"leave {self.unchanged} unchanged; nothing was written."
            )
            if self.errors:
                head += f" {bad_rows} row{'s have' if bad_rows != 1 else ' has'} errors, so " + (
                    "those rows would be skipped." if self.skip_invalid else "the import would be rejected."
                )
        elif self.rejected and self._file_error:
            head = f"Nothing imported from {self.file} ({label}): fix the problems below and import again."
        elif self.rejected and valid <= 0:
            head = f"Nothing imported from {what}: no row is valid."
        elif self.rejected:
            head = (
                f"Nothing imported from {what}: {bad_rows} row{'s have' if bad_rows != 1 else ' has'} errors, and "
                "an import is all or nothing. Fix them and import again, or skip the invalid rows (--skip-invalid) "
                f"to import the {valid} valid one{'s' if valid != 1 else ''}."
            )
        else:
            head = f"Imported {what}: {self.created} created, {self.updated} updated, {self.unchanged} unchanged."
            if self.invalid:
                head += f" {self.invalid} invalid row{'s' if self.invalid != 1 else ''} skipped."
        lines = [head]
        for title, items in (("Errors", self.errors), ("Warnings", self.warnings)):
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines += [f"  {item}" for item in items[:_LISTED]]
                if len(items) > _LISTED:
                    lines.append(f"  … and {len(items) - _LISTED} more")
        updates = [c for c in self.changes if c.action == "update"]
        if updates:
            lines.append(("Would update" if self.dry_run or self.rejected else "Updated") + f" ({len(updates)}):")
            for change in updates[:_LISTED]:
                fields = "; ".join(f"{k}: {_shown(b)} → {_shown(a)}" for k, (b, a) in change.changes.items())
                lines.append(f"  row {change.row}, {change.name}: {fields}")
            if len(updates) > _LISTED:
                lines.append(f"  … and {len(updates) - _LISTED} more")
        return "\n".join(lines)


def _shown(value: Any) -> str:
    return "—" if value is None or value == "" else str(value)


# --- reading the file --------------------------------------------------------------------------------


@dataclass
class _Table:
    headers: dict[str, str]  # field -> the header as written in the file
    index: dict[str, int]  # field -> column position
    width: int
    records: list[tuple[int, list[str]]]  # (row number as a spreadsheet shows it, cells)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _FileProblem('isn\'t UTF-8 text. Export it again as CSV (in Excel: Save As → "CSV UTF-8").') from exc


class _FileProblem(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _read_table(text: str, fmt: Format) -> tuple[_Table | None, list[RowError]]:
    """Split the file into cells, finding the delimiter (',' or ';' or tab) that yields the expected header."""
    if not text.strip():
        return None, [RowError(None, None, "the file is empty.")]
    columns = COLUMNS[fmt]
    candidates: list[str] = []
    try:
        candidates.append(csv.Sniffer().sniff(text[:8192], delimiters=",;\t").delimiter)
    except csv.Error:
        pass
    candidates += [d for d in (",", ";", "\t") if d not in candidates]
    # The Sniffer's guess can be fooled by commas inside a ';' file's text, so the header decides.
    best: tuple[int, str] | None = None
    try:
        for delimiter in candidates:
            first = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
            folded = {h.strip().casefold() for h in first}
            found = sum(1 for f in REQUIRED if any(name.casefold() in folded for name in columns[f]))
            if best is None or found > best[0]:
                best = (found, delimiter)
        assert best is not None
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=best[1]))
    except csv.Error as exc:
        return None, [RowError(None, None, f"it can't be read as CSV ({exc}).")]
    header = [h.strip() for h in rows[0]]
    folded_header = [h.casefold() for h in header]
    headers: dict[str, str] = {}
    index: dict[str, int] = {}
    for name, aliases in columns.items():
        for alias in aliases:
            if alias.casefold() in folded_header:
                index[name] = folded_header.index(alias.casefold())
                headers[name] = header[index[name]]
                break
    errors = [
        RowError(1, columns[f][0], f'there is no "{columns[f][0]}" column, which {FORMAT_LABELS[fmt]} exports have.')
        for f in REQUIRED
        if f not in index
    ]
    if errors:
        hint = _other_format(folded_header, fmt)
        found_text = ", ".join(h for h in header if h)[:300] or "none"
        errors.append(RowError(1, None, f"the header has: {found_text}." + (f" {hint}" if hint else "")))
        return None, errors
    records = [(number, cells) for number, cells in enumerate(rows[1:], start=2) if any(c.strip() for c in cells)]
    return _Table(headers, index, len(header), records), []


def _other_format(folded_header: Sequence[str], fmt: Format) -> str | None:
    for other in ("hubspot", "salesforce", "generic"):
        if other != fmt and all(any(a.casefold() in folded_header for a in COLUMNS[other][f]) for f in REQUIRED):
            return f"It looks like a {FORMAT_LABELS[other]} export: import it with --format {other}."
    return None


# --- reading one row -----------------------------------------------------------------------------------


def _norm(text: str) -> str:
    """Stage labels compared without case, spaces or punctuation: "Closed Won" = closedwon = closed_won."""
    return re.sub(r"[\W_]+", "", text.casefold())


@dataclass
class _Lookups:
    """The engagement's stages and people, indexed the ways a CRM export refers to them."""

    fmt: Format
    currency: str
    today: date
    stages: Sequence[Stage]
    people: Sequence[Person]

    def stage(self, text: str) -> Stage | str:
        needle = _norm(text)
        if not needle:
            return "the stage is empty."
        # crm_names first (that is what they are for), then the stage's key, then its display name.
        for tier in (
            {s.id: {_norm(str(n)) for n in s.crm_names} for s in self.stages},
            {s.id: {_norm(s.key)} for s in self.stages},
            {s.id: {_norm(s.name)} for s in self.stages},
        ):
            found = [s for s in self.stages if needle in tier[s.id]]
            if len(found) == 1:
                return found[0]
            if found:
                return f'"{text}" matches several stages ({", ".join(s.key for s in found)}); fix the crm_names.'
        known = ", ".join(s.name for s in self.stages)
        return (
            f'"{text}" is not a stage of this engagement ({known}). Add it to the matching stage\'s crm_names '
            "in the engagement file."
        )

    def person(self, text: str) -> Person | str:
        text = " ".join(text.split())
        if not text:
            return "the owner is empty."
        match = _OWNER_WITH_EMAIL.fullmatch(text)
        needles = [match.group("email"), match.group("name")] if match else [text.lstrip("@")]
        for needle in needles:
            folded = needle.casefold()
            for found in (
                [p for p in self.people if p.key.casefold() == folded],
                [p for p in self.people if (p.email or "").casefold() == folded],
                [p for p in self.people if p.name.casefold() == folded],
            ):
                if len(found) == 1:
                    return found[0]
                if found:
                    return f'"{text}" matches {len(found)} people; use their email or handle.'
        return (
            f'"{text}" is not anyone in this engagement. Add them to the engagement file, or give the deal '
            "to someone who is (a person's handle, email or full name)."
        )

    def date(self, text: str) -> date | None:
        text = text.strip()
        for fmt in _DATE_FORMATS[self.fmt]:
            try:
                return datetime.strptime(text, fmt).date()
            except ValueError:
                continue
        if _ISO_DATETIME.fullmatch(text):
            try:
                return datetime.fromisoformat(text).date()
            except ValueError:
                return None
        return None


def _forecast(text: str, stage: Stage) -> str | None:
    """The forecast category; an empty cell or "Closed" is derived from the stage. None when unreadable."""
    folded = " ".join(text.casefold().split())
    if not folded or folded in _CLOSED_FORECASTS:
        return _derived_forecast(stage)
    category = FORECAST_ALIASES.get(folded) or FORECAST_ALIASES.get(folded.replace(" ", "_"))
    return category.value if category else None


def _derived_forecast(stage: Stage) -> str:
    # A won deal was committed; a lost one is out of every roll-up; an open one is pipeline until a rep says.
    return {
        StageKind.WON: ForecastCategory.COMMIT.value,
        StageKind.LOST: ForecastCategory.OMITTED.value,
    }.get(StageKind(stage.kind), ForecastCategory.PIPELINE.value)


@dataclass
class _Row:
    number: int
    crm_id: str
    values: dict[str, Any]  # deal attribute -> value, only for columns the file has (plus derived ones)
    stage: Stage
    owner: Person


def _parse_row(
    number: int, cells: list[str], table: _Table, lk: _Lookups
) -> tuple[_Row | None, list[RowError], list[RowError]]:
    """Validate one row completely (every bad cell is reported, not just the first)."""
    errors: list[RowError] = []
    warnings: list[RowError] = []

    def cell(name: str) -> str | None:
        if name not in table.index:
            return None
        i = table.index[name]
        return " ".join(cells[i].split()) if i < len(cells) else ""

    def err(name: str | None, message: str) -> None:
        errors.append(RowError(number, table.headers.get(name or "", name) if name else None, message))

    def warn(name: str | None, message: str) -> None:
        warnings.append(RowError(number, table.headers.get(name or "", name) if name else None, message))

    if len(cells) > table.width and any(c.strip() for c in cells[table.width :]):
        err(None, f"the row has {len(cells)} values but the header has {table.width} columns (a stray delimiter?).")

    values: dict[str, Any] = {}
    crm_id = cell("crm_id") or ""
    if not crm_id:
        err("crm_id", "the CRM id is empty; without it the deal can't be matched on the next import.")
    elif _EXCEL_NUMBER.fullmatch(crm_id):
        err(
            "crm_id",
            f'"{crm_id}" looks like an id a spreadsheet turned into a number; export the file again '
            "and import it without opening it in Excel (or format the column as text).",
        )
    for name in _MAX_LENGTHS:
        text = cell(name)
        if text is not None and len(text) > _MAX_LENGTHS[name]:
            err(name, f"{len(text)} characters is too long; keep it under {_MAX_LENGTHS[name]}.")
    name_text = cell("name") or ""
    if not name_text:
        err("name", "the deal name is empty.")
    values["name"] = name_text
    for attr in ("account", "next_step", "risk", "source", "segment"):
        text = cell(attr)
        if text is not None:
            values[attr] = text or None

    stage = lk.stage(cell("stage") or "")
    if isinstance(stage, str):
        err("stage", stage)
    owner = lk.person(cell("owner") or "")
    if isinstance(owner, str):
        err("owner", owner)

    amount_text = cell("amount") or ""
    values["amount"] = None
    if amount_text:
        try:
            money = parse_amount(amount_text, lk.currency)
        except ParseError as exc:
            err("amount", exc.message)
        else:
            if money.currency != lk.currency:
                err("amount", f"this engagement reports in {lk.currency} and Cadence doesn't convert {money.currency}.")
            values["amount"] = money.amount

    dates: dict[str, date | None] = {}
    for attr in ("close_date", "created_on", "next_step_date", "closed_on"):
        text = cell(attr)
        if text is None:
            continue
        dates[attr] = lk.date(text) if text else None
        if text and dates[attr] is None:
            err(attr, f"\"{text}\" isn't a date in {FORMAT_LABELS[lk.fmt]}'s format ({_DATE_HINTS[lk.fmt]}).")
    if isinstance(stage, str):  # the checks below depend on the stage
        return None, errors, warnings

    close = dates.get("close_date")
    values["close_date"] = close
    values["stage_id"] = stage.id
    values["is_open"] = stage.kind == StageKind.OPEN
    if "next_step_date" in dates:
        values["next_step_date"] = dates["next_step_date"]
    if dates.get("created_on") is not None:
        values["created_on"] = dates["created_on"]
    if stage.kind == StageKind.OPEN:
        values["closed_on"] = None
        if close is None:
            warn("close_date", "the deal is open but has no close date; it won't count in any period's pipeline.")
        elif close < lk.today:
            warn(
                "close_date",
                f"the deal is open but its close date {close:%b %d, %Y} has passed (imported as it is; the "
                "pipeline review will flag it).",
            )
        if dates.get("closed_on"):
            warn("closed_on", "the deal is open, so its closed date is ignored.")
    else:
        # A closed deal's close date is the day it closed (the generic closed_on fills in for either).
        closed_on = dates.get("closed_on") or close
        values["close_date"] = close or closed_on
        values["closed_on"] = closed_on
        if closed_on is None:
            err("close_date", f"the deal is {stage.name.lower()} but has no close date; give the date it closed.")
        elif closed_on > lk.today:
            warn("close_date", f"the deal is {stage.name.lower()} but its close date {closed_on:%b %d, %Y} is ahead.")
        if stage.kind == StageKind.WON and values["amount"] is None:
            warn("amount", "a won deal without an amount adds nothing to closed won.")

    forecast_text = cell("forecast")
    if forecast_text is not None:
        forecast = _forecast(forecast_text, stage)
        if forecast is None:
            err("forecast", f'"{forecast_text}" is not a forecast category (Commit, Best Case, Pipeline, Omitted).')
        elif stage.kind == StageKind.OPEN and forecast_text.casefold() in _CLOSED_FORECASTS:
            err("forecast", f'the forecast category is "{forecast_text}" but the stage {stage.name} is open.')
        values["forecast_category"] = forecast

    for attr in ("loss_reason", "competitor"):
        text = cell(attr)
        if text is None:
            continue
        if stage.kind == StageKind.LOST:
            if attr == "loss_reason":  # the standard reasons in their standard spelling, so they group
                text = next((r for r in LOSS_REASONS if r == text.casefold()), text)
            values[attr] = text or None
        else:
            values[attr] = None
            if text:
                warn(attr, f"only a lost deal keeps a {attr.replace('_', ' ')}; ignored.")
    if errors or isinstance(owner, str):
        return None, errors, warnings
    values["owner_id"] = owner.id
    return _Row(number, crm_id, values, stage, owner), errors, warnings


# --- comparing and writing ----------------------------------------------------------------------------


def _json(value: Any) -> Any:
    """History values as the deal service writes them: decimal strings, ISO dates."""
    if isinstance(value, Decimal):
        return str(value.quantize(Decimal("0.01")))
    if isinstance(value, date):
        return value.isoformat()
    return value


_HIDDEN = frozenset({"is_open", "slip_count"})  # implied by stage and close date; never shown in history
_LABELS = {"stage_id": "stage", "owner_id": "owner"}


def _diff(deal: Deal, row: _Row) -> dict[str, Any]:
    """The attributes the row would change on the deal (attribute -> new value); Decimal 48000 == 48000.00."""
    return {attr: after for attr, after in row.values.items() if getattr(deal, attr) != after}


def _history_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], stages: Mapping[int, Stage], people: Mapping[int, Person]
) -> dict[str, list[Any]]:
    changes: dict[str, list[Any]] = {}
    for attr, new in after.items():
        if attr in _HIDDEN or (attr == "closed_on" and "stage_id" in after):
            continue
        old = before.get(attr)
        if attr == "stage_id":
            changes["stage"] = [stages[old].key if old else None, stages[new].key]
        elif attr == "owner_id":
            changes["owner"] = [people[old].key if old else None, people[new].key]
        else:
            changes[_LABELS.get(attr, attr)] = [_json(old), _json(new)]
    return changes


async def _resolve_actor(session: AsyncSession, engagement_id: int, actor_key: str | None) -> Person | str | None:
    """Who is importing: the given person (handle, email or name), else the CRO (None if there isn't one)."""
    everyone = await engagement_repo.people(session, engagement_id, active_only=False)
    if actor_key is None:
        return next((p for p in everyone if p.role == Role.CRO and p.active), None)
    found = await engagement_repo.find_people(session, engagement_id, actor_key)
    if len(found) == 1:
        return found[0]
    return f'"{actor_key}" matches {len(found)} people in this engagement; give a handle (e.g. --as dana).'


async def import_deals(
    db: Database,
    engagement_slug: str,
    path: Path,
    fmt: Format,
    *,
    dry_run: bool,
    actor_key: str | None,
    today: date,
    now: datetime,
    skip_invalid: bool = False,
) -> ImportReport:
    """Import a CRM export into the engagement's deals; see the module docstring for the rules.

    `today` (the engagement's date) decides which close dates have passed; `now` stamps history, audit and
    the deals' touched times. `actor_key` names who is importing (default: the CRO). Raises LookupError for
    an unknown engagement and OSError when the file can't be read; every problem *in* the file is reported.
    """
    report = ImportReport(file=path.name, fmt=fmt, dry_run=dry_run, skip_invalid=skip_invalid)
    raw = await asyncio.to_thread(path.read_bytes)
    table: _Table | None = None
    try:
        table, file_errors = _read_table(_decode(raw), fmt)
    except _FileProblem as exc:
        file_errors = [RowError(None, None, exc.message)]
    report.errors += file_errors
    if table is not None and not table.records:
        report.errors.append(RowError(None, None, "there are no deal rows below the header."))
        table = None

    session_factory = db.session if dry_run else db.write
    async with session_factory() as session:
        eng = await engagement_repo.get_engagement(session, engagement_slug)
        if eng is None:
            raise LookupError(f"There is no engagement {engagement_slug!r}; apply the engagement file first.")
        actor = await _resolve_actor(session, eng.id, actor_key)
        if isinstance(actor, str):
            report.errors.append(RowError(None, "--as", actor))
            actor = None
        if table is None or any(e.row is None for e in report.errors):
            return _finish(session, report, eng, actor, actor_key, now)

        stages = await engagement_repo.stages(session, eng.id)
        everyone = await engagement_repo.people(session, eng.id, active_only=False)
        lookups = _Lookups(fmt, eng.currency, today, stages, everyone)
        rows = _validate(table, lookups, report)
        report.rows = len(table.records)
        refused = bool(report.errors) and not skip_invalid
        if dry_run or not refused:
            # A dry run plans the valid rows even when others have errors, so its report is complete.
            await _apply(
                session,
                eng,
                rows,
                stages,
                everyone,
                actor,
                path.name,
                fmt,
                today,
                now,
                report,
                write=not dry_run and not refused,
            )
        return _finish(session, report, eng, actor, actor_key, now)


def _finish(
    session: AsyncSession,
    report: ImportReport,
    eng: Engagement,
    actor: Person | None,
    actor_key: str | None,
    now: datetime,
) -> ImportReport:
    """Audit the attempt (a dry run changes nothing, so it leaves no audit row) and hand back the report."""
    if not report.dry_run:
        audit.record(
            session,
            at=now,
            channel="import",
            action="deal.import",
            outcome="rejected" if report.rejected else "ok",
            engagement_id=eng.id,
            actor_id=actor.id if actor else None,
            actor_ref=actor_key or (actor.key if actor else None),
            target=report.file,
            detail={
                "file": report.file,
                "format": report.fmt,
                "rows": report.rows,
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "invalid": report.invalid,
                "errors": len(report.errors),
                "warnings": len(report.warnings),
                "first_errors": [str(e) for e in report.errors[:20]],
            },
        )
    return report


def _validate(table: _Table, lookups: _Lookups, report: ImportReport) -> list[_Row]:
    rows: list[_Row] = []
    seen: dict[str, int] = {}
    bad: set[int] = set()
    for number, cells in table.records:
        row, errors, warnings = _parse_row(number, cells, table, lookups)
        if row is not None and row.crm_id in seen:
            errors.append(
                RowError(
                    number,
                    table.headers["crm_id"],
                    f"{row.crm_id} is already on row {seen[row.crm_id]}; each CRM id may appear once.",
                )
            )
            row = None
        if errors:
            report.errors += errors
            bad.add(number)
        elif row is not None:
            seen[row.crm_id] = number
            rows.append(row)
            report.warnings += warnings
    report.invalid = len(bad)
    if "pipeline" in table.index:
        column = table.index["pipeline"]
        pipelines = sorted({cells[column].strip() for _, cells in table.records if column < len(cells)} - {""})
        if len(pipelines) > 1:
            message = (
                f"the file mixes {len(pipelines)} pipelines ({', '.join(pipelines[:5])}); Cadence keeps one "
                "pipeline per engagement, so their deals are imported together."
            )
            report.warnings.insert(0, RowError(None, table.headers["pipeline"], message))
    return rows


async def _apply(
    session: AsyncSession,
    eng: Engagement,
    rows: Sequence[_Row],
    stages: Sequence[Stage],
    everyone: Sequence[Person],
    actor: Person | None,
    file_name: str,
    fmt: Format,
    today: date,
    now: datetime,
    report: ImportReport,
    *,
    write: bool,
) -> None:
    """Work out each row's create or update; when `write`, add them to the session (one transaction)."""
    stage_by_id = {s.id: s for s in stages}
    person_by_id = {p.id: p for p in everyone}
    stmt = select(Deal).where(Deal.engagement_id == eng.id, Deal.crm_id.is_not(None))
    if write:
        stmt = stmt.with_for_update()
    existing = {d.crm_id: d for d in (await session.execute(stmt)).scalars().all()}
    chat_only = {
        name.casefold(): name
        for name in (
            await session.execute(
                select(Deal.name).where(Deal.engagement_id == eng.id, Deal.crm_id.is_(None), Deal.is_open.is_(True))
            )
        ).scalars()
    }
    note_prefix = f"{FORMAT_LABELS[fmt]} import: {file_name}"
    new_deals: list[tuple[Deal, dict[str, list[Any]], int]] = []
    history: list[DealHistory] = []
    for row in rows:
        deal = existing.get(row.crm_id)
        if deal is None:
            values = dict(row.values)
            values.setdefault("forecast_category", _derived_forecast(row.stage))
            # Unknown creation date: today for an open deal, its close for a closed one (never after it).
            values.setdefault("created_on", min(today, values.get("closed_on") or today))
            changes = {"crm_id": [None, row.crm_id]}
            changes.update(
                _history_changes({}, {k: v for k, v in values.items() if v is not None}, stage_by_id, person_by_id)
            )
            changes.pop("created_on", None)
            report.created += 1
            report.changes.append(RowChange(row.number, row.crm_id, values["name"], "create", changes))
            twin = chat_only.get(row.values["name"].casefold())
            if twin is not None:
                message = (
                    f'an open deal named "{twin}" was added in chat without a CRM id, so this one is imported '
                    "beside it. If they are the same deal, give the chat one its CRM id "
                    f"(/deal <name> crm_id={row.crm_id}) and import again."
                )
                report.warnings.append(RowError(row.number, None, message))
            if write:
                deal = Deal(
                    engagement_id=eng.id,
                    crm_id=row.crm_id,
                    currency=eng.currency,
                    slip_count=0,
                    stage_changed_at=now,
                    touched_at=now,
                    created_at=now,
                    updated_at=now,
                    **values,
                )
                new_deals.append((deal, changes, row.number))
            continue
        diff = _diff(deal, row)
        if not diff:
            report.unchanged += 1
            continue
        before = {attr: getattr(deal, attr) for attr in diff}
        changes = _history_changes(before, diff, stage_by_id, person_by_id)
        report.updated += 1
        report.changes.append(RowChange(row.number, row.crm_id, row.values["name"], "update", changes))
        if not write:
            continue
        slipped = (
            deal.is_open
            and row.values["is_open"]
            and deal.close_date is not None
            and diff.get("close_date") is not None
            and diff["close_date"] > deal.close_date
        )
        for attr, value in diff.items():
            setattr(deal, attr, value)
        if slipped:
            deal.slip_count += 1
        if "stage_id" in diff:
            deal.stage_changed_at = now
        deal.touched_at = now
        deal.updated_at = now
        history.append(
            DealHistory(
                engagement_id=eng.id,
                deal_id=deal.id,
                actor_id=actor.id if actor else None,
                at=now,
                channel="import",
                kind="import",
                changes=changes,
                note=f"{note_prefix} row {row.number}",
            )
        )
    if not write:
        return
    session.add_all([deal for deal, _, _ in new_deals])
    await session.flush()
    history += [
        DealHistory(
            engagement_id=eng.id,
            deal_id=deal.id,
            actor_id=actor.id if actor else None,
            at=now,
            channel="import",
            kind="create",
            changes=changes,
            note=f"{note_prefix} row {number}",
        )
        for deal, changes, number in new_deals
    ]
    session.add_all(history)
    await session.flush()
    report.written = bool(history)
