"""No text a person types can make the bot ping anyone: deals named with mention syntax go the whole way —
created with /deal and moved to a late stage so the Monday review flags them (posted to the channel,
each flagged deal in its thread), shown on App Home and in every answer — and nothing the bot sends
Slack contains `<!…>`, `<@…>` or `<#…>` (the renderers escape `<`, `>` and `&`), nor anything Teams
shows an `<at>` mention. The escaped name is found in each place, so the check is not vacuous."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadences.ritual_catalog import all_rituals
from support.fake_slack import FakeSlack
from support.slack_app import SlackDriver, payload, serve_slack, words
from support.teams_bot import TeamsDriver, TeamsFake, apply_teams_engagement, serve_teams

MENTION = re.compile(r"<[!@#]")
HOSTILE = ["<!channel> Corp", "<!here|here> Ltd", "<@U0DANA> Inc", "<#C0REVIEW|review> AG", "<!subteam^S01|@sales> Co"]
NAMES = st.text(alphabet="<>!@#^|&;ahU0DNAC-", min_size=1, max_size=24).filter(lambda s: s.strip() == s and s)


class Seen:
    """Everything the bot sent Slack since the last look: posts and edits, ephemerals, views, and answers
    through response_urls."""

    def __init__(self, slack: SlackDriver) -> None:
        self.slack = slack
        self.marks = (0, 0, 0, 0)

    def new_texts(self) -> str:
        fake, sink = self.slack.fake, self.slack.sink
        posts = [{"text": m.text, "blocks": m.blocks} for m in fake.messages[self.marks[0] :]]
        found = [words(posts), words(fake.ephemerals[self.marks[1] :])]
        found += [words(view) for _, view in fake.views[self.marks[2] :]]
        found += [words(body) for _, body in sink.posts[self.marks[3] :]]
        self.marks = (len(fake.messages), len(fake.ephemerals), len(fake.views), len(sink.posts))
        return "\n".join(found)


@pytest.fixture
async def slack(world: Any) -> AsyncIterator[SlackDriver]:
    async with FakeSlack.for_testco() as fake, serve_slack(world, fake) as driver:
        await driver.setup()
        yield driver


async def through_everything(slack: SlackDriver, name: str) -> dict[str, str]:
    """The deal `name` through /deal (created, moved to Proposal, slipped), the review and App Home: what
    each sent, as words."""
    seen = Seen(slack)
    seen.new_texts()
    slack.world.clock.advance(timedelta(days=7))  # a new week: a new review can be started
    await slack.command("jordan", "/deal", f'new "{name}" amount=600k close=+40d stage=discovery next="{name}"')
    await slack.settle()
    for stage in ("qualification", "solution", "proposal"):  # a large late-stage deal: the review flags it
        await slack.command("jordan", "/deal", f'"{name}" stage={stage}')
        await slack.settle()
    await slack.command("jordan", "/deal", f'"{name}" close=+60d note="{name}"')
    await slack.command("jordan", "/deal", f'"{name}"')
    await slack.settle()
    answers = seen.new_texts()
    await slack.command("dana", "/pipeline", "start")
    await slack.settle()
    review = seen.new_texts()
    home = payload("app_home_opened")
    home["event"]["user"] = "U0JORDAN"
    home["event_id"] = f"Ev0HOME{slack.world.clock.now().timestamp():.0f}"
    await slack.event(home)
    await slack.settle()
    return {"answers": answers, "review": review, "home": seen.new_texts()}


def escaped(name: str) -> str:
    return name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@pytest.mark.parametrize("name", HOSTILE)
async def test_a_deal_named_like_a_mention_pings_nobody_anywhere(slack: SlackDriver, name: str) -> None:
    shown = await through_everything(slack, name)
    for place, text in shown.items():
        assert escaped(name) in text, f"the deal is shown in the {place}"
        assert not MENTION.search(text), place


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
async def test_no_deal_name_can_produce_a_mention(slack: SlackDriver, name: str) -> None:
    shown = await through_everything(slack, f"{name} {len(slack.fake.messages)}")  # a new deal each time
    for place, text in shown.items():
        assert not MENTION.search(text), (place, name)


# --- Teams ---------------------------------------------------------------------------------------------


@pytest.fixture
async def teams(world: Any, tmp_path: Path) -> AsyncIterator[TeamsDriver]:
    await apply_teams_engagement(world, tmp_path)
    async with TeamsFake() as fake, serve_teams(world, fake, rituals=all_rituals()) as driver:
        await driver.link("dana")
        yield driver


TEAMS_HOSTILE = ["<at>Dana Whitfield</at> Corp", "<AT>everyone</AT> Ltd", "&lt;at&gt;Sam&lt;/at&gt; Inc"]


async def test_no_deal_name_produces_an_at_mention_in_teams(teams: TeamsDriver) -> None:
    before = len(teams.fake.activities)
    for name in TEAMS_HOSTILE:
        await teams.direct("jordan", f'deal new "{name}" amount=600k close=+40d stage=discovery next="{name}"')
        for stage in ("qualification", "solution", "proposal"):
            await teams.direct("jordan", f'deal "{name}" stage={stage}')
    await teams.message("dana", "pipeline start")
    # What Teams renders: an activity's text and its cards, less the `data` a button hands back when clicked
    # (never shown) — and less `summary`, the plain-text notification preview, where Teams parses nothing.
    rendered = [shown_strings({"text": a.body.get("text"), "cards": a.body.get("attachments")}) for a in
                teams.fake.activities[before:]]  # fmt: skip
    sent = json.dumps(rendered, ensure_ascii=False)
    assert "Pipeline review" in sent and "Dana Whitfield" in sent  # the review went out, with the names
    assert "<at" not in sent.lower()


def shown_strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [t for key, value in node.items() if key != "data" for t in shown_strings(value)]
    if isinstance(node, list):
        return [t for item in node for t in shown_strings(item)]
    return [node] if isinstance(node, str) else []
