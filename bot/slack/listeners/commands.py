"""Slash commands: `/deal`, `/pipeline`, `/debrief`, `/cadence`, `/digest`.

Each is acknowledged at once (an empty ack shows nothing) and handled in the background: the text goes
through the same command router as the console, and the answer comes back ephemerally through the
command's response_url. Three commands open a form instead: bare `/deal` (pick a deal and edit it),
`/deal new` (a new deal) and `/pipeline forecast` without numbers (the forecast call). `/cadence setup`
links the workspace to an engagement (see `setup.py`). A person past their command limit gets the
"slow down" line through the response_url instead, and nothing runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.command_limit import SLOW_DOWN
from bot.slack.listeners import views
from bot.slack.listeners.requests import NOT_LINKED, answer, command_text, ids, tell, who
from bot.slack.listeners.setup import link_workspace

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps

COMMANDS = ("/deal", "/pipeline", "/debrief", "/cadence", "/digest")


def register(app: AsyncApp, deps: SlackDeps) -> None:
    from bot.slack.app import reporter

    async def slash_command(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        await ack()
        deps.background.spawn(
            handle(deps, client, body, respond), what=str(body.get("command")), on_error=reporter(respond)
        )

    for name in COMMANDS:
        app.command(name)(slash_command)
        deps.registry.commands.add(name)


async def handle(deps: SlackDeps, client: AsyncWebClient, body: dict[str, Any], respond: AsyncRespond) -> None:
    """What the person sees after typing a command: the router's answer, or a form."""
    team_id, user_id = ids(body)
    if not await deps.within_limit(team_id, user_id):
        await tell(respond, SLOW_DOWN)
        return
    name = str(body.get("command", "")).lstrip("/")
    text = command_text(body.get("text"))
    head, _, rest = text.partition(" ")
    if name == "cadence" and head.casefold() == "setup":
        await link_workspace(deps, client, body, respond, rest)
        return
    asker = await who(deps, client, team_id, user_id)
    if asker is None:
        await tell(respond, NOT_LINKED)
        return

    async def say(line: str) -> None:
        await tell(respond, line)

    trigger_id = str(body.get("trigger_id") or "")
    meta = views.origin(body)
    verb = text.casefold()
    if name == "deal" and not text:
        await views.open_deal_form(deps, client, asker, trigger_id, say, meta=meta)
    elif name == "deal" and verb == "new":
        await views.open_new_deal_form(deps, client, asker, trigger_id, say, meta)
    elif name == "pipeline" and verb == "forecast":
        await views.open_forecast_form(deps, client, asker, trigger_id, say, meta)
    else:
        raw = f"/{name} {text}".strip()
        await answer(respond, await deps.router.run(asker.context(deps), name, text, raw=raw))
