"""Rate-limit buckets in the database, so every process that calls one platform API shares one budget.

Each bucket is a `rate_slot` row holding its theoretical arrival time (TAT, in seconds since the epoch)
under the generic cell rate algorithm: a call conforms at `TAT - tolerance` and moves the TAT one
interval on. A reservation locks the rows of all its buckets (in key order, so two reservations never
deadlock), computes the earliest instant every bucket allows, moves each TAT past it and commits: the
caller then sleeps until that instant without holding anything.

- PostgreSQL (`reserve_postgres`): one statement in autocommit — lock, compute, update, return the wait
  — timed by the server's clock, the one clock all processes on all machines share. A Monday's fan-out
  makes thousands of reservations; one round trip each instead of a transaction's five is most of what
  keeps a bot process's event loop on time.
- Any database (`reserve`): the same inside the caller's write transaction, in Python, timed by the
  caller's clock; on SQLite the write transaction (BEGIN IMMEDIATE) serialises reservations.

Platform neutral on purpose: the keys and rates are the caller's (bot/slack/pacing.py names Slack's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage.models import RateSlot

UNUSED = 0.0
"""The TAT of a bucket never used: long past, so its first call goes at once."""


@dataclass(frozen=True)
class Bucket:
    """One limit: `key` names it (e.g. "chat:T123:C456"); one call every `interval` seconds in the long
    run, `burst` of them back to back."""

    key: str
    interval: float
    burst: int = 1

    @property
    def tolerance(self) -> float:
        return (self.burst - 1) * self.interval


def earliest(tats: Sequence[float | None], buckets: Sequence[Bucket], now: float) -> tuple[float, list[float]]:
    """The earliest instant (not before `now`) a call conforming to every bucket may go, and each
    bucket's TAT once it has. A bucket never used (None) allows the call at once."""
    start = now
    for tat, bucket in zip(tats, buckets, strict=True):
        if tat is not None:
            start = max(start, tat - bucket.tolerance)
    after = [max(start if t is None else t, start) + b.interval for t, b in zip(tats, buckets, strict=True)]
    return start, after


async def reserve(session: AsyncSession, buckets: Sequence[Bucket], clock: Callable[[], float]) -> float:
    """Reserve the next slot in every bucket at once (inside the caller's write transaction, committed by
    it); returns the instant the call may go. Missing rows are created first: two processes creating the
    same row meet on its primary key, and the loser then locks the winner's row. The clock is read once
    the rows are locked: a reservation that waited for a connection or a lock must not be handed a slot
    in the past, or its call would go late and crowd the next one's."""
    keys = sorted({b.key for b in buckets})
    if len(keys) != len(buckets):
        raise ValueError("each bucket of a reservation must have its own key")
    ordered = sorted(buckets, key=lambda b: b.key)
    tats = await _lock(session, keys)
    missing = [k for k in keys if k not in tats]
    if missing:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        await session.execute(
            insert(RateSlot).on_conflict_do_nothing(index_elements=["key"]),
            [{"key": k, "tat": UNUSED} for k in missing],
        )
        tats = await _lock(session, keys)
    start, after = earliest([tats.get(b.key) for b in ordered], ordered, clock())
    # An UPDATE by primary key per bucket, sent as one executemany.
    await session.execute(update(RateSlot), [{"key": b.key, "tat": t} for b, t in zip(ordered, after, strict=True)])
    return start


_RESERVE_POSTGRES = text(
    """
    WITH bucket AS (
        SELECT * FROM unnest(CAST(:keys AS varchar[]), CAST(:steps AS float8[]), CAST(:tolerances AS float8[]))
            AS b(key, step, tolerance)
    ), locked AS (
        SELECT r.key, r.tat, bucket.step, bucket.tolerance
        FROM rate_slot r JOIN bucket ON bucket.key = r.key
        ORDER BY r.key
        FOR UPDATE OF r
    ), slot AS (
        SELECT now, GREATEST(now, earliest) AS start, found
        FROM (
            SELECT COALESCE(CAST(:now AS float8), EXTRACT(EPOCH FROM clock_timestamp())::float8) AS now,
                   MAX(tat - tolerance) AS earliest,
                   count(*) AS found
            FROM locked
        ) AS computed
    )
    UPDATE rate_slot r SET tat = GREATEST(locked.tat, slot.start) + locked.step
    FROM locked, slot
    WHERE r.key = locked.key AND slot.found = :count
    RETURNING slot.start - slot.now AS delay
    """
)


async def reserve_postgres(conn: AsyncConnection, buckets: Sequence[Bucket], now: float | None = None) -> float:
    """`reserve` as one statement on PostgreSQL (`conn` in autocommit): the seconds to wait before the
    call. The clock is the server's, read once the rows are locked (`now` replaces it in tests). A
    bucket seen for the first time has no row to lock: the statement then changes nothing, the missing
    rows are created, and it runs again — so a reservation never moves some of its buckets and not others."""
    ordered = sorted(buckets, key=lambda b: b.key)
    keys = [b.key for b in ordered]
    if len(set(keys)) != len(keys):
        raise ValueError("each bucket of a reservation must have its own key")
    params = {
        "keys": keys,
        "steps": [b.interval for b in ordered],
        "tolerances": [b.tolerance for b in ordered],
        "count": len(ordered),
        "now": now,
    }
    for _ in range(2):
        delay = (await conn.execute(_RESERVE_POSTGRES, params)).scalars().first()
        if delay is not None:
            return float(delay)
        await conn.execute(
            pg_insert(RateSlot).on_conflict_do_nothing(index_elements=["key"]),
            [{"key": b.key, "tat": UNUSED} for b in ordered],
        )
    raise RuntimeError("rate_slot rows vanished twice in a row")  # only a concurrent prune could, and not twice


async def _lock(session: AsyncSession, keys: list[str]) -> dict[str, float]:
    stmt = select(RateSlot.key, RateSlot.tat).where(RateSlot.key.in_(keys)).order_by(RateSlot.key).with_for_update()
    return {key: tat for key, tat in (await session.execute(stmt)).all()}


async def forget_idle(session: AsyncSession, before: float) -> int:
    """Delete buckets whose TAT is before `before` (they would start afresh anyway); how many."""
    result = await session.execute(delete(RateSlot).where(RateSlot.tat < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
