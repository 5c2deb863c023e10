"""The per-user command rate limit: at most N commands a minute per person and workspace, in all processes.

A person (or a script with their account) firing commands in a loop would fill the audit log, hold the
database's write lock and fan out posts; past the limit the command is answered with a polite "slow
down", privately, and not run. The count lives in the database (`storage/command_rates.py`), so the
limit holds however many `cadence run` processes share the load.

`CommandLimit.allow` is platform neutral. It is asked in the work after the ack, not before it: counting
is a database write, and a write in the ack path makes every command's ack wait for the write lock
(bench/ack.py measured that on SQLite as most of the ack time). Slack's slash commands and DM commands
ask it in their background handlers (`bot/slack/listeners/`), Teams' typed commands in the turn
(`bot/teams/handler.py`); the refusal reaches the person the way an answer would have.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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

    def __init__(self, db: Database, clock: Clock, per_minute: int, on_limited: LimitHook | None = None) -> None:
        if per_minute < 1:
            raise ValueError("the command limit must allow at least one command a minute")
        self.db = db
        self.clock = clock
        self.per_minute = per_minute
        self.on_limited = on_limited

    async def allow(self, platform: str, workspace_id: str, user_id: str) -> bool:
        """Count this command; False when it is over the limit (then it must not run)."""
        async with self.db.write() as session:
            count = await count_command(session, platform, workspace_id, user_id, self.clock.now())
        if count > self.per_minute:
            log.info("%s user %s in %s is over %d commands a minute", platform, user_id, workspace_id, self.per_minute)
            if self.on_limited is not None:
                self.on_limited(platform)
            return False
        return True
