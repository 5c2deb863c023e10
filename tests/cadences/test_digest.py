"""The founder digest, with known answers: a small pipeline built through the real commands plus a few
direct rows (forecast calls, four weekly snapshots), the digest run by the engine at Friday 16:00 in
each recipient's own zone, the chart as deterministic PNG bytes, DST, and who may preview or send it.

The pipeline (fiscal quarter FY2027 Q4 = Nov 1 2026 – Jan 31 2027, quota $900k), all created in the
week of Mon Nov 23 except Stark (Nov 17):

    Acme      Jordan  $300k  Dec 15  commit     moved to Solution (a late stage): flagged as large
    Globex    Jordan  $200k  Jan 20  best case
    Initech   Priya   $100k  Dec 30 → Jan 15    slipped this week (still in the quarter): flagged
    Umbrella  Priya   $150k  won this week (close date becomes Nov 24), debrief answered
    Hooli     Jordan   $50k  lost this week (close date becomes Nov 24), debrief not answered
    Stark     Priya    $80k  Dec 31  pipeline   created the week before

So: closed won $150k of $900k = 16.7% → "17%"; open pipeline 300+200+100+80 = $680k; remaining quota
$750k; coverage 680/750 = 0.907 → "0.9x"; commit $300k, best case $200k; created this week
300+200+100+150+50 = $800k. Latest call this quarter: commit $400k / best case $550k (Nov 23), so
won + commit = $450k (+$50k vs the call) and with best case $650k (+$100k).
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot.console.render import render
from cadences.attachments import attachment_bytes
from cadences.chart import ChartPoint, pipeline_chart
from cadences.digest import FounderDigest, week_bounds
from cadences.messages import DealList, Fields, Image, Message, Paragraph
from cadences.rituals import load_facts
from storage.models import (
    Attachment,
    Deal,
    Debrief,
    Engagement,
    ForecastCall,
    HandoffTask,
    Occurrence,
    Person,
    PipelineSnapshot,
    PlanDeliverable,
)

LA = "-08:00"  # Los Angeles in November (PST)
WEEK = "2026-W48"
CHART_KEY = f"digest/acme-test/{WEEK}/chart.png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


FRIDAY_4PM_LA = utc(f"2026-11-27T16:00:00{LA}")

# Four weekly review snapshots (weeks 44-47), as the review ritual writes them.
SNAPSHOTS = {
    "2026-W44": ("200000.00", "150000.00", "300000.00"),
    "2026-W45": ("250000.00", "150000.00", "280000.00"),
    "2026-W46": ("280000.00", "200000.00", "200000.00"),
    "2026-W47": ("300000.00", "200000.00", "180000.00"),
}
EXPECTED_POINTS = [ChartPoint(week, Decimal(c), Decimal(b), Decimal(p)) for week, (c, b, p) in SNAPSHOTS.items()]


# --- building the engagement's week ---------------------------------------------------------------------


async def say_ok(world: Any, who: str, line: str) -> None:
    replies = await world.say(who, line)
    assert replies and "couldn't" not in replies[0].text and "can't" not in replies[0].text, replies[0].text


async def build_pipeline(world: Any) -> None:
    now = world.clock.now()
    world.clock.set(utc(f"2026-11-17T10:00:00{LA}"))
    await say_ok(world, "priya", "/deal new Stark amount=80k close=2026-12-31")
    world.clock.set(now)
    await say_ok(world, "jordan", "/deal new Acme amount=300k close=2026-12-15")
    await say_ok(world, "jordan", "/deal Acme forecast=commit stage=qualification")
    await say_ok(world, "jordan", "/deal Acme stage=solution")
    await say_ok(world, "jordan", "/deal new Globex amount=200k close=2027-01-20")
    await say_ok(world, "jordan", "/deal Globex forecast=best_case")
    await say_ok(world, "priya", "/deal new Initech amount=100k close=2026-12-30")
    await say_ok(world, "priya", "/deal Initech close=2027-01-15")
    await say_ok(world, "priya", "/deal new Umbrella amount=150k close=2026-12-10")
    await say_ok(world, "priya", "/deal Umbrella won")
    await say_ok(world, "jordan", "/deal new Hooli amount=50k close=2026-12-20")
    await say_ok(world, "jordan", "/deal Hooli lost reason=price")
    async with world.db.session() as session:
        debrief_id = (
            await session.execute(
                select(Debrief.id)
                .join(Deal, Deal.id == Debrief.deal_id)
                .where(Deal.name == "Umbrella", Debrief.trigger == "won")
            )
        ).scalar_one()
    await say_ok(
        world,
        "priya",
        f'/debrief {debrief_id} reason=champion turning_point="The CFO joined the '
        'demo" repeat="Multi-thread to the CFO early"',
    )
    dana = await world.person("dana")
    async with world.db.write() as session:
        eid = world.engagement.id
        session.add_all(
            [
                ForecastCall(
                    engagement_id=eid,
                    quarter="FY2027 Q4",
                    commit=Decimal(350_000),
                    best_case=Decimal(500_000),
                    by_id=dana.id,
                    at=utc(f"2026-11-16T09:30:00{LA}"),
                ),
                ForecastCall(
                    engagement_id=eid,
                    quarter="FY2027 Q4",
                    commit=Decimal(400_000),
                    best_case=Decimal(550_000),
                    by_id=dana.id,
                    at=utc(f"2026-11-23T09:30:00{LA}"),
                ),
                ForecastCall(
                    engagement_id=eid,
                    quarter="FY2027 Q3",
                    commit=Decimal(999_000),
                    best_case=Decimal(999_000),
                    by_id=dana.id,
                    at=utc(f"2026-11-23T10:00:00{LA}"),
                ),
            ]
        )
        for week, (commit, best, pipe) in SNAPSHOTS.items():
            monday, _ = week_bounds(week)
            session.add(
                PipelineSnapshot(
                    engagement_id=eid,
                    week=week,
                    taken_at=utc(f"{monday}T09:00:00{LA}"),
                    totals={
                        "quarter": "FY2027 Q4",
                        "quota": "900000.00",
                        "won": "0.00",
                        "commit": commit,
                        "best_case": best,
                        "pipeline": pipe,
                        "open": "0.00",
                        "weighted": "0.00",
                        "coverage": None,
                    },
                )
            )


async def shape_plan_and_handoff(world: Any, *, exit_planning_month: int = 2) -> None:
    """Day 90 (Mon Dec 7): one deliverable done, one at risk, one blocked. Hand-over: the review goes to
    Maya, the dashboards are done; exit planning starts in month `exit_planning_month`."""
    maya = await world.person("maya")
    async with world.db.write() as session:
        eid = world.engagement.id
        for key, status, note in (
            ("full_cycle", "done", None),
            ("playbook_documented", "at_risk", "Waiting on the sales team's review"),
            ("internal_owners", "blocked", "No VP Sales hired yet"),
        ):
            await session.execute(
                update(PlanDeliverable)
                .where(PlanDeliverable.engagement_id == eid, PlanDeliverable.key == key)
                .values(status=status, status_note=note)
            )
        await session.execute(
            update(HandoffTask)
            .where(HandoffTask.engagement_id == eid, HandoffTask.key == "review_host")
            .values(to_id=maya.id)
        )
        await session.execute(
            update(HandoffTask)
            .where(HandoffTask.engagement_id == eid, HandoffTask.key == "dashboards")
            .values(status="done")
        )
        engagement = await session.get(Engagement, eid)
        assert engagement is not None
        settings = dict(engagement.settings)
        settings["handoff"] = {**settings["handoff"], "exit_planning_month": exit_planning_month}
        engagement.settings = settings


async def set_settings(world: Any, section: str, **values: Any) -> None:
    async with world.db.write() as session:
        engagement = await session.get(Engagement, world.engagement.id)
        assert engagement is not None
        settings = dict(engagement.settings)
        settings[section] = {**settings[section], **values}
        engagement.settings = settings


async def set_timezone(world: Any, key: str, zone: str) -> None:
    async with world.db.write() as session:
        await session.execute(
            update(Person).where(Person.engagement_id == world.engagement.id, Person.key == key).values(timezone=zone)
        )


def digests(world: Any) -> list[Any]:
    return [s for s in world.port.sent if "/founder_digest/" in s.key]


def field_values(message: Message) -> dict[str, str]:
    return {item.label: item.value for block in message.blocks if isinstance(block, Fields) for item in block.items}


def deal_lists(message: Message) -> dict[str, DealList]:
    return {(b.title or "").split(" (")[0].split(":")[0]: b for b in message.blocks if isinstance(b, DealList)}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- the weekly digest ------------------------------------------------------------------------------------


async def test_friday_digest_has_the_known_figures_and_every_section(engine_world: Any) -> None:
    world = engine_world
    await build_pipeline(world)
    await shape_plan_and_handoff(world)
    await world.run_until(FRIDAY_4PM_LA - timedelta(minutes=1))
    assert digests(world) == []

    await world.run_until(FRIDAY_4PM_LA + timedelta(hours=6))
    [sent] = digests(world)
    assert sent.target.person_name == "Sam Okafor" and sent.target.kind == "person"
    message = sent.message
    assert message.text == (
        "Weekly digest: won $150k of $900k (17%) this quarter, coverage 0.9x of 3.0x target, 8 asks for you"
    )
    assert len(message.blocks) <= 45
    fields = field_values(message)
    assert fields["Closed won, FY2027 Q4"] == "$150k of $900k (17%)"
    assert fields["Coverage"] == "0.9x of 3.0x target"
    assert fields["Open pipeline closing by Jan 31"] == "$680k"
    assert fields["Pipeline created this week"] == "$800k"
    paragraphs = [b.text for b in message.blocks if isinstance(b, Paragraph)]
    assert (
        "Forecast call — Dana Whitfield: commit $400k, best case $550k (Nov 23). Now: closed won $150k + "
        "commit $300k = $450k (+$50k vs the call); with best case $650k (+$100k vs the call)."
    ) in paragraphs
    assert paragraphs[0].startswith("Hi Sam, here is the week. Figures as of Fri Nov 27, 16:00 your time; day 82 ")

    lists = deal_lists(message)
    [win] = lists["Wins"].items
    assert (win.name, win.summary, win.reasons) == (
        "Umbrella",
        "$150k · Priya Natarajan",
        ["Debrief: Multi-thread to the CFO early"],
    )
    [loss] = lists["Losses"].items
    assert (loss.name, loss.summary, loss.reasons) == ("Hooli", "$50k · Jordan Lee", ["Debrief pending"])
    [slip] = lists["Slipped"].items
    assert (slip.name, slip.summary, slip.reasons) == (
        "Initech",
        "close date Dec 30 → Jan 15 · Priya Natarajan",
        ["Slipped 1 time in all"],
    )
    risks = lists["Top risks"].items
    assert [r.name for r in risks] == ["Acme", "Initech"]
    assert risks[0].reasons == ["Large late-stage deal ($300k in Solution)"]
    assert risks[1].reasons == ["Slipped 1 time: close date moved Dec 30 → Jan 15 since the last review"]

    assert fields["Next milestone: day 90 (Mon Dec 7, 2026)"] == "1 of 4 done"
    assert fields["Plan to date"] == "1 of 12 done"
    assert fields["Overdue from passed milestones"] == "8"
    # The wording is `handoff.readiness`'s; the digest must carry its counts and the hosts.
    assert fields["Hand-over"].startswith("1 of 8 ") and "6 without an internal owner" in fields["Hand-over"]
    review = fields["Pipeline review"]
    assert "hosted by Dana Whitfield" in review and "Maya" in review and "has not hosted one yet" in review
    asks = paragraphs[-1].splitlines()
    assert asks[:2] == [
        "• Unblock “Internal owners named for each ritual” — blocked, owner Dana Whitfield: No VP Sales hired yet",
        "• Decide on “Playbook documented” — at risk, owner Dana Whitfield: Waiting on the sales team's review",
    ]
    assert [a.split("/cadence handoff ")[1].split()[0] for a in asks[2:]] == [
        "stage_definitions",
        "hiring_plan",
        "deal_coaching",
        "playbook_home",
        "onboarding_playbook",
        "forecast_call",
    ]

    [image] = [b for b in message.blocks if isinstance(b, Image)]
    assert image.key == CHART_KEY
    assert image.alt_text == "Pipeline by forecast category vs quota, last 4 weeks"
    assert image.title == "Pipeline by forecast category vs quota — FY2027 Q4"

    # Once a week: ticking on through Saturday sends nothing more.
    await world.run_until(utc(f"2026-11-28T23:00:00{LA}"))
    assert len(digests(world)) == 1


async def test_the_chart_is_a_deterministic_png_of_the_snapshots(engine_world: Any) -> None:
    world = engine_world
    await build_pipeline(world)
    await world.run_until(FRIDAY_4PM_LA)
    assert len(digests(world)) == 1
    async with world.db.session() as session:
        stored = await attachment_bytes(session, CHART_KEY)
    assert stored is not None
    content, mime, filename = stored
    assert (mime, filename) == ("image/png", f"pipeline-{WEEK}.png")
    assert png_size(content) == (900, 450)
    # The stored chart is exactly the four snapshots against the quota, and renders to the same bytes again.
    again = pipeline_chart(EXPECTED_POINTS, Decimal(900_000), "USD", quarter="FY2027 Q4")
    assert content == again == pipeline_chart(EXPECTED_POINTS, Decimal(900_000), "USD", quarter="FY2027 Q4")
    other = pipeline_chart(EXPECTED_POINTS[1:], Decimal(900_000), "USD", quarter="FY2027 Q4")
    assert other != content


async def test_with_fewer_than_two_snapshots_the_chart_draws_this_weeks_live_point(world: Any) -> None:
    await say_ok(world, "jordan", "/deal new Acme amount=300k close=2026-12-15")
    await say_ok(world, "jordan", "/deal Acme forecast=commit")
    await say_ok(world, "jordan", "/deal new Globex amount=120k close=2027-01-20")
    [preview] = await world.say("sam", "/digest preview")
    [image] = [b for b in preview.blocks if isinstance(b, Image)]
    assert image.alt_text == "Pipeline by forecast category vs quota, last 1 week"
    async with world.db.session() as session:
        stored = await attachment_bytes(session, image.key)
    assert stored is not None
    live = [ChartPoint(WEEK, Decimal(300_000), Decimal(0), Decimal(120_000))]
    assert stored[0] == pipeline_chart(live, Decimal(900_000), "USD", quarter="FY2027 Q4")
    async with world.db.session() as session:
        assert await attachment_bytes(session, "digest/acme-test/2026-W01/chart.png") is None


async def test_a_founder_in_another_zone_gets_it_at_four_in_his_afternoon(engine_world: Any) -> None:
    world = engine_world
    await set_timezone(world, "sam", "Europe/London")
    await set_settings(world, "digest", recipients=["sam", "dana"])
    await world.run_until(utc("2026-11-27T15:59:00+00:00"))
    assert digests(world) == []
    await world.run_until(utc("2026-11-27T16:00:00+00:00"))  # 16:00 in London
    assert [s.target.person_name for s in digests(world)] == ["Sam Okafor"]
    assert "Figures as of Fri Nov 27, 16:00 your time" in render(digests(world)[0].message)
    await world.run_until(utc("2026-11-27T20:59:00+00:00"))
    assert len(digests(world)) == 1
    await world.run_until(utc("2026-11-27T21:00:00+00:00"))  # 16:00 in New York
    assert [s.target.person_name for s in digests(world)] == ["Sam Okafor", "Dana Whitfield"]
    await world.run_until(utc("2026-11-28T12:00:00+00:00"))
    assert len(digests(world)) == 2
    async with world.db.session() as session:
        periods = (
            await session.execute(
                select(Occurrence.period, Occurrence.due_at)
                .where(Occurrence.ritual == "founder_digest")
                .order_by(Occurrence.due_at)
            )
        ).all()
        charts = (await session.execute(select(func.count(Attachment.id)))).scalar_one()
    assert [(p, d) for p, d in periods] == [
        ("2026-W48/sam", utc("2026-11-27T16:00:00+00:00")),
        ("2026-W48/dana", utc("2026-11-27T21:00:00+00:00")),
    ]
    assert charts == 1  # one chart for the week, shared by both recipients


# --- when: DST, holidays, the engagement's span -----------------------------------------------------------


async def test_schedule_follows_each_recipients_clock_across_dst(world: Any) -> None:
    await set_timezone(world, "dana", "Europe/London")
    await set_settings(world, "digest", recipients=["sam", "dana"])
    async with world.db.session() as session:
        engagement = await session.get(Engagement, world.engagement.id)
        assert engagement is not None
        facts = await load_facts(session, engagement)
    dues = list(FounderDigest().due_between(facts, utc("2026-10-19T00:00:00+00:00"), utc("2026-11-14T12:00:00+00:00")))
    got = sorted((d.due_at, d.period) for d in dues)
    assert got == [
        (utc("2026-10-23T15:00:00+00:00"), "2026-W43/dana"),  # London BST (UTC+1)
        (utc("2026-10-23T23:00:00+00:00"), "2026-W43/sam"),  # Los Angeles PDT (UTC-7)
        (utc("2026-10-30T16:00:00+00:00"), "2026-W44/dana"),  # London back on GMT since Oct 25
        (utc("2026-10-30T23:00:00+00:00"), "2026-W44/sam"),  # LA still on PDT until Nov 1
        (utc("2026-11-06T16:00:00+00:00"), "2026-W45/dana"),
        (utc("2026-11-07T00:00:00+00:00"), "2026-W45/sam"),  # LA on PST: 16:00 is midnight UTC
        (utc("2026-11-13T16:00:00+00:00"), "2026-W46/dana"),
        (utc("2026-11-14T00:00:00+00:00"), "2026-W46/sam"),
    ]
    assert all(d.grace == timedelta(hours=4) for d in dues)


async def test_holiday_friday_moves_to_thursday_and_no_digest_after_the_exit_week(world: Any) -> None:
    async with world.db.session() as session:
        engagement = await session.get(Engagement, world.engagement.id)
        assert engagement is not None
        facts = await load_facts(session, engagement)
    christmas = list(
        FounderDigest().due_between(facts, utc("2026-12-21T00:00:00+00:00"), utc("2026-12-28T00:00:00+00:00"))
    )
    assert [(d.period, d.due_at) for d in christmas] == [("2026-W52/sam", utc(f"2026-12-24T16:00:00{LA}"))]
    end = list(FounderDigest().due_between(facts, utc("2027-03-01T00:00:00+00:00"), utc("2027-04-01T00:00:00+00:00")))
    # The exit is Fri Mar 5; the week after it still gets one (Mar 12), then none.
    assert [d.period for d in end] == ["2027-W09/sam", "2027-W10/sam"]


async def test_the_engine_sends_the_dst_week_at_local_four_pm(engine_world: Any) -> None:
    world = engine_world
    async with world.db.write() as session:
        await session.execute(
            update(Engagement)
            .where(Engagement.id == world.engagement.id)
            .values(exit_date=datetime(2027, 6, 30).date())
        )
    world.clock.set(utc("2027-03-10T12:00:00+00:00"))
    await world.run_until(utc("2027-03-20T12:00:00+00:00"))
    sent = digests(world)
    assert [s.key.split("/founder_digest/")[1].split("/person")[0] for s in sent] == ["2027-W10/sam", "2027-W11/sam"]
    async with world.db.session() as session:
        due = (
            (
                await session.execute(
                    select(Occurrence.due_at)
                    .where(  # earlier weeks: skipped, the clock jumped
                        Occurrence.ritual == "founder_digest", Occurrence.status == "planned"
                    )
                    .order_by(Occurrence.due_at)
                )
            )
            .scalars()
            .all()
        )
    # Fri Mar 12 16:00 PST, then (US DST from Sun Mar 14) Fri Mar 19 16:00 PDT.
    assert due == [utc("2027-03-13T00:00:00+00:00"), utc("2027-03-19T23:00:00+00:00")]


# --- /digest ----------------------------------------------------------------------------------------------


async def test_preview_reads_exactly_like_the_weekly_digest(engine_world: Any) -> None:
    world = engine_world
    await build_pipeline(world)
    await shape_plan_and_handoff(world)
    await world.run_until(FRIDAY_4PM_LA)
    [sent] = digests(world)
    [preview] = await world.say("sam", "/digest preview")
    assert preview.ephemeral
    assert preview.blocks == sent.message.blocks
    assert preview.text == f"Preview: {sent.message.text}"


async def test_preview_permissions_and_the_hand_over_joining_in_the_exit_planning_month(world: Any) -> None:
    [refused] = await world.say("jordan", "/digest preview")
    assert refused.text == "The digest is for the founders, managers and the CRO. Your own deals are in /deal list."
    async with world.db.session() as session:
        assert (await session.execute(select(func.count(Attachment.id)))).scalar_one() == 0
    for who in ("sam", "dana", "maya"):
        [preview] = await world.say(who, "/digest preview")
        assert preview.ephemeral and preview.text.startswith("Preview: Weekly digest:")
        # Month 3 of 6: exit planning (month 6) and the owner warnings (60 days out) are still ahead.
        assert "Hand-over" not in field_values(preview)
    async with world.db.session() as session:
        assert (await session.execute(select(func.count(Attachment.id)))).scalar_one() == 1
    await set_settings(world, "handoff", exit_planning_month=2)
    [preview] = await world.say("sam", "/digest preview")
    handed = field_values(preview)["Hand-over"]
    assert handed.startswith("0 of 8 ") and "8 without an internal owner" in handed


async def test_send_now_goes_once_per_week_and_only_the_cro_may(engine_world: Any) -> None:
    world = engine_world
    for who in ("jordan", "sam", "maya"):
        [refused] = await world.say(who, "/digest send")
        assert refused.text == "Only the CRO can send the digest early; it goes out on schedule every week."
    assert digests(world) == []
    [done] = await world.say("dana", "/digest send")
    assert done.text == f"Sam Okafor: sent this week's digest ({WEEK})."
    assert [s.target.person_name for s in digests(world)] == ["Sam Okafor"]
    [again] = await world.say("dana", "/digest send")
    assert (
        again.text
        == f"Sam Okafor already has this week's digest ({WEEK}) on Tue Nov 24 at 10:00; it is sent once a week."
    )
    await world.run_until(FRIDAY_4PM_LA + timedelta(hours=6))
    assert len(digests(world)) == 1


async def test_help_and_unknown_words(world: Any) -> None:
    text = await world.text("sam", "/digest")
    assert "/digest preview" in text and "/digest send" in text
    text = await world.text("sam", "/digest shout")
    assert 'I don\'t know "/digest shout".' in text and "/digest preview | send | help" in text


def test_chart_size_signature_and_bytes_are_stable() -> None:
    data = pipeline_chart(EXPECTED_POINTS, Decimal(900_000), "USD", quarter="FY2027 Q4")
    assert data.startswith(PNG_SIGNATURE)
    assert png_size(data) == (900, 450)
    assert data == pipeline_chart(EXPECTED_POINTS, Decimal(900_000), "USD", quarter="FY2027 Q4")
    assert b"Software" not in data and b"tEXt" not in data


@pytest.mark.parametrize("weeks", [1, 12, 20])
def test_chart_draws_at_most_twelve_weeks(weeks: int) -> None:
    points = [ChartPoint(f"2026-W{w:02d}", Decimal(100), Decimal(50), Decimal(25)) for w in range(1, weeks + 1)]
    assert pipeline_chart(points, Decimal(900), "EUR", quarter="FY2026 Q1") == pipeline_chart(
        points[-12:], Decimal(900), "EUR", quarter="FY2026 Q1"
    )


async def test_recipients_default_to_the_founders_when_the_settings_name_none(world: Any) -> None:
    from cadences.digest import recipients

    await set_settings(world, "digest", recipients=None)
    async with world.db.session() as session:
        engagement = await session.get(Engagement, world.engagement.id)
        assert engagement is not None
        facts = await load_facts(session, engagement)
    assert [p.key for p in recipients(facts)] == ["sam"]


async def test_send_without_an_engine_says_nothing_was_sent(world: Any) -> None:
    [answer] = await world.say("dana", "/digest send")
    assert (
        answer.text == "The cadence engine is not running here, so nothing was sent; the digest goes out on schedule."
    )
