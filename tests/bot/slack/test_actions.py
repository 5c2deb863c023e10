"""Buttons in the messages the rituals send: the real nudge DM (posted by the engine to the fake Slack)
is clicked as Slack would send the click."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from bot.slack.render import base_action_id
from storage.models import ActionItem, Deal, DealHistory, HandoffTask, PlanDeliverable
from support.fake_slack import FakeMessage, FakeSlack
from support.slack_app import SlackDriver, date_input, payload, serve_slack, text_input, words
from support.slack_app import select as choose

NUDGE_AT = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)  # Fri Nov 27 15:00 in Los Angeles: the day before Monday's review


@pytest.fixture
async def slack(world: Any, fake_slack: FakeSlack) -> AsyncIterator[SlackDriver]:
    async with serve_slack(world, fake_slack) as driver:
        await driver.setup()
        await world.say("jordan", '/deal new "Acme" amount=48k close=2026-12-15 stage=discovery')
        yield driver


def as_received(message: FakeMessage) -> dict[str, Any]:
    """A posted message as Slack hands it back in an interaction: every block with a block_id."""
    blocks = [{**block, "block_id": block.get("block_id", f"b{i}")} for i, block in enumerate(message.blocks)]
    return {"type": "message", "user": "U0CADENCE", "ts": message.ts, "text": message.text, "blocks": blocks}


def find_button(message: dict[str, Any], base: str) -> tuple[str, dict[str, Any]]:
    for block in message["blocks"]:
        for element in block.get("elements", []):
            if element.get("type") == "button" and base_action_id(element["action_id"]) == base:
                return block["block_id"], element
    raise AssertionError(f"no {base} button in {words(message)}")


async def _nudge(slack: SlackDriver) -> dict[str, Any]:
    slack.world.clock.set(NUDGE_AT)
    await slack.service.engine.tick()
    [dm] = [m for m in slack.fake.posts("D0JORDAN") if "Before the pipeline review" in words(m.blocks)]
    return as_received(dm)


async def test_still_accurate_confirms_the_deal_and_updates_the_nudge_in_place(slack: SlackDriver) -> None:
    nudge = await _nudge(slack)
    block_id, button = find_button(nudge, "deal_confirm")
    click = slack.button("jordan", button["action_id"], button["value"], message=nudge, block_id=block_id)
    response = await slack.interaction(click)
    assert (response.status, response.text) == (200, "")
    await slack.settle()
    async with slack.world.db.session() as session:
        kinds = (await session.execute(select(DealHistory.kind).order_by(DealHistory.id))).scalars().all()
    assert kinds[-1] == "confirm"
    [replaced] = slack.sink.to("jordan")
    assert replaced["replace_original"] is True
    assert [b["type"] for b in replaced["blocks"]] == [
        b["type"] if b["block_id"] != block_id else "context" for b in nudge["blocks"]
    ]
    assert "✓ Still accurate — Acme, confirmed by Jordan Lee" in words(replaced)


async def test_update_opens_the_deal_form_filled_in(slack: SlackDriver) -> None:
    nudge = await _nudge(slack)
    block_id, button = find_button(nudge, "deal_update")
    await slack.interaction(
        slack.button("jordan", button["action_id"], button["value"], message=nudge, block_id=block_id)
    )
    await slack.settle()
    method, view = slack.fake.views[-1]
    assert method == "views.open" and view["callback_id"] == "deal_form"
    assert view["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "Acme"}}
    amount = next(b for b in view["blocks"] if b.get("block_id") == "amount")
    assert amount["element"]["initial_value"] == "48000"


async def test_update_on_someone_elses_deal_is_refused_before_the_form(slack: SlackDriver) -> None:
    nudge = await _nudge(slack)
    block_id, button = find_button(nudge, "deal_update")
    await slack.interaction(
        slack.button("priya", button["action_id"], button["value"], message=nudge, block_id=block_id)
    )
    await slack.settle()
    assert slack.fake.views == []
    assert "Reps can change only their own deals" in slack.sink.texts("priya")[0]


async def test_a_button_carrying_a_command_runs_it(slack: SlackDriver) -> None:
    await slack.interaction(slack.button("jordan", "run_command:2", "/deal show Acme"))
    await slack.settle()
    [answer] = slack.sink.texts("jordan")
    assert "Acme" in answer and "Discovery" in answer and "$48,000" in answer


async def test_status_buttons_run_the_cadence_commands_and_mark_the_message(slack: SlackDriver) -> None:
    async with slack.world.db.session() as session:
        deliverable = (
            await session.execute(select(PlanDeliverable).where(PlanDeliverable.key == "revenue_audit"))
        ).scalar_one()
        task = (await session.execute(select(HandoffTask).where(HandoffTask.key == "review_host"))).scalar_one()
    message = {
        "type": "message",
        "ts": "1.1",
        "text": "Day 30 check-in",
        "blocks": [
            {"type": "section", "block_id": "s", "text": {"type": "mrkdwn", "text": "Revenue audit"}},
            {
                "type": "actions",
                "block_id": "a",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "deliverable_status",
                        "value": f"{deliverable.id}:done",
                        "text": {"type": "plain_text", "text": "Done"},
                    }
                ],
            },
        ],
    }
    await slack.interaction(
        slack.button("dana", "deliverable_status", f"{deliverable.id}:done", message=message, block_id="a")
    )
    await slack.settle()
    async with slack.world.db.session() as session:
        assert (await session.get(PlanDeliverable, deliverable.id)).status == "done"
    [marked] = slack.sink.to("dana")
    assert marked["replace_original"] is True and "✓ Revenue audit" in words(marked["blocks"][1])
    await slack.command("dana", "/cadence", "handoff review_host to=@maya")
    await slack.settle()
    await slack.interaction(slack.button("maya", "handoff_status", f"{task.id}:done", message=message, block_id="a"))
    await slack.settle()
    async with slack.world.db.session() as session:
        assert (await session.get(HandoffTask, task.id)).status == "done"


async def test_an_unknown_button_without_a_command_says_so(slack: SlackDriver) -> None:
    await slack.interaction(slack.button("jordan", "mystery_button", "42"))
    await slack.settle()
    assert "doesn't work in Slack yet" in slack.sink.texts("jordan")[0]


async def test_add_action_item_opens_a_form_and_done_closes_the_item(slack: SlackDriver) -> None:
    async with slack.world.db.session() as session:
        acme = (await session.execute(select_deal(Deal, "Acme"))).scalar_one()
    await slack.interaction(slack.button("dana", "review_add_action:3", str(acme.id)))
    await slack.settle()
    _, view = slack.fake.views[-1]
    assert view["callback_id"] == "action_item_form"
    owner = next(b for b in view["blocks"] if b.get("block_id") == "owner")
    assert owner["element"]["initial_option"]["value"] == "jordan"  # the deal's owner by default
    past = await slack.interaction(
        slack.submission(
            "dana",
            view,
            {"text": text_input("Book the CFO"), "owner": choose("jordan"), "due": date_input("2026-11-01")},
        )
    )
    assert past.json()["errors"] == {"due": "That date is in the past; pick today or later."}
    ok = await slack.interaction(
        slack.submission(
            "dana",
            view,
            {"text": text_input("Book the CFO"), "owner": choose("jordan"), "due": date_input("2026-12-04")},
        )
    )
    assert ok.text == ""
    await slack.settle()
    async with slack.world.db.session() as session:
        item = (await session.execute(select_deal(ActionItem, None))).scalar_one()
    assert (item.text, item.due_date.isoformat() if item.due_date else None) == ("Book the CFO", "2026-12-04")
    message = {
        "type": "message",
        "ts": "1.2",
        "text": "Your action items",
        "blocks": [
            {
                "type": "actions",
                "block_id": "a",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "action_done",
                        "value": str(item.id),
                        "text": {"type": "plain_text", "text": f"Done #{item.id}"},
                    }
                ],
            }
        ],
    }
    await slack.interaction(slack.button("jordan", "action_done", str(item.id), message=message, block_id="a"))
    await slack.settle()
    async with slack.world.db.session() as session:
        assert (await session.get(ActionItem, item.id)).status == "done"
    assert f"✓ Done: #{item.id} Book the CFO (by Jordan Lee)" in words(slack.sink.to("jordan")[-1])


def select_deal(model: Any, name: str | None) -> Any:
    stmt = select(model)
    return stmt.where(model.name == name) if name is not None else stmt


async def test_log_as_deal_update_turns_a_message_into_a_note(slack: SlackDriver) -> None:
    from support.slack_app import select as choose
    from support.slack_app import text_input

    shortcut = payload("message_action")
    shortcut["response_url"] = slack.sink.url("jordan")
    assert (await slack.interaction(shortcut)).text == ""
    await slack.settle()
    _, view = slack.fake.views[-1]
    assert view["callback_id"] == "log_deal_note"
    note = next(b for b in view["blocks"] if b.get("block_id") == "note")
    expected = "Acme call: they want the MSA by Friday & a security review questionnaire"
    assert note["element"]["initial_value"] == expected
    async with slack.world.db.session() as session:
        from storage.models import Deal

        acme = (await session.execute(select_deal(Deal, "Acme"))).scalar_one()
    await slack.interaction(
        slack.submission("jordan", view, {"deal": choose(str(acme.id)), "note": text_input(expected)})
    )
    await slack.settle()
    async with slack.world.db.session() as session:
        notes = (await session.execute(select(DealHistory.note).where(DealHistory.kind == "note"))).scalars().all()
    assert notes == [expected]
    assert slack.sink.to("jordan")[-1]["text"] == "Note added to Acme."
