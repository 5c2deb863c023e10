"""The Home tab: published when opened, each person's own, within Slack's 100 blocks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.models.views import View

from support.fake_slack import FakeSlack
from support.slack_app import SlackDriver, payload, serve_slack, words


@pytest.fixture
async def slack(world: Any, fake_slack: FakeSlack) -> AsyncIterator[SlackDriver]:
    async with serve_slack(world, fake_slack) as driver:
        await driver.setup()
        await world.say("jordan", '/deal new "Acme" amount=48k close=2026-12-15 stage=discovery')
        await world.say("priya", '/deal new "Globex" amount=90k close=2026-12-20 stage=discovery')
        yield driver


async def _home(slack: SlackDriver, user: str, event_id: str) -> dict[str, Any]:
    body = payload("app_home_opened")
    body["event"]["user"] = user
    body["event_id"] = event_id
    assert (await slack.event(body)).status == 200
    await slack.settle()
    method, view = slack.fake.views[-1]
    assert method == "views.publish" and view["user_id"] == user
    View(**{k: v for k, v in view.items() if k not in ("id", "user_id")}).validate_json()
    return view


async def test_a_reps_home_lists_their_deals_needing_attention_with_buttons(slack: SlackDriver) -> None:
    view = await _home(slack, "U0JORDAN", "Ev0H1")
    text = words(view)
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    assert "Your deals needing attention" in text and "Acme" in text and "No next step" in text
    assert "Globex" not in text  # Priya's
    assert "day " not in text.lower().split("your deals")[0]  # the engagement clock is the CRO's
    buttons = [e["action_id"] for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert any(a.startswith("deal_update:") for a in buttons) and any(a.startswith("deal_confirm:") for a in buttons)
    assert "No debriefs waiting for you." in text and "No open action items." in text


async def test_the_cros_home_shows_the_engagement_clock_and_the_next_rituals(slack: SlackDriver) -> None:
    view = await _home(slack, "U0DANA", "Ev0H2")
    text = words(view)
    # Start Sep 7, 2026 is day 1; Tue Nov 24 is day 79 of 180 (exit Mar 5, 2027), 101 days to go.
    assert "day 79 of 180" in text and "101 days to go" in text
    assert "Next rituals (your time)" in text
    assert "Mon Nov 30 12:00 — Pipeline review" in text  # 09:00 in Los Angeles, Dana's New York time


async def test_a_home_with_many_deals_stays_within_100_blocks(slack: SlackDriver) -> None:
    for n in range(40):
        await slack.world.say("jordan", f'/deal new "Deal {n:02d}" amount=10k close=2026-12-18 stage=discovery')
    view = await _home(slack, "U0JORDAN", "Ev0H3")
    assert len(view["blocks"]) <= 100
    assert "And 31 more: /deal list" in words(view)


async def test_someone_outside_the_engagement_gets_a_home_that_says_so(slack: SlackDriver) -> None:
    from support.fake_slack import FakeUser

    slack.fake.add_user(FakeUser("U0STRANGER", "Sandy Stranger", "sandy@elsewhere.example"))
    view = await _home(slack, "U0STRANGER", "Ev0H4")
    assert "not part of the Testco engagement" in words(view)
