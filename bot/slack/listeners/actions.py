"""Buttons and menus in Bot messages and on the Home tab.

The renderer suffixes action ids for uniqueness (`deal_confirm:12`), so listeners match the model's id
with `action_pattern`. A button's `value` is what the model put there: a deal id (`deal_update`,
`deal_confirm`), a debrief id (`debrief_open`), `<id>:<status>` (`deliverable_status`, `handoff_status`),
or the command itself (`run_command`, the options of a debrief `Choice`). Anything else whose value is a
command runs through the router like typed text, so a new button with a command needs no listener.
A status button, once it worked, is replaced in its message by a line saying what was done, so the
message shows the state rather than inviting a second tap.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.listeners import home, views
from bot.slack.listeners.requests import NOT_LINKED, Who, answer, direct, ids, who
from bot.slack.render import JSONDict, action_pattern, base_action_id, escape
from cadences import deal_events
from cadences.deals import DealError, confirm_deal, not_in_engagement
from cadences.messages import Message, reply
from storage import audit
from storage.models import ActionItem, HandoffTask, PlanDeliverable

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps

Handler = Callable[["SlackDeps", AsyncWebClient, Who, dict[str, Any], dict[str, Any], AsyncRespond], Awaitable[None]]
COMMAND = re.compile(r"^/[a-z]")


def register(app: AsyncApp, deps: SlackDeps) -> None:
    from bot.slack.app import reporter

    def listener(handler: Handler) -> Callable[..., Awaitable[None]]:
        async def on_action(
            ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
        ) -> None:
            await ack()
            deps.background.spawn(
                _run(deps, client, body, action, respond, handler),
                what=f"button {action.get('action_id')}",
                on_error=reporter(respond),
            )

        return on_action

    handlers: dict[str, Handler] = {
        "deal_update": _deal_update,
        "deal_confirm": _deal_confirm,
        "debrief_open": _debrief_open,
        "deliverable_status": _deliverable_status,
        "handoff_status": _handoff_status,
        "handoff_assign": _handoff_assign,
        "action_done": _action_done,
        "review_add_action": _add_action,
        "run_command": _run_command,
        "debrief_choice": _run_command,
    }
    for base, handler in handlers.items():
        app.action(action_pattern(base))(listener(handler))
        deps.registry.actions.add(base)
    # Last, so the listeners above win: any other element whose value is a command.
    app.action(re.compile(r".+"))(listener(_any_command))


async def _run(
    deps: SlackDeps,
    client: AsyncWebClient,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: AsyncRespond,
    handler: Handler,
) -> None:
    team_id, user_id = ids(body)
    asker = await who(deps, client, team_id, user_id)
    if asker is None:
        await _say(client, body, respond, user_id, [reply(NOT_LINKED)])
        return
    await handler(deps, client, asker, body, action, respond)


def value_of(action: dict[str, Any]) -> str:
    """A button's value, or a menu's selected option's."""
    return str(action.get("value") or (action.get("selected_option") or {}).get("value") or "")


async def _say(
    client: AsyncWebClient, body: dict[str, Any], respond: AsyncRespond, user_id: str, messages: list[Message]
) -> None:
    """Answer in the conversation of the message (ephemerally), or in the DM for a Home tab button."""
    if respond.response_url:
        await answer(respond, messages)
    else:
        await direct(client, user_id, messages)


async def _refresh_home(deps: SlackDeps, client: AsyncWebClient, asker: Who, body: dict[str, Any]) -> None:
    if (body.get("view") or {}).get("type") == "home":
        await home.publish(deps, client, asker)


def mark_done(body: dict[str, Any], action: dict[str, Any], line: str) -> JSONDict | None:
    """The message with the clicked button's actions block replaced by `line` (None without a message)."""
    message = body.get("message")
    if not message:
        return None
    block_id = action.get("block_id")
    blocks = [
        {"type": "context", "block_id": str(block_id), "elements": [{"type": "mrkdwn", "text": escape(line)}]}
        if block.get("block_id") == block_id and block.get("type") == "actions"
        else block
        for block in message.get("blocks", [])
    ]
    return {"text": message.get("text") or line, "blocks": blocks}


async def _replace(respond: AsyncRespond, body: dict[str, Any], action: dict[str, Any], line: str) -> None:
    updated = mark_done(body, action, line)
    if updated is not None and respond.response_url:
        await respond(text=updated["text"], blocks=updated["blocks"], replace_original=True)


# --- handlers -------------------------------------------------------------------------------------


async def _deal_update(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: AsyncRespond,
) -> None:
    """Update: the deal form, filled in with the deal's values."""

    async def say(line: str) -> None:
        await _say(client, body, respond, asker.user_id, [reply(line)])

    deal_id = int(value_of(action))
    trigger = str(body.get("trigger_id") or "")
    await views.open_deal_form(deps, client, asker, trigger, say, deal_id=deal_id, meta=views.origin(body))


async def _deal_confirm(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: AsyncRespond,
) -> None:
    """Still accurate: recorded, and the nudge shows "✓ Still accurate" for that deal instead of its buttons."""
    ctx = asker.context(deps)
    deal_id = int(value_of(action))
    target = f"deal:{deal_id}"
    if asker.person is None:
        await _say(client, body, respond, asker.user_id, [reply(not_in_engagement(ctx))])
        return
    try:
        outcome = await confirm_deal(ctx, deal_id)
    except DealError as exc:
        await _audit(deps, asker, "deal.confirm", exc.outcome, target)
        await _say(client, body, respond, asker.user_id, [reply(exc.message)])
        return
    await _audit(deps, asker, "deal.confirm", "ok", target)
    await deal_events.publish(ctx, outcome)
    await _replace(respond, body, action, f"✓ Still accurate — {outcome.deal.name}, confirmed by {asker.person.name}")
    await _refresh_home(deps, client, asker, body)


async def _debrief_open(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: AsyncRespond,
) -> None:
    async def say(line: str) -> None:
        await _say(client, body, respond, asker.user_id, [reply(line)])

    trigger = str(body.get("trigger_id") or "")
    await views.open_debrief_form(deps, client, asker, trigger, say, int(value_of(action)), views.origin(body))


async def _deliverable_status(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: AsyncRespond,
) -> None:
    """A check-in's status button: `/cadence deliverable <key> status=<status>`."""
    row_id, _, status = value_of(action).partition(":")
    async with deps.db.session() as session:
        row = await session.get(PlanDeliverable, int(row_id))
    if row is None or row.engagement_id != asker.engagement.id:
        await _say(client, body, respond, asker.user_id, [reply("That deliverable is no longer in the plan.")])
        return
    messages = await deps.router.run(
        asker.context(deps),
        "cadence",
        f"deliverable {row.key} status={status}",
        raw=f"/cadence deliverable {row.key} status={status}",
    )
    async with deps.db.session() as session:
        after = await session.get(PlanDeliverable, row.id)
    if after is not None and after.status == status:
        await _replace(respond, body, action, f"✓ {row.title}: {status.replace('_', ' ')} (by {_name(asker)})")
    else:
        await _say(client, body, respond, asker.user_id, messages)
    await _refresh_home(deps, client, asker, body)


async def _handoff_status(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: AsyncRespond,
) -> None:
    """Mark done: `/cadence handoff <key> done`."""
    task_id, _, status = value_of(action).partition(":")
    async with deps.db.session() as session:
        task = await session.get(HandoffTask, int(task_id))
    if task is None or task.engagement_id != asker.engagement.id:
        await _say(client, body, respond, asker.user_id, [reply("That hand-over task is no longer on the list.")])
        return
    words = "done" if status == "done" else "open"
    messages = await deps.router.run(
        asker.context(deps), "cadence", f"handoff {task.key} {words}", raw=f"/cadence handoff {task.key} {words}"
    )
    async with deps.db.session() as session:
        after = await session.get(HandoffTask, task.id)
    if after is not None and after.status == status:
        await _replace(respond, body, action, f"✓ {task.title}: {status} (by {_name(asker)})")
    else:
        await _say(client, body, respond, asker.user_id, messages)
    await _refresh_home(deps, client, asker, body)


async def _handoff_assign(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: AsyncRespond,
) -> None:
    """Assign needs a name, so it answers with the command to type."""
    async with deps.db.session() as session:
        task = await session.get(HandoffTask, int(value_of(action)))
    if task is None or task.engagement_id != asker.engagement.id:
        await _say(client, body, respond, asker.user_id, [reply("That hand-over task is no longer on the list.")])
        return
    await _say(
        client,
        body,
        respond,
        asker.user_id,
        [reply(f"Who takes over “{task.title}”? Type /cadence handoff {task.key} to=@name")],
    )


async def _action_done(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: AsyncRespond,
) -> None:
    """Done #12: `/pipeline done 12`, and the button gives way to a line saying so."""
    item_id = int(value_of(action))
    messages = await deps.router.run(
        asker.context(deps), "pipeline", f"done {item_id}", raw=f"/pipeline done {item_id}"
    )
    async with deps.db.session() as session:
        item = await session.get(ActionItem, item_id)
    if item is not None and item.status == "done" and body.get("message"):
        await _replace(respond, body, action, f"✓ Done: #{item_id} {item.text} (by {_name(asker)})")
    else:
        await _say(client, body, respond, asker.user_id, messages)
    await _refresh_home(deps, client, asker, body)


async def _add_action(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: AsyncRespond,
) -> None:
    async def say(line: str) -> None:
        await _say(client, body, respond, asker.user_id, [reply(line)])

    trigger = str(body.get("trigger_id") or "")
    await views.open_action_item_form(deps, client, asker, trigger, say, int(value_of(action)), views.origin(body))


async def _run_command(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: AsyncRespond,
) -> None:
    """A button or option that carries its command: run it as if typed."""
    command = value_of(action)
    messages = await deps.router.handle_text(asker.context(deps), command)
    await _say(client, body, respond, asker.user_id, messages)
    await _refresh_home(deps, client, asker, body)


async def _any_command(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: AsyncRespond,
) -> None:
    if COMMAND.match(value_of(action)):
        await _run_command(deps, client, asker, body, action, respond)
        return
    name = base_action_id(str(action.get("action_id")))
    await _say(
        client,
        body,
        respond,
        asker.user_id,
        [reply(f"That button ({name}) doesn't work in Slack yet; type the command it stands for instead.")],
    )


def _name(asker: Who) -> str:
    return asker.person.name if asker.person else "someone"


async def _audit(deps: SlackDeps, asker: Who, action: str, outcome: str, target: str) -> None:
    async with deps.db.session() as session:
        audit.record(
            session,
            at=deps.clock.now(),
            channel="slack",
            action=action,
            outcome=outcome,
            engagement_id=asker.engagement.id,
            actor_id=asker.person.id if asker.person else None,
            actor_ref=f"slack:{asker.user_id}",
            target=target,
            detail={"via": "button"},
        )
