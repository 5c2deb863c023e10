"""Which deal a review thread reply is about (SQLite and PostgreSQL): its thread's deal, or the deal a
reply under the review post names first — exactly, or by the one name it starts — and nothing guessed.
The whole path (a real review, a reply, the note recorded) is in tests/bot/slack and tests/bot/teams."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cadences.thread_replies import deal_of, named_deal
from storage.models import Deal, Delivery


async def deal_id(world: Any, name: str) -> int:
    async with world.db.session() as session:
        return (await session.execute(select(Deal.id).where(Deal.name == name))).scalar_one()


def test_a_sent_message_is_about_the_deal_of_its_subject() -> None:
    assert deal_of(Delivery(subject="deal:12")) == 12
    assert deal_of(Delivery(subject="deal:x")) is None
    assert deal_of(Delivery(subject="review")) is None and deal_of(Delivery()) is None


async def test_a_reply_under_the_review_post_names_its_deal_first(world: Any) -> None:
    for name in ("Acme", "Acme Labs", "Globex", "Initech"):
        await world.say("jordan", f'/deal new "{name}" amount=10k close=eoq')
    acme, labs, globex, initech = [await deal_id(world, n) for n in ("Acme", "Acme Labs", "Globex", "Initech")]
    post = Delivery(id=1, subject=None)
    sent = [post] + [Delivery(id=10 + i, parent_id=1, subject=f"deal:{d}") for i, d in enumerate((acme, labs, globex))]
    sent.append(Delivery(id=20, parent_id=2, subject=f"deal:{initech}"))  # another review's thread
    async with world.db.session() as session:
        assert await named_deal(session, sent, post, "acme:  champion moved ") == (acme, "champion moved")
        assert await named_deal(session, sent, post, "Acme  labs: pricing sent") == (labs, "pricing sent")
        assert await named_deal(session, sent, post, "glo: action: send MSA") == (globex, "action: send MSA")
        assert await named_deal(session, sent, post, "acm: which one?") == (None, "acm: which one?")  # two start so
        assert await named_deal(session, sent, post, "Initech: not this review") == (None, "Initech: not this review")
        assert await named_deal(session, sent, post, "no deal named") == (None, "no deal named")
        assert await named_deal(session, sent, post, ": empty name") == (None, ": empty name")
