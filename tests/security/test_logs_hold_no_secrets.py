"""No token and no request body ever reaches the logs: a whole working session with Slack — multi-workspace
OAuth mode, so the bot token is read from the (sealed) database on every request — is run at DEBUG with
the logging `cadence` configures, through every path that logs (a command, a form, a DM, a refused
signature, a platform failure, a 429, an uninstall), and neither the raw records nor the JSON lines
written contain the token, the signing secret, any request body, or the words a person typed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bot.logs import configure_logging
from storage import chat_workspaces
from storage.secrets import SECRET_KEY_ENV, new_key
from support.fake_slack import FakeChannel, FakeSlack
from support.slack_app import SIGNING_SECRET, SlackDriver, payload, serve_slack

TOKEN = "xoxb-2048-4096-SeCrEtToKeNvAlUe"
MARKER = "Zanzibar7731"
"""Words only a person typed: in a deal name, a next step, a DM and a form."""


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in named.items():
        logging.getLogger(name).setLevel(old)


@pytest.fixture
async def slack(world: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SlackDriver]:
    monkeypatch.setenv(SECRET_KEY_ENV, new_key())
    async with FakeSlack.for_testco() as fake:
        fake.tokens.add(TOKEN)
        async with world.db.write() as session:  # installed through OAuth earlier: the token is in the database
            await chat_workspaces.save_install(
                session, "slack", fake.team_id, installed_at=world.clock.now(), bot_token=TOKEN, bot_user_id="U0CADENCE"
            )
        async with serve_slack(
            world, fake, slack_bot_token=None, slack_client_id="1111.2222", slack_client_secret="oauth-client-secret"
        ) as driver:
            yield driver


async def test_a_whole_session_at_debug_logs_no_token_and_no_body(
    slack: SlackDriver, caplog: pytest.LogCaptureFixture, restore_logging: None
) -> None:
    written = io.StringIO()
    configure_logging("DEBUG", "json", stream=written)
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []

    async def command(who: str, name: str, text: str) -> None:
        bodies.append(slack.command_body(who, name, text))
        await slack.command(who, name, text)

    await command("dana", "/cadence", "setup acme-test")
    await slack.settle()
    await command("jordan", "/deal", f'new "{MARKER} Corp" amount=48k close=2026-12-15 stage=discovery next="{MARKER}"')
    await command("jordan", "/deal", f"{MARKER} Corp stage=qualification")
    await command("jordan", "/deal", "")  # opens a form
    await slack.settle()

    slack.fake.add_channel(FakeChannel("D0JORDAN", "", is_im=True, user="U0JORDAN"))
    dm = payload("message")
    dm["event"].update(channel="D0JORDAN", channel_type="im", text=f"deal list {MARKER}")
    del dm["event"]["thread_ts"]
    bodies.append(json.dumps(dm))
    await slack.event(dm)

    tampered = slack.command_body("jordan", "/deal", f"{MARKER} Corp amount=1")
    bodies.append(tampered)
    assert (await slack.post(tampered, "application/x-www-form-urlencoded", tamper=True)).status == 401
    assert (await slack.post(tampered, "application/x-www-form-urlencoded", signed=False)).status == 401

    slack.fake.fail("chat.postMessage", "fatal_error", times=50)  # every post fails and is logged
    slack.fake.rate_limit("conversations.list", retry_after=0)
    await command("dana", "/pipeline", "start")
    await slack.settle()
    slack.fake.fail("views.open", "internal_error")  # a failing listener, reported through the error path
    await command("jordan", "/deal", "new")
    await slack.settle()

    uninstall = payload("app_uninstalled")
    bodies.append(json.dumps(uninstall))
    await slack.event(uninstall)
    await slack.settle()

    records = caplog.records
    raw = "\n".join(r.getMessage() + "\n" + (r.exc_text or "") for r in records)
    emitted = written.getvalue()
    assert records and emitted, "the session logged something (else this test proves nothing)"
    assert any(r.levelno >= logging.WARNING for r in records)  # the failures were logged...
    for text in (raw, emitted):
        for secret in (TOKEN, TOKEN.split("-", 1)[1], SIGNING_SECRET, "oauth-client-secret"):
            assert secret not in text
        assert MARKER not in text  # ...without what anyone typed
        for body in bodies:
            assert body not in text
    for line in emitted.splitlines():
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= record.keys()


def test_a_token_logged_by_mistake_is_masked_on_the_way_out(restore_logging: None) -> None:
    written = io.StringIO()
    configure_logging("INFO", "text", stream=written)
    logging.getLogger("bot.test").warning("posting with %s", TOKEN)
    logging.getLogger("bot.test").warning("Authorization: Bearer eyJhbGciOi.abc.def")
    try:
        raise RuntimeError(f"failed with token={TOKEN}")
    except RuntimeError:
        logging.getLogger("bot.test").exception("oops")
    text = written.getvalue()
    assert TOKEN not in text and "eyJhbGciOi" not in text
    assert "posting with xoxb-[redacted]" in text and "Bearer [redacted]" in text
    assert "failed with token=xoxb-[redacted]" in text


def test_libraries_stay_at_info_even_at_debug(restore_logging: None) -> None:
    configure_logging("DEBUG", "text", stream=io.StringIO())
    assert logging.getLogger("bot").getEffectiveLevel() == logging.DEBUG
    for name in ("slack_sdk.web.async_base_client", "slack_bolt", "bot.slack.bolt", "botframework.connector"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.INFO
