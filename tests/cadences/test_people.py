"""Who a chat user is, the same on every platform (SQLite and PostgreSQL): the stored identity first,
then the email, remembered with the zone the platform reported; nobody for a stranger or someone no
longer active."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from cadences import people
from cadences.people import SyncReport
from storage import chat_workspaces
from storage.models import Person


def test_only_zones_the_bot_can_compute_with_are_kept() -> None:
    assert people.known_zone("Europe/Paris") == "Europe/Paris"
    assert people.known_zone("Mars/Olympus_Mons") is None
    assert people.known_zone("") is None and people.known_zone(None) is None


def test_the_sync_report_speaks_each_platforms_words() -> None:
    slack = SyncReport(["Dana"], ["Sam", "Maya"], platform="Slack", place="this workspace", file_field="`slack:` id")
    assert slack.summary() == (
        "1 of 3 people are matched to Slack users. Not found in this workspace: Sam, Maya — add their `slack:` id "
        "(or a Slack account with the same email) to the engagement file."
    )
    teams = SyncReport(["Dana"], [], platform="Teams", place="this team", file_field="`teams:` object id")
    assert teams.summary() == "1 of 1 people are matched to Teams users."


async def test_a_linked_workspace_names_its_engagement(world: Any) -> None:
    async with world.db.write() as session:
        await chat_workspaces.link(session, "teams", "tenant-1", world.engagement.id, now=world.clock.now())
    found = await people.engagement_for_workspace(world.db, "teams", "tenant-1")
    assert found is not None and found.id == world.engagement.id
    assert await people.engagement_for_workspace(world.db, "slack", "tenant-1") is None
    assert await people.engagement_for_workspace(world.db, "teams", "tenant-2") is None
    assert await people.engagement_for_workspace(world.db, "teams", None) is None


async def test_a_user_is_recognised_by_identity_then_by_email_and_remembered(world: Any) -> None:
    engagement = world.engagement.id
    known, dana = await people.stored_identity(world.db, engagement, "slack", "U0DANA")  # from the file
    assert known is not None and dana is not None and dana.key == "dana"
    assert await people.stored_identity(world.db, engagement, "teams", "aad-maya") == (None, None)

    maya = await people.recognise(
        world.db, engagement, "teams", "aad-maya", email="MAYA@testco.example", zone="Asia/Tokyo"
    )
    assert maya is not None and maya.key == "maya"
    known, person = await people.stored_identity(world.db, engagement, "teams", "aad-maya")
    assert known is not None and known.timezone == "Asia/Tokyo" and person is not None and person.key == "maya"

    # A person already known keeps their match; the zone is refreshed.
    again = await people.recognise(world.db, engagement, "teams", "aad-maya", email=None, zone=None, known=maya)
    assert again is not None and again.id == maya.id
    known, _ = await people.stored_identity(world.db, engagement, "teams", "aad-maya")
    assert known is not None and known.timezone is None

    assert await people.recognise(world.db, engagement, "teams", "aad-x", email="nobody@example.com", zone=None) is None
    assert await people.stored_identity(world.db, engagement, "teams", "aad-x") == (None, None)


async def test_someone_no_longer_active_is_nobody(world: Any) -> None:
    async with world.db.write() as session:
        await session.execute(update(Person).where(Person.key == "sam").values(active=False))
    found = await people.recognise(
        world.db, world.engagement.id, "teams", "aad-sam", email="sam@testco.example", zone=None
    )
    assert found is None
    everyone, known = await people.to_match(world.db, world.engagement.id, "slack")
    assert [p.key for p in everyone] == ["dana", "maya", "jordan", "priya"]
    assert sorted(known.values()) == ["U0DANA", "U0JORDAN", "U0MAYA", "U0PRIYA", "U0SAM"]
