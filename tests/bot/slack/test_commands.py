"""Slash commands through the running server: signed requests, the ack, the router's answer through the
response_url, the forms some commands open, and the workspace setup."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from storage.models import AuditLog, ChatChannel, ChatIdentity, ChatWorkspace, Deal
from support.fake_slack import FakeSlack
from support.slack_app import SlackDriver, serve_slack, words


@pytest.fixture
async def slack(world: object, fake_slack: FakeSlack) -> AsyncIterator[SlackDriver]:
    async with serve_slack(world, fake_slack) as driver:
        yield driver


async def _deal(slack: SlackDriver, name: str) -> Deal:
    async with slack.world.db.session() as session:
        return (await session.execute(select(Deal).where(Deal.name == name))).scalar_one()


async def _count(slack: SlackDriver, model: type) -> int:
    async with slack.world.db.session() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def test_a_signed_deal_command_updates_the_deal_and_answers_ephemerally(slack: SlackDriver) -> None:
    await slack.setup()
    await slack.world.say("jordan", '/deal new "Acme" amount=48k close=2026-12-15 stage=discovery')
    response = await slack.command("jordan", "/deal", "Acme stage=qualification amount=55k")
    assert response.status == 200 and response.text == ""  # the empty ack: nothing shown until the answer
    await slack.settle()
    deal = await _deal(slack, "Acme")
    assert (deal.amount, deal.version) == (Decimal("55000.00"), 2)
    [answer] = slack.sink.to("jordan")
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert answer["text"] == "Updated Acme."
    assert "stage: Discovery → Qualification" in words(answer) and "amount: $48,000 → $55,000" in words(answer)


async def test_unsigned_tampered_and_stale_requests_get_401_and_change_nothing(slack: SlackDriver) -> None:
    await slack.setup()
    await slack.world.say("jordan", '/deal new "Acme" amount=48k close=2026-12-15 stage=discovery')
    audits, calls = await _count(slack, AuditLog), len(slack.fake.calls)
    body = slack.command_body("jordan", "/deal", "Acme amount=99k")
    for kwargs in ({"signed": False}, {"tamper": True}, {"age": 6 * 60}):
        response = await slack.post(body, "application/x-www-form-urlencoded", **kwargs)
        assert response.status == 401, kwargs
    await slack.settle()
    assert (await _deal(slack, "Acme")).amount == Decimal("48000.00")
    assert await _count(slack, AuditLog) == audits
    assert len(slack.fake.calls) == calls and slack.sink.to("jordan") == []
    ok = await slack.post(body, "application/x-www-form-urlencoded", age=4 * 60)  # within Slack's five minutes
    assert ok.status == 200


async def test_before_setup_every_command_says_how_to_set_up(slack: SlackDriver) -> None:
    await slack.command("jordan", "/deal", "list")
    await slack.settle()
    [answer] = slack.sink.texts("jordan")
    assert "isn't linked to a Cadence engagement" in answer and "/cadence setup <engagement-slug>" in answer


async def test_setup_by_the_cro_links_the_workspace_channel_and_people(slack: SlackDriver) -> None:
    slack.fake.users["U0JORDAN"].tz = "America/Chicago"  # not in the file: Slack's profile zone is used
    await slack.setup("dana")
    [answer] = slack.sink.texts("setup")
    assert "Linked this workspace to Testco (acme-test)" in answer
    assert "#pipeline-review" in answer and "5 of 5 people are matched" in answer
    async with slack.world.db.session() as session:
        workspace = (await session.execute(select(ChatWorkspace))).scalar_one()
        channel = (await session.execute(select(ChatChannel))).scalar_one()
        zones = dict(
            (
                await session.execute(
                    select(ChatIdentity.user_id, ChatIdentity.timezone).where(ChatIdentity.platform == "slack")
                )
            ).all()
        )
    assert (workspace.workspace_id, workspace.engagement_id, workspace.bot_token) == (
        "T0TEST",
        slack.world.engagement.id,
        None,
    )  # single-workspace mode: the token stays in the environment
    assert (channel.name, channel.channel_id) == ("pipeline-review", "C0REVIEW")
    assert zones["U0JORDAN"] == "America/Chicago" and zones["U0PRIYA"] == "Europe/London"
    from cadences.rituals import load_facts

    async with slack.world.db.session() as session:
        facts = await load_facts(session, slack.world.engagement)
    assert str(facts.person("jordan").timezone) == "America/Chicago"  # Slack's zone: the file gives none
    assert str(facts.person("dana").timezone) == "America/New_York"  # the file's zone wins


async def test_setup_by_someone_else_is_refused(slack: SlackDriver) -> None:
    await slack.setup("jordan")
    [answer] = slack.sink.texts("setup")
    assert "you are not its CRO" in answer
    assert await _count(slack, ChatWorkspace) == 0
    await slack.setup("dana", slug="no-such-engagement")
    assert "no such engagement" in slack.sink.texts("setup")[-1]
    async with slack.world.db.session() as session:
        outcomes = (await session.execute(select(AuditLog.outcome).where(AuditLog.action == "slack.setup"))).scalars()
        assert list(outcomes) == ["denied", "denied"]


async def test_a_slack_user_found_by_email_is_recognised(slack: SlackDriver) -> None:
    from support.fake_slack import FakeUser

    await slack.setup()
    slack.fake.add_user(FakeUser("U0JORDAN2", "Jordan Lee", "jordan@testco.example"))  # a second account
    await slack.command("U0JORDAN2", "/deal", "list", respond_to="jordan2")
    await slack.settle()
    assert "Your open deals" in slack.sink.texts("jordan2")[0]
    await slack.command("U0JORDAN2", "/deal", "list", respond_to="jordan2")
    await slack.settle()
    assert len(slack.sink.texts("jordan2")) == 2
    lookups = [c for c in slack.fake.calls_to("users.info") if c.body.get("user") == "U0JORDAN2"]
    assert len(lookups) == 1  # remembered: the identity is stored, and the lookup cached


async def test_people_outside_the_engagement_and_deactivated_users_are_refused(slack: SlackDriver) -> None:
    from support.fake_slack import FakeUser

    await slack.setup()
    slack.fake.add_user(FakeUser("U0STRANGER", "Sandy Stranger", "sandy@elsewhere.example"))
    slack.fake.add_user(FakeUser("U0GONE", "Gone Person", "maya@testco.example", deleted=True))
    for user in ("U0STRANGER", "U0GONE"):
        await slack.command(user, "/deal", "list", respond_to=user)
    await slack.settle()
    for user in ("U0STRANGER", "U0GONE"):
        assert "not part of the Testco engagement" in slack.sink.texts(user)[0]


async def test_slack_escaping_is_undone_before_parsing_and_redone_when_shown(slack: SlackDriver) -> None:
    await slack.setup()
    # Slack sends what was typed with & < > escaped: `/deal new "<!channel> & Co" ...`
    await slack.command("jordan", "/deal", 'new "&lt;!channel&gt; &amp; Co" amount=10k close=2026-12-15')
    await slack.settle()
    assert (await _deal(slack, "<!channel> & Co")).amount == Decimal("10000.00")
    [answer] = slack.sink.to("jordan")
    shown = words(answer)
    assert "&lt;!channel&gt; &amp; Co" in shown and "<!channel>" not in str(answer)


async def test_bare_deal_opens_the_deal_form_with_a_picker_of_my_deals(slack: SlackDriver) -> None:
    await slack.setup()
    await slack.world.say("jordan", '/deal new "Acme" amount=48k close=2026-12-15 stage=discovery')
    await slack.world.say("priya", '/deal new "Globex" amount=90k close=2026-12-20 stage=discovery')
    await slack.command("jordan", "/deal")
    await slack.settle()
    [(method, view)] = slack.fake.views
    assert method == "views.open" and view["callback_id"] == "deal_form"
    picker = view["blocks"][0]
    assert picker["dispatch_action"] is True and picker["element"]["type"] == "static_select"
    assert [o["text"]["text"] for o in picker["element"]["options"]] == ["Acme"]  # a rep's own deals only
    assert view["trigger_id"] == "13345224609.738474920.8088930838d88f008e0"


async def test_deal_new_and_pipeline_forecast_open_their_forms(slack: SlackDriver) -> None:
    await slack.setup()
    await slack.command("jordan", "/deal", "new")
    await slack.command("dana", "/pipeline", "forecast")
    await slack.settle()
    callbacks = sorted(view["callback_id"] for _, view in slack.fake.views)
    assert callbacks == ["forecast_form", "new_deal_form"]


async def test_a_founder_asking_for_the_deal_form_is_told_why_not(slack: SlackDriver) -> None:
    await slack.setup()
    await slack.command("sam", "/deal")
    await slack.settle()
    assert slack.fake.views == []
    assert "Reps can change only their own deals" in slack.sink.texts("sam")[0]


async def test_pipeline_start_posts_the_review_and_one_thread_per_flagged_deal(slack: SlackDriver) -> None:
    await slack.setup()
    # A deal named to ping the whole channel: large and late-stage, so the review discusses it.
    await slack.world.say("jordan", '/deal new "<!channel> Corp" amount=150k close=2026-12-15 stage=discovery')
    for stage in ("qualification", "solution", "proposal"):
        await slack.world.say("jordan", f'/deal "<!channel> Corp" stage={stage}')
    await slack.command("dana", "/pipeline", "start")
    await slack.settle()
    posts = slack.fake.posts("C0REVIEW")
    review = posts[0]
    assert review.thread_ts is None and review.metadata["event_type"] == "cadence_delivery"
    assert review.text.startswith("Pipeline review FY2027 Q4")
    # Slack threads cannot nest, so each flagged deal is its own channel message: its thread is its discussion.
    [deal_post] = [p for p in posts[1:] if "Corp" in words(p.blocks)]
    assert deal_post.thread_ts is None and deal_post.metadata["event_type"] == "cadence_delivery"
    assert "&lt;!channel&gt; Corp" in words(deal_post.blocks)
    for post in posts:  # nothing posted can ping anyone
        assert "<!channel>" not in post.text and "<!channel>" not in str(post.blocks)


async def test_a_rate_limited_slack_call_is_retried_after_retry_after_and_nothing_is_lost(slack: SlackDriver) -> None:
    await slack.setup()
    await slack.world.say("jordan", '/deal new "Acme" amount=48k close=2026-12-15 stage=discovery')
    slack.fake.rate_limit("views.open", retry_after=0, times=2)
    await slack.command("jordan", "/deal")
    await slack.settle()
    assert [c.method for c in slack.fake.calls if c.method == "views.open"] == ["views.open"] * 3
    assert [method for method, _ in slack.fake.views] == ["views.open"]


async def test_a_failure_after_the_ack_is_logged_and_the_person_told(
    slack: SlackDriver, caplog: pytest.LogCaptureFixture
) -> None:
    await slack.setup()
    await slack.world.say("jordan", '/deal new "Acme" amount=48k close=2026-12-15 stage=discovery')
    slack.fake.fail("views.open", "fatal_error")
    assert (await slack.command("jordan", "/deal")).status == 200
    await slack.settle()
    assert slack.sink.texts("jordan") == [
        "Something went wrong on my side and it's been logged. Please try again in a minute."
    ]
    assert any("background work failed: /deal" in r.getMessage() and r.exc_info for r in caplog.records)
