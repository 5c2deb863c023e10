"""Teams test fixtures: a fake Bot Connector on an ephemeral local port (the `serviceUrl` of every
stored conversation reference)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support.fake_connector import FakeConnector


@pytest.fixture
async def fake_connector() -> AsyncIterator[FakeConnector]:
    async with FakeConnector() as fake:
        yield fake
