"""Block Kit rendering: every block type, validated with slack_sdk's block models; escaping as a
property; Slack's limits (50 blocks, 3000-character sections, 10 fields, 25 actions) respected."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from bot.slack.render import (
    action_pattern,
    action_suffix,
    base_action_id,
    escape,
    image_blocks,
    render_continuations,
    render_message,
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
from support.fake_slack import block_problems


def assert_valid(blocks: list[dict[str, Any]]) -> None:
    """Slack would take these blocks: slack_sdk parses and validates each, loses nothing doing so, and no
    text object is empty."""
    assert len(blocks) <= 50
    for block in blocks:
        assert block_problems(block) == [], block
        parsed = Block.parse(block)
        assert parsed is not None and parsed.to_dict() == block


def deal_buttons(deal_id: int) -> list[Button]:
    return [
        Button(label="Update", action_id="deal_update", value=str(deal_id), command="/deal x stage=..."),
        Button(label="Still accurate", action_id="deal_confirm", value=str(deal_id), style="primary"),
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
                DealItem(deal_id=13, name="Globex", summary="$80,000 · Solution", buttons=deal_buttons(13)),
            ],
        ),
        Table(columns=["Rep", "Commit"], rows=[["Jordan Lee", "$300,000"], ["Priya Natarajan", "$150,000"]]),
        Actions(
            buttons=[
                Button(label="Start review", action_id="run_command", value="/pipeline start"),
                Button(label="Snapshot", action_id="run_command", value="/pipeline"),
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


def test_every_block_type_renders_as_valid_block_kit() -> None:
    rendered = render_message(EVERY_BLOCK)
    assert rendered["text"] == "Pipeline review: 2 deals need attention"
    blocks = rendered["blocks"]
    assert_valid(blocks)
    assert [b["type"] for b in blocks] == [
        "header",
        "section",  # paragraph
        "context",  # muted paragraph
        "section",  # fields
        "section",  # deal list title
        "section",  # Acme
        "context",  # its reasons
        "actions",  # its buttons
        "section",  # Globex
        "actions",
        "section",  # table
        "actions",  # actions
        "actions",  # choice
        "context",  # image without a file id
        "divider",
    ]
    assert blocks[0]["text"] == {"type": "plain_text", "text": "Pipeline review — week 48", "emoji": True}
    assert blocks[1]["text"] == {"type": "mrkdwn", "text": "Two deals slipped &amp; one stalled."}
    assert blocks[2]["elements"] == [{"type": "mrkdwn", "text": "Updated 10:00 PT"}]
    assert blocks[3]["fields"] == [
        {"type": "mrkdwn", "text": "*Open pipeline*\n$1,200,000"},
        {"type": "mrkdwn", "text": "*Coverage*\n2.4×"},
    ]
    assert blocks[4]["text"]["text"] == "*Slipped*"
    assert blocks[5]["text"]["text"] == "*Acme &lt;renewal&gt;* — $120,000 · Proposal · closes Dec 18"
    assert blocks[6]["elements"][0]["text"] == "• close date moved 2 times\n• no update in 15 days"
    assert blocks[7]["elements"] == [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": "Update", "emoji": True},
            "action_id": "deal_update:12",
            "value": "12",
        },
        {
            "type": "button",
            "text": {"type": "plain_text", "text": "Still accurate", "emoji": True},
            "action_id": "deal_confirm:12",
            "value": "12",
            "style": "primary",
        },
    ]
    assert [e["action_id"] for e in blocks[9]["elements"]] == ["deal_update:13", "deal_confirm:13"]
    assert blocks[10]["text"]["text"] == (
        "```\nRep              Commit\n---------------  --------\nJordan Lee       $300,000\n"
        "Priya Natarajan  $150,000\n```"
    )
    assert [(e["action_id"], e["value"]) for e in blocks[11]["elements"]] == [
        ("run_command", "/pipeline start"),
        ("run_command:2", "/pipeline"),
    ]
    assert blocks[12]["elements"] == [
        {
            "type": "static_select",
            "action_id": "debrief_choice",
            "placeholder": {"type": "plain_text", "text": "Loss reason", "emoji": True},
            "options": [
                {"text": {"type": "plain_text", "text": "Price", "emoji": True}, "value": "price"},
                {"text": {"type": "plain_text", "text": "Timing", "emoji": True}, "value": "timing"},
            ],
        }
    ]
    assert blocks[13]["elements"][0]["text"] == "Image: Pipeline trend"
    assert render_continuations(EVERY_BLOCK) == []


def test_an_image_with_a_known_slack_file_is_an_image_block() -> None:
    message = Message(text="chart", blocks=[Image(key="k1", alt_text="Pipeline <by> week", title="Trend")])
    [block] = render_message(message, files={"k1": "F0123"})["blocks"]
    assert_valid([block])
    assert block == {
        "type": "image",
        "slack_file": {"id": "F0123"},
        "alt_text": "Pipeline &lt;by&gt; week",
        "title": {"type": "plain_text", "text": "Trend", "emoji": True},
    }
    assert image_blocks(message) == [message.blocks[0]]


def test_a_message_without_blocks_shows_its_text() -> None:
    rendered = render_message(Message(text="Hello <@U123> & co"))
    assert rendered == {
        "text": "Hello &lt;@U123&gt; &amp; co",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hello &lt;@U123&gt; &amp; co"}}],
    }


def test_rendered_action_ids_map_back_to_the_model() -> None:
    pattern = action_pattern("deal_confirm")
    assert pattern.match("deal_confirm") and pattern.match("deal_confirm:12")
    assert not pattern.match("deal_confirmed") and not pattern.match("deal_confirm:12:3")
    assert base_action_id("deal_confirm:12") == "deal_confirm" and action_suffix("deal_confirm:12") == "12"
    assert action_suffix("run_command") is None


def test_the_same_deal_twice_still_gets_unique_action_ids() -> None:
    item = DealItem(deal_id=7, name="Initech", summary="$10", buttons=deal_buttons(7))
    blocks = render_message(Message(text="x", blocks=[DealList(items=[item]), DealList(items=[item])]))["blocks"]
    ids = [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert ids == ["deal_update:7", "deal_confirm:7", "deal_update:7-2", "deal_confirm:7-2"]


def test_an_empty_deal_list_says_so() -> None:
    blocks = render_message(Message(text="x", blocks=[DealList(items=[], empty_text="Nothing slipped <yay>")]))
    assert blocks["blocks"] == [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "Nothing slipped &lt;yay&gt;"}]}
    ]


# --- limits -----------------------------------------------------------------------------------------


def test_a_long_paragraph_splits_over_sections_at_line_breaks() -> None:
    lines = [f"Line {i:03d}: " + "word " * 20 for i in range(100)]  # 100 lines of ~110 chars
    text = "\n".join(lines)
    blocks = render_message(Message(text="long", blocks=[Paragraph(text=text)]))["blocks"]
    assert_valid(blocks)
    assert len(blocks) == 4 and all(len(b["text"]["text"]) <= 3000 for b in blocks)
    assert all(b["text"]["text"].startswith("Line ") for b in blocks)  # each cut fell on a line break
    assert "\n".join(b["text"]["text"] for b in blocks) == text


def test_a_cut_never_splits_an_entity() -> None:
    text = "a" * 2998 + "<b>" + "c" * 10  # the 3000-character cut falls inside "&lt;"
    blocks = render_message(Message(text="x", blocks=[Paragraph(text=text)]))["blocks"]
    assert [b["text"]["text"] for b in blocks] == ["a" * 2998, "&lt;b&gt;" + "c" * 10]


def test_a_message_over_50_blocks_continues_in_the_thread() -> None:
    message = Message(text="Review", blocks=[Paragraph(text=f"Deal {i}") for i in range(120)])
    first = render_message(message)
    rest = render_continuations(message)
    assert len(first["blocks"]) == 50
    assert first["blocks"][-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": "Continued in thread."}]}
    assert [len(r["blocks"]) for r in rest] == [50, 21]
    assert rest[0]["text"] == "Review (continued)"
    shown = [b["text"]["text"] for b in first["blocks"][:-1]] + [b["text"]["text"] for r in rest for b in r["blocks"]]
    assert shown == [f"Deal {i}" for i in range(120)]
    for part in [first, *rest]:
        assert_valid(part["blocks"])


def test_exactly_50_blocks_fit_in_one_message() -> None:
    message = Message(text="x", blocks=[Divider()] * 50)
    assert len(render_message(message)["blocks"]) == 50 and render_continuations(message) == []


def test_fields_go_ten_to_a_section_and_long_values_are_cut() -> None:
    items = [FieldItem(label=f"K{i}", value="v" * (3000 if i == 0 else 5)) for i in range(12)]
    blocks = render_message(Message(text="x", blocks=[Fields(items=items)]))["blocks"]
    assert_valid(blocks)
    assert [len(b["fields"]) for b in blocks] == [10, 2]
    first = blocks[0]["fields"][0]["text"]
    assert len(first) == 2000 and first.startswith("*K0*\nvvv") and first.endswith("…")


def test_header_is_cut_to_150_and_actions_to_25_a_block() -> None:
    buttons = [Button(label=f"B{i}", action_id="pick", value=str(i)) for i in range(30)]
    blocks = render_message(Message(text="x", blocks=[Header(text="H" * 200), Actions(buttons=buttons)]))["blocks"]
    assert_valid(blocks)
    assert len(blocks[0]["text"]["text"]) == 150
    assert [len(b["elements"]) for b in blocks[1:]] == [25, 5]
    assert len({e["action_id"] for b in blocks[1:] for e in b["elements"]}) == 30


def test_a_long_table_splits_with_its_header_repeated() -> None:
    rows = [[f"Deal {i:03d} `x`", f"${i * 1000:,}"] for i in range(200)]
    blocks = render_message(Message(text="x", blocks=[Table(columns=["Deal", "Amount"], rows=rows)]))["blocks"]
    assert_valid(blocks)
    texts = [b["text"]["text"] for b in blocks]
    assert len(texts) == 2 and all(len(t) <= 3000 for t in texts)  # 200 rows of ~23 characters
    assert all(t.startswith("```\nDeal          Amount\n------------  --------\n") for t in texts)
    assert all(t.endswith("\n```") for t in texts)
    assert "`x`" not in "".join(texts) and "ˋxˋ" in texts[0]  # a backtick cannot close the fence
    body_rows = [line for t in texts for line in t.splitlines()[3:-1]]
    assert len(body_rows) == 200


def test_values_slack_would_refuse_are_refused_here() -> None:
    with pytest.raises(ValueError, match="value is longer than 2000"):
        render_message(
            Message(text="x", blocks=[Actions(buttons=[Button(label="b", action_id="a", value="v" * 2001)])])
        )
    too_many = Choice(label="c", action_id="c", options=[Option(label=str(i), value=str(i)) for i in range(101)])
    with pytest.raises(ValueError, match="1 to 100 options"):
        render_message(Message(text="x", blocks=[too_many]))


# --- escaping -----------------------------------------------------------------------------------------


def _message_with_text_everywhere(s: str) -> Message:
    return Message(
        text=s,
        blocks=[
            Header(text=s),
            Paragraph(text=s),
            Paragraph(text=s, muted=True),
            Fields(items=[FieldItem(label=s, value=s)]),
            DealList(title=s, items=[DealItem(deal_id=1, name=s, summary=s, reasons=[s], buttons=deal_buttons(1))]),
            DealList(items=[], empty_text=s),
            Table(columns=[s, s], rows=[[s, s]]),
            Actions(buttons=[Button(label=s, action_id="run_command", value="/pipeline")]),
            Choice(label=s, action_id="choice", options=[Option(label=s, value="v")]),
            Image(key="k", alt_text=s, title=s),
        ],
        thread=[Message(text=s)],
    )


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_no_user_text_can_mention_anyone(s: str) -> None:
    message = _message_with_text_everywhere(s)
    parts = [render_message(message), *render_continuations(message), render_message(message.thread[0])]
    dumped = json.dumps(parts, ensure_ascii=False)
    assert "<" not in dumped and ">" not in dumped  # so no <!channel>, <@U123>, <#C1>, <http://...|...>
    for part in parts:
        assert_valid(part["blocks"])


@given(st.text())
def test_escaping_is_exactly_the_three_entities(s: str) -> None:
    escaped = escape(s)
    assert _unescape(escaped) == s
    assert "<" not in escaped and ">" not in escaped
    assert escape("*bold* _it_ ~x~ `code`") == "*bold* _it_ ~x~ `code`"


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<@U0JORDAN> deal", "&lt;@U0JORDAN&gt; deal"),
        ("<#C0REVIEW>", "&lt;#C0REVIEW&gt;"),
        ("<https://evil.example|Acme>", "&lt;https://evil.example|Acme&gt;"),
        ("Tom &amp; Co", "Tom &amp;amp; Co"),
    ],
)
def test_a_deal_named_like_a_mention_pings_nobody(name: str, shown: str) -> None:
    item = DealItem(deal_id=5, name=name, summary="$10")
    blocks = render_message(Message(text=name, blocks=[DealList(items=[item])]))
    assert blocks["blocks"][0]["text"]["text"] == f"*{shown}* — $10"
    assert blocks["text"] == shown
