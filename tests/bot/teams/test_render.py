"""Adaptive Card rendering: every block type as a well-formed 1.5 card (checked with the fake
connector's `card_problems`), escaping of user text as a property, the submit data buttons and choices
carry, inline and separate images, and long messages split into cards under Teams' size limit."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.teams.render import (
    ADAPTIVE_CARD,
    CARD_LIMIT,
    CONTINUED,
    ImageData,
    card_size,
    escape,
    image_activity,
    render_activities,
    render_activity,
    render_card,
    split_for_limit,
    submitted_action,
)
from cadences.messages import (
    Actions,
    Button,
    Choice,
    DealItem,
    DealList,
    Divider,
    FieldItem,
    Fields,
    Header,
    Image,
    Message,
    Option,
    Paragraph,
    Table,
)
from support.fake_connector import card_problems

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8  # 2 KB: fits in a card
BIG_PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 160  # 40 KB, like the digest chart (~48 KB)


def assert_valid(card: dict[str, Any], limit: int = CARD_LIMIT) -> None:
    assert card_problems(card) == [], card_problems(card)
    assert card["version"] == "1.5" and card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card_size(card) <= limit


def deal_buttons(deal_id: int) -> list[Button]:
    return [
        Button(label="Update", action_id="deal_update", value=str(deal_id), command=f"/deal {deal_id} stage=..."),
        Button(
            label="Still accurate", action_id="deal_confirm", value=str(deal_id), command="/deal x ok", style="primary"
        ),
    ]


EVERY_BLOCK = Message(
    text="Pipeline review: 2 deals need attention",
    blocks=[
        Header(text="Pipeline review — week 48"),
        Paragraph(text="Two deals slipped & one stalled."),
        Paragraph(text="Updated 10:00 PT", muted=True),
        Fields(items=[FieldItem(label="Open pipeline", value="$1,200,000"), FieldItem(label="Coverage", value="2.4×")]),
        DealList(
            title="Slipped",
            items=[
                DealItem(
                    deal_id=12,
                    name="Acme <renewal>",
                    summary="$120,000 · Proposal · closes Dec 18",
                    reasons=["close date moved 2 times", "no update in 15 days"],
                    buttons=deal_buttons(12),
                ),
                DealItem(deal_id=13, name="Globex", summary="$80,000 · Solution"),
            ],
        ),
        Table(columns=["Rep", "Commit"], rows=[["Jordan Lee", "$300,000"], ["Priya Natarajan"]]),
        Actions(
            buttons=[
                Button(label="Start review", action_id="run_command", value="/pipeline start", style="danger"),
            ]
        ),
        Choice(
            label="Loss reason",
            action_id="debrief_choice",
            options=[Option(label="Price", value="price"), Option(label="Timing", value="timing")],
        ),
        Image(key="digest/2026-W48/chart", alt_text="Pipeline by week", title="Pipeline trend"),
        Divider(),
    ],
)


def text_block(text: str, **props: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **props}


def test_every_block_type_renders_as_a_valid_card() -> None:
    card = render_card(EVERY_BLOCK)
    assert_valid(card)
    assert card["fallbackText"] == "Pipeline review: 2 deals need attention"
    body = card["body"]
    assert [e["type"] for e in body] == [
        "TextBlock",  # header
        "TextBlock",  # paragraph
        "TextBlock",  # muted paragraph
        "FactSet",
        "TextBlock",  # deal list title
        "Container",  # Acme
        "Container",  # Globex
        "Table",
        "ActionSet",
        "Input.ChoiceSet",
        "ActionSet",  # the choice's submit
        "TextBlock",  # image without bytes
        "Container",  # divider
    ]
    assert body[0] == text_block("Pipeline review — week 48", size="Large", weight="Bolder", style="heading")
    assert body[1] == text_block("Two deals slipped &amp; one stalled.")
    assert body[2] == text_block("Updated 10:00 PT", isSubtle=True)
    assert body[3] == {
        "type": "FactSet",
        "facts": [{"title": "Open pipeline", "value": "$1,200,000"}, {"title": "Coverage", "value": "2.4×"}],
    }
    assert body[4] == text_block("Slipped", size="Medium", weight="Bolder")
    acme = body[5]
    assert acme["separator"] is True
    assert acme["items"][:4] == [
        text_block("Acme &lt;renewal&gt;", weight="Bolder"),
        text_block("$120,000 · Proposal · closes Dec 18", spacing="None"),
        text_block("• close date moved 2 times", isSubtle=True, spacing="None"),
        text_block("• no update in 15 days", isSubtle=True, spacing="None"),
    ]
    assert acme["items"][4] == {
        "type": "ActionSet",
        "actions": [
            {
                "type": "Action.Submit",
                "title": "Update",
                "data": {"action_id": "deal_update", "value": "12", "command": "/deal 12 stage=..."},
                "associatedInputs": "none",
            },
            {
                "type": "Action.Submit",
                "title": "Still accurate",
                "data": {"action_id": "deal_confirm", "value": "12", "command": "/deal x ok"},
                "associatedInputs": "none",
                "style": "positive",
            },
        ],
    }
    assert [i["type"] for i in body[6]["items"]] == ["TextBlock", "TextBlock"]  # no reasons, no buttons
    table = body[7]
    assert table["columns"] == [{"width": 1}, {"width": 1}] and table["firstRowAsHeader"] is True
    cells = [[c["items"][0]["text"] for c in row["cells"]] for row in table["rows"]]
    assert cells == [["Rep", "Commit"], ["Jordan Lee", "$300,000"], ["Priya Natarajan", ""]]
    assert table["rows"][0]["cells"][0]["items"][0]["weight"] == "Bolder"
    assert body[8]["actions"][0]["style"] == "destructive"
    assert body[9] == {
        "type": "Input.ChoiceSet",
        "id": "debrief_choice",
        "label": "Loss reason",
        "style": "compact",
        "isRequired": True,
        "errorMessage": "Choose one",
        "choices": [{"title": "Price", "value": "price"}, {"title": "Timing", "value": "timing"}],
    }
    assert body[10]["actions"] == [
        {
            "type": "Action.Submit",
            "title": "Submit",
            "data": {"action_id": "debrief_choice", "value": "", "command": None, "input": "debrief_choice"},
        }
    ]
    assert body[11] == text_block("Image: Pipeline trend", isSubtle=True)
    assert body[12] == {"type": "Container", "separator": True, "spacing": "Medium", "items": []}


def test_the_activity_carries_the_card_and_the_summary() -> None:
    activity = render_activity(EVERY_BLOCK)
    assert activity == {
        "type": "message",
        "summary": "Pipeline review: 2 deals need attention",
        "attachments": [{"contentType": ADAPTIVE_CARD, "content": render_card(EVERY_BLOCK)}],
    }
    assert "text" not in activity  # Teams would show it above the card, a second copy


def test_a_message_without_blocks_shows_its_text() -> None:
    card = render_card(Message(text="Hello <at>Dana</at> & co"))
    assert_valid(card)
    assert card["body"] == [text_block("Hello &lt;at&gt;Dana&lt;/at&gt; &amp; co")]


def test_blank_text_blocks_are_left_out_and_an_empty_deal_list_says_so() -> None:
    message = Message(
        text="x",
        blocks=[Header(text="  "), Paragraph(text=""), Fields(items=[]), Actions(buttons=[]), DealList(items=[])],
    )
    card = render_card(message)
    assert_valid(card)
    assert card["body"] == [text_block("No deals.", isSubtle=True)]


def test_two_choices_with_one_action_id_get_distinct_inputs() -> None:
    choice = Choice(label="Status", action_id="milestone_status", options=[Option(label="Done", value="done")])
    card = render_card(Message(text="x", blocks=[choice, choice]))
    assert_valid(card)
    inputs = [e["id"] for e in card["body"] if e["type"] == "Input.ChoiceSet"]
    submits = [e["actions"][0]["data"]["input"] for e in card["body"] if e["type"] == "ActionSet"]
    assert inputs == submits == ["milestone_status", "milestone_status-2"]


def test_a_choice_without_options_cannot_be_shown() -> None:
    with pytest.raises(ValueError, match="no options"):
        render_card(Message(text="x", blocks=[Choice(label="Pick", action_id="a", options=[])]))


def test_submitted_data_maps_back_to_the_model() -> None:
    button = render_card(EVERY_BLOCK)["body"][5]["items"][4]["actions"][1]["data"]
    assert submitted_action(button) == submitted_action(
        {"action_id": "deal_confirm", "value": "12", "command": "/deal x ok"}
    )
    found = submitted_action(button)
    assert found is not None and (found.action_id, found.value, found.command) == ("deal_confirm", "12", "/deal x ok")
    # Teams adds the picked choice under the input id to the submit data.
    choice = {"action_id": "debrief_choice", "value": "", "command": None, "input": "debrief_choice"}
    picked = submitted_action({**choice, "debrief_choice": "price"})
    assert picked is not None and (picked.action_id, picked.value, picked.command) == ("debrief_choice", "price", None)
    assert submitted_action({"msteams": {"type": "task/fetch"}}) is None
    assert submitted_action("text") is None


# --- images -------------------------------------------------------------------------------------------


def test_an_image_with_its_bytes_is_inlined_as_a_data_uri() -> None:
    message = Message(text="Digest", blocks=[Image(key="k", alt_text="Pipeline by week", title="Trend")])
    card = render_card(message, images={"k": ImageData(PNG)})
    assert_valid(card)
    title, image = card["body"]
    assert title == text_block("Trend", weight="Bolder")
    assert image["type"] == "Image" and image["altText"] == "Pipeline by week" and image["size"] == "Stretch"
    assert image["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert render_activities(message, images={"k": ImageData(PNG)}) == [
        render_activity(message, images={"k": ImageData(PNG)})
    ]


def test_an_image_too_large_for_a_card_follows_as_an_image_attachment() -> None:
    message = Message(
        text="Weekly digest",
        blocks=[Paragraph(text="Pipeline is up 12%"), Image(key="chart", alt_text="Pipeline", title="Trend")],
    )
    data = ImageData(BIG_PNG, filename="chart.png")
    card_activity, image = render_activities(message, images={"chart": data})
    card = card_activity["attachments"][0]["content"]
    assert_valid(card)
    assert card["body"][1] == text_block("Image: Trend", isSubtle=True)
    assert image == image_activity(message.blocks[1], data)  # type: ignore[arg-type]
    assert image == {
        "type": "message",
        "summary": "Trend",
        "attachments": [
            {
                "contentType": "image/png",
                "contentUrl": "data:image/png;base64," + base64.b64encode(BIG_PNG).decode(),
                "name": "chart.png",
            }
        ],
    }


# --- escaping -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("**bold** _it_", r"\*\*bold\*\* \_it\_"),
        ("[click](https://evil.example)", r"\[click\]\(https://evil.example\)"),
        ("<at>Dana</at>", "&lt;at&gt;Dana&lt;/at&gt;"),
        ("&lt;at&gt;", "&amp;lt;at&amp;gt;"),
        ("# Heading", r"\# Heading"),
        ("> quote", "&gt; quote"),
        ("- item\n+ item\n* item", "\\- item\n\\+ item\n\\* item"),
        ("1. first\n2) second", "1\\. first\n2\\) second"),
        ("Title\n===", "Title\n\\==="),
        ("---\n-5,000 net\n2.4× coverage\n= total", "\\---\n-5,000 net\n2.4× coverage\n= total"),
        ("    code?", "code?"),
        ("`tick` ~strike~ back\\slash", r"\`tick\` \~strike\~ back\\slash"),
        ("Q4 - 2026 costs $5-10k", "Q4 - 2026 costs $5-10k"),  # a dash inside a line is no list
        ("=\u00a0", "\\=\u00a0"),  # a no-break space after a marker is whitespace too (hypothesis found it)
        ("-\u00a0x", "\\-\u00a0x"),
    ],
)
def test_user_text_is_escaped(text: str, shown: str) -> None:
    assert escape(text) == shown


_UNESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])|&(amp|lt|gt);")
_ENTITY = {"amp": "&", "lt": "<", "gt": ">"}


def unescape(markdown: str) -> str:
    """What CommonMark shows for escaped text: backslash escapes and the three entities decoded."""
    return _UNESCAPE.sub(lambda m: m.group(1) or _ENTITY[m.group(2)], markdown)


def unescaped_specials(markdown: str) -> list[str]:
    """Markdown or HTML that would act, rather than show: a special character without its backslash, a
    `<` or a bare `&`, or a list/heading marker opening a line."""
    found = []
    i = 0
    while i < len(markdown):
        c = markdown[i]
        if c == "\\" and i + 1 < len(markdown):
            i += 2
            continue
        if c == "&":
            if not re.match(r"&(amp|lt|gt);", markdown[i:]):
                found.append("bare &")
        elif c in "<>" or c in "*_[]()#`~":
            found.append(c)
        i += 1
    for line in markdown.split("\n"):
        if line[:1] in (" ", "\t") or re.match(r"[-+](\s|$)|--|=+\s*$|\d{1,9}[.)](\s|$)", line):
            found.append(f"line starts {line[:3]!r}")
    return found


def normalised(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.lstrip(" \t") for line in lines)


@settings(max_examples=300)
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=80)
    | st.text(alphabet="*_[]()#<>&`~-+=1. \n\\ab:/", max_size=40)
)
def test_escaping_keeps_the_text_and_leaves_no_markup(text: str) -> None:
    shown = escape(text)
    assert unescaped_specials(shown) == []
    assert unescape(shown) == normalised(text)


def markdown_texts(node: Any) -> list[str]:
    """Every string of a card that Teams renders as Markdown: TextBlock texts and FactSet facts."""
    if isinstance(node, list):
        return [t for item in node for t in markdown_texts(item)]
    if not isinstance(node, dict):
        return []
    found = [node["text"]] if node.get("type") == "TextBlock" else []
    found += [v for fact in node.get("facts") or [] for v in (fact["title"], fact["value"])]
    return found + [t for value in node.values() for t in markdown_texts(value)]


@given(st.text(alphabet="*_[]()<>&`@at \n-1.", max_size=30))
def test_no_user_text_in_a_card_produces_a_mention_or_a_link(name: str) -> None:
    item = DealItem(deal_id=1, name=name, summary=name, reasons=[name])
    card = render_card(
        Message(
            text=name,
            blocks=[Header(text=name), Fields(items=[FieldItem(label=name, value=name)]), DealList(items=[item])],
        )
    )
    assert_valid(card)
    texts = markdown_texts(card["body"])
    assert texts and all(unescaped_specials(text) == [] for text in texts)


# --- size ---------------------------------------------------------------------------------------------


def test_card_size_is_the_compact_utf8_json() -> None:
    card = render_card(Message(text="Café — ok"))
    assert card_size(card) == len(json.dumps(card, separators=(",", ":"), ensure_ascii=False).encode())


def long_review(deals: int) -> Message:
    items = [
        DealItem(
            deal_id=i,
            name=f"Deal {i:03d} — Acme subsidiary number {i}",
            summary=f"${i * 1000:,} · Proposal · closes Dec {1 + i % 28} · Jordan Lee",
            reasons=["close date moved 2 times", "no update in 15 days", "amount fell 20% since last week"],
            buttons=deal_buttons(i),
        )
        for i in range(1, deals + 1)
    ]
    return Message(
        text="Pipeline review: week 48",
        blocks=[
            Header(text="Pipeline review — week 48"),
            Fields(items=[FieldItem(label="Open pipeline", value="$4,200,000")]),
            DealList(title="Needs discussion", items=items),
            Table(columns=["Rep", "Commit"], rows=[[f"Rep {i}", f"${i},000"] for i in range(40)]),
            Paragraph(text="Reply in each deal's thread.", muted=True),
        ],
    )


def test_a_long_review_continues_in_cards_under_the_limit() -> None:
    message = long_review(90)
    assert card_size(render_activity(message)) > 3 * CARD_LIMIT  # far too large for one card
    parts = split_for_limit(message)
    assert len(parts) >= 4
    assert parts[0].text == "Pipeline review: week 48"
    assert all(p.text == "Pipeline review: week 48 (continued)" for p in parts[1:])
    for part in parts:
        activity = render_activity(part)
        assert card_size(activity) <= CARD_LIMIT
        assert_valid(activity["attachments"][0]["content"])
    for part in parts[:-1]:
        assert part.blocks[-1] == Paragraph(text=CONTINUED, muted=True)
    assert parts[-1].blocks[-1] == Paragraph(text="Reply in each deal's thread.", muted=True)
    # every deal and every table row exactly once, in order; the list's title marks its continuations
    lists = [b for p in parts for b in p.blocks if isinstance(b, DealList)]
    assert [item.deal_id for dl in lists for item in dl.items] == list(range(1, 91))
    assert lists[0].title == "Needs discussion"
    assert all(dl.title == "Needs discussion (continued)" for dl in lists[1:])
    assert all(len(p.blocks) > 1 for p in parts)  # no part is only the note
    tables = [b for p in parts for b in p.blocks if isinstance(b, Table)]
    assert [row for t in tables for row in t.rows] == [[f"Rep {i}", f"${i},000"] for i in range(40)]
    assert all(t.columns == ["Rep", "Commit"] for t in tables)
    assert render_activities(message) == [render_activity(p) for p in parts]


def test_a_message_that_fits_is_one_part_without_its_thread() -> None:
    message = Message(text="Hi", blocks=[Paragraph(text="Hi")], thread=[Message(text="reply")])
    assert split_for_limit(message) == [Message(text="Hi", blocks=[Paragraph(text="Hi")])]


def test_an_overlong_paragraph_is_cut_at_spaces() -> None:
    words = " ".join(f"word{i}" for i in range(9000))  # ~80 KB of text
    parts = split_for_limit(Message(text="Notes", blocks=[Paragraph(text=words)]))
    assert len(parts) >= 3
    shown = [b.text for p in parts for b in p.blocks if isinstance(b, Paragraph) and b.text != CONTINUED]
    assert " ".join(shown) == words
    assert all(card_size(render_activity(p)) <= CARD_LIMIT for p in parts)


def test_a_smaller_limit_splits_sooner_and_a_block_that_cannot_fit_is_refused() -> None:
    message = long_review(3)
    assert len(split_for_limit(message)) == 1
    assert len(split_for_limit(message, 3_000)) > 1
    with pytest.raises(ValueError, match="too large for a Teams card"):
        split_for_limit(message, 600)
