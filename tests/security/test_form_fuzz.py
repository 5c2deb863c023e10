"""Every form, filled in at random: the six Slack modals (opened through the app as a person opens them,
then submitted by Slack with hypothesis's values in every input) and the five Teams cards (submitted with
Action.Submit or Action.Execute). Whatever is typed, picked or left empty:

- nothing fails: Slack gets its ack (200, empty or `response_action: errors`), Teams a 200 (and for an
  invoke, a card), and no listener, turn or background task logs an error;
- a refused form changes no data. The audit log is the one table that grows, by design: every attempt,
  refused or not, is recorded there with what was submitted (`storage/models.py: AuditLog`). For Teams,
  so do the per-activity bookkeeping tables (the redelivery dedupe and the refreshed conversation).

Values are what a person can produce: any text in a text input, any offered option (or none) in a
select, any date (or none) in a date picker, any number in a Teams number input.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.teams import cards
from cadences.deal_form import DealValues
from cadences.debrief_form import form_for
from storage.models import Deal, Debrief
from support.fake_slack import FakeSlack
from support.slack_app import SlackDriver, payload, serve_slack
from support.teams_bot import TeamsDriver, TeamsFake, apply_teams_engagement, personal, serve_teams

DbState = Callable[[], Awaitable[dict[str, int]]]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
HOSTILE = st.sampled_from(
    [
        "",
        " ",
        "48k",
        "-5",
        "0",
        "1e309",
        "NaN",
        "$1,000,000,000,000,000,000",
        "2026-02-30",
        "<!channel>",
        "<@U0DANA>",
        "x" * 3000,
        "'; drop table deal; --",
        "\u202e\ufeff\u200b",
        "closed_won",
        "discovery",
        "commit",
    ]
)
TYPED = HOSTILE | st.text(st.characters(blacklist_characters="\x00"), max_size=120)
"""Any text but U+0000, which PostgreSQL cannot store: see the NUL test at the end."""
DATES = st.none() | st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)).map(date.isoformat)
BOOKKEEPING = {"audit_log", "inbound_event", "conversation_ref", "command_rate"}


def data_of(state: dict[str, int]) -> dict[str, int]:
    return {table: n for table, n in state.items() if table not in BOOKKEEPING}


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("bot")]


# --- Slack modals ------------------------------------------------------------------------------------------


async def deal(world: Any, name: str) -> Deal:
    async with world.db.session() as session:
        found: Deal = (await session.execute(select(Deal).where(Deal.name == name))).scalar_one()
    return found


async def opened(slack: SlackDriver, form: str) -> tuple[str, dict[str, Any]]:
    """Open `form` as a person does; (who opened it, the view Slack shows)."""
    world = slack.world
    if form == "deal_form":
        initech = await deal(world, "Initech")
        await slack.interaction(slack.button("jordan", f"deal_update:{initech.id}", str(initech.id)))
        who = "jordan"
    elif form == "new_deal_form":
        await slack.command("jordan", "/deal", "new")
        who = "jordan"
    elif form == "debrief_form":
        await world.say("jordan", '/deal Acme lost reason="no decision"')
        async with world.db.session() as session:
            debrief = (await session.execute(select(Debrief))).scalar_one()
        await slack.interaction(slack.button("jordan", "debrief_open", str(debrief.id)))
        who = "jordan"
    elif form == "forecast_form":
        await slack.command("dana", "/pipeline", "forecast")
        who = "dana"
    elif form == "log_deal_note":
        shortcut = payload("message_action")
        shortcut["response_url"] = slack.sink.url("jordan")
        await slack.interaction(shortcut)
        who = "jordan"
    else:
        acme = await deal(world, "Acme")
        await slack.interaction(slack.button("dana", "review_add_action:3", str(acme.id)))
        who = "dana"
    await slack.settle()
    method, view = slack.fake.views[-1]
    assert method == "views.open" and view["callback_id"] == form
    return who, view


def element_state(element: dict[str, Any], draw: Callable[..., Any]) -> dict[str, Any]:
    """What Slack sends back for one input element, with a value a person could have given it."""
    kind = element["type"]
    if kind == "plain_text_input":
        return {"type": kind, "value": draw(st.none() | TYPED)}
    if kind == "datepicker":
        return {"type": kind, "selected_date": draw(DATES)}
    if kind == "static_select":
        options = element.get("options") or []
        return {"type": kind, "selected_option": draw(st.none() | st.sampled_from(options)) if options else None}
    raise AssertionError(f"no strategy for a {kind} input")


@pytest.fixture
async def slack(world: Any) -> AsyncIterator[SlackDriver]:
    async with FakeSlack.for_testco() as fake, serve_slack(world, fake) as driver:
        await driver.setup()
        await world.say("jordan", '/deal new "Acme" amount=48k close=2026-12-15 stage=discovery')
        await world.say("jordan", '/deal new "Initech" amount=20k close=2026-12-20 stage=qualification')
        yield driver


@pytest.mark.parametrize(
    "form",
    [
        "deal_form",
        "new_deal_form",
        "debrief_form",
        "forecast_form",
        "log_deal_note",  # found a lone surrogate reaching the database (storage/db.py now mends it)
        "action_item_form",
    ],
)
@FUZZ
@given(data=st.data())
async def test_any_slack_submission_is_answered_and_a_refused_one_changes_no_data(
    slack: SlackDriver, db_state: DbState, caplog: pytest.LogCaptureFixture, form: str, data: st.DataObject
) -> None:
    if not hasattr(slack, "opened"):  # one real view per test, many submissions of it
        slack.opened = await opened(slack, form)  # type: ignore[attr-defined]
    who, view = slack.opened  # type: ignore[attr-defined]
    state: dict[str, dict[str, Any]] = {}
    for block in view["blocks"]:
        if block["type"] == "input":
            element = block["element"]
            state[block["block_id"]] = {element["action_id"]: element_state(element, data.draw)}
    body = payload("view_submission")
    body["user"]["id"] = {"jordan": "U0JORDAN", "dana": "U0DANA"}[who]
    body["view"] = {**view, "state": {"values": state}}
    before = await db_state()
    response = await slack.interaction(body)
    await slack.settle()
    assert response.status == 200
    assert no_errors_logged(caplog) == []
    answer = response.json()
    if answer is not None:  # refused: the errors sit on the form's own fields
        assert answer["response_action"] == "errors" and set(answer["errors"]) <= set(state)
        assert data_of(await db_state()) == data_of(before)


# --- Teams cards --------------------------------------------------------------------------------------------


@pytest.fixture
async def teams(world: Any, tmp_path: Any) -> AsyncIterator[TeamsDriver]:
    await apply_teams_engagement(world, tmp_path)
    await world.say("jordan", '/deal new "Acme" amount=48k close=2026-12-15 stage=discovery')
    await world.say("jordan", '/deal new "Initech" amount=20k close=2026-12-20 stage=qualification')
    await world.say("jordan", '/deal Acme lost reason="no decision"')
    async with TeamsFake() as fake, serve_teams(world, fake) as driver:
        await driver.link("dana")
        await driver.direct("jordan", "hello")  # Jordan's 1:1 chat is known
        yield driver


STAGES = [("discovery", "Discovery"), ("qualification", "Qualification"), ("proposal", "Proposal")]


async def card_for(teams: TeamsDriver, form: str) -> dict[str, Any]:
    """The card `form` as the bot builds it for Jordan (the builders in bot/teams/cards.py)."""
    world = teams.world
    initech = await deal(world, "Initech")
    if form == cards.DEAL_FORM:
        values = DealValues(initech.id, initech.version, "Initech", "qualification", initech.amount,
                            initech.close_date, "pipeline", None, None, None)  # fmt: skip
        return cards.deal_form(values, STAGES)
    if form == cards.DEAL_PICK:
        return cards.deal_picker([cards.DealChoice(initech.id, "Initech")])
    if form == cards.NEW_DEAL_FORM:
        return cards.new_deal_form(STAGES)
    if form == cards.DEBRIEF_FORM:
        async with world.db.session() as session:
            debrief = (await session.execute(select(Debrief))).scalar_one()
        return cards.debrief_form(await form_for(await world.ctx("jordan"), debrief.id))
    return cards.forecast_form("FY2027 Q4", "400000", "650000")


def inputs_of(card: dict[str, Any]) -> list[dict[str, Any]]:
    """Every input element of a card, in order."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if str(node.get("type", "")).startswith("Input.") and "id" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card["body"])
    return found


def card_value(element: dict[str, Any], draw: Callable[..., Any]) -> Any:
    """What a Teams client hands back for one input: typed text, a number, a date, an offered choice."""
    kind = element["type"]
    if kind == "Input.Number":
        return draw(st.none() | st.integers(0, 10**15) | st.decimals(0, 10**9, places=2).map(str))
    if kind == "Input.Date":
        return draw(DATES)
    if kind == "Input.ChoiceSet":
        return draw(st.none() | st.sampled_from([c["value"] for c in element.get("choices") or [{"value": ""}]]))
    return draw(st.none() | TYPED)


@pytest.mark.parametrize("form", list(cards.FORMS))
@FUZZ
@given(data=st.data())
async def test_any_teams_card_submission_is_answered_and_a_refused_one_changes_no_data(
    teams: TeamsDriver, db_state: DbState, caplog: pytest.LogCaptureFixture, form: str, data: st.DataObject
) -> None:
    if not hasattr(teams, "card"):
        teams.card = await card_for(teams, form)  # type: ignore[attr-defined]
    card = teams.card  # type: ignore[attr-defined]
    value = dict(card["actions"][0]["data"])
    for element in inputs_of(card):
        typed = card_value(element, data.draw)
        if typed is not None:
            value[element["id"]] = typed
    reply_to = teams.fake.posted(personal("jordan"))[-1].id
    before = await db_state()
    if data.draw(st.booleans(), label="Action.Execute"):
        response = await teams.execute("jordan", value, reply_to=reply_to)
        assert response.status == 200 and response.json()["statusCode"] == 200
        shown = response.json()["value"]
    else:
        response = await teams.submit("jordan", value, reply_to=reply_to)
        assert response.status == 200
        shown = teams.fake.activities[-1].card
    assert no_errors_logged(caplog) == []
    if refused(shown):
        assert data_of(await db_state()) == data_of(before)


def refused(card: dict[str, Any] | None) -> bool:
    """Whether a card answers with a refusal: an error line (red, under a field or on top)."""

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            return str(node.get("color")).lower() == "attention" or any(walk(v) for v in node.values())
        return isinstance(node, list) and any(walk(item) for item in node)

    return card is not None and walk(card)


async def test_a_teams_deal_card_with_text_in_the_amount_comes_back_refused(
    teams: TeamsDriver, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that does not enforce Input.Number (or a crafted one) can send any text there."""
    card = await card_for(teams, cards.DEAL_FORM)
    reply_to = teams.fake.posted(personal("jordan"))[-1].id
    response = await teams.execute("jordan", {**card["actions"][0]["data"], "amount": "fifty"}, reply_to=reply_to)
    assert response.status == 200 and refused(response.json()["value"])
    assert no_errors_logged(caplog) == []


async def test_a_nul_character_in_a_form_is_answered_not_crashed(
    slack: SlackDriver, db_state: DbState, caplog: pytest.LogCaptureFixture
) -> None:
    """U+0000 can arrive in any text (`%00` in a form, `\\u0000` in JSON); PostgreSQL refuses to store it,
    so the database layer drops it (storage/db.py) and keeps the rest of what was typed."""
    _who, view = await opened(slack, "debrief_form")
    body = payload("view_submission")
    body["user"]["id"] = "U0JORDAN"
    typed = {"type": "plain_text_input", "value": "Price\x00 and timing"}
    texts = [b for b in view["blocks"] if b["type"] == "input" and b["element"]["type"] == "plain_text_input"]
    values = {b["block_id"]: {b["element"]["action_id"]: typed} for b in texts}
    body["view"] = {**view, "state": {"values": values}}
    response = await slack.interaction(body)
    await slack.settle()
    assert response.status == 200 and no_errors_logged(caplog) == []
    async with slack.world.db.session() as session:
        answers = [d.answers for d in (await session.execute(select(Debrief))).scalars() if d.answers]
    [stored] = answers  # every text field holds what was typed, less the NUL
    assert "Price and timing" in stored.values() and not any("\x00" in str(v) for v in stored.values())
