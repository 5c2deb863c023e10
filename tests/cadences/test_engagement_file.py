"""Engagement as code: the example file, error messages that point at file:line and key, and an
idempotent, round-trippable apply/export."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from cadences.engagement_file import (
    DEFAULT_HANDOFF,
    DEFAULT_PLAN,
    DST_MESSAGE,
    EXAMPLE_ENGAGEMENT,
    EngagementFile,
    EngagementFileError,
    apply_engagement,
    engagement_settings,
    export_engagement,
    load_engagement_file,
    parse_engagement_yaml,
)
from storage.db import Database
from storage.models import ChatIdentity, Deal, Engagement, HandoffTask, Person, PlanDeliverable, Role, Stage

NOW = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
EXAMPLE = EXAMPLE_ENGAGEMENT.read_text(encoding="utf-8")
REPO_ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """\
engagement: {slug: tiny, company: Tiny Co, start: 2026-01-05, exit: 2026-07-01, timezone: Europe/Berlin,
             currency: eur, quota_per_quarter: 100000}
people:
  - {key: ann, name: Ann Example, role: cro}
  - {key: bob, name: Bob Example, role: rep, manager: ann}
stages:
  - {key: working, name: Working, probability: 20}
  - {key: won, name: Won, probability: 100, kind: won}
  - {key: lost, name: Lost, probability: 0, kind: lost}
"""


def edited(old: str, new: str, text: str = EXAMPLE) -> str:
    assert text.count(old) >= 1, f"{old!r} is not in the example"
    return text.replace(old, new, 1)


def write_variant(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """The example with one edit, and the line the edit starts on."""
    text = edited(old, new)
    path = tmp_path / "engagement.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text[: text.index(new)].count("\n") + 1


# ---------------------------------------------------------------------------------------------- loading


def test_example_loads_and_is_realistic() -> None:
    spec = load_engagement_file(EXAMPLE_ENGAGEMENT)
    assert spec.engagement.slug == "northwind"
    assert spec.engagement.quota_per_quarter == Decimal("900000")
    assert (date(2026, 11, 24) - spec.engagement.start).days == 78
    roles = [p.role for p in spec.people]
    assert roles.count(Role.CRO) == 1 and roles.count(Role.FOUNDER) == 1 and roles.count(Role.MANAGER) == 1
    assert roles.count(Role.REP) == 4
    assert any(p.timezone == "Europe/London" for p in spec.people)
    assert any(p.out_of_office for p in spec.people if p.role == Role.REP)
    assert [(s.key, s.probability, s.kind.value) for s in spec.stages] == [
        ("discovery", 10, "open"),
        ("qualification", 25, "open"),
        ("solution", 50, "open"),
        ("proposal", 70, "open"),
        ("negotiation", 85, "open"),
        ("closed_won", 100, "won"),
        ("closed_lost", 0, "lost"),
    ]
    crm = {name for s in spec.stages for name in s.crm_names}
    assert {"appointmentscheduled", "contractsent", "closedwon", "Proposal/Price Quote", "Closed Lost"} <= crm
    assert spec.rituals.pipeline_review.time == time(9, 0)
    assert spec.plan is not None and spec.handoff is not None


def test_repo_example_is_the_package_example() -> None:
    assert (REPO_ROOT / "examples" / "engagement.yaml").resolve() == EXAMPLE_ENGAGEMENT.resolve()


def test_defaults_fill_plan_handoff_questions_and_derived_settings() -> None:
    spec = parse_engagement_yaml(MINIMAL)
    assert spec.engagement.currency == "EUR"
    assert [p.key for p in spec.plan_items()] == [p.key for p in DEFAULT_PLAN]
    assert {p.owner for p in spec.plan_items()} == {"ann"}
    assert {(h.from_, h.to) for h in spec.handoff_items()} == {("ann", None)}
    assert len(spec.handoff_items()) == len(DEFAULT_HANDOFF)
    settings = spec.ritual_settings()
    assert settings.forecast_owner == "ann" and settings.pipeline_review.host == "ann"
    assert settings.pipeline_review.early_stages == ["working"] and settings.pipeline_review.late_stages == []
    assert settings.debriefs.late_stage == "working"
    assert settings.digest.recipients == ["ann"]  # no founder: the forecast owner gets the digest
    assert [q.key for q in settings.debrief_questions.lost] == ["reason", "competitor", "differently"]


def test_unquoted_times_and_yes_no_stay_text() -> None:
    """YAML 1.1 would read 10:00 as 600 and `no` as False; the loader uses YAML 1.2 scalars."""
    text = edited('    time: "10:00"\n\n  milestones:', "    time: 10:00\n\n  milestones:")
    text = edited("choices: [high, medium, low]", "choices: [yes, no, maybe]", text)
    spec = parse_engagement_yaml(text)
    assert spec.rituals.debriefs.time == time(10, 0)
    assert spec.debrief_questions.slipped[2].choices == ["yes", "no", "maybe"]


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("old", "new", "key_path", "message"),
    [
        pytest.param(
            "    role: rep                        # AE, e-commerce vertical\n",
            "    role: salesperson\n",
            "people[4].role",
            "'salesperson' is not one of cro, founder, manager, rep",
            id="wrong-role",
        ),
        pytest.param(
            "    manager: maya\n    out_of_office:",
            "    mangaer: maya\n    out_of_office:",
            "people[4].mangaer",
            "unknown key 'mangaer' (did you mean 'manager'?)",
            id="typo-key",
        ),
        pytest.param(
            "    timezone: Europe/London",
            "    timezone: Europe/Londn",
            "people[6].timezone",
            "'Europe/Londn' is not an IANA time zone (did you mean 'Europe/London'?)",
            id="bad-timezone",
        ),
        pytest.param(
            '    time: "09:00"\n',
            '    time: "02:30"\n',
            "rituals.pipeline_review.time",
            DST_MESSAGE,
            id="ritual-at-0230",
        ),
        pytest.param(
            "    recipients: [sam]",
            "    recipients: [samm]",
            "rituals.digest.recipients[0]",
            "'samm' is not a person key in this file (did you mean 'sam'?)",
            id="dangling-person",
        ),
        pytest.param(
            "    manager: maya\n\n  - key: priya",
            "    manager: mya\n\n  - key: priya",
            "people[3].manager",
            "'mya' is not a person key in this file (did you mean 'maya'?)",
            id="dangling-manager",
        ),
        pytest.param(
            "    probability: 70\n",
            "    probability: 170\n",
            "stages[3].probability",
            "less than or equal to 100",
            id="probability-range",
        ),
        pytest.param(
            "  start: 2026-09-07 ",
            "  start: 2026-13-07 ",
            "engagement.start",
            "'2026-13-07' is not a valid date",
            id="bad-date",
        ),
        pytest.param(
            "  exit: 2027-03-19 ",
            "  exit: 2026-03-05 ",
            "engagement.exit",
            "exit 2026-03-05 must be after start 2026-09-07",
            id="exit-before-start",
        ),
        pytest.param(
            "  currency: USD ",
            "  currency: Dollars ",
            "engagement.currency",
            "'Dollars' is not a 3-letter currency code",
            id="currency",
        ),
        pytest.param(
            "  quota_per_quarter: 900000 ",
            "  quota_per_quarter: 900k ",
            "engagement.quota_per_quarter",
            "'900k' is not a number",
            id="quota-not-a-number",
        ),
        pytest.param(
            "  company: Northwind Analytics ",
            "  company: Northwind\n  company: Northwind Analytics ",
            "engagement.company",
            "duplicate key 'company' (first at line 15)",
            id="duplicate-yaml-key",
        ),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, old: str, new: str, key_path: str, message: str) -> None:
    path, line = write_variant(tmp_path, old, new)
    if key_path == "engagement.company":
        line += 1  # the second `company:` is the duplicate
    with pytest.raises(EngagementFileError) as caught:
        load_engagement_file(path)
    lines = str(caught.value).splitlines()
    prefix = f"{path}:{line}: {key_path}: "
    assert any(ln.startswith(prefix) and message in ln for ln in lines), str(caught.value)


def test_duplicate_person_key_points_at_the_second_one(tmp_path: Path) -> None:
    path, _ = write_variant(tmp_path, "  - key: sam\n", "  - key: jordan\n")
    second = EXAMPLE[: EXAMPLE.index("  - key: jordan")].count("\n") + 1
    with pytest.raises(EngagementFileError) as caught:
        load_engagement_file(path)
    assert f"{path}:{second}: people[3].key: duplicate person key 'jordan' (also people[1])" in str(caught.value)


def test_bad_yaml_syntax_names_file_and_line(tmp_path: Path) -> None:
    path, line = write_variant(tmp_path, "    recipients: [sam]", "    recipients: [sam")
    with pytest.raises(EngagementFileError) as caught:
        load_engagement_file(path)
    [problem] = caught.value.problems
    assert problem.file == str(path) and problem.line is not None and problem.line >= line
    assert str(problem).startswith(f"{path}:{problem.line}: YAML syntax error:")


def test_every_problem_is_reported_once_per_line(tmp_path: Path) -> None:
    text = edited("    role: rep                        # AE, ramping", "    role: salesperson")
    text = edited("  timezone: America/Los_Angeles", "  timezone: Pacific", text)
    text = edited("  - key: closed_lost", "  - key: closed_lost\n    colour: red", text)
    path = tmp_path / "e.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EngagementFileError) as caught:
        load_engagement_file(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert all(ln.startswith(f"{path}:") for ln in lines)
    assert [p.line for p in caught.value.problems] == sorted(p.line or 0 for p in caught.value.problems)


def test_dst_check_uses_the_zone_not_only_the_0200_rule(tmp_path: Path) -> None:
    """In the US the hour 01:00-01:59 happens twice on the November change: the file's dates are checked."""
    path, line = write_variant(tmp_path, '    time: "09:00"\n', '    time: "01:30"\n')
    with pytest.raises(EngagementFileError) as caught:
        load_engagement_file(path)
    assert str(caught.value) == (
        f"{path}:{line}: rituals.pipeline_review.time: 01:30 happens twice on 2026-11-01 in America/Los_Angeles "
        "(a daylight-saving change); pick another time"
    )


def test_stage_kinds_are_checked(tmp_path: Path) -> None:
    path, _ = write_variant(tmp_path, "    kind: won\n", "    kind: lost\n")
    with pytest.raises(EngagementFileError, match=r"stages: needs exactly one stage with kind won; found 0"):
        load_engagement_file(path)


def test_missing_file_is_an_engagement_file_error(tmp_path: Path) -> None:
    with pytest.raises(EngagementFileError, match="cannot read the file"):
        load_engagement_file(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------------------------- apply


async def test_apply_creates_everything_then_is_idempotent(db: Database) -> None:
    spec = load_engagement_file(EXAMPLE_ENGAGEMENT)
    first = await apply_engagement(db, spec, now=NOW)
    assert first.created == 1 + 7 + 7 + 12 + 8 and first.updated == first.deactivated == first.deleted == 0
    second = await apply_engagement(db, spec, now=NOW)
    assert second.total_changes == 0 and second.changes == []
    assert "no changes" in second.summary()
    assert any("dashboards" in w for w in second.warnings)

    async with db.session() as s:
        engagement = (await s.execute(select(Engagement))).scalar_one()
        assert engagement.quota_per_quarter == Decimal("900000.00")
        assert engagement.holidays[0] == "2026-09-07"
        settings = engagement_settings(engagement)
        identities = {(i.platform, i.user_id) for i in (await s.execute(select(ChatIdentity))).scalars()}
    assert settings.pipeline_review.host == "dana" and settings.forecast_owner == "dana"
    assert settings.pipeline_review.large_deal_amount == Decimal("100000")
    assert settings.handoff.exit_planning_month == 6
    assert settings.digest.time == time(16, 0)
    assert ("console", "oliver") in identities and ("slack", "U05X1OHUGHS") in identities
    assert ("teams", "7b0e9c45-2d6f-4a8b-b1e3-9f4c7a2d5e68") in identities


async def test_editing_a_person_and_a_stage_updates_them(db: Database) -> None:
    await apply_engagement(db, load_engagement_file(EXAMPLE_ENGAGEMENT), now=NOW)
    text = edited("    name: Marcus Reid", "    name: Marcus A. Reid")
    text = edited("    slack: U07C5MREID3", "    slack: U07C5MREID9", text)
    text = edited("    probability: 70\n", "    probability: 65\n", text)
    report = await apply_engagement(db, parse_engagement_yaml(text), now=NOW)
    assert (report.created, report.updated, report.deactivated, report.deleted) == (0, 2, 0, 0)
    assert any("person 'marcus' updated" in c and "slack" in c for c in report.changes)
    assert any("stage 'proposal' updated: probability 70 → 65" in c for c in report.changes)
    async with db.session() as s:
        marcus = (await s.execute(select(Person).where(Person.key == "marcus"))).scalar_one()
        proposal = (await s.execute(select(Stage).where(Stage.key == "proposal"))).scalar_one()
        slack = {
            i.user_id
            for i in (
                await s.execute(
                    select(ChatIdentity).where(ChatIdentity.person_id == marcus.id, ChatIdentity.platform == "slack")
                )
            ).scalars()
        }
    assert marcus.name == "Marcus A. Reid" and slack == {"U07C5MREID9"}
    assert proposal.probability_pct == 65
    assert (await apply_engagement(db, parse_engagement_yaml(text), now=NOW)).total_changes == 0


async def test_editing_a_ritual_updates_settings(db: Database) -> None:
    await apply_engagement(db, load_engagement_file(EXAMPLE_ENGAGEMENT), now=NOW)
    text = edited('    time: "09:00"\n', '    time: "08:30"\n')
    report = await apply_engagement(db, parse_engagement_yaml(text), now=NOW)
    assert report.updated == 1
    assert any("settings.pipeline_review.time 09:00 → 08:30" in c for c in report.changes)


async def test_removing_a_person_deactivates_and_keeps_them(db: Database) -> None:
    await apply_engagement(db, load_engagement_file(EXAMPLE_ENGAGEMENT), now=NOW)
    start = EXAMPLE.index("  - key: marcus")
    end = EXAMPLE.index("  - key: oliver")
    report = await apply_engagement(db, parse_engagement_yaml(EXAMPLE[:start] + EXAMPLE[end:]), now=NOW)
    assert (report.created, report.updated, report.deactivated, report.deleted) == (0, 0, 1, 0)
    async with db.session() as s:
        marcus = (await s.execute(select(Person).where(Person.key == "marcus"))).scalar_one()
        kept = (await s.execute(select(ChatIdentity).where(ChatIdentity.person_id == marcus.id))).scalars().all()
    assert marcus.active is False and marcus.name == "Marcus Reid"
    assert {i.platform for i in kept} == {"console", "slack", "teams"}
    # Putting them back reactivates the same row.
    report = await apply_engagement(db, load_engagement_file(EXAMPLE_ENGAGEMENT), now=NOW)
    assert report.updated == 1 and report.created == 0
    async with db.session() as s:
        again = (await s.execute(select(Person).where(Person.key == "marcus"))).scalar_one()
    assert again.id == marcus.id and again.active is True


async def test_removed_stage_is_kept_while_deals_use_it(db: Database) -> None:
    await apply_engagement(db, parse_engagement_yaml(MINIMAL), now=NOW)
    async with db.session() as s:
        stage = (await s.execute(select(Stage).where(Stage.key == "working"))).scalar_one()
        bob = (await s.execute(select(Person).where(Person.key == "bob"))).scalar_one()
        s.add(
            Deal(
                engagement_id=stage.engagement_id,
                name="Acme",
                owner_id=bob.id,
                stage_id=stage.id,
                amount=Decimal("1000"),
                currency="EUR",
                created_on=date(2026, 2, 1),
                stage_changed_at=NOW,
                touched_at=NOW,
            )
        )
    replaced = MINIMAL.replace(
        "{key: working, name: Working, probability: 20}", "{key: engaged, name: Engaged, probability: 30}"
    )
    report = await apply_engagement(db, parse_engagement_yaml(replaced), now=NOW)
    assert report.deleted == 0 and any("'working'" in w and "1 deal" in w for w in report.warnings)
    assert (await apply_engagement(db, parse_engagement_yaml(replaced), now=NOW)).total_changes == 0
    exported = parse_engagement_yaml(await export_engagement(db, "tiny"))
    assert [s.key for s in exported.stages] == ["engaged", "won", "lost"]

    async with db.session() as s:
        deal = (await s.execute(select(Deal))).scalar_one()
        engaged = (await s.execute(select(Stage).where(Stage.key == "engaged"))).scalar_one()
        deal.stage_id = engaged.id
    report = await apply_engagement(db, parse_engagement_yaml(replaced), now=NOW)
    assert report.deleted == 1 and any("stage 'working' deleted" in c for c in report.changes)
    async with db.session() as s:
        engagement = (await s.execute(select(Engagement))).scalar_one()
    assert engagement_settings(engagement).retired_stages == []


async def test_plan_and_handoff_statuses_survive_reapply(db: Database) -> None:
    spec = load_engagement_file(EXAMPLE_ENGAGEMENT)
    await apply_engagement(db, spec, now=NOW)
    async with db.session() as s:
        audit = (await s.execute(select(PlanDeliverable).where(PlanDeliverable.key == "revenue_audit"))).scalar_one()
        audit.status = "done"
        task = (await s.execute(select(HandoffTask).where(HandoffTask.key == "review_host"))).scalar_one()
        task.status = "in_progress"
    assert (await apply_engagement(db, spec, now=NOW)).total_changes == 0
    async with db.session() as s:
        audit = (await s.execute(select(PlanDeliverable).where(PlanDeliverable.key == "revenue_audit"))).scalar_one()
        task = (await s.execute(select(HandoffTask).where(HandoffTask.key == "review_host"))).scalar_one()
    assert audit.status == "done" and task.status == "in_progress"


@pytest.mark.parametrize("source", ["example", "minimal"])
async def test_export_then_apply_is_a_no_op(db: Database, source: str) -> None:
    spec = load_engagement_file(EXAMPLE_ENGAGEMENT) if source == "example" else parse_engagement_yaml(MINIMAL)
    await apply_engagement(db, spec, now=NOW)
    exported = await export_engagement(db, spec.engagement.slug)
    again = parse_engagement_yaml(exported, "export.yaml")
    report = await apply_engagement(db, again, now=NOW)
    assert report.total_changes == 0, report.summary()
    assert await export_engagement(db, spec.engagement.slug) == exported
    if source == "example":
        assert again == spec  # the example spells every default out, so nothing is lost in the round trip


async def test_export_without_slug_needs_exactly_one_engagement(db: Database) -> None:
    with pytest.raises(LookupError):
        await export_engagement(db, None)
    await apply_engagement(db, parse_engagement_yaml(MINIMAL), now=NOW)
    assert "slug: tiny" in await export_engagement(db, None)


async def test_dry_run_changes_nothing(db: Database) -> None:
    report = await apply_engagement(db, parse_engagement_yaml(MINIMAL), now=NOW, dry_run=True)
    assert report.created > 0 and "would apply" in report.summary()
    async with db.session() as s:
        assert (await s.execute(select(Engagement))).scalars().all() == []


async def test_slack_id_can_move_between_people(db: Database) -> None:
    text = MINIMAL.replace("role: cro}", "role: cro, slack: U0SHARED1}")
    await apply_engagement(db, parse_engagement_yaml(text), now=NOW)
    moved = MINIMAL.replace("manager: ann}", "manager: ann, slack: U0SHARED1}")
    report = await apply_engagement(db, parse_engagement_yaml(moved), now=NOW)
    assert report.updated == 2
    async with db.session() as s:
        row = (await s.execute(select(ChatIdentity).where(ChatIdentity.platform == "slack"))).scalar_one()
        bob = (await s.execute(select(Person).where(Person.key == "bob"))).scalar_one()
    assert row.person_id == bob.id


async def test_apply_rejects_an_invalid_spec_built_in_code(db: Database) -> None:
    spec = parse_engagement_yaml(MINIMAL)
    broken = EngagementFile.model_validate(
        {**spec.model_dump(by_alias=True), "people": [{"key": "ann", "name": "Ann", "role": "cro", "manager": "zed"}]}
    )
    with pytest.raises(EngagementFileError, match=r"people\[0\]\.manager: 'zed' is not a person key"):
        await apply_engagement(db, broken, now=NOW)
