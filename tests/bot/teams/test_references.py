"""The database-backed reference store: references captured from real Teams activities (channel, 1:1,
install), refreshed without forgetting what a later activity does not say, found by the port by person,
channel, team and conversation, and the sent-log behind `find_sent` — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from botbuilder.schema import Activity
from sqlalchemy import func, select

from bot.teams.port import Reference
from bot.teams.references import DbReferenceStore, reference_json, tenant_of
from cadences.ports import SentRef
from storage import teams_refs
from storage.models import ConversationRef, SentActivity
from support.fake_connector import BOT, TENANT
from support.teams_bot import AAD, REVIEW, TEAM, payload

SERVICE = "https://smba.trafficmanager.net/amer/"


def activity(kind: str, **changes: Any) -> Activity:
    body = payload(kind, SERVICE)
    body.update(changes)
    return Activity().deserialize(body)


async def rows(world: Any) -> list[ConversationRef]:
    async with world.db.session() as session:
        return list((await session.execute(select(ConversationRef).order_by(ConversationRef.id))).scalars())


async def test_a_channel_message_is_stored_under_its_channel_not_its_thread(world: Any) -> None:
    store = DbReferenceStore(world.db, world.clock)
    message = activity("message")
    assert message.conversation.id == f"{REVIEW};messageid=1764007200000"
    assert tenant_of(message) == TENANT  # Teams' `tenantId`, which botbuilder's model does not map
    await store.capture(message, world.engagement.id)
    [row] = await rows(world)
    assert (row.conversation_id, row.conversation_type, row.tenant_id, row.service_url) == (
        REVIEW,
        "channel",
        TENANT,
        SERVICE,
    )
    assert (row.team_id, row.aad_object_id, row.engagement_id, row.channel_name) == (
        TEAM,
        None,
        world.engagement.id,
        None,
    )
    assert row.updated_at == world.clock.now()
    parsed = Reference.parse(row.reference)  # what the port reads
    assert (parsed.service_url, parsed.conversation_id, parsed.tenant_id) == (SERVICE, REVIEW, TENANT)
    assert parsed.bot == {"id": BOT["id"], "name": "Cadence"}
    assert "activityId" not in row.reference


async def test_a_later_activity_refreshes_the_row_without_forgetting_the_engagement(world: Any) -> None:
    store = DbReferenceStore(world.db, world.clock)
    await store.capture(activity("personal_message"), world.engagement.id)
    world.clock.advance(timedelta(hours=1))
    moved = activity("personal_message", serviceUrl="https://smba.trafficmanager.net/emea/")
    await store.capture(moved, None)
    [row] = await rows(world)
    assert (row.conversation_type, row.aad_object_id, row.engagement_id) == (
        "personal",
        AAD["priya"],
        world.engagement.id,
    )
    assert row.service_url == "https://smba.trafficmanager.net/emea/" and row.updated_at == world.clock.now()
    assert row.reference["serviceUrl"] == "https://smba.trafficmanager.net/emea/"


async def test_the_install_is_stored_and_activities_of_other_channels_are_not(world: Any) -> None:
    store = DbReferenceStore(world.db, world.clock)
    install = await store.capture(activity("conversation_update"), None)
    assert install is not None and (install.conversation_id, install.team_id) == (TEAM, TEAM)
    emulator = activity("personal_message", channelId="emulator", conversation={"id": "abc"}, channelData={})
    assert await store.capture(emulator, None) is None
    assert len(await rows(world)) == 1


async def test_the_port_finds_people_channels_the_team_and_conversations(world: Any) -> None:
    store = DbReferenceStore(world.db, world.clock)
    eid = world.engagement.id
    await store.capture(activity("conversation_update"), None)
    await store.capture(activity("message"), None)
    await store.capture(activity("personal_message"), None)
    async with world.db.write() as session:
        assert await teams_refs.adopt_tenant(session, TENANT, eid) == 3
        await teams_refs.name_channel(session, eid, REVIEW, "pipeline-review")
    channel = await store.get_channel(eid, "#pipeline-review")
    assert channel is not None and Reference.parse(channel).conversation_id == REVIEW
    assert await store.get_channel(eid, "standup") is None
    priya = await store.get_personal(eid, AAD["priya"].upper())
    assert priya is not None and priya["conversation"]["id"] == "a:1PriyaPersonalChatWithCadence"
    assert await store.get_personal(eid + 1, AAD["priya"]) is None  # another engagement's person
    team = await store.get_team(eid)
    assert team is not None and Reference.parse(team).conversation_id in (TEAM, REVIEW)
    found = await store.get_conversation(f"{REVIEW};messageid=42")
    assert found is not None and Reference.parse(found).conversation_id == REVIEW
    async with world.db.write() as session:  # naming another channel moves the name
        await teams_refs.name_channel(session, eid, TEAM, "pipeline-review")
    moved = await store.get_channel(eid, "pipeline-review")
    assert moved is not None and Reference.parse(moved).conversation_id == TEAM


async def test_a_created_1on1_chat_is_kept_for_the_next_message(world: Any) -> None:
    store = DbReferenceStore(world.db, world.clock)
    reference = {
        "channelId": "msteams",
        "serviceUrl": SERVICE,
        "bot": dict(BOT),
        "user": {"id": AAD["sam"], "aadObjectId": AAD["sam"]},
        "conversation": {"id": "a:1on1-sam", "tenantId": TENANT, "conversationType": "personal", "isGroup": False},
    }
    await store.save_personal(world.engagement.id, AAD["sam"], reference)
    assert await store.get_personal(world.engagement.id, AAD["sam"]) == reference
    [row] = await rows(world)
    assert (row.tenant_id, row.conversation_type, row.aad_object_id) == (TENANT, "personal", AAD["sam"])


async def test_the_sent_log_keeps_the_first_record_of_a_key(world: Any) -> None:
    store = DbReferenceStore(world.db, world.clock)
    first = SentRef(platform="teams", conversation=REVIEW, message_id="101", thread_id="100")
    await store.record_sent("review/2026-W49/acme", first)
    await store.record_sent("review/2026-W49/acme", SentRef(platform="teams", conversation=REVIEW, message_id="999"))
    assert await store.find_sent("review/2026-W49/acme") == first
    assert await store.find_sent("review/2026-W49/globex") is None
    async with world.db.session() as session:
        assert (await session.execute(select(func.count()).select_from(SentActivity))).scalar_one() == 1


def test_the_stored_reference_is_the_bot_framework_json() -> None:
    reference = reference_json(activity("message"))
    assert reference["conversation"]["id"] == REVIEW
    assert reference["serviceUrl"] == SERVICE and reference["channelId"] == "msteams"
    assert reference["user"]["aadObjectId"] == AAD["jordan"]
