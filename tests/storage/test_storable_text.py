"""Text only malformed input carries: U+0000 (PostgreSQL stores it in neither text nor jsonb) and lone
surrogates (not encodable as UTF-8 for either driver). The database layer mends every string it sends —
plain columns, JSON documents (keys too) and bulk inserts alike — on both databases, keeping the rest."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select

from storage import audit
from storage.db import Database, storable
from storage.models import AuditLog

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_every_string_in_a_value_is_made_storable() -> None:
    value = {"a\x00": ["x\x00y", ("\x00", 3)], "n": None, "b": b"\x00", "é\ud9f6": "ok\udc00 😀"}
    assert storable(value) == {"a": ["xy", ("", 3)], "n": None, "b": b"\x00", "é\ufffd": "ok\ufffd 😀"}


async def test_text_and_json_with_nul_are_stored_without_it(db: Database) -> None:
    async with db.write() as session:
        audit.record(
            session,
            at=AT,
            channel="slack\x00",
            action="deal.update",
            outcome="ok",
            engagement_id=None,
            target="Acme\x00 Corp\ud9f6",
            detail={"raw\x00": "stage=proposal\x00 please", "list": ["a\x00b"]},
        )
        await session.execute(
            insert(AuditLog),
            [{"at": AT, "channel": "teams", "action": f"bulk\x00{n}", "outcome": "ok", "detail": {}} for n in range(2)],
        )
    async with db.session() as session:
        rows = (await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all()
    assert (rows[0].channel, rows[0].target) == ("slack", "Acme Corp\ufffd")
    assert rows[0].detail == {"raw": "stage=proposal please", "list": ["ab"]}
    assert [r.action for r in rows[1:]] == ["bulk0", "bulk1"]
