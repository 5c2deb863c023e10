"""Tests for cadences.deal_import: CRM exports in, idempotent by CRM id, all or nothing, every change in history."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cadences.deal_import import Format, ImportReport, RowError, import_deals
from storage.db import Database
from storage.models import AuditLog, Deal, DealHistory, Engagement, Person, Stage
from support.crm_engagement import SLUG, add_test_engagement

TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
LATER = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "crm"
FILES: dict[Format, Path] = {
    "hubspot": FIXTURES / "hubspot_deals.csv",
    "salesforce": FIXTURES / "salesforce_opportunities.csv",
    "generic": FIXTURES / "generic_deals.csv",
}
ROWS = {"hubspot": 7, "salesforce": 6, "generic": 7}


@pytest.fixture
async def slug(db: Database) -> str:
    return await add_test_engagement(db)


async def run(
    db: Database,
    path: Path,
    fmt: Format,
    *,
    dry_run: bool = False,
    skip_invalid: bool = False,
    now: datetime = NOW,
    actor: str | None = None,
) -> ImportReport:
    return await import_deals(
        db, SLUG, path, fmt, dry_run=dry_run, actor_key=actor, today=TODAY, now=now, skip_invalid=skip_invalid
    )


async def deals_by_crm(db: Database) -> dict[str, Deal]:
    async with db.session() as s:
        return {d.crm_id or "": d for d in (await s.execute(select(Deal))).scalars().all()}


async def history(db: Database) -> list[DealHistory]:
    async with db.session() as s:
        return list((await s.execute(select(DealHistory).order_by(DealHistory.id))).scalars().all())


async def audits(db: Database) -> list[AuditLog]:
    async with db.session() as s:
        return list((await s.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all())


async def keys(db: Database) -> tuple[dict[int, str], dict[int, str]]:
    async with db.session() as s:
        stages = {st.id: st.key for st in (await s.execute(select(Stage))).scalars().all()}
        people = {p.id: p.key for p in (await s.execute(select(Person))).scalars().all()}
    return stages, people


def edited(tmp_path: Path, fmt: Format, *replacements: tuple[str, str], name: str | None = None) -> Path:
    """A copy of a fixture with some text replaced (each replacement must match)."""
    text = FILES[fmt].read_bytes().decode("utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / (name or FILES[fmt].name)
    path.write_bytes(text.encode("utf-8"))
    return path


# --- each format --------------------------------------------------------------------------------------


async def test_hubspot_export(db: Database, slug: str) -> None:
    report = await run(db, FILES["hubspot"], "hubspot")
    assert (report.created, report.updated, report.unchanged, report.errors) == (7, 0, 0, [])
    assert report.written
    deals = await deals_by_crm(db)
    stages, people = await keys(db)
    orbital, kestrel, sablewood = deals["18734920111"], deals["18734920113"], deals["18734920114"]
    assert (orbital.name, orbital.account, stages[orbital.stage_id], people[orbital.owner_id]) == (
        "Orbital Freight - Platform", "Orbital Freight", "discovery", "priya",
    )  # fmt: skip
    assert orbital.amount == Decimal("24000.00") and orbital.close_date == date(2027, 2, 15)
    assert orbital.created_on == date(2026, 11, 2) and orbital.source == "Organic Search"
    assert (stages[kestrel.stage_id], people[kestrel.owner_id], kestrel.forecast_category) == (
        "proposal", "alex", "best_case",
    )  # fmt: skip
    assert kestrel.close_date == date(2026, 12, 18) and kestrel.created_on == date(2026, 9, 14)
    assert kestrel.next_step == "Mutual action plan review, then pricing"
    assert (sablewood.amount, people[sablewood.owner_id], sablewood.forecast_category) == (
        Decimal("41250.00"), "casey", "commit",
    )  # fmt: skip
    pinecrest = deals["18734920115"]
    assert pinecrest.amount is None and pinecrest.next_step is None and pinecrest.is_open
    won, lost = deals["18734920116"], deals["18734920117"]
    assert (won.is_open, won.closed_on, stages[won.stage_id], won.forecast_category) == (
        False, date(2026, 10, 30), "closed_won", "commit",
    )  # fmt: skip
    assert (lost.is_open, lost.closed_on, lost.loss_reason, lost.forecast_category) == (
        False, date(2026, 11, 6), "competitor", "omitted",
    )  # fmt: skip
    assert all(d.touched_at == NOW and d.stage_changed_at == NOW and d.currency == "USD" for d in deals.values())
    # The open deal whose close date passed is imported as-is, with a warning (row 6: header is row 1).
    assert report.warnings == [
        RowError(6, "Close Date", "the deal is open but its close date Nov 13, 2026 has passed (imported as it "
                 "is; the pipeline review will flag it)."),
    ]  # fmt: skip
    rows = await history(db)
    assert [(r.kind, r.channel) for r in rows] == [("create", "import")] * 7
    cro = next(pid for pid, key in people.items() if key == "dana")
    assert all(r.actor_id == cro and r.at == NOW for r in rows)
    first = rows[0].changes
    assert first["crm_id"] == [None, "18734920111"] and first["stage"] == [None, "discovery"]
    assert first["owner"] == [None, "priya"] and first["amount"] == [None, "24000.00"]
    assert first["close_date"] == [None, "2027-02-15"]
    assert rows[0].note == "HubSpot import: hubspot_deals.csv row 2"
    (entry,) = await audits(db)
    assert (entry.action, entry.outcome, entry.channel, entry.target, entry.actor_id) == (
        "deal.import", "ok", "import", "hubspot_deals.csv", cro,
    )  # fmt: skip
    assert entry.detail["created"] == 7 and entry.detail["file"] == "hubspot_deals.csv"
    assert report.summary().splitlines()[0] == (
        "Imported hubspot_deals.csv (HubSpot, 7 rows): 7 created, 0 updated, 0 unchanged."
    )


async def test_salesforce_export(db: Database, slug: str) -> None:
    report = await run(db, FILES["salesforce"], "salesforce", actor="morgan")
    assert (report.created, report.errors, report.warnings) == (6, [], [])
    deals = await deals_by_crm(db)
    stages, people = await keys(db)
    by_stage = {d.crm_id: stages[d.stage_id] for d in deals.values()}
    assert by_stage == {
        "0065g00000AbC1dAAF": "discovery", "0065g00000AbC2eAAF": "qualification", "0065g00000AbC3fAAF": "proposal",
        "0065g00000AbC4gAAF": "negotiation", "0065g00000AbC5hAAF": "closed_won", "0065g00000AbC6iAAF": "closed_lost",
    }  # fmt: skip
    copperleaf = deals["0065g00000AbC4gAAF"]
    # Month-first is Salesforce's export format, so 12/11/2026 is December 11 (no "which did you mean?").
    assert copperleaf.close_date == date(2026, 12, 11) and copperleaf.forecast_category == "commit"
    assert copperleaf.created_on == date(2026, 9, 2) and copperleaf.source == "Web"
    northgate = deals["0065g00000AbC1dAAF"]
    assert northgate.amount == Decimal("120000.00") and northgate.created_on == date(2026, 10, 28)
    assert people[northgate.owner_id] == "casey" and northgate.account == "Northgate Biotech"
    won = deals["0065g00000AbC5hAAF"]
    assert (won.is_open, won.closed_on, won.forecast_category) == (False, date(2026, 11, 3), "commit")
    lost = deals["0065g00000AbC6iAAF"]
    assert (lost.is_open, lost.forecast_category, lost.loss_reason) == (False, "omitted", None)
    morgan = next(pid for pid, key in people.items() if key == "morgan")
    assert {r.actor_id for r in await history(db)} == {morgan}


async def test_generic_csv(db: Database, slug: str) -> None:
    report = await run(db, FILES["generic"], "generic")
    assert (report.created, report.errors, report.warnings) == (7, [], [])
    deals = await deals_by_crm(db)
    stages, people = await keys(db)
    umbrella = deals["G-1001"]
    assert (umbrella.amount, umbrella.next_step_date, umbrella.segment, umbrella.source) == (
        Decimal("48000.00"), date(2026, 11, 27), "Mid-market", "Inbound",
    )  # fmt: skip
    brightline = deals["G-1003"]
    assert people[brightline.owner_id] == "alex" and brightline.risk == "Procurement wants three quotes"
    assert people[deals["G-1004"].owner_id] == "casey"
    tailspin, proseware = deals["G-1006"], deals["G-1007"]
    assert (tailspin.loss_reason, tailspin.competitor, tailspin.closed_on) == ("no decision", None, date(2026, 11, 4))
    assert (stages[proseware.stage_id], proseware.loss_reason, proseware.competitor) == (
        "closed_lost", "competitor", "Pipewise",
    )  # fmt: skip
    fabrikam = deals["G-1005"]
    assert (fabrikam.is_open, fabrikam.closed_on, fabrikam.created_on, fabrikam.forecast_category) == (
        False, date(2026, 10, 15), date(2026, 8, 3), "commit",
    )  # fmt: skip


async def test_semicolons_bom_and_excel_dates(db: Database, slug: str, tmp_path: Path) -> None:
    """European Excel saves ';'-separated CSV with a BOM, and re-saves dates as m/d/yy."""
    text = FILES["salesforce"].read_text(encoding="utf-8")
    lines = [line.replace('"120,000.00"', "120000").replace('"45,000.00"', "45000") for line in text.splitlines()]
    semicolons = "\r\n".join(";".join(part.strip('"') for part in _split_csv(line)) for line in lines if line).replace(
        "3/31/2027", "3/31/27"
    )
    path = tmp_path / "opportunities.csv"
    path.write_bytes(b"\xef\xbb\xbf" + semicolons.encode("utf-8"))
    report = await run(db, path, "salesforce")
    assert (report.created, report.errors) == (6, [])
    deals = await deals_by_crm(db)
    assert deals["0065g00000AbC1dAAF"].close_date == date(2027, 3, 31)
    assert deals["0065g00000AbC1dAAF"].amount == Decimal(120_000)
    assert deals["0065g00000AbC3fAAF"].amount == Decimal("88500.00")


def _split_csv(line: str) -> list[str]:
    import csv

    return next(csv.reader([line]))


# --- idempotency and history --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["hubspot", "salesforce", "generic"])
async def test_reimport_changes_nothing(db: Database, slug: str, fmt: Format) -> None:
    await run(db, FILES[fmt], fmt)
    before = {k: (d.version, d.touched_at, d.amount) for k, d in (await deals_by_crm(db)).items()}
    rows_before = len(await history(db))
    again = await run(db, FILES[fmt], fmt, now=LATER)
    assert (again.created, again.updated, again.unchanged) == (0, 0, ROWS[fmt])
    assert not again.written and again.changes == []
    assert {k: (d.version, d.touched_at, d.amount) for k, d in (await deals_by_crm(db)).items()} == before
    assert len(await history(db)) == rows_before
    assert [a.outcome for a in await audits(db)] == ["ok", "ok"]
    assert again.summary().splitlines()[0].endswith(f"0 created, 0 updated, {ROWS[fmt]} unchanged.")


async def test_changed_row_updates_only_what_changed(db: Database, slug: str, tmp_path: Path) -> None:
    await run(db, FILES["hubspot"], "hubspot")
    changed = edited(
        tmp_path, "hubspot",
        ("Orbital Freight - Platform,Appointment Scheduled,24000,2027-02-15",
         "Orbital Freight - Platform,Appointment Scheduled,30000,2027-03-31"),
    )  # fmt: skip
    report = await run(db, changed, "hubspot", now=LATER)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 6)
    deals = await deals_by_crm(db)
    orbital = deals["18734920111"]
    assert (orbital.amount, orbital.close_date, orbital.slip_count, orbital.version) == (
        Decimal("30000.00"), date(2027, 3, 31), 1, 2,
    )  # fmt: skip
    assert orbital.touched_at == LATER and orbital.stage_changed_at == NOW  # the stage didn't move
    assert all(d.version == 1 for k, d in deals.items() if k != "18734920111")
    rows = [r for r in await history(db) if r.kind == "import"]
    assert len(rows) == 1
    assert rows[0].deal_id == orbital.id and rows[0].channel == "import" and rows[0].at == LATER
    assert rows[0].changes == {"amount": ["24000.00", "30000.00"], "close_date": ["2027-02-15", "2027-03-31"]}
    assert rows[0].note == "HubSpot import: hubspot_deals.csv row 2"
    assert "row 2, Orbital Freight - Platform: amount: 24000.00 → 30000.00; close_date: 2027-02-15 → 2027-03-31" in (
        report.summary()
    )


async def test_stage_owner_and_close_changes(db: Database, slug: str, tmp_path: Path) -> None:
    await run(db, FILES["generic"], "generic")
    changed = edited(
        tmp_path, "generic",
        ("Initech - Annual plan,Initech,jordan,solution,", "Initech - Annual plan,Initech,casey,closed_won,"),
        ("G-1004,Contoso Retail - Pilot,Contoso Retail,casey@acme.example,qualification,12500,2027-02-26,pipeline,"
         "Confirm budget with CFO,",
         "G-1004,Contoso Retail - Pilot,Contoso Retail,casey@acme.example,qualification,12500,2027-02-26,pipeline,,"),
    )  # fmt: skip
    report = await run(db, changed, "generic", now=LATER)
    assert (report.updated, report.unchanged) == (2, 5)
    deals = await deals_by_crm(db)
    stages, people = await keys(db)
    initech = deals["G-1002"]
    assert (stages[initech.stage_id], people[initech.owner_id], initech.is_open, initech.closed_on) == (
        "closed_won", "casey", False, date(2026, 12, 18),
    )  # fmt: skip
    assert initech.stage_changed_at == LATER and initech.slip_count == 0
    assert initech.forecast_category == "best_case"  # as the file says
    by_deal = {r.deal_id: r.changes for r in await history(db) if r.kind == "import"}
    assert by_deal[initech.id] == {"owner": ["jordan", "casey"], "stage": ["solution", "closed_won"]}
    assert by_deal[deals["G-1004"].id] == {"next_step": ["Confirm budget with CFO", None]}
    assert deals["G-1004"].next_step is None


# --- errors: nothing half-written ---------------------------------------------------------------------


def bad_hubspot(tmp_path: Path) -> Path:
    return edited(
        tmp_path, "hubspot",
        ("Qualified To Buy,\"18,500\",2027-01-31,Jordan Blake", "Qualified To Buy,\"18,500\",2027-01-31,Pat Smith"),
        ("Expansion,Decision maker bought-in,72000", "Expansion,Decision maker bought-in,fifty"),
        ("Contract Sent,", "Verbal Yes,"),
        name="bad_deals.csv",
    )  # fmt: skip


async def test_bad_rows_write_nothing(db: Database, slug: str, tmp_path: Path) -> None:
    report = await run(db, bad_hubspot(tmp_path), "hubspot")
    assert report.rejected and not report.written
    assert [(e.row, e.column) for e in report.errors] == [(3, "Deal owner"), (4, "Amount"), (5, "Deal Stage")]
    assert '"Pat Smith" is not anyone in this engagement' in report.errors[0].message
    assert report.errors[1].message.startswith('I couldn\'t read "fifty" as an amount')
    assert '"Verbal Yes" is not a stage of this engagement' in report.errors[2].message
    assert await deals_by_crm(db) == {} and await history(db) == []
    (entry,) = await audits(db)
    assert (entry.action, entry.outcome, entry.detail["errors"]) == ("deal.import", "rejected", 3)
    assert entry.detail["first_errors"][0].startswith("row 3, Deal owner:")
    summary = report.summary()
    assert summary.startswith(
        "Nothing imported from bad_deals.csv (HubSpot, 7 rows): 3 rows have errors, and an import is all or "
        "nothing. Fix them and import again, or skip the invalid rows (--skip-invalid) to import the 4 valid ones."
    )
    assert "\n  row 3, Deal owner: " in summary and "\n  row 4, Amount: " in summary


async def test_skip_invalid_imports_the_good_rows(db: Database, slug: str, tmp_path: Path) -> None:
    report = await run(db, bad_hubspot(tmp_path), "hubspot", skip_invalid=True)
    assert (report.created, report.invalid, len(report.errors)) == (4, 3, 3)
    assert not report.rejected and report.written
    assert set(await deals_by_crm(db)) == {"18734920111", "18734920115", "18734920116", "18734920117"}
    (entry,) = await audits(db)
    assert entry.outcome == "ok" and entry.detail["invalid"] == 3
    assert report.summary().splitlines()[0] == (
        "Imported bad_deals.csv (HubSpot, 7 rows): 4 created, 0 updated, 0 unchanged. 3 invalid rows skipped."
    )


async def test_dry_run_writes_nothing(db: Database, slug: str, tmp_path: Path) -> None:
    report = await run(db, FILES["generic"], "generic", dry_run=True)
    assert (report.created, report.updated, report.written) == (7, 0, False)
    assert await deals_by_crm(db) == {} and await history(db) == [] and await audits(db) == []
    assert report.summary() == (
        "Dry run of generic_deals.csv (generic CSV, 7 rows): would create 7, update 0, leave 0 unchanged; "
        "nothing was written."
    )
    # ... and against an existing pipeline it shows what would change.
    await run(db, FILES["generic"], "generic")
    changed = edited(tmp_path, "generic", ('solution,"$36,000"', 'solution,"$39,000"'))
    plan = await run(db, changed, "generic", dry_run=True, now=LATER)
    assert (plan.updated, plan.unchanged) == (1, 6)
    assert (await deals_by_crm(db))["G-1002"].amount == Decimal(36_000)
    assert "Would update (1):\n  row 3, Initech - Annual plan: amount: 36000.00 → 39000.00" in plan.summary()
    assert len(await audits(db)) == 1


async def test_dry_run_with_errors_still_plans_valid_rows(db: Database, slug: str, tmp_path: Path) -> None:
    report = await run(db, bad_hubspot(tmp_path), "hubspot", dry_run=True)
    assert (report.created, len(report.errors)) == (4, 3)
    assert report.summary().splitlines()[0] == (
        "Dry run of bad_deals.csv (HubSpot, 7 rows): would create 4, update 0, leave 0 unchanged; nothing was "
        "written. 3 rows have errors, so the import would be rejected."
    )
    assert await deals_by_crm(db) == {}


async def test_row_level_rules(db: Database, slug: str, tmp_path: Path) -> None:
    path = edited(
        tmp_path, "generic",
        ("G-1002,", ","),  # no CRM id
        ("G-1003,", "G-1001,"),  # the same CRM id twice
        ("G-1004,Contoso Retail - Pilot,Contoso Retail,casey@acme.example,qualification,12500,2027-02-26,pipeline",
         "G-1004,Contoso Retail - Pilot,Contoso Retail,casey@acme.example,qualification,12500,26/02/2027,closed"),
        ("2026-10-15,,,,,Inbound", "2026-10-15,sideways,,,,Inbound"),
        ("G-1006,Tailspin Aviation - Platform,Tailspin Aviation,priya,closed_lost,97000,2026-11-04",
         "G-1006,Tailspin Aviation - Platform,Tailspin Aviation,priya,closed_lost,€97000,"),
        ("2026-06-12,2026-11-04,No Decision", "2026-06-12,,No Decision"),  # closed, but when?
        ("G-1007,", "1.0071E+3,"),  # an id Excel turned into a number
    )  # fmt: skip
    report = await run(db, path, "generic")
    found = {(e.row, e.column): e.message for e in report.errors}
    assert set(found) == {
        (3, "crm_id"), (4, "crm_id"), (5, "close_date"), (5, "forecast"), (6, "forecast"), (7, "amount"),
        (7, "close_date"), (8, "crm_id"),
    }  # fmt: skip
    assert found[(4, "crm_id")] == "G-1001 is already on row 2; each CRM id may appear once."
    assert found[(5, "close_date")] == "\"26/02/2027\" isn't a date in generic CSV's format (YYYY-MM-DD)."
    assert "reports in USD" in found[(7, "amount")]
    assert found[(8, "crm_id")].startswith('"1.0071E+3" looks like an id a spreadsheet turned into a number')
    assert found[(7, "close_date")] == "the deal is closed lost but has no close date; give the date it closed."
    assert found[(5, "forecast")] == 'the forecast category is "closed" but the stage Qualification is open.'
    assert found[(6, "forecast")] == '"sideways" is not a forecast category (Commit, Best Case, Pipeline, Omitted).'
    assert await deals_by_crm(db) == {}


async def test_wrong_format_and_unreadable_files(db: Database, slug: str, tmp_path: Path) -> None:
    report = await run(db, FILES["salesforce"], "hubspot")
    assert report.rejected and (1, "Record ID") in [(e.row, e.column) for e in report.errors]
    assert "It looks like a Salesforce export: import it with --format salesforce." in report.summary()
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(FILES["generic"].read_text().replace("Proseware", "Prosewäre").encode("latin-1"))
    report = await run(db, latin, "generic")
    assert [str(e) for e in report.errors] == [
        'file: isn\'t UTF-8 text. Export it again as CSV (in Excel: Save As → "CSV UTF-8").'
    ]
    header_only = tmp_path / "empty.csv"
    header_only.write_text(FILES["generic"].read_text().splitlines()[0] + "\n")
    assert [e.message for e in (await run(db, header_only, "generic")).errors] == [
        "there are no deal rows below the header."
    ]
    assert await deals_by_crm(db) == {}
    assert [a.outcome for a in await audits(db)] == ["rejected"] * 3
    with pytest.raises(FileNotFoundError):
        await run(db, tmp_path / "missing.csv", "generic")


async def test_unknown_importer_is_refused(db: Database, slug: str) -> None:
    report = await run(db, FILES["generic"], "generic", actor="nobody")
    assert report.rejected and [e.column for e in report.errors] == ["--as"]
    assert await deals_by_crm(db) == {}


async def test_chat_deal_with_the_same_name_is_flagged(db: Database, slug: str) -> None:
    async with db.write() as s:
        eng = (await s.execute(select(Engagement))).scalar_one()
        priya = (await s.execute(select(Person).where(Person.key == "priya"))).scalar_one()
        stage = (await s.execute(select(Stage).where(Stage.key == "discovery"))).scalar_one()
        s.add(Deal(
            engagement_id=eng.id, name="Umbrella Health - Platform", owner_id=priya.id, stage_id=stage.id,
            currency="USD", created_on=TODAY, stage_changed_at=NOW, touched_at=NOW,
        ))  # fmt: skip
    report = await run(db, FILES["generic"], "generic")
    assert report.created == 7
    assert [(w.row, w.message[:60]) for w in report.warnings] == [
        (2, 'an open deal named "Umbrella Health - Platform" was added in')
    ]
    async with db.session() as s:
        assert (await s.execute(select(func.count(Deal.id)))).scalar_one() == 8
