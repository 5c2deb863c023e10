"""The per-user command rate limit: at most N commands a minute per person and workspace, in all processes.

A person (or a script with their account) firing commands in a loop would fill the audit log, hold the
database's write lock and fan out posts; past the limit the command is answered with a polite "slow
down", privately, and not run. The count lives in the database (`storage/command_rates.py`), so the
limit holds however many `cadence run` processes share the load.

`CommandLimit.allow` is platform neutral; `slack_middleware` applies it to Slack's slash commands and to
commands typed in the bot's DM, after Bolt has checked the request's signature (an unsigned request
never counts against anyone).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from cadences.clock import Clock
from storage.command_rates import count_command
from storage.db import Database

log = logging.getLogger(__name__)

SLOW_DOWN = (
    "You're sending commands faster than I can keep up with, so I didn't run that one. "
    "Please wait a minute and try again."
)

LimitHook = Callable[[str], None]
"""Called with the platform each time a command is refused (the metrics count them)."""


class CommandLimit:
    """At most `per_minute` commands per (platform, workspace, user) in each minute of the clock."""

    def __init__(self, db: Database, clock: Clock, per_minute: int) -> None:
        if per_minute < 1:
            raise ValueError("the command limit must allow at least one command a minute")
        self.db = db
        self.clock = clock
        self.per_minute = per_minute

    async def allow(self, platform: str, workspace_id: str, user_id: str) -> bool:
        """Count this command; False when it is over the limit (then it must not run)."""
        async with self.db.write() as session:
            count = await count_command(session, platform, workspace_id, user_id, self.clock.now())
        if count > self.per_minute:
            log.info("%s user %s in %s is over %d commands a minute", platform, user_id, workspace_id, self.per_minute)
            return False
        return True


Middleware = Callable[..., Awaitable[BoltResponse | None]]


def _typed_in_dm(body: dict[str, Any]) -> dict[str, Any] | None:
    """The message event of a person's DM to the bot (read as a command), else None."""
    event = body.get("event") if body.get("type") == "event_callback" else None
    if not isinstance(event, dict) or event.get("type") != "message" or event.get("channel_type") != "im":
        return None
    if event.get("subtype") is not None or event.get("bot_id") or not event.get("user"):
        return None
    return event


def slack_middleware(limit: CommandLimit, on_limited: LimitHook | None = None) -> Middleware:
    """A Bolt global middleware: slash commands and DM commands over the limit are answered and dropped."""

    async def command_limit(
        body: dict[str, Any], client: AsyncWebClient, next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        team_id = str(body.get("team_id") or (body.get("team") or {}).get("id") or "")
        if body.get("command"):
            if not await limit.allow("slack", team_id, str(body.get("user_id") or "")):
                if on_limited is not None:
                    on_limited("slack")
                answer = {"response_type": "ephemeral", "text": SLOW_DOWN}
                return BoltResponse(status=200, body=json.dumps(answer), headers={"content-type": "application/json"})
        elif (event := _typed_in_dm(body)) is not None:
            if not await limit.allow("slack", team_id, str(event["user"])):
                if on_limited is not None:
                    on_limited("slack")
                await client.chat_postEphemeral(
                    channel=str(event.get("channel")), user=str(event["user"]), text=SLOW_DOWN
                )
                return BoltResponse(status=200, body="")
        await next()
        return None

    return command_limit
