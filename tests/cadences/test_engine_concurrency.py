"""The engine sending several deliveries at once (`concurrency` > 1): every delivery still goes exactly
once, sends to one recipient keep their order, a thread reply still waits for its parent, and one
engagement never has more than `per_engagement` sends in flight. No sleeping: the port holds its sends
at a gate that opens when the expected number are in flight (a timeout guards against a hang)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from cadences.engine import Engine
from cadences.messages import Message
from cadences.ports import SentRef, Target
from cadences.rituals import Due, EngagementFacts, Outgoing, Recipient, RitualRun

CHANNELS = 6


class FanOut:
    """Per channel: a first post, a second one, and a reply in the first one's thread (planned in that
    order across channels, so the first claim holds the first posts of four channels)."""

    name = "fanout"

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        return []

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        where = [Recipient.channel(f"c{n}") for n in range(CHANNELS)]
        out = [Outgoing(where[n], f"first-{n}", Message(text=f"c{n} first")) for n in range(CHANNELS)]
        out += [Outgoing(where[n], f"second-{n}", Message(text=f"c{n} second")) for n in range(CHANNELS)]
        out += [
            Outgoing(where[n], f"reply-{n}", Message(text=f"c{n} reply"), thread_of=f"first-{n}")
            for n in range(CHANNELS)
        ]
        return out


class DmsThenPosts:
    """A DM to everyone, then three channel posts (planned in that order)."""

    name = "dms"

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        return []

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        out = [Outgoing(Recipient.person(p.id), "dm", Message(text=f"Hi {p.name}")) for p in run.facts.people]
        return out + [Outgoing(Recipient.channel(f"c{n}"), "post", Message(text=f"c{n}")) for n in range(3)]


@dataclass
class GatedPort:
    """Records sends; each send waits at a gate that opens once `open_at` sends are in flight."""

    open_at: int = 1
    platform: str = "gated"
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    in_flight: int = 0
    most: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, target: Target, message: Message, *, delivery_key: str) -> SentRef:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight >= self.open_at:
            self.gate.set()
        await self.gate.wait()
        self.in_flight -= 1
        self.sent.append((str(target.channel or target.person_name), message.text, delivery_key))
        return SentRef(
            platform=self.platform,
            conversation=str(target.channel),
            message_id=str(len(self.sent)),
            thread_id=target.thread.message_id if target.thread else None,
        )

    async def find_sent(self, target: Target, delivery_key: str) -> SentRef | None:
        return None

    async def update(self, ref: SentRef, message: Message) -> None:
        return None


def engine(world: Any, port: GatedPort, worker: str, **kwargs: Any) -> Engine:
    return Engine(world.db, world.clock, [FanOut(), DmsThenPosts()], lambda _e: port, worker=worker, **kwargs)


async def test_sends_overlap_up_to_the_engagement_cap_in_order_per_recipient(world: Any) -> None:
    port = GatedPort(open_at=4)
    fan = engine(world, port, "w1", concurrency=8, per_engagement=4)
    await fan.trigger(world.engagement, "fanout", "p1", deliver=False)
    async with asyncio.timeout(30):
        assert await fan.deliver() == (3 * CHANNELS, 0)
    assert port.most == 4  # four at once (the gate proves they overlapped), never more for one engagement
    for n in range(CHANNELS):
        assert [text for channel, text, _ in port.sent if channel == f"c{n}"] == [
            f"c{n} first",
            f"c{n} second",
            f"c{n} reply",
        ]


async def test_channel_posts_do_not_queue_behind_an_engagements_dms(world: Any) -> None:
    """Two DMs and two channel posts at once: the cap counts DMs and channel posts apart (a platform
    limits DM opens and channel posts apart), so the posts planned after five DMs go out beside them."""
    port = GatedPort(open_at=4)
    fan = engine(world, port, "w1", concurrency=10, per_engagement=2)
    await fan.trigger(world.engagement, "dms", "p1", deliver=False)
    async with asyncio.timeout(30):
        assert await fan.deliver() == (5 + 3, 0)
    assert port.most == 4
    everyone = ["Dana Whitfield", "Jordan Lee", "Maya Chen", "Priya Natarajan", "Sam Okafor"]
    assert sorted(where for where, _, _ in port.sent) == sorted([*everyone, "c0", "c1", "c2"])


async def test_channel_posts_are_claimed_before_dms_planned_earlier(world: Any) -> None:
    """With fewer slots than messages, a channel post (the review, to a meeting that is starting) does not
    wait for the DMs planned before it: the first two slots go to channel posts."""
    port = GatedPort(open_at=2)
    fan = engine(world, port, "w1", concurrency=2, per_engagement=5)
    await fan.trigger(world.engagement, "dms", "p1", deliver=False)
    async with asyncio.timeout(30):
        assert await fan.deliver() == (5 + 3, 0)
    assert sorted(where for where, _, _ in port.sent[:2]) == ["c0", "c1"]


@pytest.mark.parametrize("per_engagement", [1, 3])
async def test_two_concurrent_engines_racing_send_each_delivery_once(world: Any, per_engagement: int) -> None:
    port = GatedPort()
    engines = [engine(world, port, f"w{i}", concurrency=5, per_engagement=per_engagement) for i in range(2)]
    await engines[0].trigger(world.engagement, "fanout", "p1", deliver=False)
    async with asyncio.timeout(30):
        results = await asyncio.gather(*(e.deliver() for e in engines))
    assert sum(sent for sent, _ in results) == 3 * CHANNELS
    keys = [key for _, _, key in port.sent]
    assert len(keys) == len(set(keys)) == 3 * CHANNELS
