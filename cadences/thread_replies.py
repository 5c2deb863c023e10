"""A reply in a pipeline review thread, on any platform: which deal it is about, and recording it.

The deal is the subject of the thread's parent message (`deal:<id>`, a deal's own thread message). Slack
and Teams threads do not nest, so a reply under the review post itself names its deal first ("Acme:
champion moved to the CFO office"); only the deals of that review's thread are candidates, so a short
name is enough and nothing else is guessed. What the reply says is recorded by
`cadences.review_commands.record_note_from_thread` (a note, an action item or a decision).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from cadences.context import Context
from cadences.messages import Message, reply
from cadences.pipeline_review import REVIEW
from cadences.review_commands import record_note_from_thread
from storage import chat_workspaces
from storage.models import Deal, Delivery

NAME_HINT = (
    "To record this on a deal, start the reply with the deal's name, e.g. “Acme: champion moved to the CFO "
    "office” (or “Acme: action: send pricing by Dec 4”)."
)


def deal_of(delivery: Delivery) -> int | None:
    """The deal a sent message is about (`deal:<id>` subject), if any."""
    subject = delivery.subject or ""
    return int(subject.split(":", 1)[1]) if subject.startswith("deal:") and subject[5:].isdigit() else None


async def named_deal(
    session: AsyncSession, sent: Sequence[Delivery], parent: Delivery, text: str
) -> tuple[int | None, str]:
    """(deal, what to record) of a reply under the review post, which names its deal first: "<deal name>:
    what to record" — an exact name, else the one name it starts; (None, text) otherwise."""
    head, colon, rest = text.partition(":")
    if not colon or not head.strip():
        return None, text
    ids = [d for d in (deal_of(x) for x in sent if x.parent_id == parent.id) if d is not None]
    names = {deal.id: deal.name for deal in [await session.get(Deal, i) for i in ids] if deal is not None}
    typed = " ".join(head.split()).casefold()
    exact = [i for i, name in names.items() if name.casefold() == typed]
    starts = [i for i, name in names.items() if name.casefold().startswith(typed)]
    found = exact or starts
    return (found[0], rest.strip()) if len(found) == 1 else (None, text)


async def record_reply(ctx: Context, is_parent: Callable[[Delivery], bool], text: str) -> list[Message] | None:
    """Record `text`, a reply by `ctx.actor` in a thread, on the deal it is about, and answer them; None
    when the thread is not one of the review's on this platform (`ctx.channel`). `is_parent` tells the
    platform's own message ids apart: whether a sent message is the thread's parent."""
    async with ctx.db.session() as session:
        sent = await chat_workspaces.sent_messages(session, ctx.engagement.id, ctx.channel, REVIEW)
        parent = next((d for d in sent if is_parent(d)), None)
        if parent is None:
            return None
        deal_id = deal_of(parent)
        if deal_id is None:
            deal_id, text = await named_deal(session, sent, parent, text)
    if deal_id is None:
        return [reply(NAME_HINT)]
    return await record_note_from_thread(ctx, deal_id, text)
