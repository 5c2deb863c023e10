"""Pacing posts to Slack: about one message a second per channel.

Slack documents chat.postMessage as "1 per second per channel, short bursts allowed" (a special rate
tier). slack_sdk's retry handler already honours a 429's `Retry-After`, but waiting for the 429 means
being throttled first; pacing ahead keeps a fan-out (the Monday review with a thread per flagged deal)
under the limit so the 429 path stays the exception.

`Pacer` is the seam: `ChannelPacer` paces within one process; a deployment with several bot processes
posting to one workspace needs a shared (database-backed) limiter behind the same protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

Monotonic = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Pacer(Protocol):
    async def wait(self, workspace: str, channel: str) -> None:
        """Return when a message may be posted to `channel` of `workspace` (and count it as posted)."""
        ...


class ChannelPacer:
    """A per-channel limiter: one message every `interval` seconds, allowing `burst` back to back.

    Each call reserves its slot before it sleeps (the generic cell rate algorithm: a "theoretical
    arrival time" per channel), so concurrent callers for one channel are spaced without a lock and
    callers for other channels never wait. The clock and the sleep are injected so tests run on fake
    time."""

    def __init__(
        self,
        interval: float = 1.0,
        burst: int = 1,
        *,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_channels: int = 1000,
    ) -> None:
        if interval < 0 or burst < 1:
            raise ValueError("interval must be >= 0 and burst >= 1")
        self.interval = interval
        self.tolerance = (burst - 1) * interval
        self.monotonic = monotonic
        self.sleep = sleep
        self.max_channels = max_channels
        self._tat: dict[tuple[str, str], float] = {}

    async def wait(self, workspace: str, channel: str) -> None:
        now = self.monotonic()
        key = (workspace, channel)
        tat = max(self._tat.get(key, now), now)
        start = max(now, tat - self.tolerance)
        self._tat[key] = tat + self.interval
        if len(self._tat) > self.max_channels:
            self._forget_idle(now)
        if start > now:
            await self.sleep(start - now)

    def _forget_idle(self, now: float) -> None:
        """Drop channels whose last reservation has passed: they would start fresh anyway."""
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
