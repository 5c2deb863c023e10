"""The console as a chat port: ritual messages print in the terminal with where they would go."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from typing import TextIO
from zoneinfo import ZoneInfo

from bot.console.render import render
from cadences.messages import Message
from cadences.ports import SentRef, Target


class ConsolePort:
    """Prints each message with its local time and destination. It remembers what it printed in this
    process only, so after a restart `find_sent` cannot tell (the console's honest limit)."""

    platform = "console"

    def __init__(self, now: Callable[[], datetime], tz: ZoneInfo, out: TextIO = sys.stdout) -> None:
        self.now = now
        self.tz = tz
        self.out = out
        self._sent: dict[str, SentRef] = {}

    async def send(self, target: Target, message: Message, *, delivery_key: str) -> SentRef:
        when = self.now().astimezone(self.tz).strftime("%a %Y-%m-%d %H:%M %Z")
        indent = "    " if target.thread else ""
        self.out.write(f"\n{indent}[{when} · {target.describe()}]\n{render(message, indent=indent)}\n")
        self.out.flush()
        conversation = f"dm-{target.person_id}" if target.kind == "person" else str(target.channel)
        ref = SentRef(
            platform=self.platform,
            conversation=conversation,
            message_id=str(len(self._sent) + 1),
            thread_id=target.thread.message_id if target.thread else None,
        )
        self._sent[delivery_key] = ref
        return ref

    async def find_sent(self, target: Target, delivery_key: str) -> SentRef | None:
        return self._sent.get(delivery_key)

    async def update(self, ref: SentRef, message: Message) -> None:
        when = self.now().astimezone(self.tz).strftime("%a %Y-%m-%d %H:%M %Z")
        self.out.write(f"\n[{when} · updated message {ref.message_id}]\n{render(message)}\n")
        self.out.flush()
