"""Slack's request signatures, on `cadence run`'s server: every request that is not exactly what Slack
signed in the last five minutes gets 401 and changes nothing — no row in any table, no call to Slack, no
answer through a response_url. Three kinds of request that would each change the database if accepted
(a slash command creating a deal, a "Still accurate" click, a DM typed to the bot) go through missing
headers, a wrong secret, old and future timestamps, a body one byte off and mangled headers; then
hypothesis mutates random bytes of the body and random values of the signed headers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.fake_slack import FakeChannel, FakeSlack
from support.slack_app import SlackDriver, payload, serve_slack, sign

FORM = "application/x-www-form-urlencoded"
DbState = Callable[[], Awaitable[dict[str, int]]]


@dataclass
class Signed:
    """A request as Slack would send it, signed at `timestamp`."""

    body: bytes
    content_type: str
    headers: dict[str, str]


@pytest.fixture
async def slack(world: Any) -> AsyncIterator[SlackDriver]:
    async with FakeSlack.for_testco() as fake, serve_slack(world, fake) as driver:
        await driver.setup()
        await world.say("jordan", '/deal new "Acme" amount=48k close=2026-12-15 stage=discovery')
        fake.add_channel(FakeChannel("D0JORDAN", "", is_im=True, user="U0JORDAN"))
        yield driver


def bodies(slack: SlackDriver) -> dict[str, tuple[str, str]]:
    """(body, content type) of each kind of request, each of which would change the database."""
    command = slack.command_body("jordan", "/deal", 'new "Evil" amount=1 close=2026-12-15 stage=discovery')
    click = urlencode({"payload": json.dumps(slack.button("jordan", "deal_confirm:1", "1"))})
    dm = payload("message")
    dm["event"].update(channel="D0JORDAN", channel_type="im", text='deal new "Evil" amount=1 close=2026-12-15')
    del dm["event"]["thread_ts"]
    return {"command": (command, FORM), "click": (click, FORM), "dm": (json.dumps(dm), "application/json")}


def signed(body: str, content_type: str, *, age: int = 0, secret: str | None = None) -> Signed:
    headers = sign(body, int(time.time()) - age, **({"secret": secret} if secret else {}))
    return Signed(body.encode(), content_type, headers)


async def post(slack: SlackDriver, request: Signed) -> int:
    headers = {"Content-Type": request.content_type, **request.headers}
    async with slack.http.post(slack.url, data=request.body, headers=headers) as response:
        await response.read()
        return response.status


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


MUTATIONS: dict[str, Any] = {
    "no headers": lambda r: Signed(r.body, r.content_type, {}),
    "no signature": lambda r: Signed(r.body, r.content_type, _without(r.headers, "X-Slack-Signature")),
    "no timestamp": lambda r: Signed(r.body, r.content_type, _without(r.headers, "X-Slack-Request-Timestamp")),
    "last byte changed": lambda r: Signed(r.body[:-1] + bytes([r.body[-1] ^ 1]), r.content_type, r.headers),
    "first byte changed": lambda r: Signed(bytes([r.body[0] ^ 32]) + r.body[1:], r.content_type, r.headers),
    "one byte added": lambda r: Signed(r.body + b" ", r.content_type, r.headers),
    "one byte removed": lambda r: Signed(r.body[:-1], r.content_type, r.headers),
    "a byte not UTF-8": lambda r: Signed(r.body[:-1] + b"\xff", r.content_type, r.headers),
    "signature v1": lambda r: Signed(
        r.body, r.content_type, r.headers | {"X-Slack-Signature": "v1=" + r.headers["X-Slack-Signature"][3:]}
    ),
    "signature in capitals": lambda r: Signed(
        r.body, r.content_type, r.headers | {"X-Slack-Signature": r.headers["X-Slack-Signature"].upper()}
    ),
    "signature cut short": lambda r: Signed(
        r.body, r.content_type, r.headers | {"X-Slack-Signature": r.headers["X-Slack-Signature"][:-1]}
    ),
    "timestamp not a number": lambda r: Signed(
        r.body, r.content_type, r.headers | {"X-Slack-Request-Timestamp": "yesterday"}
    ),
    "timestamp with a sign": lambda r: Signed(
        r.body, r.content_type, r.headers | {"X-Slack-Request-Timestamp": "+" + r.headers["X-Slack-Request-Timestamp"]}
    ),
    "timestamp moved by one": lambda r: Signed(
        r.body,
        r.content_type,
        r.headers | {"X-Slack-Request-Timestamp": str(int(r.headers["X-Slack-Request-Timestamp"]) + 1)},
    ),
}


@pytest.mark.parametrize("kind", ["command", "click", "dm"])
async def test_only_the_request_slack_signed_is_accepted(slack: SlackDriver, db_state: DbState, kind: str) -> None:
    body, content_type = bodies(slack)[kind]
    before, calls, answers = await db_state(), len(slack.fake.calls), len(slack.sink.posts)
    refused = {
        **{name: mutate(signed(body, content_type)) for name, mutate in MUTATIONS.items()},
        "signed with another secret": signed(body, content_type, secret="not-the-signing-secret"),
        "signed 301 seconds ago": signed(body, content_type, age=301),
        "signed 301 seconds ahead": signed(body, content_type, age=-301),
        "signed an hour ago": signed(body, content_type, age=3600),
    }
    for name, request in refused.items():
        assert await post(slack, request) == 401, name
    await slack.settle()
    assert await db_state() == before
    assert len(slack.fake.calls) == calls and len(slack.sink.posts) == answers

    assert await post(slack, signed(body, content_type, age=290)) == 200  # the harness accepts the real thing
    await slack.settle()
    assert await db_state() != before


# --- property-based: random bytes of the body, random values of the signed headers --------------------------


@pytest.fixture
def original(slack: SlackDriver) -> Signed:
    body, content_type = bodies(slack)["command"]
    return signed(body, content_type)


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data())
async def test_a_body_with_any_byte_changed_is_refused(
    slack: SlackDriver, db_state: DbState, original: Signed, data: st.DataObject
) -> None:
    body = bytearray(original.body)
    for _ in range(data.draw(st.integers(1, 3), label="bytes changed")):
        position = data.draw(st.integers(0, len(body) - 1), label="position")
        body[position] = data.draw(st.integers(0, 255), label="new byte")
    mutated = Signed(bytes(body), original.content_type, original.headers)
    before, calls = await db_state(), len(slack.fake.calls)
    status = await post(slack, mutated)
    if mutated.body == original.body:
        assert status == 200
        await slack.settle()  # its work must not land in the next example's "before and after"
        return
    assert status in (400, 401)
    assert await db_state() == before and len(slack.fake.calls) == calls


HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=90) | st.text(
    st.characters(min_codepoint=0xA0, max_codepoint=0xFF), max_size=10
)


@FUZZ
@given(
    signature=st.none() | HEADER_TEXT,
    timestamp=st.none() | HEADER_TEXT | st.integers(-(10**12), 10**12).map(str),
    extra=st.dictionaries(st.sampled_from(["X-Slack-Retry-Num", "X-Forwarded-For", "X-Other"]), HEADER_TEXT),
)
async def test_any_other_signature_or_timestamp_is_refused(
    slack: SlackDriver,
    db_state: DbState,
    original: Signed,
    signature: str | None,
    timestamp: str | None,
    extra: dict[str, str],
) -> None:
    headers = dict(extra)
    for name, value in (("X-Slack-Signature", signature), ("X-Slack-Request-Timestamp", timestamp)):
        if value is not None:
            headers[name] = value
    before, calls = await db_state(), len(slack.fake.calls)
    status = await post(slack, Signed(original.body, original.content_type, headers))
    sent = {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": timestamp}
    # HTTP drops the blanks around a header value, so " v0=..." arrives as the signature itself
    exact = all((value or "").strip(" \t") == original.headers[name] for name, value in sent.items())
    assert status == 401 or exact
    await slack.settle()
    if not exact:
        assert await db_state() == before and len(slack.fake.calls) == calls
