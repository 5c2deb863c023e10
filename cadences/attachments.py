"""Binary content that messages refer to by key (the digest chart), stored in the database.

A message carries only `Image(key=...)`; the bytes live in an `Attachment` row so whichever process
delivers the message — possibly another host, possibly after a restart — can upload them. Storing is
insert-if-absent: the content for a key is deterministic, so the first writer wins and a second
render (another recipient, a retry, a preview) neither fails nor changes what was already sent.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Attachment


async def store_attachment(
    session: AsyncSession, engagement_id: int, key: str, content: bytes, *, mime: str, filename: str, now: datetime
) -> bool:
    """Keep `content` under `key` unless something is already stored there; True when this call stored it."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(Attachment)
        .values(key=key, engagement_id=engagement_id, mime=mime, filename=filename, content=content, created_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(Attachment.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def attachment_bytes(session: AsyncSession, key: str) -> tuple[bytes, str, str] | None:
    """(content, mime type, file name) stored under `key`, for a platform to upload; None when absent."""
    stmt = select(Attachment.content, Attachment.mime, Attachment.filename).where(Attachment.key == key)
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None else (bytes(row[0]), row[1], row[2])
