"""Events: replies in the review thread become deal notes, a retried event has one effect (even when the
retry reaches another process), DMs are commands, and an uninstall pauses the engagement."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from storage.models import ActionItem, ChatWorkspace, DealHistory, Engagement
from support.fake_slack import FakeChannel, FakeSlack
from support.slack_app import SlackDriver, payload, serve_slack, words


@pytest.fixture
async def slack(world: Any, fake_slack: FakeSlack) -> AsyncIterator[SlackDriver]:
    async with serve_slack(world, fake_slack) as driver:
        await driver.setup()
        await world.say("jordan", '/deal new "Acme" amount=150k close=2026-12-15 stage=discovery')
        for stage in ("qualification", "solution", "proposal"):
            await world.say("jordan", f"/deal Acme stage={stage}")
        yield driver


async def _review_ts(slack: SlackDriver) -> str:
    await slack.command("dana", "/pipeline", "start")
    await slack.settle()
    return slack.fake.posts("C0REVIEW")[0].ts


def reply_event(thread_ts: str, text: str, *, user: str = "U0JORDAN", event_id: str = "Ev0REPLY01") -> dict[str, Any]:
    body = payload("message")
    body["event"].update(thread_ts=thread_ts, text=text, user=user)
    body["event_id"] = event_id
    return body


async def _notes(slack: SlackDriver) -> list[str | None]:
    async with slack.world.db.session() as session:
        rows = await session.execute(
            select(DealHistory.note).where(DealHistory.kind == "note").order_by(DealHistory.id)
        )
        return list(rows.scalars())


async def test_a_reply_in_a_flagged_deals_own_thread_becomes_a_note_on_it(slack: SlackDriver) -> None:
    await _review_ts(slack)
    [deal_post] = [p for p in slack.fake.posts("C0REVIEW")[1:] if "Acme" in words(p.blocks)]
    response = await slack.event(reply_event(deal_post.ts, "Legal review starts Monday", event_id="Ev0REPLY09"))
    assert response.status == 200
    await slack.settle()
    assert await _notes(slack) == ["Legal review starts Monday"]


async def test_a_reply_naming_its_deal_in_the_review_thread_becomes_a_note(slack: SlackDriver) -> None:
    ts = await _review_ts(slack)
    response = await slack.event(reply_event(ts, "Acme: Champion moved to the CFO office &amp; wants a call"))
    assert response.status == 200
    await slack.settle()
    assert await _notes(slack) == ["Champion moved to the CFO office & wants a call"]
    [ephemeral] = slack.fake.ephemerals
    assert (ephemeral["user"], ephemeral["channel"]) == ("U0JORDAN", "C0REVIEW")
    assert "Noted on Acme." in words(ephemeral)


async def test_an_action_reply_creates_an_action_item_for_the_deal_owner(slack: SlackDriver) -> None:
    ts = await _review_ts(slack)
    await slack.event(reply_event(ts, "acme: action: send pricing by Dec 4", user="U0DANA"))
    await slack.settle()
    async with slack.world.db.session() as session:
        item = (await session.execute(select(ActionItem))).scalar_one()
    assert item.text == "send pricing" and item.due_date is not None and item.due_date.isoformat() == "2026-12-04"


async def test_a_reply_without_a_deal_name_gets_a_hint_and_records_nothing(slack: SlackDriver) -> None:
    ts = await _review_ts(slack)
    await slack.event(reply_event(ts, "Great review everyone"))
    await slack.settle()
    assert await _notes(slack) == []
    assert "start the reply with the deal's name" in slack.fake.ephemerals[0]["text"]


async def test_a_retried_event_has_one_effect_even_in_another_process(
    slack: SlackDriver, world: Any, fake_slack: FakeSlack
) -> None:
    ts = await _review_ts(slack)
    event = reply_event(ts, "Acme: Legal review started", event_id="Ev0RETRY")
    assert (await slack.event(event)).status == 200
    assert (await slack.event(event, retry=1)).status == 200
    async with serve_slack(world, fake_slack) as other:  # a second bot process on the same database
        assert (await other.event(event, retry=2)).status == 200
        await other.settle()
    await slack.settle()
    assert await _notes(slack) == ["Legal review started"]
    assert len(slack.fake.ephemerals) == 1


async def test_edits_bot_messages_and_other_threads_are_ignored(slack: SlackDriver) -> None:
    ts = await _review_ts(slack)
    edited = reply_event(ts, "Acme: edited", event_id="Ev0EDIT")
    edited["event"]["subtype"] = "message_changed"
    bot = reply_event(ts, "Acme: from a bot", event_id="Ev0BOT")
    bot["event"]["bot_id"] = "B0OTHER"
    elsewhere = reply_event("1767000000.000001", "Acme: another thread", event_id="Ev0ELSEWHERE")
    for body in (edited, bot, elsewhere):
        assert (await slack.event(body)).status == 200
    await slack.settle()
    assert await _notes(slack) == [] and slack.fake.ephemerals == []


async def test_a_dm_to_the_bot_is_a_command(slack: SlackDriver) -> None:
    slack.fake.add_channel(FakeChannel("D0JORDAN", "", is_im=True, user="U0JORDAN"))  # Jordan wrote to the bot
    body = payload("message")
    body["event"].update(channel="D0JORDAN", channel_type="im", text="deal list")
    body["event"].pop("thread_ts")
    body["event_id"] = "Ev0DM"
    await slack.event(body)
    await slack.settle()
    [answer] = slack.fake.posts("D0JORDAN")
    assert "Your open deals" in words(answer.blocks) and "Acme" in words(answer.blocks)


async def test_uninstalling_deletes_the_token_and_pauses_the_engagement(slack: SlackDriver) -> None:
    assert (await slack.event(payload("app_uninstalled"))).status == 200
    await slack.settle()
    async with slack.world.db.session() as session:
        workspace = (await session.execute(select(ChatWorkspace))).scalar_one()
        engagement = await session.get(Engagement, slack.world.engagement.id)
    assert (workspace.active, workspace.bot_token) == (False, None)
    assert engagement is not None and engagement.paused is True
    assert slack.service.ports.port_for(engagement).platform == "console"  # nothing more goes to that Slack
    await slack.command("jordan", "/deal", "list")
    await slack.settle()
    assert "isn't linked to a Cadence engagement" in slack.sink.texts("jordan")[-1]
