"""The console chat loop. Reads lines from stdin (a TTY or a pipe) and answers like a chat would.

Console-only commands: `/as NAME` switches who you are, `/who` lists the people, `/quit` leaves, and a
number runs the numbered button from the previous answer.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from typing import TextIO
from zoneinfo import ZoneInfo

from bot.app import CadenceApp, SetupError
from bot.console.port import ConsolePort
from bot.console.render import render
from cadences.engine import Engine
from cadences.messages import Button
from cadences.ritual_catalog import all_rituals
from cadences.scheduler import CadenceScheduler
from storage import engagements as engagement_repo
from storage.models import Engagement, Person

PLATFORM = "console"


class ConsoleSession:
    """One person's chat with the bot in a terminal."""

    def __init__(self, app: CadenceApp, engagement: Engagement, out: TextIO) -> None:
        self.app = app
        self.engagement = engagement
        self.out = out
        self.person: Person | None = None
        self.buttons: list[Button] = []
        port = ConsolePort(app.clock.now, ZoneInfo(engagement.timezone), out)
        self.engine = Engine(app.db, app.clock, all_rituals(), lambda _engagement: port)

    async def become(self, name: str) -> None:
        async with self.app.db.session() as session:
            matches = list(await engagement_repo.find_people(session, self.engagement.id, name))
        if len(matches) != 1:
            who = ", ".join(f"{p.name} (@{p.key}, {p.role})" for p in matches) or "nobody"
            raise SetupError(f"'{name}' matches {who}; use a handle from /who")
        self.person = matches[0]

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def handle(self, line: str) -> bool:
        """Answer one line; False when the person wants to leave."""
        line = line.strip()
        if not line:
            return True
        if line in ("/quit", "/exit", "quit", "exit"):
            return False
        if line == "/who":
            async with self.app.db.session() as session:
                everyone = await engagement_repo.people(session, self.engagement.id)
            self.say("\n".join(f"  @{p.key:<10} {p.name} ({p.role})" for p in everyone))
            return True
        if line.startswith("/as "):
            try:
                await self.become(line[4:])
                assert self.person is not None
                self.say(f"You are now {self.person.name} ({self.person.role}).")
            except SetupError as exc:
                self.say(str(exc))
            return True
        if line.isdigit() and 0 < int(line) <= len(self.buttons):
            line = self.buttons[int(line) - 1].command or line
            self.say(f"> {line}")
        ctx = self.app.context(self.engagement, self.person.key if self.person else "?", PLATFORM)
        ctx = replace(ctx.with_actor(self.person), cadence=self.engine)
        self.buttons = []
        for message in await self.app.router.handle_text(ctx, line):
            self.say(render(message, self.buttons))
        return True


async def run_console(
    app: CadenceApp,
    engagement: Engagement,
    as_name: str,
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    *,
    clock_running: bool = False,
) -> None:
    """Chat until end of input. With `clock_running`, the rituals also fire on the wall clock and their
    messages print here as they are sent (`cadence run` without chat credentials)."""
    session = ConsoleSession(app, engagement, out)
    await session.become(as_name)
    assert session.person is not None
    scheduler = CadenceScheduler(session.engine) if clock_running else None
    if scheduler is not None:
        scheduler.start()
    try:
        await _chat(session, stdin, out)
    finally:
        if scheduler is not None:
            scheduler.shutdown()


async def _chat(session: ConsoleSession, stdin: TextIO, out: TextIO) -> None:
    assert session.person is not None
    interactive = stdin.isatty()
    session.say(
        f"Cadence · {session.engagement.company} · you are {session.person.name} ({session.person.role}). "
        "Type /help, /deal help, /who, /as NAME or /quit."
    )
    loop = asyncio.get_running_loop()
    while True:
        prompt = f"{session.person.key if session.person else '?'}> "
        if interactive:
            out.write(prompt)
            out.flush()
        line = await loop.run_in_executor(None, stdin.readline)
        if not line:
            break
        if not interactive:
            session.say(prompt + line.rstrip())
        if not await session.handle(line):
            break
