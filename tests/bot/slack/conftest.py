"""Slack test fixtures: a fake Slack Web API on an ephemeral local port, seeded with the people and
channels of tests/fixtures/engagement_small.yaml."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support.fake_slack import FakeSlack


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack.for_testco() as fake:
        yield fake
