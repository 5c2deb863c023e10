"""Pacing calls to Slack under its rate limits, in one process or shared by many.

Slack documents `chat.postMessage` as "1 per second per channel, short bursts allowed" (a special rate
tier) on top of workspace-wide limits, and `conversations.open` (Tier 3) at about 50 a minute. slack_sdk's
retry handler already honours a 429's `Retry-After`, but waiting for the 429 means being throttled first;
pacing ahead keeps a fan-out (a Monday's nudges to every rep, the review with a thread per flagged deal)
under the limits so the 429 path stays the exception.

Every limit is a bucket in the generic cell rate algorithm: a "theoretical arrival time" (TAT) per
bucket; a call may go at `TAT - tolerance`, and going moves the TAT one interval on. A post belongs to
two buckets at once (its channel and its workspace) and goes when both allow it. Each call *reserves*
its slot before it sleeps, so concurrent callers are spaced without holding a lock while they wait.

`Pacer` is the seam the Slack port calls. `ChannelPacer` keeps the buckets in memory: right for one
process (the embedded SQLite default), and free. `SharedPacer` keeps them in the database
(`storage/rate_limits.py`): N bot processes posting to one workspace then share one budget instead of
each spending a full one. `pacer_for(db)` picks the one that fits the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from storage import rate_limits
from storage.db import Database

Monotonic = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


WORKSPACE_POSTS = "#chat"
DM_OPENS = "#open"
POST_METHOD = "chat.postMessage"
OPEN_METHOD = "conversations.open"

_last_paced: ContextVar[tuple[str, Callable[[], Awaitable[None]]] | None] = ContextVar("last_paced", default=None)
"""In the calling task: the API method the pacer last let through, and how to wait for the same buckets
again (`PacedRetry` uses it when that call comes back with a 429)."""


class Pacer(Protocol):
    async def wait(self, workspace: str, channel: str) -> None:
        """Return when a message may be posted to `channel` of `workspace` (and count it as posted)."""
        ...

    async def wait_open(self, workspace: str) -> None:
        """Return when a DM may be opened (`conversations.open`) in `workspace` (and count it)."""
        ...


@dataclass(frozen=True)
class Rate:
    """One call every `interval` seconds in the long run, `burst` of them back to back."""

    interval: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.interval < 0 or self.burst < 1:
            raise ValueError("interval must be >= 0 and burst >= 1")


@dataclass(frozen=True)
class SlackLimits:
    """The limits a pacer keeps (None: not paced). `margin` stretches every interval a little: a slot is
    reserved here but the call reaches Slack a few milliseconds later, and uneven delays between two
    calls must not make the second look early to Slack."""

    channel: Rate = Rate(1.0, 1)
    """chat.postMessage (and uploads) per channel."""
    workspace: Rate | None = Rate(0.1, 10)
    """Posts per workspace, whatever the channel."""
    opens: Rate | None = Rate(1.2, 1)
    """conversations.open per workspace: 50 a minute."""
    margin: float = 0.02

    def post(self, channel: str) -> list[tuple[str, Rate]]:
        """The buckets a post to `channel` spends from, named within its workspace: the channel's own,
        then the workspace's (`#chat`; no channel id starts with '#')."""
        return [(channel, self.channel)] + ([(WORKSPACE_POSTS, self.workspace)] if self.workspace else [])

    def open(self) -> list[tuple[str, Rate]]:
        """The bucket a DM open spends from, named within its workspace."""
        return [(DM_OPENS, self.opens)] if self.opens else []

    def bucket(self, key: str, rate: Rate) -> rate_limits.Bucket:
        """The bucket `key` for `rate`, its interval stretched by the margin."""
        return rate_limits.Bucket(key, rate.interval * (1 + self.margin), rate.burst)


class ChannelPacer:
    """The in-process pacer. `interval` and `burst` make it a per-channel limiter only (one message every
    `interval` seconds per channel, `burst` back to back); `limits` gives it Slack's full set (channel,
    workspace, DM opens). Reservations live in a dict keyed like the shared pacer's rows. The clock and
    the sleep are injected so tests run on fake time."""

    def __init__(
        self,
        interval: float = 1.0,
        burst: int = 1,
        *,
        limits: SlackLimits | None = None,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_channels: int = 1000,
    ) -> None:
        self.limits = limits or SlackLimits(channel=Rate(interval, burst), workspace=None, opens=None, margin=0.0)
        self.monotonic = monotonic
        self.sleep = sleep
        self.max_channels = max_channels
        self._tat: dict[tuple[str, str], float] = {}

    async def wait(self, workspace: str, channel: str) -> None:
        _last_paced.set((POST_METHOD, lambda: self._take(workspace, self.limits.post(channel))))
        await self._take(workspace, self.limits.post(channel))

    async def wait_open(self, workspace: str) -> None:
        _last_paced.set((OPEN_METHOD, lambda: self._take(workspace, self.limits.open())))
        await self._take(workspace, self.limits.open())

    async def _take(self, workspace: str, named: list[tuple[str, Rate]]) -> None:
        now = self.monotonic()
        keys = [(workspace, name) for name, _ in named]
        buckets = [self.limits.bucket(name, rate) for name, rate in named]
        start, after = rate_limits.earliest([self._tat.get(k) for k in keys], buckets, now)
        self._tat.update(zip(keys, after, strict=True))
        if len(self._tat) > self.max_channels:
            self._forget_idle(now)
        if start > now:
            await self.sleep(start - now)

    def _forget_idle(self, now: float) -> None:
        """Drop buckets whose last reservation has passed: they would start fresh anyway."""
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]


@dataclass
class SharedPacer:
    """The pacer shared by every process on one database: each reservation locks the buckets' rows
    (`storage.rate_limits`), moves their TATs and commits before the caller sleeps, so two processes
    never hand out the same slot and nobody waits holding a lock.

    On PostgreSQL a reservation is one statement in autocommit, timed by the database server's clock —
    the one clock processes on different machines share. Elsewhere it is a short write transaction timed
    by `clock` (the wall clock). `clock` given on PostgreSQL replaces the server's (tests). Buckets idle
    for `forget_after` seconds are deleted now and then (`prune_every` reservations), so the table holds
    only the channels in use."""

    db: Database
    limits: SlackLimits = field(default_factory=SlackLimits)
    clock: Monotonic | None = None
    sleep: Sleep = asyncio.sleep
    forget_after: float = 3600.0
    prune_every: int = 1000
    _reservations: int = 0

    async def wait(self, workspace: str, channel: str) -> None:
        _last_paced.set((POST_METHOD, lambda: self._take(workspace, self.limits.post(channel))))
        await self._take(workspace, self.limits.post(channel))

    async def wait_open(self, workspace: str) -> None:
        _last_paced.set((OPEN_METHOD, lambda: self._take(workspace, self.limits.open())))
        await self._take(workspace, self.limits.open())

    async def _take(self, workspace: str, named: list[tuple[str, Rate]]) -> None:
        if not named:
            return
        buckets = [self.limits.bucket(f"{workspace}/{name}", rate) for name, rate in named]
        if self.db.is_postgres:
            async with self.db.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                delay = await rate_limits.reserve_postgres(conn, buckets, self.clock() if self.clock else None)
        else:
            clock = self.clock or time.time
            async with self.db.write() as session:
                start = await rate_limits.reserve(session, buckets, clock)
            delay = start - clock()
        self._reservations += 1
        if self._reservations % self.prune_every == 0:
            await self._prune()
        if delay > 0:
            await self.sleep(delay)

    async def _prune(self) -> None:
        """The local clock is close enough to the server's for "idle for an hour"."""
        async with self.db.write() as session:
            await rate_limits.forget_idle(session, (self.clock or time.time)() - self.forget_after)


def pacer_for(db: Database, limits: SlackLimits | None = None) -> Pacer:
    """The pacer for a deployment: shared through PostgreSQL, where several processes may post to one
    workspace; in memory on SQLite, which serves one process and so needs no round trip per post."""
    limits = limits or SlackLimits()
    if db.is_postgres:
        return SharedPacer(db, limits)
    return ChannelPacer(limits=limits)


class PacedRetry(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's 429 retry, through the pacer. slack_sdk waits `Retry-After` plus a random second and
    retries at once; on a bucket the pacer keeps full (a Monday's DM opens), that moment belongs to a call
    the pacer has already scheduled, and the two collide into another 429. Here the retried call waits
    `Retry-After` and then takes a fresh slot of the buckets its first attempt was paced by (remembered
    in the calling task), like any other call. Calls the pacer does not pace are retried as slack_sdk
    would, without its random second."""

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if response is None:
            raise error or RuntimeError("a retry without a response")
        state.next_attempt_requested = True
        await asyncio.sleep(retry_after(response))
        paced = _last_paced.get()
        if paced is not None and request.url.endswith(paced[0]):
            await paced[1]()
        state.increment_current_attempt()


def retry_after(response: HttpResponse) -> float:
    """The seconds a 429 asks to wait (1 when it does not say)."""
    for name, values in response.headers.items():
        if name.lower() == "retry-after" and values:
            try:
                return float(values[0])
            except ValueError:
                break
    return 1.0
