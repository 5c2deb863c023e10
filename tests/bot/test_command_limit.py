"""The per-user command limit, on `cadence run`'s Slack service fed signed requests and on the Teams
endpoint (here 3 commands a minute): past it a slash command is acked as usual (counting is a database
write, kept out of the ack) and answered "slow down" through its response_url, not run; a DM command gets
the same line privately, a Teams command in the conversation; other people are not affected, the next
minute opens again — and two processes on one database share one limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.command_limit import SLOW_DOWN, CommandLimit
from storage.models import AuditLog, Deal
from support.fake_slack import FakeChannel, FakeSlack
from support.slack_app import SlackDriver, payload, serve_slack
from support.teams_bot import TeamsFake, apply_teams_engagement, personal, serve_teams

LIMIT = 3


@pytest.fixture
async def slack(world: Any) -> AsyncIterator[SlackDriver]:
    async with FakeSlack.for_testco() as fake, serve_slack(world, fake, commands_per_minute=LIMIT) as driver:
        await driver.setup()  # `/cadence setup`: the CRO's first command
        yield driver


async def deals(world: Any) -> int:
    async with world.db.session() as session:
        return int((await session.execute(select(func.count()).select_from(Deal))).scalar_one())


async def audits(world: Any) -> int:
    async with world.db.session() as session:
        return int((await session.execute(select(func.count()).select_from(AuditLog))).scalar_one())


async def test_a_command_past_the_limit_is_answered_slow_down_and_not_run(slack: SlackDriver) -> None:
    for n in range(1, LIMIT + 1):
        response = await slack.command("jordan", "/deal", f"new Deal{n} amount=10k close=2026-12-15 stage=discovery")
        assert response.status == 200 and response.text == ""
    await slack.settle()
    assert await deals(slack.world) == LIMIT
    answered, audited = len(slack.sink.posts), await audits(slack.world)

    refused = await slack.command("jordan", "/deal", "new Deal4 amount=10k close=2026-12-15 stage=discovery")
    await slack.settle()
    assert refused.status == 200 and refused.text == ""  # the ack is the same: the refusal comes after it
    assert await deals(slack.world) == LIMIT and await audits(slack.world) == audited
    [(_, late)] = slack.sink.posts[answered:]  # the refusal, and nothing else: the command did not run
    assert (late["text"], late["response_type"]) == (SLOW_DOWN, "ephemeral")

    other = await slack.command("priya", "/deal", "list")  # someone else is not held up
    assert other.status == 200 and other.text == ""

    slack.world.clock.advance(timedelta(minutes=1))
    again = await slack.command("jordan", "/deal", "new Deal4 amount=10k close=2026-12-15 stage=discovery")
    await slack.settle()
    assert again.text == "" and await deals(slack.world) == LIMIT + 1


async def test_a_dm_command_past_the_limit_gets_the_line_privately(slack: SlackDriver) -> None:
    slack.fake.add_channel(FakeChannel("D0JORDAN", "", is_im=True, user="U0JORDAN"))
    for n in range(LIMIT + 1):
        body = payload("message")
        body["event_id"] = f"Ev0DM{n:04d}"
        body["event"].update(channel="D0JORDAN", channel_type="im", text="deal list", ts=f"176722600{n}.000100")
        del body["event"]["thread_ts"]
        assert (await slack.event(body)).status == 200
    await slack.settle()
    assert len(slack.fake.posts("D0JORDAN")) == LIMIT  # three answers
    assert slack.fake.ephemerals == [
        {
            "channel": "D0JORDAN",
            "user": "U0JORDAN",
            "text": SLOW_DOWN,
            "blocks": [],
            "ts": slack.fake.ephemerals[0]["ts"],
        }
    ]


async def test_two_processes_share_one_limit(world: Any) -> None:
    async with FakeSlack.for_testco() as fake:
        async with (
            serve_slack(world, fake, commands_per_minute=LIMIT) as first,
            serve_slack(world, fake, commands_per_minute=LIMIT) as second,
        ):
            await first.setup()  # counts for Dana, not Jordan
            for driver in (first, second, first):
                assert (await driver.command("jordan", "/deal", "list")).text == ""
                await driver.settle()
            assert SLOW_DOWN not in first.sink.texts() + second.sink.texts()
            assert (await second.command("jordan", "/deal", "list")).text == ""
            await second.settle()
            assert second.sink.texts()[-1] == SLOW_DOWN


async def test_a_teams_command_past_the_limit_gets_the_line_and_does_not_run(world: Any, tmp_path: Path) -> None:
    await apply_teams_engagement(world, tmp_path)
    async with TeamsFake() as fake, serve_teams(world, fake, commands_per_minute=LIMIT) as teams:
        await teams.link("dana")  # Dana's command, not Jordan's
        for n in range(1, LIMIT + 2):
            command = f"deal new Deal{n} amount=10k close=2026-12-15 stage=discovery"
            assert (await teams.direct("jordan", command)).status == 200
        assert (await teams.direct("priya", "deal list")).status == 200  # someone else is not held up
    answers = [post.body.get("summary") for post in fake.posted(personal("jordan"))]
    assert len(answers) == LIMIT + 1 and answers[-1] == SLOW_DOWN and SLOW_DOWN not in answers[:-1]
    assert SLOW_DOWN not in [post.body.get("summary") for post in fake.posted(personal("priya"))]
    assert await deals(world) == LIMIT


def test_a_limit_must_allow_something(world: Any) -> None:
    with pytest.raises(ValueError, match="at least one command"):
        CommandLimit(world.db, world.clock, 0)
