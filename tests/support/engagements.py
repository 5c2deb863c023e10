"""Build test engagements from YAML through the real `engagement apply`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cadences.engagement_file import apply_engagement, load_engagement_file
from storage import engagements as engagement_repo
from storage.db import Database
from storage.models import Engagement

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SMALL = FIXTURES / "engagement_small.yaml"


async def apply_file(db: Database, path: Path, now: datetime) -> Engagement:
    spec = load_engagement_file(path)
    await apply_engagement(db, spec, now=now)
    async with db.session() as session:
        found = await engagement_repo.get_engagement(session, spec.engagement.slug)
    assert found is not None
    return found
