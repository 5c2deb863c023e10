"""TeamsPort against the fake Bot Connector: 1:1 chats through stored references and created ones,
channel posts and thread replies, the delivery key in channel data and the sent-log behind `find_sent`,
in-place updates, long messages and images, back-off on Teams' transient statuses, permanent refusals,
credentials — and the real cadence engine delivering through Teams exactly once across a crash.

Nothing sleeps: the port's back-off sleeps through a recorder and its jitter is fixed."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from botbuilder.schema import Activity, ErrorResponseException
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import MicrosoftAppCredentials
from sqlalchemy import select

from bot.teams.port import (
    Backoff,
    Reference,
    TeamsPort,
    app_credentials,
    base_conversation,
    stored_images,
    thread_conversation,
)
from bot.teams.render import ADAPTIVE_CARD, CARD_LIMIT, card_size
from cadences.attachments import store_attachment
from cadences.engine import Engine
from cadences.messages import Choice, DealItem, DealList, Header, Image, Message, Paragraph
from cadences.ports import DeliveryFailed, SentRef, Target
from cadences.rituals import Due, EngagementFacts, Outgoing, Recipient, RitualRun, daily
from storage.models import ChatIdentity, Delivery, Role
from support.fake_connector import (
    BOT,
    CHANNELS,
    MAX_BODY,
    TENANT,
    FakeConnector,
    MemoryReferences,
    card_problems,
)

ENGAGEMENT = 1
JORDAN = "0b5e3c1d-0000-4000-8000-00000000a001"
PRIYA = "0b5e3c1d-0000-4000-8000-00000000b001"
SAM = "0b5e3c1d-0000-4000-8000-00000000c001"
REVIEW = CHANNELS["pipeline-review"]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
BIG_PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 160


class Sleeps:
    """The back-off's sleep, recorded instead of slept."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def store(fake_connector: FakeConnector) -> MemoryReferences:
    store = MemoryReferences.with_channels(fake_connector.service_url, ENGAGEMENT)
    store.add_person(fake_connector.service_url, ENGAGEMENT, JORDAN)
    return store


def make_port(store: MemoryReferences, sleeps: Sleeps, **kwargs: Any) -> TeamsPort:
    return TeamsPort(store, backoff=Backoff(sleep=sleeps, random=lambda: 0.5), **kwargs)


@pytest.fixture
async def port(store: MemoryReferences, sleeps: Sleeps) -> Any:
    port = make_port(store, sleeps)
    yield port
    await port.close()


def person(name: str = "Jordan Lee", aad: str | None = JORDAN) -> Target:
    identities = {"console": name.split()[0].lower()} | ({"teams": aad} if aad else {})
    return Target(engagement_id=ENGAGEMENT, kind="person", person_id=4, person_name=name, identities=identities)


def channel(name: str, thread: SentRef | None = None) -> Target:
    return Target(engagement_id=ENGAGEMENT, kind="channel", channel=name, thread=thread)


def hello(text: str = "Hello") -> Message:
    return Message(text=text, blocks=[Paragraph(text=text)])


def card_texts(card: dict[str, Any] | None) -> list[str]:
    """The TextBlocks of a card, nested ones included, in reading order."""
    assert card is not None

    def walk(elements: list[dict[str, Any]]) -> list[str]:
        texts: list[str] = []
        for e in elements:
            texts += [e["text"]] if e["type"] == "TextBlock" else walk(e.get("items") or [])
        return texts

    return walk(card["body"])


# --- addressing -------------------------------------------------------------------------------------


async def test_a_person_is_reached_through_their_stored_1on1_reference(
    fake_connector: FakeConnector, port: TeamsPort
) -> None:
    ref = await port.send(person(), hello("Please update Acme"), delivery_key="nudge/jordan")
    [request] = fake_connector.requests
    assert request.route == "send" and request.conversation == f"a:chat-{JORDAN}"
    assert request.authorization is None  # anonymous, emulator-style: no token
    assert ref == SentRef(platform="teams", conversation=f"a:chat-{JORDAN}", message_id=ref.message_id)
    [posted] = fake_connector.posted()
    assert posted.id == ref.message_id and posted.body["summary"] == "Please update Acme"
    assert posted.body["attachments"][0]["contentType"] == ADAPTIVE_CARD
    assert card_texts(posted.card) == ["Please update Acme"]
    assert posted.body["channelData"] == {"cadence": {"delivery_key": "nudge/jordan"}}


async def test_a_channel_post_and_its_thread_replies(fake_connector: FakeConnector, port: TeamsPort) -> None:
    parent = await port.send(channel("#pipeline-review"), hello("Review"), delivery_key="review/post")
    assert parent == SentRef(platform="teams", conversation=REVIEW, message_id=parent.message_id)
    reply = await port.send(channel("pipeline-review", thread=parent), hello("Acme"), delivery_key="review/acme")
    deeper = await port.send(channel("pipeline-review", thread=reply), hello("more"), delivery_key="review/more")
    conversations = [r.conversation for r in fake_connector.requests_to("send")]
    threaded = f"{REVIEW};messageid={parent.message_id}"
    assert conversations == [REVIEW, threaded, threaded]  # a reply to a reply stays in the same thread
    assert reply == SentRef(
        platform="teams", conversation=REVIEW, message_id=reply.message_id, thread_id=parent.message_id
    )
    assert deeper.thread_id == parent.message_id and deeper.conversation == REVIEW
    assert [p.thread for p in fake_connector.posted(REVIEW)] == [None, parent.message_id, parent.message_id]
    assert fake_connector.keys() == ["review/post", "review/acme", "review/more"]


async def test_a_thread_in_a_1on1_chat_is_just_the_next_message(fake_connector: FakeConnector, port: TeamsPort) -> None:
    first = await port.send(person(), hello("one"), delivery_key="a")
    second = await port.send(person().model_copy(update={"thread": first}), hello("two"), delivery_key="b")
    assert [r.conversation for r in fake_connector.requests_to("send")] == [f"a:chat-{JORDAN}"] * 2
    assert second.thread_id is None


async def test_a_person_the_bot_never_talked_to_gets_a_1on1_chat_created(
    fake_connector: FakeConnector, port: TeamsPort, store: MemoryReferences
) -> None:
    priya = person("Priya Natarajan", PRIYA)
    ref = await port.send(priya, hello("Debrief Globex"), delivery_key="debrief/priya")
    [create] = fake_connector.requests_to("create")
    assert create.body == {
        "isGroup": False,
        "bot": BOT,
        "members": [{"id": PRIYA, "aadObjectId": PRIYA}],
        "channelData": {"tenant": {"id": TENANT}},
        "tenantID": TENANT,
    }
    assert ref.conversation == f"a:1on1-{PRIYA}"
    assert fake_connector.requests_to("send")[0].conversation == f"a:1on1-{PRIYA}"
    assert store.saved == [(ENGAGEMENT, PRIYA)]
    saved = Reference.parse(store.personal[(ENGAGEMENT, PRIYA)])
    assert saved == Reference(fake_connector.service_url, f"a:1on1-{PRIYA}", TENANT, BOT)
    await port.send(priya, hello("again"), delivery_key="debrief/priya/2")
    assert len(fake_connector.requests_to("create")) == 1  # the stored reference is reused


async def test_a_person_the_app_is_not_installed_for_cannot_be_reached(
    fake_connector: FakeConnector, port: TeamsPort, store: MemoryReferences
) -> None:
    fake_connector.not_installed.add(PRIYA)
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(person("Priya Natarajan", PRIYA), hello(), delivery_key="k")
    assert failed.value.permanent
    assert failed.value.reason.startswith(
        "Priya Natarajan cannot be reached in Teams: the bot has not been installed for them"
    )
    assert [r.route for r in fake_connector.requests] == ["create"] and store.saved == []

    store.teams.clear()
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(person("Priya Natarajan", PRIYA), hello(), delivery_key="k")
    assert failed.value.permanent and "in no team of this engagement" in failed.value.reason
    assert len(fake_connector.requests) == 1


async def test_missing_identities_channels_and_broken_references_are_permanent(
    fake_connector: FakeConnector, port: TeamsPort, store: MemoryReferences
) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(person(aad=None), hello(), delivery_key="k")
    assert failed.value.permanent and "no Microsoft Entra object id" in failed.value.reason
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(channel("nowhere"), hello(), delivery_key="k")
    assert failed.value.permanent and "no channel 'nowhere'" in failed.value.reason
    store.channels[(ENGAGEMENT, "standup")] = {"conversation": {"id": "19:x"}}
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(channel("standup"), hello(), delivery_key="k")
    assert failed.value.permanent and "serviceUrl" in failed.value.reason
    assert fake_connector.requests == []


def test_conversation_ids_address_threads() -> None:
    assert thread_conversation("19:a@thread.tacv2", "17") == "19:a@thread.tacv2;messageid=17"
    assert thread_conversation("19:a@thread.tacv2;messageid=5", "17") == "19:a@thread.tacv2;messageid=17"
    assert base_conversation("19:a@thread.tacv2;messageid=5") == "19:a@thread.tacv2"
    stored = {"serviceUrl": "https://smba/", "conversation": {"id": "19:a;messageid=5", "tenantID": "t"}}
    assert Reference.parse(stored) == Reference("https://smba/", "19:a", "t", None)


# --- the sent-log and updates ---------------------------------------------------------------------------


async def test_find_sent_reads_the_sent_log_in_any_process(
    fake_connector: FakeConnector, store: MemoryReferences, sleeps: Sleeps
) -> None:
    first = make_port(store, sleeps)
    ref = await first.send(channel("standup"), hello(), delivery_key="standup/2026-11-25/post")
    assert store.sent == {"standup/2026-11-25/post": ref}
    restarted = make_port(store, sleeps)  # a new process: only the store is shared
    assert await restarted.find_sent(channel("standup"), "standup/2026-11-25/post") == ref
    assert await restarted.find_sent(channel("standup"), "never-sent") is None
    assert len(fake_connector.requests) == 1  # find_sent asks no one but the store
    await first.close()
    await restarted.close()


async def test_a_failing_sent_log_does_not_fail_a_posted_delivery(
    fake_connector: FakeConnector, store: MemoryReferences, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(delivery_key: str, ref: SentRef) -> None:
        raise ConnectionError("database went away")

    store.record_sent = broken  # type: ignore[method-assign]
    port = make_port(store, sleeps)
    with caplog.at_level(logging.ERROR, logger="bot.teams.port"):
        ref = await port.send(channel("standup"), hello(), delivery_key="k")
    assert ref.conversation == CHANNELS["standup"] and "not written to the sent-log" in caplog.text
    await port.close()


async def test_update_replaces_the_card_in_place(fake_connector: FakeConnector, port: TeamsPort) -> None:
    ref = await port.send(person(), hello("Please update Acme"), delivery_key="nudge")
    await port.update(ref, Message(text="Thanks", blocks=[Paragraph(text="Acme is up to date <3")]))
    [put] = fake_connector.requests_to("update")
    assert put.http_method == "PUT" and put.conversation == f"a:chat-{JORDAN}" and put.activity_id == ref.message_id
    assert put.body["id"] == ref.message_id and put.body["summary"] == "Thanks"
    [posted] = fake_connector.posted()
    assert card_texts(posted.card) == ["Acme is up to date &lt;3"] and len(posted.updates) == 1


async def test_update_of_a_thread_reply_addresses_the_thread(fake_connector: FakeConnector, port: TeamsPort) -> None:
    parent = await port.send(channel("pipeline-review"), hello("Review"), delivery_key="post")
    reply = await port.send(channel("pipeline-review", thread=parent), hello("Acme"), delivery_key="acme")
    await port.update(reply, hello("Acme — discussed"))
    [put] = fake_connector.requests_to("update")
    assert put.conversation == f"{REVIEW};messageid={parent.message_id}" and put.activity_id == reply.message_id
    assert card_texts(fake_connector.activity(reply.message_id).card) == ["Acme — discussed"]  # type: ignore[union-attr]


async def test_update_failures_are_permanent(fake_connector: FakeConnector, port: TeamsPort) -> None:
    gone = SentRef(platform="teams", conversation=REVIEW, message_id="404404")
    with pytest.raises(DeliveryFailed) as failed:
        await port.update(gone, hello())
    assert failed.value.permanent and "404" in failed.value.reason
    with pytest.raises(DeliveryFailed) as failed:
        await port.update(SentRef(platform="teams", conversation="19:unknown", message_id="1"), hello())
    assert failed.value.permanent and "no stored conversation reference" in failed.value.reason


# --- several activities per message ---------------------------------------------------------------------


def long_review(deals: int) -> Message:
    reasons = ["close date moved 2 times", "no update in 15 days", "amount fell 20% since last week"]
    items = [
        DealItem(deal_id=i, name=f"Deal {i:03d}", summary=f"${i},000 · Proposal", reasons=reasons) for i in range(deals)
    ]
    return Message(
        text="Pipeline review",
        blocks=[Header(text="Pipeline review"), DealList(title="Needs discussion", items=items)],
        thread=[hello("Acme: discuss the slip"), hello("Globex: who is the buyer?")],
    )


async def test_a_long_message_continues_in_its_thread_with_its_replies(
    fake_connector: FakeConnector, port: TeamsPort
) -> None:
    ref = await port.send(channel("pipeline-review"), long_review(150), delivery_key="review/w48")
    posted = fake_connector.posted(REVIEW)
    assert len(posted) >= 5
    first, *rest = posted
    assert first.id == ref.message_id and first.thread is None and first.delivery_key == "review/w48"
    assert all(p.thread == ref.message_id for p in rest)
    parts = [p.body["channelData"]["cadence"] for p in rest]
    assert parts == [{"delivery_key": "review/w48", "part": i} for i in range(1, len(rest) + 1)]
    assert [p.body["summary"] for p in rest[-2:]] == ["Acme: discuss the slip", "Globex: who is the buyer?"]
    assert all(card_size(p.body) <= CARD_LIMIT + 100 and not card_problems(p.card) for p in posted)
    shown = [t for p in posted for t in card_texts(p.card) if t.startswith("Deal ")]
    assert shown == [f"Deal {i:03d}" for i in range(150)]
    assert fake_connector.keys() == ["review/w48"]


async def test_a_failed_follow_up_is_logged_and_the_delivery_stands(
    fake_connector: FakeConnector, port: TeamsPort, caplog: pytest.LogCaptureFixture
) -> None:
    fake_connector.fail("send", 403, after=1)
    message = Message(text="Review", blocks=[Paragraph(text="main")], thread=[hello("reply 1"), hello("reply 2")])
    with caplog.at_level(logging.WARNING, logger="bot.teams.port"):
        ref = await port.send(channel("pipeline-review"), message, delivery_key="review")
    assert [p.body["summary"] for p in fake_connector.posted()] == ["Review", "reply 2"]
    assert ref.message_id == fake_connector.posted()[0].id and "part 1 of review" in caplog.text


async def test_images_come_from_the_loader_inline_or_as_their_own_message(
    fake_connector: FakeConnector, store: MemoryReferences, sleeps: Sleeps
) -> None:
    from bot.teams.render import ImageData

    loaded: list[str] = []

    async def images(key: str) -> ImageData | None:
        loaded.append(key)
        return {"small": ImageData(PNG), "chart": ImageData(BIG_PNG, filename="chart.png")}.get(key)

    port = make_port(store, sleeps, images=images)
    message = Message(
        text="Weekly digest",
        blocks=[
            Image(key="small", alt_text="Logo"),
            Image(key="chart", alt_text="Pipeline", title="Trend"),
            Image(key="missing", alt_text="Gone"),
        ],
    )
    await port.send(person("Sam Okafor", SAM), message, delivery_key="digest/sam")
    assert loaded == ["small", "chart", "missing"]
    card, image = fake_connector.posted()
    body = card.card["body"]  # type: ignore[index]
    assert body[0]["type"] == "Image" and body[0]["url"].startswith("data:image/png;base64,")
    assert [b["text"] for b in body[1:]] == ["Image: Trend", "Image: Gone"]
    assert image.conversation == card.conversation  # a 1:1 chat: the image simply follows
    assert (
        image.body["attachments"][0]["contentType"] == "image/png"
        and image.body["attachments"][0]["name"] == "chart.png"
    )
    assert image.body["channelData"]["cadence"] == {"delivery_key": "digest/sam", "part": 1}
    await port.close()


async def test_a_message_teams_cannot_show_fails_before_anything_is_posted(
    fake_connector: FakeConnector, port: TeamsPort
) -> None:
    message = Message(text="x", blocks=[Choice(label="Pick", action_id="a", options=[])])
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(person(), message, delivery_key="k")
    assert failed.value.permanent and "cannot be shown in Teams" in failed.value.reason
    assert fake_connector.requests == []


# --- Teams' rules: back-off and refusals -----------------------------------------------------------------


async def test_a_429_is_retried_after_retry_after_and_the_message_arrives_once(
    fake_connector: FakeConnector, port: TeamsPort, sleeps: Sleeps
) -> None:
    fake_connector.rate_limit("send", retry_after=2, times=1)
    ref = await port.send(channel("standup"), hello(), delivery_key="storm")
    assert len(fake_connector.requests_to("send")) == 2
    assert [p.id for p in fake_connector.posted()] == [ref.message_id]
    assert sleeps.slept == [2 * 1.125]  # Retry-After, stretched by the jitter (0.25 × 0.5)


@pytest.mark.parametrize("status", [412, 502, 503, 504])
async def test_transient_statuses_back_off_exponentially(
    fake_connector: FakeConnector, port: TeamsPort, sleeps: Sleeps, status: int
) -> None:
    fake_connector.fail("send", status, times=2)
    await port.send(channel("standup"), hello(), delivery_key="k")
    assert len(fake_connector.requests_to("send")) == 3 and len(fake_connector.posted()) == 1
    assert sleeps.slept == [1.125, 2.25]


async def test_a_429_that_outlasts_the_attempts_is_transient_with_retry_after(
    fake_connector: FakeConnector, port: TeamsPort, sleeps: Sleeps
) -> None:
    fake_connector.rate_limit("send", retry_after=7, times=4)
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(channel("standup"), hello(), delivery_key="k")
    assert not failed.value.permanent and failed.value.retry_after == 7.0 and "429" in failed.value.reason
    assert len(fake_connector.requests_to("send")) == 4 and len(sleeps.slept) == 3
    assert fake_connector.posted() == []


async def test_a_long_retry_after_is_handed_to_the_engine_at_once(
    fake_connector: FakeConnector, port: TeamsPort, sleeps: Sleeps
) -> None:
    fake_connector.rate_limit("send", retry_after=300)
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(channel("standup"), hello(), delivery_key="k")
    assert not failed.value.permanent and failed.value.retry_after == 300.0
    assert len(fake_connector.requests_to("send")) == 1 and sleeps.slept == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
async def test_permanent_refusals_are_not_retried(
    fake_connector: FakeConnector, port: TeamsPort, sleeps: Sleeps, status: int
) -> None:
    fake_connector.fail("send", status)
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(channel("standup"), hello(), delivery_key="k")
    assert failed.value.permanent and f"HTTP {status}" in failed.value.reason
    assert len(fake_connector.requests_to("send")) == 1 and sleeps.slept == []


async def test_other_server_errors_and_an_unreachable_teams_are_transient(
    fake_connector: FakeConnector, store: MemoryReferences, port: TeamsPort, sleeps: Sleeps
) -> None:
    fake_connector.fail("send", 500)
    with pytest.raises(DeliveryFailed) as failed:
        await port.send(channel("standup"), hello(), delivery_key="k")
    assert not failed.value.permanent and failed.value.retry_after is None
    assert len(fake_connector.requests_to("send")) == 1

    async with FakeConnector() as gone:
        url = gone.service_url
    unreachable = make_port(MemoryReferences.with_channels(url, ENGAGEMENT), sleeps)
    with pytest.raises(DeliveryFailed) as failed:
        await unreachable.send(channel("standup"), hello(), delivery_key="k")
    assert not failed.value.permanent and "unreachable" in failed.value.reason
    await unreachable.close()


# --- credentials ------------------------------------------------------------------------------------------


class StaticToken(MicrosoftAppCredentials):  # type: ignore[misc]
    """App credentials whose token comes from the test, not from Microsoft Entra."""

    def get_access_token(self, force_refresh: bool = False) -> str:
        return "t0k3n"


async def test_with_credentials_every_call_carries_the_bot_token(sleeps: Sleeps) -> None:
    async with FakeConnector(token="t0k3n") as fake:
        store = MemoryReferences.with_channels(fake.service_url, ENGAGEMENT)
        port = make_port(store, sleeps, credentials=StaticToken("00000000-0000-4000-8000-000000000b07", "secret"))
        await port.send(channel("standup"), hello(), delivery_key="k")
        assert fake.requests[0].authorization == "Bearer t0k3n" and len(fake.posted()) == 1
        anonymous = make_port(store, sleeps)
        with pytest.raises(DeliveryFailed) as failed:
            await anonymous.send(channel("standup"), hello(), delivery_key="k2")
        assert failed.value.permanent and "HTTP 401" in failed.value.reason
        await port.close()
        await anonymous.close()


def test_app_credentials_follow_the_bot_framework_settings() -> None:
    anonymous = app_credentials(None, None)
    assert not anonymous.microsoft_app_id
    single = app_credentials("00000000-0000-4000-8000-000000000b07", "pw", "contoso-tenant-id")
    assert single.microsoft_app_id == "00000000-0000-4000-8000-000000000b07"
    assert single.oauth_endpoint.endswith("/contoso-tenant-id")
    multi = app_credentials("00000000-0000-4000-8000-000000000b07", "pw")
    assert multi.oauth_endpoint.endswith("/botframework.com")


# --- the engine through Teams -------------------------------------------------------------------------------


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


async def teams_world(world: Any, fake: FakeConnector) -> MemoryReferences:
    """The test engagement in Teams: its channels linked, AAD ids for the reps and the founder, and a 1:1
    chat with Jordan already open (Priya's and Sam's are created on the first message)."""
    people = {aad: await world.person(key) for key, aad in (("jordan", JORDAN), ("priya", PRIYA), ("sam", SAM))}
    async with world.db.write() as session:
        for aad, found in people.items():
            session.add(
                ChatIdentity(engagement_id=world.engagement.id, person_id=found.id, platform="teams", user_id=aad)
            )
    store = MemoryReferences.with_channels(fake.service_url, world.engagement.id)
    store.add_person(fake.service_url, world.engagement.id, JORDAN)
    return store


def engine_for(world: Any, store: MemoryReferences, sleeps: Sleeps, worker: str) -> tuple[Engine, TeamsPort]:
    port = make_port(store, sleeps, images=stored_images(world.db))
    return Engine(world.db, world.clock, [Kickoff()], lambda _e: port, worker=worker), port


async def test_the_engine_delivers_through_teams_once_each(
    world: Any, fake_connector: FakeConnector, sleeps: Sleeps
) -> None:
    store = await teams_world(world, fake_connector)
    engine, port = engine_for(world, store, sleeps, "w1")
    world.clock.set(at("2026-11-25", 9))
    report = await engine.tick()
    assert report.sent == 5 and report.failed == 0
    await engine.tick()  # a second tick sends nothing more
    async with world.db.session() as session:
        rows = {(d.purpose, d.recipient): d for d in (await session.execute(select(Delivery))).scalars()}
    assert sorted(fake_connector.keys()) == sorted(d.key for d in rows.values())
    assert set(store.sent) == {d.key for d in rows.values()}
    post = rows[("post", "channel:standup")]
    assert post.platform == "teams" and post.ref is not None and post.ref["conversation"] == CHANNELS["standup"]
    [reply] = [p for p in fake_connector.posted(CHANNELS["standup"]) if p.thread]
    assert reply.thread == post.ref["message_id"] and reply.body["summary"] == "details"
    dms = {p.conversation for p in fake_connector.posted() if p.body["summary"].startswith("Hi ")}
    assert dms == {f"a:chat-{JORDAN}", f"a:1on1-{PRIYA}"}
    assert [r.body["members"][0]["id"] for r in fake_connector.requests_to("create")] == [PRIYA, SAM]
    [chart] = [p for p in fake_connector.posted() if p.body["summary"] == "Your chart"]
    assert chart.conversation == f"a:1on1-{SAM}"
    assert [e["type"] for e in chart.card["body"]] == ["TextBlock", "Image"]  # type: ignore[index]
    await port.close()


async def test_killed_between_post_and_record_the_engine_does_not_repost(
    world: Any, fake_connector: FakeConnector, sleeps: Sleeps
) -> None:
    store = await teams_world(world, fake_connector)
    engine, port = engine_for(world, store, sleeps, "w1")
    world.clock.set(at("2026-11-25", 9))

    async def crash(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed after posting, before recording")

    engine._finish = crash  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        await engine.tick()
    assert len(fake_connector.keys()) == 1  # the channel post went out; the process died

    world.clock.advance(timedelta(minutes=3))  # the dead worker's leases run out
    restarted, restarted_port = engine_for(world, store, sleeps, "w-restarted")
    await restarted.tick()
    keys = fake_connector.keys()
    assert len(keys) == 5 and len(set(keys)) == 5  # every delivery exactly once
    async with world.db.session() as session:
        statuses = (await session.execute(select(Delivery.status))).scalars().all()
    assert statuses == ["sent"] * 5
    await port.close()
    await restarted_port.close()


async def test_the_honest_limit_a_crash_before_the_sent_log_write_posts_again(
    world: Any, fake_connector: FakeConnector, sleeps: Sleeps
) -> None:
    store = await teams_world(world, fake_connector)
    engine, port = engine_for(world, store, sleeps, "w1")
    world.clock.set(at("2026-11-25", 9))
    record = store.record_sent

    async def die(delivery_key: str, ref: SentRef) -> None:
        raise SystemExit("killed between Teams' 201 and the sent-log write")

    store.record_sent = die  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        await engine.tick()
    store.record_sent = record  # type: ignore[method-assign]
    world.clock.advance(timedelta(minutes=3))
    restarted, restarted_port = engine_for(world, store, sleeps, "w-restarted")
    await restarted.tick()
    keys = fake_connector.keys()
    assert len(keys) == 6 and len(set(keys)) == 5  # the one post in flight went twice; nothing else did
    await port.close()
    await restarted_port.close()


# --- the fake itself ------------------------------------------------------------------------------------


async def test_the_fake_speaks_enough_bot_connector_for_the_real_client(fake_connector: FakeConnector) -> None:
    client = ConnectorClient(MicrosoftAppCredentials.empty(), base_url=fake_connector.service_url)
    client.config.retry_policy.retries = 0
    conversations = client.conversations
    sent = await conversations.send_to_conversation(REVIEW, Activity(type="message", text="root"))
    reply = await conversations.reply_to_activity(REVIEW, sent.id, Activity(type="message", text="reply"))
    replied = fake_connector.activity(reply.id)
    assert replied is not None and replied.reply_to == sent.id and replied.thread == sent.id
    await conversations.update_activity(REVIEW, sent.id, Activity(type="message", text="edited", id=sent.id))
    updated = fake_connector.activity(sent.id)
    assert updated is not None and updated.current["text"] == "edited" and updated.body["text"] == "root"
    assert [r.route for r in fake_connector.requests] == ["send", "reply", "update"]
    refusals = [
        (conversations.update_activity(REVIEW, "999", Activity(type="message", id="999")), 404),
        (conversations.send_to_conversation(REVIEW, Activity(type="message", text="x" * MAX_BODY)), 413),
        (conversations.send_to_conversation(REVIEW, Activity(type="typing")), 400),
        (
            conversations.send_to_conversation(
                REVIEW,
                Activity(type="message", attachments=[{"contentType": ADAPTIVE_CARD, "content": {"type": "Nope"}}]),
            ),
            400,
        ),
    ]
    for call, status in refusals:
        with pytest.raises(ErrorResponseException) as refused:
            await call
        assert refused.value.response.status_code == status
    assert len(fake_connector.activities) == 2
    await client.__aexit__(None, None, None)
