"""Drive the Teams bot as Teams does, two ways:

- `bot_adapter(world, who)`: botbuilder's `TestAdapter` around the real `CadenceTeamsBot`, for
  conversation logic (a `TestFlow` sends activities; replies and in-place updates are buffered).
- `serve_teams(world, fake)`: `add_teams_routes` on an aiohttp app on 127.0.0.1:<ephemeral>, fed the
  realistic activities in tests/fixtures/teams/payload_<kind>.json, whose `serviceUrl` points at the
  fake Bot Connector (`TeamsFake`: T1's `FakeConnector` plus the member routes `TeamsInfo` calls).

The test engagement is tests/fixtures/engagement_small.yaml with a `teams:` object id for everyone but
Priya, who is recognised by the email on her Teams profile.

    async with serve_teams(world, fake) as teams:
        await teams.link()                                    # `cadence setup acme-test` by Dana
        response = await teams.message("jordan", "<at>Cadence</at> deal Acme stage=proposal")
        assert response.status == 200 and "Updated Acme" in texts(fake.posted()[-1].card)
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount

from bot.command_limit import CommandLimit
from bot.settings import Settings
from bot.teams.handler import CadenceTeamsBot, TeamsDeps
from bot.teams.port import TeamsPort
from bot.teams.serve import add_teams_routes, teams_port
from cadences.engine import Engine
from cadences.rituals import Ritual
from storage import chat_workspaces, teams_refs
from support.engagements import SMALL, apply_file
from support.fake_connector import BOT, CHANNELS, TENANT, FakeConnector
from support.local_server import Response, serve_locally

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "teams"
TEAM = CHANNELS["general"]
REVIEW = CHANNELS["pipeline-review"]
AAD = {
    "dana": "0b5e3c1d-0000-4000-8000-00000000d001",
    "sam": "0b5e3c1d-0000-4000-8000-00000000c001",
    "maya": "0b5e3c1d-0000-4000-8000-00000000e001",
    "jordan": "0b5e3c1d-0000-4000-8000-00000000a001",
    "priya": "0b5e3c1d-0000-4000-8000-00000000b001",
}
IN_FILE = ("dana", "sam", "maya", "jordan")
"""Whose `teams:` object id the engagement file carries; Priya is matched by email."""
NAMES = {
    "dana": "Dana Whitfield",
    "sam": "Sam Okafor",
    "maya": "Maya Chen",
    "jordan": "Jordan Lee",
    "priya": "Priya Natarajan",
}


def teams_engagement_file(directory: Path) -> Path:
    """engagement_small.yaml with `teams:` object ids added (all but Priya's), written to `directory`."""
    spec = yaml.safe_load(SMALL.read_text(encoding="utf-8"))
    for person in spec["people"]:
        if person["key"] in IN_FILE:
            person["teams"] = AAD[person["key"]]
    path = directory / "engagement_teams.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


async def apply_teams_engagement(world: Any, directory: Path) -> None:
    """Re-apply the world's engagement with the Teams ids (same slug: the people keep their rows)."""
    world.engagement = await apply_file(world.db, teams_engagement_file(directory), world.clock.now())


async def link_tenant(world: Any, service_url: str = "https://test.invalid/amer/") -> None:
    """What `cadence setup` leaves behind, written directly: the tenant linked, #pipeline-review named."""
    async with world.db.write() as session:
        await chat_workspaces.link(session, "teams", TENANT, world.engagement.id, now=world.clock.now())
        await teams_refs.save_ref(
            session,
            conversation_id=REVIEW,
            tenant_id=TENANT,
            service_url=service_url,
            conversation_type="channel",
            reference={"serviceUrl": service_url, "conversation": {"id": REVIEW, "tenantId": TENANT}},
            now=world.clock.now(),
            engagement_id=world.engagement.id,
            team_id=TEAM,
        )
        await teams_refs.name_channel(session, world.engagement.id, REVIEW, "pipeline-review")


def deps_for(world: Any, settings: Settings | None = None, cadence: Any = None) -> TeamsDeps:
    return TeamsDeps(world.db, world.clock, world.router, settings or Settings(), cadence=cadence)


# --- activities ---------------------------------------------------------------------------------------


def payload(kind: str, service_url: str = "https://test.invalid/amer/") -> dict[str, Any]:
    """A fresh copy of tests/fixtures/teams/payload_<kind>.json, addressed to `service_url`."""
    body: dict[str, Any] = json.loads((FIXTURES / f"payload_{kind}.json").read_text(encoding="utf-8"))
    body["serviceUrl"] = service_url
    return copy.deepcopy(body)


def sender(who: str) -> dict[str, Any]:
    return {"id": f"29:1p{who.title()}TeamsUserId", "name": NAMES.get(who, who), "aadObjectId": AAD.get(who, who)}


def personal(who: str) -> str:
    return f"a:1{who.title()}PersonalChatWithCadence"


def channel_message(
    who: str, text: str, *, service_url: str, activity_id: str, root: str | None = None, channel: str = REVIEW
) -> dict[str, Any]:
    """A message typed in a channel with the bot @mentioned: a new post, or a reply in `root`'s thread."""
    body = payload("message", service_url)
    body.update(id=activity_id, text=f"<at>Cadence</at> {text}\n")
    body["from"] = sender(who)
    body["conversation"]["id"] = f"{channel};messageid={root or activity_id}"
    body["channelData"]["teamsChannelId"] = channel
    body["channelData"]["channel"] = {"id": channel}
    return body


def personal_message(who: str, text: str, *, service_url: str, activity_id: str) -> dict[str, Any]:
    body = payload("personal_message", service_url)
    body.update(id=activity_id, text=text)
    body["from"] = sender(who)
    body["conversation"]["id"] = personal(who)
    return body


def card_submit(
    who: str, value: dict[str, Any], *, service_url: str, activity_id: str, reply_to: str
) -> dict[str, Any]:
    """An Action.Submit from a card the bot posted (activity `reply_to`) in `who`'s 1:1 chat."""
    body = payload("card_submit", service_url)
    body.update(id=activity_id, value=value, replyToId=reply_to)
    body["from"] = sender(who)
    body["conversation"]["id"] = personal(who)
    return body


def card_execute(
    who: str, data: dict[str, Any], *, service_url: str, activity_id: str, reply_to: str
) -> dict[str, Any]:
    """An Action.Execute (`adaptiveCard/action` invoke) from a card the bot posted in `who`'s 1:1 chat."""
    body = payload("invoke", service_url)
    body.update(id=activity_id, replyToId=reply_to)
    body["value"]["action"]["data"] = data
    body["from"] = sender(who)
    body["conversation"]["id"] = personal(who)
    return body


# --- botbuilder's TestAdapter ---------------------------------------------------------------------------


def bot_adapter(bot: CadenceTeamsBot, who: str, *, conversation: str = REVIEW, kind: str = "channel") -> TestAdapter:
    """A TestAdapter whose activities come from `who` in Teams (a channel message thread by default)."""
    conversation_id = f"{conversation};messageid=1" if kind == "channel" else conversation
    template = Activity(
        channel_id="msteams",
        service_url="https://test.invalid/amer/",
        from_property=ChannelAccount(
            id=f"29:1p{who.title()}TeamsUserId", name=NAMES.get(who), aad_object_id=AAD.get(who)
        ),
        recipient=ChannelAccount(id=BOT["id"], name=BOT["name"]),
        conversation=ConversationAccount(id=conversation_id, conversation_type=kind, tenant_id=TENANT),
        channel_data={"tenant": {"id": TENANT}, **({"team": {"id": TEAM}} if kind == "channel" else {})},
    )
    return TestAdapter(bot.on_turn, template)


# --- the fake Bot Connector, with members -----------------------------------------------------------------


def member(who: str) -> dict[str, Any]:
    """A Teams roster entry, as `GET .../members/{id}` and `.../pagedmembers` answer."""
    first, last = NAMES[who].split(" ", 1)
    return {
        "id": f"29:1p{who.title()}TeamsUserId",
        "name": NAMES[who],
        "aadObjectId": AAD[who],
        "givenName": first,
        "surname": last,
        "email": f"{who}@testco.example",
        "userPrincipalName": f"{who}@testco.example",
        "tenantId": TENANT,
        "userRole": "user",
    }


class TeamsFake(FakeConnector):
    """`FakeConnector` with the roster routes `TeamsInfo` uses (one member, and paged members two per page,
    so paging is exercised)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.roster = [member(who) for who in AAD]
        self.member_lookups: list[str] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/amer/v3/conversations/{conversation}/members/{member}", self._member)
        app.router.add_get("/amer/v3/conversations/{conversation}/pagedmembers", self._paged)
        super().routes(app)

    async def _member(self, request: web.Request) -> web.Response:
        wanted = request.match_info["member"]
        self.member_lookups.append(wanted)
        found = next((m for m in self.roster if wanted in (m["id"], m["aadObjectId"])), None)
        if found is None:
            return web.json_response({"error": {"code": "MemberNotFoundInConversation", "message": "no"}}, status=404)
        return web.json_response(found)

    async def _paged(self, request: web.Request) -> web.Response:
        start = int(request.query.get("continuationToken") or 0)
        page = self.roster[start : start + 2]
        token = str(start + 2) if start + 2 < len(self.roster) else None
        return web.json_response({"members": page, "continuationToken": token})


# --- the real endpoint ------------------------------------------------------------------------------------


@dataclass
class TeamsDriver:
    """`POST /api/messages` on a served app, and the means to send it Teams' activities. `engine` (with
    `port`, the real TeamsPort on the database's references) is there when rituals were given."""

    url: str
    fake: TeamsFake
    world: Any
    http: aiohttp.ClientSession
    deps: TeamsDeps
    engine: Engine | None = None
    port: TeamsPort | None = None
    _seq: int = field(default=0)

    def next_id(self) -> str:
        self._seq += 1
        return f"1764007300{self._seq:03d}"

    async def post(self, activity: dict[str, Any], *, headers: dict[str, str] | None = None) -> Response:
        async with self.http.post(f"{self.url}/api/messages", json=activity, headers=headers or {}) as response:
            return Response(response.status, await response.text())

    async def message(self, who: str, text: str, **kwargs: Any) -> Response:
        """`who` types `text` to the bot in #pipeline-review (a new post unless `root` names a thread)."""
        body = channel_message(who, text, service_url=self.fake.service_url, activity_id=self.next_id(), **kwargs)
        return await self.post(body)

    async def direct(self, who: str, text: str) -> Response:
        body = personal_message(who, text, service_url=self.fake.service_url, activity_id=self.next_id())
        return await self.post(body)

    async def submit(self, who: str, value: dict[str, Any], reply_to: str) -> Response:
        body = card_submit(who, value, service_url=self.fake.service_url, activity_id=self.next_id(), reply_to=reply_to)
        return await self.post(body)

    async def execute(self, who: str, data: dict[str, Any], reply_to: str) -> Response:
        body = card_execute(who, data, service_url=self.fake.service_url, activity_id=self.next_id(), reply_to=reply_to)
        return await self.post(body)

    async def link(self, who: str = "dana", slug: str = "acme-test") -> Response:
        """`cadence setup <slug>` typed to the bot in #pipeline-review."""
        return await self.message(who, f"cadence setup {slug}")


@asynccontextmanager
async def serve_teams(
    world: Any,
    fake: TeamsFake,
    *,
    rituals: Sequence[Ritual] | None = None,
    commands_per_minute: int | None = None,
    **settings: Any,
) -> AsyncIterator[TeamsDriver]:
    """`add_teams_routes` on a web app on 127.0.0.1:<ephemeral> for the test world; with `rituals`, the
    cadence engine too, delivering through `teams_port` (what `cadence run` wires); with
    `commands_per_minute`, the per-user command limit."""
    app = web.Application()
    deps = deps_for(world, Settings(database_url=world.db.url, **settings))
    if commands_per_minute is not None:
        deps.limit = CommandLimit(world.db, world.clock, commands_per_minute)
    port = engine = None
    if rituals is not None:
        port = teams_port(deps)
        engine = Engine(world.db, world.clock, rituals, lambda _engagement: port, worker="teams-test")
        deps.cadence = engine
    add_teams_routes(app, deps)
    runner, url = await serve_locally(app)
    try:
        async with aiohttp.ClientSession() as http:
            yield TeamsDriver(url, fake, world, http, deps, engine, port)
    finally:
        await runner.cleanup()
        if port is not None:
            await port.close()
