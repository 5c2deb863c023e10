"""SlackPort against the fake Slack Web API: addressing (DMs, channels, threads), the delivery key in
message metadata and `find_sent`, updates, image uploads, 429 storms, permanent errors, pacing, and the
real cadence engine delivering through Slack exactly once across a crash.

Nothing sleeps on the wall clock: the pacer runs on fake time, and slack_sdk's retry handlers sleep
through a recorder (`retry_sleeps`) instead of `asyncio.sleep`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import async_handler, builtin_async_handlers
from sqlalchemy import select

from bot.slack import pacing
from bot.slack.pacing import ChannelPacer
from bot.slack.port import (
    EVENT_TYPE,
    PERMANENT_ERRORS,
    ListedChannels,
    SlackPort,
    create_client,
    stored_attachments,
)
from bot.slack.render import render_message
from cadences.attachments import store_attachment
from cadences.engine import Engine
from cadences.messages import Actions, Button, Image, Message, Paragraph
from cadences.ports import DeliveryFailed, SentRef, Target
from cadences.rituals import Due, EngagementFacts, Outgoing, Recipient, RitualRun, daily
from storage.models import Delivery, Role
from support.fake_slack import FakeChannel, FakeSlack, FakeUser

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class FakeTime:
    """Monotonic time that moves only when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """What slack_sdk's retry handlers would have slept (Retry-After plus jitter), without sleeping."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    fake_asyncio = SimpleNamespace(sleep=record)
    monkeypatch.setattr(builtin_async_handlers, "asyncio", fake_asyncio)
    monkeypatch.setattr(async_handler, "asyncio", fake_asyncio)
    monkeypatch.setattr(pacing, "asyncio", _AsyncioSleepingInto(record))  # our paced 429 retry
    return slept


class _AsyncioSleepingInto:
    """`asyncio` for the pacing module, except that `sleep` records instead of waiting."""

    def __init__(self, record: Any) -> None:
        self.sleep = record

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def make_port(fake: FakeSlack, fake_time: FakeTime, **kwargs: Any) -> SlackPort:
    client = create_client(fake.token, base_url=fake.api_url, max_retry_count=kwargs.pop("max_retry_count", 3))
    pacer = ChannelPacer(monotonic=fake_time.monotonic, sleep=fake_time.sleep)
    return SlackPort(client, workspace=fake.team_id, pacer=pacer, **kwargs)


@pytest.fixture
def port(fake_slack: FakeSlack, fake_time: FakeTime) -> SlackPort:
    return make_port(fake_slack, fake_time)


def person(name: str = "Jordan Lee", slack: str | None = "U0JORDAN") -> Target:
    identities = {"console": name.split()[0].lower()} | ({"slack": slack} if slack else {})
    return Target(engagement_id=1, kind="person", person_id=4, person_name=name, identities=identities)


def channel(name: str, thread: SentRef | None = None) -> Target:
    return Target(engagement_id=1, kind="channel", channel=name, thread=thread)


def hello(text: str = "Hello") -> Message:
    return Message(text=text, blocks=[Paragraph(text=text)])


# --- addressing -------------------------------------------------------------------------------------


async def test_a_dm_opens_the_conversation_once_per_user(fake_slack: FakeSlack, port: SlackPort) -> None:
    first = await port.send(person(), hello("one"), delivery_key="k1")
    second = await port.send(person(), hello("two"), delivery_key="k2")
    assert len(fake_slack.calls_to("conversations.open")) == 1
    assert fake_slack.calls_to("conversations.open")[0].body["users"] == "U0JORDAN"
    assert first == SentRef(platform="slack", conversation="D0JORDAN", message_id=first.message_id, thread_id=None)
    assert second.conversation == "D0JORDAN" and second.message_id != first.message_id
    assert [m.text for m in fake_slack.posts("D0JORDAN")] == ["one", "two"]


async def test_a_channel_post_resolves_the_name_once_and_carries_the_rendered_blocks(
    fake_slack: FakeSlack, port: SlackPort
) -> None:
    message = Message(text="Review <!channel>", blocks=[Paragraph(text="Deal <!channel> & co")])
    ref = await port.send(channel("pipeline-review"), message, delivery_key="review/2026-W48")
    await port.send(channel("#pipeline-review"), hello(), delivery_key="again")
    assert len(fake_slack.calls_to("conversations.list")) == 1
    [post, _] = fake_slack.calls_to("chat.postMessage")
    rendered = render_message(message)
    assert post.body["channel"] == "C0REVIEW" and post.token == "xoxb-test"
    assert post.body["text"] == rendered["text"] == "Review &lt;!channel&gt;"
    assert post.body["blocks"] == rendered["blocks"]
    assert post.body["unfurl_links"] is False and "thread_ts" not in post.body
    assert ref == SentRef(platform="slack", conversation="C0REVIEW", message_id=ref.message_id)


async def test_a_channel_given_by_id_needs_no_lookup(fake_slack: FakeSlack, port: SlackPort) -> None:
    ref = await port.send(channel("C0GENERAL"), hello(), delivery_key="k")
    assert ref.conversation == "C0GENERAL" and fake_slack.calls_to("conversations.list") == []


async def test_a_thread_reply_posts_under_its_parent(fake_slack: FakeSlack, port: SlackPort) -> None:
    parent = await port.send(channel("pipeline-review"), hello("Review"), delivery_key="post")
    reply = await port.send(channel("pipeline-review", thread=parent), hello("Acme"), delivery_key="thread")
    last = fake_slack.calls_to("chat.postMessage")[-1]
    assert last.body["channel"] == "C0REVIEW" and last.body["thread_ts"] == parent.message_id
    assert reply.thread_id == parent.message_id and reply.conversation == "C0REVIEW"


async def test_an_unknown_channel_is_a_permanent_failure(fake_slack: FakeSlack, port: SlackPort) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(channel("nowhere"), hello(), delivery_key="k")
    assert failed.value.permanent and "#nowhere" in failed.value.reason
    assert fake_slack.calls_to("chat.postMessage") == []


async def test_a_person_without_a_slack_id_is_a_permanent_failure(fake_slack: FakeSlack, port: SlackPort) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(person(slack=None), hello(), delivery_key="k")
    assert failed.value.permanent
    assert failed.value.reason == "Jordan Lee has no Slack user id in the engagement file"
    assert fake_slack.calls == []


async def test_the_channel_list_is_paged_and_reloaded_on_a_miss_at_most_once_a_minute(
    fake_slack: FakeSlack, fake_time: FakeTime
) -> None:
    for i in range(250):
        fake_slack.add_channel(FakeChannel(f"C1{i:05d}", f"team-{i}"))
    directory = ListedChannels(
        create_client(fake_slack.token, base_url=fake_slack.api_url), monotonic=fake_time.monotonic
    )
    assert await directory.channel_id("team-249") == "C100249"
    assert len(fake_slack.calls_to("conversations.list")) == 2  # 253 channels, 200 a page
    fake_slack.add_channel(FakeChannel("C0NEW", "brand-new"))
    assert await directory.channel_id("brand-new") is None  # loaded just now: no second load yet
    fake_time.now += 60
    assert await directory.channel_id("brand-new") == "C0NEW"
    assert await directory.channel_id("#standup") == "C0STANDUP"
    assert len(fake_slack.calls_to("conversations.list")) == 4


# --- metadata, find_sent, update --------------------------------------------------------------------


async def test_the_delivery_key_travels_in_metadata_and_find_sent_finds_it(
    fake_slack: FakeSlack, port: SlackPort
) -> None:
    target = channel("standup")
    ref = await port.send(target, hello(), delivery_key="acme-test/standup/2026-11-25/channel:standup/post")
    await port.send(target, hello("later"), delivery_key="other-later")
    post = fake_slack.calls_to("chat.postMessage")[0]
    assert post.body["metadata"] == {
        "event_type": EVENT_TYPE,
        "event_payload": {"delivery_key": "acme-test/standup/2026-11-25/channel:standup/post"},
    }
    assert await port.find_sent(target, "acme-test/standup/2026-11-25/channel:standup/post") == ref
    assert await port.find_sent(target, "never-sent") is None
    history = fake_slack.calls_to("conversations.history")
    assert len(history) == 2
    assert history[0].body == {"channel": "C0STANDUP", "limit": "100", "include_all_metadata": "1"}


async def test_find_sent_in_a_thread_reads_the_replies(fake_slack: FakeSlack, port: SlackPort) -> None:
    parent = await port.send(channel("standup"), hello(), delivery_key="post")
    target = channel("standup", thread=parent)
    reply = await port.send(target, hello("reply"), delivery_key="reply-key")
    assert await port.find_sent(target, "reply-key") == reply
    assert await port.find_sent(target, "not-in-this-thread") is None
    [call, *_] = fake_slack.calls_to("conversations.replies")
    assert call.body["ts"] == parent.message_id and call.body["include_all_metadata"] == "1"


async def test_find_sent_in_a_dm(fake_slack: FakeSlack, fake_time: FakeTime) -> None:
    ref = await make_port(fake_slack, fake_time).send(person(), hello(), delivery_key="dm-key")
    restarted = make_port(fake_slack, fake_time)  # a new process: nothing cached
    assert await restarted.find_sent(person(), "dm-key") == ref
    assert len(fake_slack.calls_to("conversations.open")) == 2


async def test_find_sent_answers_none_when_the_conversation_is_gone_and_raises_when_slack_is_down(
    fake_slack: FakeSlack, port: SlackPort
) -> None:
    assert await port.find_sent(channel("nowhere"), "k") is None
    assert await port.find_sent(person(slack=None), "k") is None
    fake_slack.fail("conversations.history", "internal_error", status=500)
    with pytest.raises(DeliveryFailed) as failed:
        await port.find_sent(channel("standup"), "k")
    assert not failed.value.permanent


async def test_update_replaces_the_message_in_place(fake_slack: FakeSlack, port: SlackPort) -> None:
    ref = await port.send(person(), hello("Please update Acme"), delivery_key="nudge")
    await port.update(ref, Message(text="Thanks — Acme is up to date", blocks=[Paragraph(text="Done <3")]))
    [call] = fake_slack.calls_to("chat.update")
    assert call.body["channel"] == "D0JORDAN" and call.body["ts"] == ref.message_id
    stored = fake_slack.message("D0JORDAN", ref.message_id)
    assert stored is not None and stored.edited == 1
    assert stored.text == "Thanks — Acme is up to date"
    assert stored.blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": "Done &lt;3"}}]
    assert stored.metadata == {"event_type": EVENT_TYPE, "event_payload": {"delivery_key": "nudge"}}


async def test_update_of_a_deleted_message_fails_permanently(fake_slack: FakeSlack, port: SlackPort) -> None:
    fake_slack.fail("chat.update", "channel_not_found")
    with pytest.raises(DeliveryFailed) as failed:
        await port.update(SentRef(platform="slack", conversation="C0GONE", message_id="1.2"), hello())
    assert failed.value.permanent


# --- multi-part messages and images -------------------------------------------------------------------


async def test_blocks_past_50_and_thread_replies_follow_in_the_thread(fake_slack: FakeSlack, port: SlackPort) -> None:
    message = Message(
        text="Review",
        blocks=[Paragraph(text=f"Deal {i}") for i in range(60)],
        thread=[hello("first reply"), hello("second reply")],
    )
    ref = await port.send(channel("pipeline-review"), message, delivery_key="review")
    posts = fake_slack.calls_to("chat.postMessage")
    assert len(posts) == 4
    assert len(posts[0].body["blocks"]) == 50 and "thread_ts" not in posts[0].body
    assert [len(p.body["blocks"]) for p in posts[1:]] == [11, 1, 1]
    assert all(p.body["thread_ts"] == ref.message_id and "metadata" not in p.body for p in posts[1:])
    assert [p.body["text"] for p in posts[1:]] == ["Review (continued)", "first reply", "second reply"]


async def test_a_failed_follow_up_does_not_fail_the_delivery(
    fake_slack: FakeSlack, port: SlackPort, caplog: pytest.LogCaptureFixture
) -> None:
    fake_slack.fail("chat.postMessage", "internal_error", after=1)
    message = Message(text="Review", blocks=[Paragraph(text="main")], thread=[hello("reply")])
    with caplog.at_level(logging.WARNING, logger="bot.slack.port"):
        ref = await port.send(channel("pipeline-review"), message, delivery_key="review")
    assert ref.conversation == "C0REVIEW"
    assert [m.text for m in fake_slack.posts()] == ["Review"]
    assert "follow-up of review" in caplog.text


async def test_an_image_is_uploaded_after_the_post_with_its_bytes(fake_slack: FakeSlack, fake_time: FakeTime) -> None:
    loaded: list[str] = []

    async def attachments(key: str) -> tuple[bytes, str, str] | None:
        loaded.append(key)
        return (PNG, "image/png", "pipeline.png")

    port = make_port(fake_slack, fake_time, attachments=attachments)
    message = Message(
        text="Weekly digest",
        blocks=[
            Paragraph(text="Pipeline is up 12%"),
            Image(key="digest/w48", alt_text="Pipeline by week", title="Trend"),
        ],
    )
    ref = await port.send(person("Sam Okafor", "U0SAM"), message, delivery_key="digest")
    assert loaded == ["digest/w48"]
    assert fake_slack.methods() == [
        "conversations.open",
        "chat.postMessage",
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]
    [file] = fake_slack.files.values()
    assert file.content == PNG and file.filename == "pipeline.png" and file.alt_txt == "Pipeline by week"
    assert file.title == "Trend" and file.channel == "D0SAM" and file.thread_ts is None
    post = fake_slack.calls_to("chat.postMessage")[0]
    assert post.body["blocks"][1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": "Image: Trend"}]}
    [shared] = [m for m in fake_slack.posts("D0SAM") if m.files]
    assert shared.ts > ref.message_id


async def test_an_image_without_stored_bytes_is_skipped_and_the_message_still_goes(
    fake_slack: FakeSlack, port: SlackPort
) -> None:
    message = Message(text="digest", blocks=[Image(key="missing", alt_text="chart")])
    await port.send(person(), message, delivery_key="k")
    assert fake_slack.calls_to("files.getUploadURLExternal") == [] and len(fake_slack.posts()) == 1


async def test_a_message_slack_cannot_show_fails_before_anything_is_posted(
    fake_slack: FakeSlack, port: SlackPort
) -> None:
    message = Message(text="x", blocks=[Actions(buttons=[Button(label="b", action_id="a", value="v" * 2001)])])
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(person(), message, delivery_key="k")
    assert failed.value.permanent and fake_slack.calls == []


# --- rate limits and errors ---------------------------------------------------------------------------


async def test_a_429_storm_delays_but_the_message_arrives_exactly_once(
    fake_slack: FakeSlack, port: SlackPort, retry_sleeps: list[float]
) -> None:
    fake_slack.rate_limit("chat.postMessage", retry_after=1, times=3)
    ref = await port.send(channel("standup"), hello(), delivery_key="storm")
    assert len(fake_slack.calls_to("chat.postMessage")) == 4  # three 429s, then the post
    assert [m.ts for m in fake_slack.posts()] == [ref.message_id]
    assert len(retry_sleeps) == 3 and all(1 <= s < 2 for s in retry_sleeps)  # Retry-After + jitter


async def test_a_429_that_outlasts_the_retries_is_transient_with_retry_after(
    fake_slack: FakeSlack, port: SlackPort
) -> None:
    fake_slack.rate_limit("chat.postMessage", retry_after=7, times=4)
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(channel("standup"), hello(), delivery_key="k")
    assert not failed.value.permanent and failed.value.retry_after == 7.0
    assert "ratelimited" in failed.value.reason and fake_slack.posts() == []


@pytest.mark.parametrize("code", sorted(PERMANENT_ERRORS))
async def test_permanent_errors_are_not_retried(fake_slack: FakeSlack, port: SlackPort, code: str) -> None:
    fake_slack.fail("chat.postMessage", code)
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(channel("standup"), hello(), delivery_key="k")
    assert failed.value.permanent and code in failed.value.reason
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


async def test_the_brief_s_never_retry_list_is_permanent() -> None:
    required = {"account_inactive", "channel_not_found", "is_archived", "not_in_channel", "token_revoked"}
    required |= {"invalid_auth", "user_not_found", "user_disabled", "cannot_dm_bot", "msg_too_long", "invalid_blocks"}
    assert required <= PERMANENT_ERRORS


async def test_real_slack_refusals_map_to_permanent_failures(fake_slack: FakeSlack, port: SlackPort) -> None:
    fake_slack.add_user(FakeUser("U0GONE", "Gone Person", "gone@testco.example", deleted=True))
    fake_slack.add_channel(FakeChannel("C0ARCHIVED", "old-review", is_archived=True))
    fake_slack.add_channel(FakeChannel("C0OUT", "elsewhere", is_member=False))
    cases = [
        (person("Gone Person", "U0GONE"), "user_disabled"),
        (person("Cadence", "U0CADENCE"), "cannot_dm_bot"),
        (person("Nobody", "U0NOBODY"), "user_not_found"),
        (channel("C0ARCHIVED"), "is_archived"),
        (channel("elsewhere"), "not_in_channel"),
    ]
    for target, code in cases:
        with pytest.raises(DeliveryFailed) as failed:
            await port.send(target, hello(), delivery_key="k")
        assert failed.value.permanent and code in failed.value.reason, (target, failed.value.reason)
    assert fake_slack.posts() == []


async def test_a_revoked_token_is_permanent(fake_slack: FakeSlack, fake_time: FakeTime) -> None:
    client = create_client("xoxb-revoked", base_url=fake_slack.api_url)
    port = SlackPort(
        client, workspace="T0TEST", pacer=ChannelPacer(monotonic=fake_time.monotonic, sleep=fake_time.sleep)
    )
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(channel("C0STANDUP"), hello(), delivery_key="k")
    assert failed.value.permanent and "invalid_auth" in failed.value.reason


async def test_server_errors_and_an_unreachable_slack_are_transient(fake_slack: FakeSlack, port: SlackPort) -> None:
    fake_slack.fail("chat.postMessage", "service_unavailable", status=503)
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(channel("standup"), hello(), delivery_key="k")
    assert not failed.value.permanent and failed.value.retry_after is None

    async with FakeSlack() as gone:
        url = gone.api_url
    unreachable = SlackPort(create_client("xoxb-test", base_url=url), workspace="T0TEST")
    with pytest.raises(DeliveryFailed) as failed:
        await unreachable.send(channel("C0STANDUP"), hello(), delivery_key="k")
    assert not failed.value.permanent and "unreachable" in failed.value.reason


# --- pacing -----------------------------------------------------------------------------------------


async def test_the_pacer_spaces_one_channel_a_second_apart_and_leaves_others_alone(fake_time: FakeTime) -> None:
    pacer = ChannelPacer(monotonic=fake_time.monotonic, sleep=fake_time.sleep)
    at: list[tuple[str, float]] = []
    for name in ["review", "review", "review", "general", "dm"]:
        await pacer.wait("T0TEST", name)
        at.append((name, fake_time.now))
    assert at == [("review", 0.0), ("review", 1.0), ("review", 2.0), ("general", 2.0), ("dm", 2.0)]
    await pacer.wait("T0OTHER", "review")  # the same channel name in another workspace is another channel
    assert fake_time.now == 2.0
    fake_time.now = 10.0
    await pacer.wait("T0TEST", "review")  # idle long enough: no wait
    assert fake_time.sleeps == [1.0, 1.0]


async def test_concurrent_posts_to_one_channel_reserve_successive_slots(fake_time: FakeTime) -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    pacer = ChannelPacer(monotonic=fake_time.monotonic, sleep=record)
    await asyncio.gather(*(pacer.wait("T", "review") for _ in range(3)), pacer.wait("T", "other"))
    assert sorted(slept) == [1.0, 2.0]


async def test_a_burst_allowance_lets_a_few_through_then_paces(fake_time: FakeTime) -> None:
    pacer = ChannelPacer(interval=1.0, burst=3, monotonic=fake_time.monotonic, sleep=fake_time.sleep)
    for _ in range(5):
        await pacer.wait("T", "review")
    assert fake_time.sleeps == [1.0, 1.0]


async def test_the_port_paces_posts_per_channel(fake_slack: FakeSlack, port: SlackPort, fake_time: FakeTime) -> None:
    for i in range(3):
        await port.send(channel("pipeline-review"), hello(f"r{i}"), delivery_key=f"r{i}")
    await port.send(person(), hello("dm"), delivery_key="dm")
    assert fake_time.sleeps == [1.0, 1.0] and fake_time.now == 2.0
    assert len(fake_slack.posts("C0REVIEW")) == 3 and len(fake_slack.posts("D0JORDAN")) == 1


# --- the engine through Slack -----------------------------------------------------------------------


class Kickoff:
    """Daily at 09:00: a channel post with a thread reply, a DM to each rep, and a chart DM to the founder."""

    name = "kickoff"

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        for day in daily(start, end, facts.tz):
            yield Due(self.name, day.isoformat(), facts.local(day, time(9)), timedelta(hours=4))

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        key = f"kickoff/{run.occurrence.period}/chart"
        await store_attachment(run.session, run.facts.id, key, PNG, mime="image/png", filename="chart.png", now=run.now)
        out = [
            Outgoing(Recipient.channel("standup"), "post", hello(f"Kickoff {run.occurrence.period}")),
            Outgoing(Recipient.channel("standup"), "thread", hello("details"), thread_of="post"),
        ]
        out += [Outgoing(Recipient.person(p.id), "dm", hello(f"Hi {p.name}")) for p in run.facts.with_role(Role.REP)]
        chart = Message(text="Your chart", blocks=[Image(key=key, alt_text="Pipeline", title="Pipeline")])
        out += [Outgoing(Recipient.person(p.id), "chart", chart) for p in run.facts.with_role(Role.FOUNDER)]
        return out


def at(day: str, hh: int) -> datetime:
    return datetime.fromisoformat(f"{day}T{hh:02d}:00:00-08:00").astimezone(UTC)


def engine_port(world: Any, fake: FakeSlack, fake_time: FakeTime) -> SlackPort:
    return make_port(fake, fake_time, attachments=stored_attachments(world.db))


def keyed_posts(fake: FakeSlack) -> list[str]:
    return [m.metadata["event_payload"]["delivery_key"] for m in fake.posts() if m.metadata]


async def test_the_engine_delivers_through_slack_with_keys_in_metadata(
    world: Any, fake_slack: FakeSlack, fake_time: FakeTime
) -> None:
    port = engine_port(world, fake_slack, fake_time)
    engine = Engine(world.db, world.clock, [Kickoff()], lambda _e: port, worker="w1")
    world.clock.set(at("2026-11-25", 9))
    report = await engine.tick()
    assert report.sent == 5 and report.failed == 0
    async with world.db.session() as session:
        rows = {(d.purpose, d.recipient): d for d in (await session.execute(select(Delivery))).scalars()}
    assert sorted(keyed_posts(fake_slack)) == sorted(d.key for d in rows.values())
    post = rows[("post", "channel:standup")]
    assert post.status == "sent" and post.platform == "slack" and post.ref is not None
    assert post.ref["conversation"] == "C0STANDUP"
    [reply] = [m for m in fake_slack.posts("C0STANDUP") if m.thread_ts]
    assert reply.thread_ts == post.ref["message_id"] and reply.text == "details"
    assert {m.channel for m in fake_slack.posts() if m.text.startswith("Hi ")} == {"D0JORDAN", "D0PRIYA"}
    [chart] = fake_slack.files.values()
    assert chart.content == PNG and chart.channel == "D0SAM" and chart.filename == "chart.png"


async def test_killed_between_post_and_record_the_engine_finds_the_post_and_does_not_repost(
    world: Any, fake_slack: FakeSlack, fake_time: FakeTime
) -> None:
    engine = Engine(
        world.db, world.clock, [Kickoff()], lambda _e: engine_port(world, fake_slack, fake_time), worker="w1"
    )
    world.clock.set(at("2026-11-25", 9))

    async def crash(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed after posting, before recording")

    engine._finish = crash  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        await engine.tick()
    assert len(keyed_posts(fake_slack)) == 1  # the channel post went out; the process died

    world.clock.advance(timedelta(minutes=3))  # the dead worker's leases run out
    restarted_port = engine_port(world, fake_slack, fake_time)  # a new process: empty caches
    restarted = Engine(world.db, world.clock, [Kickoff()], lambda _e: restarted_port, worker="w-restarted")
    await restarted.tick()

    keys = keyed_posts(fake_slack)
    assert len(keys) == 5 and len(set(keys)) == 5  # every delivery exactly once
    history = sorted(c.body["channel"] for c in fake_slack.calls_to("conversations.history"))
    assert history == ["C0STANDUP", "D0JORDAN", "D0PRIYA", "D0SAM"]  # each reclaimed delivery checked first
    assert len(fake_slack.files) == 1  # the chart too went once
    async with world.db.session() as session:
        statuses = sorted((await session.execute(select(Delivery.purpose, Delivery.status))).all())
    assert all(status == "sent" for _, status in statuses) and len(statuses) == 5


async def test_idle_channels_are_forgotten_past_the_limit(fake_time: FakeTime) -> None:
    pacer = ChannelPacer(monotonic=fake_time.monotonic, sleep=fake_time.sleep, max_channels=2)
    await pacer.wait("T", "a")
    await pacer.wait("T", "b")
    fake_time.now = 5.0
    await pacer.wait("T", "c")  # a and b are idle: dropped
    assert list(pacer._tat) == [("T", "c")]
    await pacer.wait("T", "c")
    assert fake_time.sleeps == [1.0]


# --- the fake itself ------------------------------------------------------------------------------------


async def test_the_fake_speaks_enough_slack_for_the_real_client(fake_slack: FakeSlack) -> None:
    client = create_client(fake_slack.token, base_url=fake_slack.api_url)
    assert (await client.auth_test())["team_id"] == "T0TEST"
    jordan = (await client.users_info(user="U0JORDAN"))["user"]
    assert jordan["profile"]["email"] == "jordan@testco.example" and jordan["tz"] == "America/Los_Angeles"
    priya = (await client.users_lookupByEmail(email="PRIYA@testco.example"))["user"]
    assert priya["id"] == "U0PRIYA" and priya["tz"] == "Europe/London"
    with pytest.raises(SlackApiError, match="users_not_found"):
        await client.users_lookupByEmail(email="nobody@testco.example")
    await client.chat_postEphemeral(channel="C0REVIEW", user="U0JORDAN", text="only you")
    assert fake_slack.ephemerals[0]["user"] == "U0JORDAN"
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Deal"}, "blocks": []}
    opened = (await client.views_open(trigger_id="123.456", view=view))["view"]
    await client.views_update(view_id=opened["id"], view=view)
    await client.views_publish(user_id="U0DANA", view={"type": "home", "blocks": []})
    assert [method for method, _ in fake_slack.views] == ["views.open", "views.update", "views.publish"]
    posted = await client.chat_postMessage(channel="C0REVIEW", text="review")
    await client.reactions_add(channel="C0REVIEW", timestamp=posted["ts"], name="white_check_mark")
    assert fake_slack.reactions == [("C0REVIEW", posted["ts"], "white_check_mark")]
    with pytest.raises(SlackApiError, match="invalid_blocks"):
        await client.chat_postMessage(channel="C0REVIEW", text="x", blocks=[{"type": "section", "text": {}}])
    assert [c.method for c in fake_slack.calls][:3] == ["auth.test", "users.info", "users.lookupByEmail"]
