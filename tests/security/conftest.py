"""What every security test checks after a refused request: nothing in the database changed. `db_state`
gives a function returning the row count of every table, and the sum of the deals' versions (so an update
counts too), in one round trip — cheap enough to run after each of hundreds of hypothesis examples."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select

from storage.db import Database
from storage.models import Base, Deal

DbState = Callable[[], Awaitable[dict[str, int]]]


@pytest.fixture
def db_state(db: Database) -> DbState:
    tables = list(Base.metadata.sorted_tables)
    counts = [select(func.count()).select_from(t).scalar_subquery().label(t.name) for t in tables]
    versions = select(func.coalesce(func.sum(Deal.version), 0)).scalar_subquery().label("deal_versions")
    stmt = select(*counts, versions)

    async def state() -> dict[str, int]:
        async with db.session() as session:
            row = (await session.execute(stmt)).one()
        return {name: int(n) for name, n in zip([*(t.name for t in tables), "deal versions"], row, strict=True)}

    return state
