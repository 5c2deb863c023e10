"""What the buttons on ritual messages do, whichever platform they are pressed on: "Still accurate" on a
deal, and the status buttons of check-ins, hand-over tasks and action items.

A status button stands for a command (`/cadence deliverable <key> status=...`, `/cadence handoff <key>
done`, `/pipeline done <id>`), run through the router as the person who pressed it, so its rules and its
audit are the command's. Once the status is reached, the platform replaces the button with a line saying
what was done (`StatusChange.done`), so the message shows the state rather than inviting a second tap.
"""

from __future__ import annotations

from dataclasses import dataclass

from cadences import deal_events, forms
from cadences.commands import CommandRouter
from cadences.context import Context
from cadences.deals import DealError, confirm_deal
from cadences.messages import Message
from storage.models import ActionItem, HandoffTask, PlanDeliverable


@dataclass(frozen=True)
class StatusChange:
    """What a status button did: the command's answer, the id of what it changed (to find its buttons),
    and — when the status was reached — the line that takes the button's place."""

    messages: list[Message]
    target_id: int
    done: str | None


def _by(ctx: Context) -> str:
    return ctx.actor.name if ctx.actor else "someone"


async def still_accurate(ctx: Context, deal_id: int, via: str) -> str:
    """Confirm the deal is up to date as `ctx.actor` (pressed on a `via` element: "button", "card") and
    say so in a line. Audited either way; raises `DealError` when refused."""
    target = f"deal:{deal_id}"
    try:
        outcome = await confirm_deal(ctx, deal_id)
    except DealError as exc:
        await forms.record(ctx, "deal.confirm", exc.outcome, target, {"via": via})
        raise
    await forms.record(ctx, "deal.confirm", "ok", target, {"via": via})
    await deal_events.publish(ctx, outcome)
    return f"✓ Still accurate — {outcome.deal.name}, confirmed by {_by(ctx)}"


async def deliverable_status(ctx: Context, router: CommandRouter, value: str) -> StatusChange:
    """A check-in's status button (`<deliverable id>:<status>`). Raises `DealError` when the deliverable
    has left the plan."""
    row_id, _, status = value.partition(":")
    async with ctx.db.session() as session:
        row = await session.get(PlanDeliverable, int(row_id))
    if row is None or row.engagement_id != ctx.engagement.id:
        raise DealError("That deliverable is no longer in the plan.")
    args = f"deliverable {row.key} status={status}"
    messages = await router.run(ctx, "cadence", args, raw=f"/cadence {args}")
    async with ctx.db.session() as session:
        after = await session.get(PlanDeliverable, row.id)
    reached = after is not None and after.status == status
    done = f"✓ {row.title}: {status.replace('_', ' ')} (by {_by(ctx)})" if reached else None
    return StatusChange(messages, row.id, done)


async def handoff_status(ctx: Context, router: CommandRouter, value: str) -> StatusChange:
    """A hand-over task's Mark done (`<task id>:<status>`). Raises `DealError` when the task has left the
    list."""
    task_id, _, status = value.partition(":")
    task = await handoff_task(ctx, int(task_id))
    args = f"handoff {task.key} {'done' if status == 'done' else 'open'}"
    messages = await router.run(ctx, "cadence", args, raw=f"/cadence {args}")
    async with ctx.db.session() as session:
        after = await session.get(HandoffTask, task.id)
    reached = after is not None and after.status == status
    return StatusChange(messages, task.id, f"✓ {task.title}: {status} (by {_by(ctx)})" if reached else None)


async def handoff_task(ctx: Context, task_id: int) -> HandoffTask:
    """A hand-over task of the engagement; raises `DealError` when it has left the list."""
    async with ctx.db.session() as session:
        task = await session.get(HandoffTask, task_id)
    if task is None or task.engagement_id != ctx.engagement.id:
        raise DealError("That hand-over task is no longer on the list.")
    return task


async def action_done(ctx: Context, router: CommandRouter, value: str) -> StatusChange:
    """An action item's Done (`<item id>`): `/pipeline done <id>`."""
    item_id = int(value)
    messages = await router.run(ctx, "pipeline", f"done {item_id}", raw=f"/pipeline done {item_id}")
    async with ctx.db.session() as session:
        item = await session.get(ActionItem, item_id)
    done = f"✓ Done: #{item_id} {item.text} (by {_by(ctx)})" if item is not None and item.status == "done" else None
    return StatusChange(messages, item_id, done)
