"""Buttons and menus in Bot messages and on the Home tab.

The renderer suffixes action ids for uniqueness (`deal_confirm:12`), so listeners match the model's id
with `action_pattern`. A button's `value` is what the model put there: a deal id (`deal_update`,
`deal_confirm`), a debrief id (`debrief_open`), `<id>:<status>` (`deliverable_status`, `handoff_status`),
or the command itself (`run_command`, the options of a debrief `Choice`). Anything else whose value is a
command runs through the router like typed text, so a new button with a command needs no listener.
A status button, once it worked, is replaced in its message by a line saying what was done, so the
message shows the state rather than inviting a second tap. What each button does is decided in
`cadences.button_actions`, as for Teams; here it becomes Slack's answers and message updates.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.listeners import home, views
from bot.slack.listeners.requests import NOT_LINKED, Who, answer, direct, ids, who
from bot.slack.render import JSONDict, action_pattern, base_action_id, escape
from cadences import button_actions
from cadences.button_actions import StatusChange
from cadences.commands import CommandRouter
from cadences.context import Context
from cadences.deals import DealError, not_in_engagement
from cadences.messages import Message, reply

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps

COMMAND = re.compile(r"^/[a-z]")


@dataclass(frozen=True)
class Press:
    """A button or menu used in Slack by `asker`: what a handler acts on, and the ways to answer."""

    deps: SlackDeps
    client: AsyncWebClient
    asker: Who
    body: dict[str, Any]
    action: dict[str, Any]
    respond: AsyncRespond

    @property
    def ctx(self) -> Context:
        return self.asker.context(self.deps)

    @property
    def value(self) -> str:
        """A button's value, or a menu's selected option's."""
        return value_of(self.action)

    @property
    def trigger(self) -> str:
        """The trigger id a modal opens with."""
        return str(self.body.get("trigger_id") or "")

    async def say(self, messages: list[Message]) -> None:
        """Answer in the conversation of the message (ephemerally), or in the DM for a Home tab button."""
        await _say(self.client, self.body, self.respond, self.asker.user_id, messages)

    async def tell(self, line: str) -> None:
        await self.say([reply(line)])

    async def replace(self, line: str) -> None:
        """Put `line` in place of the used button's row in its message."""
        updated = mark_done(self.body, self.action, line)
        if updated is not None and self.respond.response_url:
            await self.respond(text=updated["text"], blocks=updated["blocks"], replace_original=True)

    async def refresh_home(self) -> None:
        if (self.body.get("view") or {}).get("type") == "home":
            await home.publish(self.deps, self.client, self.asker)


Handler = Callable[[Press], Awaitable[None]]


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
        "deliverable_status": _status_button(button_actions.deliverable_status),
        "handoff_status": _status_button(button_actions.handoff_status),
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
    await handler(Press(deps, client, asker, body, action, respond))


def value_of(action: dict[str, Any]) -> str:
    """A button's value, or a menu's selected option's."""
    return str(action.get("value") or (action.get("selected_option") or {}).get("value") or "")


async def _say(
    client: AsyncWebClient, body: dict[str, Any], respond: AsyncRespond, user_id: str, messages: list[Message]
) -> None:
    if respond.response_url:
        await answer(respond, messages)
    else:
        await direct(client, user_id, messages)


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


# --- handlers -------------------------------------------------------------------------------------


async def _deal_update(press: Press) -> None:
    """Update: the deal form, filled in with the deal's values."""
    deal_id = int(press.value)
    meta = views.origin(press.body)
    await views.open_deal_form(
        press.deps, press.client, press.asker, press.trigger, press.tell, deal_id=deal_id, meta=meta
    )


async def _deal_confirm(press: Press) -> None:
    """Still accurate: recorded, and the nudge shows "✓ Still accurate" for that deal instead of its buttons."""
    ctx, deal_id = press.ctx, int(press.value)
    if press.asker.person is None:
        await press.tell(not_in_engagement(ctx))
        return
    try:
        line = await button_actions.still_accurate(ctx, deal_id, "button")
    except DealError as exc:
        await press.tell(exc.message)
        return
    await press.replace(line)
    await press.refresh_home()


async def _debrief_open(press: Press) -> None:
    meta = views.origin(press.body)
    await views.open_debrief_form(
        press.deps, press.client, press.asker, press.trigger, press.tell, int(press.value), meta
    )


async def _settle(press: Press, change: StatusChange) -> None:
    """The used button gives way to the line saying what was done; else the command's answer is shown."""
    if change.done is not None:
        await press.replace(change.done)
    else:
        await press.say(change.messages)
    await press.refresh_home()


def _status_button(change_status: Callable[[Context, CommandRouter, str], Awaitable[StatusChange]]) -> Handler:
    """A check-in's status button (`/cadence deliverable <key> status=<status>`) or a hand-over task's
    Mark done (`/cadence handoff <key> done`): `change_status` runs the command."""

    async def on_press(press: Press) -> None:
        try:
            change = await change_status(press.ctx, press.deps.router, press.value)
        except DealError as exc:
            await press.tell(exc.message)
            return
        await _settle(press, change)

    return on_press


async def _handoff_assign(press: Press) -> None:
    """Assign needs a name, so it answers with the command to type."""
    try:
        task = await button_actions.handoff_task(press.ctx, int(press.value))
    except DealError as exc:
        await press.tell(exc.message)
        return
    await press.tell(f"Who takes over “{task.title}”? Type /cadence handoff {task.key} to=@name")


async def _action_done(press: Press) -> None:
    """Done #12: `/pipeline done 12`, and the button gives way to a line saying so."""
    change = await button_actions.action_done(press.ctx, press.deps.router, press.value)
    await _settle(press, change if press.body.get("message") else replace(change, done=None))


async def _add_action(press: Press) -> None:
    meta = views.origin(press.body)
    await views.open_action_item_form(
        press.deps, press.client, press.asker, press.trigger, press.tell, int(press.value), meta
    )


async def _run_command(press: Press) -> None:
    """A button or option that carries its command: run it as if typed."""
    messages = await press.deps.router.handle_text(press.ctx, press.value)
    await press.say(messages)
    await press.refresh_home()


async def _any_command(press: Press) -> None:
    if COMMAND.match(press.value):
        await _run_command(press)
        return
    name = base_action_id(str(press.action.get("action_id")))
    await press.tell(f"That button ({name}) doesn't work in Slack yet; type the command it stands for instead.")
