"""The real endpoint: `add_teams_routes` on an aiohttp app on 127.0.0.1, fed the realistic Teams activities
in tests/fixtures/teams/ (install, a channel message with an @mention, a 1:1 message, Action.Submit and
an `adaptiveCard/action` invoke) whose serviceUrl is the fake Bot Connector, which records everything the
bot posts and updates. With the cadence engine wired as `cadence run` wires it, `pipeline start` posts
the review to the channel `cadence setup` linked, and a reply in its thread lands on the deal."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from bot.teams import cards
from bot.teams.handler import NOT_LINKED
from bot.teams.render import CARD_LIMIT, card_size
from cadences import deal_views
from cadences.authz import Action, denial
from cadences.deal_form import DealValues
from cadences.messages import DealList, Message
from cadences.ritual_catalog import all_rituals
from cadences.rituals import Due, EngagementFacts, Outgoing, Recipient, RitualRun
from storage import chat_workspaces
from storage.models import AuditLog, ChatIdentity, ConversationRef, Deal, DealHistory, SentActivity
from support import fake_connector
from support.fake_connector import TENANT, Posted, card_problems
from support.teams_bot import (
    AAD,
    REVIEW,
    TEAM,
    TeamsFake,
    apply_teams_engagement,
    payload,
    personal,
    serve_teams,
)

APP_ID = "00000000-0000-4000-8000-00000000b07a"


@pytest.fixture(autouse=True)
def _fake_knows_every_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fake_connector.CARD_ELEMENTS, "Input.Number", ("id",))
    monkeypatch.setitem(fake_connector.CARD_ELEMENTS, "Input.Date", ("id",))


@pytest.fixture
async def fake() -> AsyncIterator[TeamsFake]:
    async with TeamsFake() as connector:
        yield connector


@pytest.fixture
async def world_in_teams(world: Any, tmp_path: Path) -> Any:
    """The test engagement with Teams ids; Jordan's Acme in Solution, $48,000, closing Dec 15."""
    await apply_teams_engagement(world, tmp_path)
    await world.say("jordan", "/deal new Acme amount=48k close=2026-12-15 stage=qualification")
    await world.say("jordan", "/deal Acme stage=solution")
    return world


async def acme(world: Any) -> Deal:
    async with world.db.session() as session:
        deal: Deal = (await session.execute(select(Deal).where(Deal.name == "Acme"))).scalar_one()
    return deal


def texts(card: dict[str, Any] | None) -> list[str]:
    assert card is not None

    def walk(elements: list[dict[str, Any]]) -> list[str]:
        out: list[str] = []
        for e in elements:
            if e["type"] == "TextBlock":
                out.append(plain(e["text"]))
            elif e["type"] == "FactSet":
                out += [f"{plain(f['title'])}: {plain(f['value'])}" for f in e["facts"]]
            out += walk(e.get("items") or [])
        return out

    return walk(card["body"])


def plain(text: str) -> str:
    """Card text as a person reads it: the renderer's Markdown escapes and entities undone."""
    return html.unescape(re.sub(r"\\(.)", r"\1", text))


def shown(posted: Posted) -> list[str]:
    card = posted.card
    assert card is not None and card_problems(card) == [] and card_size(posted.current) <= CARD_LIMIT
    return texts(card)


async def count(world: Any, model: Any) -> int:
    async with world.db.session() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


# --- install, setup, identity -----------------------------------------------------------------------------


async def test_the_install_is_remembered_and_greeted(world_in_teams: Any, fake: TeamsFake) -> None:
    async with serve_teams(world_in_teams, fake) as teams:
        response = await teams.post(payload("conversation_update", fake.service_url))
    assert response.status == 200
    async with world_in_teams.db.session() as session:
        row = (await session.execute(select(ConversationRef))).scalar_one()
    assert (row.conversation_id, row.team_id, row.tenant_id, row.service_url) == (TEAM, TEAM, TENANT, fake.service_url)
    [greeting] = fake.posted(TEAM)  # a post of its own in the General channel
    assert shown(greeting)[0].startswith("Hi, I'm Cadence. Type “cadence setup <engagement-slug>”")
    assert fake.member_lookups == []  # only the bot's own arrival is handled


async def test_the_cro_links_the_organisation_in_the_review_channel(world_in_teams: Any, fake: TeamsFake) -> None:
    world = world_in_teams
    async with serve_teams(world, fake) as teams:
        assert (await teams.link("jordan")).status == 200  # not the CRO
        refused = fake.posted(REVIEW)[-1]
        assert shown(refused)[0].startswith("I can't link this organisation to “acme-test”")
        assert await count(world, ConversationRef) == 1
        response = await teams.link("dana")
    assert response.status == 200
    confirmation = fake.posted(REVIEW)[-1]
    assert confirmation.conversation.startswith(f"{REVIEW};messageid=")  # in the thread of the command
    assert shown(confirmation)[0].split("\n") == [
        "Linked this Microsoft Teams organisation to Testco (acme-test). The pipeline review will be posted in "
        "this channel (the engagement file's #pipeline-review).",
        "5 of 5 people are matched to Teams users.",
    ]
    async with world.db.session() as session:
        linked = await chat_workspaces.workspace(session, "teams", TENANT)
        review = (await session.execute(select(ConversationRef))).scalar_one()
        priya = await world.person("priya")
        identity = await chat_workspaces.identity(session, world.engagement.id, "teams", AAD["priya"])
        outcomes = [
            r.outcome
            for r in (await session.execute(select(AuditLog).where(AuditLog.action == "teams.setup"))).scalars()
        ]
    assert linked is not None and linked.engagement_id == world.engagement.id
    assert (review.conversation_id, review.channel_name, review.engagement_id) == (
        REVIEW,
        "pipeline-review",
        world.engagement.id,
    )
    assert identity is not None and identity.person_id == priya.id  # matched by email from the roster
    assert outcomes == ["denied", "ok"]


async def test_a_first_message_matches_the_person_by_email_and_keeps_their_zone(
    world_in_teams: Any, fake: TeamsFake
) -> None:
    world = world_in_teams
    async with serve_teams(world, fake) as teams:
        await teams.link("dana")
        async with world.db.write() as session:  # as if Priya had joined the team after the setup
            await session.execute(delete(ChatIdentity).where(ChatIdentity.user_id == AAD["priya"]))
        response = await teams.direct("priya", "deal list")
    assert response.status == 200
    assert fake.member_lookups == ["29:1pPriyaTeamsUserId"]
    [answer] = fake.posted(personal("priya"))
    assert shown(answer)[0] == "Your open deals"
    async with world.db.session() as session:
        identity = await chat_workspaces.identity(session, world.engagement.id, "teams", AAD["priya"])
        chat = (
            await session.execute(select(ConversationRef).where(ConversationRef.conversation_id == personal("priya")))
        ).scalar_one()
    assert identity is not None and identity.timezone == "Europe/London"
    assert (chat.aad_object_id, chat.conversation_type, chat.engagement_id) == (
        AAD["priya"],
        "personal",
        world.engagement.id,
    )


async def test_someone_outside_the_engagement_is_told_so(world_in_teams: Any, fake: TeamsFake) -> None:
    async with serve_teams(world_in_teams, fake) as teams:
        await teams.link("dana")
        body = payload("personal_message", fake.service_url)
        body["from"] = {
            "id": "29:1pStranger",
            "name": "Sam Stranger",
            "aadObjectId": "0b5e3c1d-0000-4000-8000-0000000ff001",
        }
        body["conversation"]["id"] = "a:1StrangerChat"
        response = await teams.post(body)
    assert response.status == 200
    [answer] = fake.posted("a:1StrangerChat")
    assert shown(answer)[0].startswith("You're not part of the Testco engagement in Cadence")


async def test_an_organisation_not_linked_yet_is_told_how(world_in_teams: Any, fake: TeamsFake) -> None:
    async with serve_teams(world_in_teams, fake) as teams:
        await teams.direct("jordan", "deal list")
    [answer] = fake.posted(personal("jordan"))
    assert answer.body["summary"] == NOT_LINKED


# --- typed commands and card actions ---------------------------------------------------------------------------


async def test_a_channel_message_with_a_mention_updates_the_deal(world_in_teams: Any, fake: TeamsFake) -> None:
    world = world_in_teams
    async with serve_teams(world, fake) as teams:
        await teams.link("dana")
        body = payload("message", fake.service_url)  # "<at>Cadence</at> deal Acme stage=proposal", as Teams sends it
        response = await teams.post(body)
    assert response.status == 200
    answer = fake.posted(REVIEW)[-1]
    assert fake.requests_to("reply")[-1].activity_id == "1764007200000"  # a reply to the message, in its thread
    assert answer.conversation == f"{REVIEW};messageid=1764007200000"
    assert shown(answer)[:2] == ["Updated Acme.", "stage: Solution → Proposal"]
    async with world.db.session() as session:
        last = (await session.execute(select(DealHistory).order_by(DealHistory.id.desc()).limit(1))).scalar_one()
    assert (last.channel, last.changes) == ("teams", {"stage": ["solution", "proposal"]})


async def test_a_redelivered_message_runs_once(world_in_teams: Any, fake: TeamsFake) -> None:
    world = world_in_teams
    async with serve_teams(world, fake) as teams:
        await teams.link("dana")
        body = payload("message", fake.service_url)
        body["text"] = '<at>Cadence</at> deal Acme note="Called the CFO"'
        assert (await teams.post(body)).status == 200
        assert (await teams.post(body)).status == 200
    async with world.db.session() as session:
        notes = (await session.execute(select(func.count()).where(DealHistory.note == "Called the CFO"))).scalar_one()
    assert notes == 1


async def test_the_form_card_saves_through_action_submit_and_action_execute(
    world_in_teams: Any, fake: TeamsFake
) -> None:
    world = world_in_teams
    async with serve_teams(world, fake) as teams:
        await teams.link("dana")
        await teams.direct("jordan", "deal")  # the picker: Jordan's chat is now known
        deal = await acme(world)
        button = {"action_id": "deal_update", "value": str(deal.id), "command": "/deal Acme stage=... close=..."}
        picker = fake.posted(personal("jordan"))[-1]
        assert (await teams.submit("jordan", button, reply_to=picker.id)).status == 200
        form = fake.posted(personal("jordan"))[-1]
        assert form.card is not None and shown(form)[0] == "Update Acme"
        data = form.card["actions"][0]["data"]
        inputs = {"stage": "solution", "amount": 48000, "close": "2026-12-15", "forecast": "pipeline", "note": ""}
        await teams.submit("jordan", {**data, **inputs, "close": "2026-11-02"}, reply_to=form.id)
        assert "The close date Nov 02, 2026 is in the past" in " ".join(texts(form.card))  # updated in place
        response = await teams.execute("jordan", {**data, **inputs, "stage": "proposal"}, reply_to=form.id)
    assert response.status == 200
    invoke = response.json()
    assert invoke["statusCode"] == 200 and invoke["type"] == "application/vnd.microsoft.card.adaptive"
    assert texts(invoke["value"])[:2] == ["Updated Acme.", "stage: Solution → Proposal"]
    assert card_problems(invoke["value"]) == []
    after = await acme(world)
    assert after.version == deal.version + 1


async def test_a_rep_cannot_change_another_reps_deal_from_a_card(world_in_teams: Any, fake: TeamsFake) -> None:
    world = world_in_teams
    deal = await acme(world)
    form = cards.deal_form(
        DealValues(
            deal.id, deal.version, deal.name, "solution", deal.amount, deal.close_date, "pipeline", None, None, None
        ),
        [("solution", "Solution"), ("proposal", "Proposal")],
    )
    data = form["actions"][0]["data"]
    async with serve_teams(world, fake) as teams:
        await teams.link("dana")
        await teams.direct("priya", "hello")
        posted = fake.posted(personal("priya"))[-1]
        await teams.submit("priya", {"action_id": "deal_update", "value": str(deal.id), "command": None}, posted.id)
        assert shown(fake.posted(personal("priya"))[-1]) == [denial(Action.EDIT_DEAL)]
        response = await teams.execute("priya", {**data, "stage": "proposal", "amount": 1}, reply_to=posted.id)
    assert response.status == 200
    assert texts(response.json()["value"]) == [denial(Action.EDIT_DEAL)]
    after = await acme(world)
    assert (after.version, after.amount, after.stage_id) == (deal.version, Decimal("48000"), deal.stage_id)


# --- authentication -------------------------------------------------------------------------------------------


async def test_with_an_app_id_an_unauthenticated_request_is_refused_and_changes_nothing(
    world_in_teams: Any, fake: TeamsFake
) -> None:
    world = world_in_teams
    before = (await acme(world)).version
    async with serve_teams(world, fake, teams_app_id=APP_ID, teams_app_password="secret") as teams:
        response = await teams.post(payload("message", fake.service_url))
        forged = await teams.post(payload("message", fake.service_url), headers={"Authorization": "Bearer not-a-jwt"})
    assert (response.status, forged.status) == (401, 401)
    assert fake.requests == []
    assert await count(world, ConversationRef) == 0
    assert (await acme(world)).version == before


async def test_without_an_app_id_the_endpoint_warns_it_is_for_local_development(
    world_in_teams: Any, fake: TeamsFake, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve_teams(world_in_teams, fake) as teams:
        assert (await teams.post({"type": ""})).status == 400
        assert (await teams.post(payload("conversation_update", fake.service_url))).status == 200
    assert any("WITHOUT authentication" in r.getMessage() for r in caplog.records)
    assert all(r.authorization is None for r in fake.requests)


# --- the cadence through Teams ------------------------------------------------------------------------------------


async def test_pipeline_start_posts_the_review_and_a_thread_reply_lands_on_the_deal(
    world_in_teams: Any, fake: TeamsFake
) -> None:
    world = world_in_teams
    await world.say("jordan", "/deal Acme close=2027-01-20")  # slipped: flagged in the review
    world.clock.advance(timedelta(minutes=30))
    async with serve_teams(world, fake, rituals=all_rituals()) as teams:
        await teams.link("dana")
        started = len(fake.posted(REVIEW))
        assert (await teams.message("dana", "pipeline start")).status == 200
        review, *threaded = fake.posted(REVIEW)[started:]
        assert review.conversation == REVIEW and review.delivery_key is not None  # a new post of its own
        assert shown(review)[0].startswith("Pipeline review")
        acme_thread = next(p for p in threaded if p.delivery_key and "Acme" in shown(p))
        assert acme_thread.conversation == f"{REVIEW};messageid={review.id}"
        answer = fake.posted(REVIEW)[-1]
        assert shown(answer) == ["Posted this week's pipeline review (2026-W48) in #pipeline-review, hosted by you."]
        response = await teams.message("jordan", "Acme: champion moved to the CFO office", root=review.id)
    assert response.status == 200
    assert shown(fake.posted(REVIEW)[-1]) == ["Noted on Acme."]
    async with world.db.session() as session:
        note = (await session.execute(select(DealHistory).order_by(DealHistory.id.desc()).limit(1))).scalar_one()
        logged = (await session.execute(select(SentActivity).where(SentActivity.activity_id == review.id))).scalar_one()
    assert (note.note, note.channel) == ("champion moved to the CFO office", "teams")
    assert logged.delivery_key == review.delivery_key


class NudgeAcme:
    """Once, at a given instant: Jordan's Acme with its Update / Still accurate buttons, in his 1:1 chat."""

    name = "teams-test-nudge"

    def __init__(self, when: datetime) -> None:
        self.when = when

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        if start <= self.when < end:
            yield Due(self.name, "once", self.when, timedelta(hours=1), {})

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        deal = (await run.session.execute(select(Deal).where(Deal.name == "Acme"))).scalar_one()
        names = await deal_views.load_names(run.session, run.facts.id, run.facts.engagement.currency)
        item = deal_views.deal_item(deal, names, ["No update in 8 days"], deal_views.deal_buttons(deal))
        message = Message(text="Your deals before Monday's review", blocks=[DealList(items=[item])])
        return [Outgoing(Recipient.person(deal.owner_id), "nudge", message, subject=f"nudge:{deal.owner_id}")]


async def test_still_accurate_on_a_nudge_updates_the_card_in_place(world_in_teams: Any, fake: TeamsFake) -> None:
    world = world_in_teams
    when = world.clock.now() + timedelta(minutes=5)
    async with serve_teams(world, fake, rituals=[NudgeAcme(when)]) as teams:
        await teams.link("dana")
        await teams.direct("jordan", "deal list")  # Jordan's 1:1 chat is captured
        world.clock.set(when)
        assert teams.engine is not None
        await teams.engine.tick()
        nudge = fake.posted(personal("jordan"))[-1]
        assert nudge.delivery_key is not None and shown(nudge)[0] == "Acme"
        deal = await acme(world)
        button = {"action_id": "deal_confirm", "value": str(deal.id), "command": "/deal Acme ok"}
        assert (await teams.submit("jordan", button, reply_to=nudge.id)).status == 200
    assert len(nudge.updates) == 1
    settled = shown(nudge)
    assert settled[-1] == "• ✓ Still accurate — Acme, confirmed by Jordan Lee"
    assert all(e["type"] != "ActionSet" for e in nudge.card["body"][0]["items"])  # type: ignore[index]
    async with world.db.session() as session:
        confirm = (await session.execute(select(DealHistory).order_by(DealHistory.id.desc()).limit(1))).scalar_one()
    assert (confirm.kind, confirm.channel) == ("confirm", "teams")
