"""What every chat form shares, whichever platform draws it (a Slack modal, a Teams card): who may open
it, and the audit row of each submission.

A form is another way to run a command, so it answers a stranger and a person without the right the
same words the command would, and every submitted change is audited with what was typed, like a
command (the router audits commands; forms call the services directly, so they audit here).
"""

from __future__ import annotations

from typing import Any

from cadences.authz import Action, allowed, denial
from cadences.context import Context
from cadences.deals import DealError, not_in_engagement
from storage import audit
from storage.models import Person


def opener(ctx: Context, action: Action | None = None, *, owns: bool = False) -> Person:
    """The person who may open a form for `action` (any person of the engagement when None). Raises
    `DealError` with the sentence to tell anyone else: not part of the engagement, or not allowed."""
    if ctx.actor is None:
        raise DealError(not_in_engagement(ctx), outcome="denied")
    if action is not None and not allowed(ctx.actor, action, owns=owns):
        raise DealError(denial(action), outcome="denied")
    return ctx.actor


async def record(ctx: Context, action: str, outcome: str, target: str | None, detail: dict[str, Any]) -> None:
    """One audit row for a change `ctx.actor` made through a form or a button rather than a command:
    accepted (`ok`) or why not."""
    async with ctx.db.session() as session:
        audit.record(
            session,
            at=ctx.now(),
            channel=ctx.channel,
            action=action,
            outcome=outcome,
            engagement_id=ctx.engagement.id,
            actor_id=ctx.actor.id if ctx.actor else None,
            actor_ref=ctx.actor_ref,
            target=target,
            detail=detail,
        )
