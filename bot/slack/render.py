"""Render the neutral message model as Slack Block Kit: pure functions, no client, no I/O.

Three Slack rules shape everything here:

- **Escaping.** Slack parses `<...>` in text as links and mentions (`<!channel>`, `<@U123>`, `<#C1>`), so
  every piece of text from the model is escaped (`&` → `&amp;`, `<` → `&lt;`, `>` → `&gt;`) before it is
  placed in a text object, mrkdwn or plain. Those three are the only escapes Slack asks for; `*`, `_`,
  `~` and backticks are left alone. The renderer builds no mentions of its own, so no rendered message
  can ping anyone. Button and option *values* are not escaped: Slack shows them to nobody and hands
  them back verbatim in the interaction payload.
- **Limits.** 50 blocks a message, 3000 characters a section, 150 a header, 10 fields of 2000 a section,
  25 elements an actions block, 75 characters a button label. Long paragraphs and tables are split over
  several sections; a message that needs more than 50 blocks keeps 49 and ends with a "continued in
  thread" line, and `render_continuations` gives the rest as thread replies. Limits are measured on the
  escaped text, and a cut never splits an entity.
- **Action ids.** Slack rejects two elements with the same `action_id` in one block and the interaction
  payload must say which deal a button was for, so deal buttons are suffixed with the deal id
  (`deal_confirm:12`) and any other repeat gets a counter (`run_command:2`). Listeners match the base
  with `action_pattern("deal_confirm")` and read it back with `base_action_id`.

An `Image` needs a URL or an uploaded Slack file. When the caller knows the file id of the image's key
(`files={key: "F123"}`) it becomes an image block with `slack_file`; otherwise it is a one-line context
and the port uploads the PNG next to the message (see bot/slack/port.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cadences.messages import (
    Actions,
    Block,
    Button,
    Choice,
    DealList,
    Divider,
    Fields,
    Header,
    Image,
    Message,
    Paragraph,
    Table,
)

MAX_BLOCKS = 50
SECTION_TEXT_MAX = 3000
CONTEXT_TEXT_MAX = 3000
HEADER_TEXT_MAX = 150
FIELDS_PER_SECTION = 10
FIELD_TEXT_MAX = 2000
ACTIONS_PER_BLOCK = 25
BUTTON_TEXT_MAX = 75
BUTTON_VALUE_MAX = 2000
ACTION_ID_MAX = 255
OPTIONS_MAX = 100
OPTION_TEXT_MAX = 75
OPTION_VALUE_MAX = 150
PLACEHOLDER_MAX = 150
ALT_TEXT_MAX = 2000
IMAGE_TITLE_MAX = 2000
FALLBACK_TEXT_MAX = 3000

CONTINUED = "Continued in thread."
_ENTITY_MAX = len("&amp;")

JSONDict = dict[str, Any]


def escape(text: str) -> str:
    """Text as Slack shows it literally: the three control characters become entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def base_action_id(action_id: str) -> str:
    """The model's action id from a rendered one: `deal_confirm:12` → `deal_confirm`."""
    return action_id.split(":", 1)[0]


def action_suffix(action_id: str) -> str | None:
    """What the renderer appended (the deal id, or a counter): `deal_confirm:12` → `12`."""
    return action_id.split(":", 1)[1] if ":" in action_id else None


def action_pattern(base: str) -> re.Pattern[str]:
    """A pattern matching every rendered form of a model action id, for `app.action(...)`."""
    return re.compile(rf"^{re.escape(base)}(:[^:]+)?$")


def render_message(message: Message, *, files: Mapping[str, str] | None = None) -> JSONDict:
    """`{"text": fallback, "blocks": [...]}` for chat.postMessage / chat.update. A message over 50 blocks
    keeps the first 49 and a "continued in thread" line; the rest is in `render_continuations`."""
    blocks = _all_blocks(message, files or {})
    if len(blocks) > MAX_BLOCKS:
        blocks = [*blocks[: MAX_BLOCKS - 1], _context(CONTINUED)]
    return {"text": _fallback(message.text), "blocks": blocks or [_context(message.text)]}


def render_continuations(message: Message, *, files: Mapping[str, str] | None = None) -> list[JSONDict]:
    """The blocks `render_message` could not fit, as thread replies of at most 50 blocks each; empty for
    a message that fits. `message.thread` replies are not included: they are messages of their own."""
    blocks = _all_blocks(message, files or {})
    if len(blocks) <= MAX_BLOCKS:
        return []
    rest = blocks[MAX_BLOCKS - 1 :]
    text = _fallback(f"{message.text} (continued)")
    return [{"text": text, "blocks": rest[i : i + MAX_BLOCKS]} for i in range(0, len(rest), MAX_BLOCKS)]


def image_blocks(message: Message) -> list[Image]:
    """The images a message shows, in order: what a port must upload when it has no file ids."""
    return [block for block in message.blocks if isinstance(block, Image)]


# --- blocks -----------------------------------------------------------------------------------------


class _ActionIds:
    """Hands out action ids unique within one rendering."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def unique(self, base: str, suffix: str | None = None) -> str:
        candidate = f"{base}:{suffix}" if suffix is not None else base
        counter = 1
        while candidate in self._used:
            counter += 1
            candidate = f"{base}:{suffix}-{counter}" if suffix is not None else f"{base}:{counter}"
        if len(candidate) > ACTION_ID_MAX:
            raise ValueError(f"action id {candidate[:40]!r}... is longer than {ACTION_ID_MAX} characters")
        self._used.add(candidate)
        return candidate


def _all_blocks(message: Message, files: Mapping[str, str]) -> list[JSONDict]:
    ids = _ActionIds()
    out: list[JSONDict] = []
    for block in message.blocks or [Paragraph(text=message.text)]:
        out += _block(block, ids, files)
    return out


def _block(block: Block, ids: _ActionIds, files: Mapping[str, str]) -> list[JSONDict]:
    match block:
        case Header():
            text = _truncate(escape(block.text.strip()), HEADER_TEXT_MAX)
            return [{"type": "header", "text": _plain(text)}] if text else []
        case Paragraph():
            if block.muted:
                return [_context_mrkdwn(chunk) for chunk in _chunks(escape(block.text), CONTEXT_TEXT_MAX)]
            return [_section(chunk) for chunk in _chunks(escape(block.text), SECTION_TEXT_MAX)]
        case Fields():
            fields = [_mrkdwn(_field_text(item.label, item.value)) for item in block.items]
            return [
                {"type": "section", "fields": fields[i : i + FIELDS_PER_SECTION]}
                for i in range(0, len(fields), FIELDS_PER_SECTION)
            ]
        case DealList():
            return _deal_list(block, ids)
        case Table():
            return [_section(chunk) for chunk in _table(block)]
        case Actions():
            return _actions([_button(button, ids) for button in block.buttons])
        case Choice():
            return [{"type": "actions", "elements": [_select(block, ids)]}]
        case Image():
            return [_image(block, files)]
        case Divider():
            return [{"type": "divider"}]
    raise TypeError(f"unknown block {block!r}")


def _deal_list(block: DealList, ids: _ActionIds) -> list[JSONDict]:
    out: list[JSONDict] = []
    if block.title:
        out += [_section(chunk) for chunk in _chunks(_bold(block.title), SECTION_TEXT_MAX)]
    if not block.items:
        out.append(_context(block.empty_text))
    for item in block.items:
        line = " — ".join(part for part in (_bold(item.name), escape(item.summary)) if part)
        out += [_section(chunk) for chunk in _chunks(line, SECTION_TEXT_MAX)]
        if item.reasons:
            bullets = "\n".join(f"• {escape(reason)}" for reason in item.reasons)
            out += [_context_mrkdwn(chunk) for chunk in _chunks(bullets, CONTEXT_TEXT_MAX)]
        if item.buttons:
            out += _actions([_button(button, ids, suffix=str(item.deal_id)) for button in item.buttons])
    return out


def _button(button: Button, ids: _ActionIds, suffix: str | None = None) -> JSONDict:
    if len(button.value) > BUTTON_VALUE_MAX:
        raise ValueError(f"button {button.label!r}: value is longer than {BUTTON_VALUE_MAX} characters")
    rendered: JSONDict = {
        "type": "button",
        "text": _plain(_or(_truncate(escape(button.label), BUTTON_TEXT_MAX), "…")),
        "action_id": ids.unique(button.action_id, suffix),
    }
    if button.value:
        rendered["value"] = button.value
    if button.style:
        rendered["style"] = button.style
    return rendered


def _actions(elements: Sequence[JSONDict]) -> list[JSONDict]:
    return [
        {"type": "actions", "elements": list(elements[i : i + ACTIONS_PER_BLOCK])}
        for i in range(0, len(elements), ACTIONS_PER_BLOCK)
    ]


def _select(block: Choice, ids: _ActionIds) -> JSONDict:
    if not 0 < len(block.options) <= OPTIONS_MAX:
        raise ValueError(f"choice {block.label!r}: Slack needs 1 to {OPTIONS_MAX} options")
    options = []
    for option in block.options:
        if not 0 < len(option.value) <= OPTION_VALUE_MAX:
            raise ValueError(f"choice {block.label!r}: option values need 1 to {OPTION_VALUE_MAX} characters")
        options.append(
            {"text": _plain(_or(_truncate(escape(option.label), OPTION_TEXT_MAX), "…")), "value": option.value}
        )
    return {
        "type": "static_select",
        "action_id": ids.unique(block.action_id),
        "placeholder": _plain(_or(_truncate(escape(block.label), PLACEHOLDER_MAX), "Choose")),
        "options": options,
    }


def _image(block: Image, files: Mapping[str, str]) -> JSONDict:
    file_id = files.get(block.key)
    if file_id is None:
        return _context(f"Image: {block.title or block.alt_text}")
    rendered: JSONDict = {
        "type": "image",
        "slack_file": {"id": file_id},
        "alt_text": _or(_truncate(escape(block.alt_text), ALT_TEXT_MAX), "image"),
    }
    if block.title and block.title.strip():
        rendered["title"] = _plain(_truncate(escape(block.title), IMAGE_TITLE_MAX))
    return rendered


def _table(block: Table) -> list[str]:
    """The table as aligned monospace text in ``` fences, split by rows (header repeated) to fit. A line
    is cut at a third of a section, so the header and at least one row always fit in one."""
    rows = [[_cell(c) for c in block.columns], *([_cell(c) for c in row] for row in block.rows)]
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(width)]
    budget = SECTION_TEXT_MAX - len("```\n\n```")
    line_max = (budget - 2) // 3

    def line(cells: Sequence[str]) -> str:
        return _truncate(escape("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()), line_max)

    head = [line(rows[0]), line(["-" * w for w in widths])]
    chunks: list[str] = []
    current = list(head)
    for row in rows[1:]:
        body = line(row)
        if len("\n".join([*current, body])) > budget:
            chunks.append("\n".join(current))
            current = list(head)
        current.append(body)
    chunks.append("\n".join(current))
    return [f"```\n{chunk}\n```" for chunk in chunks]


def _cell(value: str) -> str:
    # A backtick in a cell would close the code fence early; the lookalike keeps the text readable.
    return value.replace("`", "ˋ").replace("\n", " ")


# --- text objects -------------------------------------------------------------------------------------


def _plain(text: str) -> JSONDict:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> JSONDict:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> JSONDict:
    return {"type": "section", "text": _mrkdwn(text)}


def _context_mrkdwn(text: str) -> JSONDict:
    return {"type": "context", "elements": [_mrkdwn(text)]}


def _context(plain: str) -> JSONDict:
    return _context_mrkdwn(_or(_truncate(escape(plain), CONTEXT_TEXT_MAX), "—"))


def _bold(text: str) -> str:
    # Slack only bolds `*x*` when the asterisks touch the words, so surrounding spaces are trimmed.
    stripped = text.strip()
    return f"*{escape(stripped)}*" if stripped else ""


def _field_text(label: str, value: str) -> str:
    text = "\n".join(part for part in (_bold(label), escape(value)) if part)
    return _or(_truncate(text, FIELD_TEXT_MAX), "—")


def _fallback(text: str) -> str:
    return _or(_truncate(escape(text), FALLBACK_TEXT_MAX), " ")


def _or(text: str, default: str) -> str:
    """Slack refuses text objects with nothing to show, so blank text gets a stand-in."""
    return text if text.strip() else default


def _safe_cut(text: str, cut: int) -> int:
    """Move a cut back so it does not fall inside an entity (every `&` in escaped text starts one)."""
    amp = text.rfind("&", max(0, cut - _ENTITY_MAX + 1), cut)
    if amp != -1 and text.find(";", amp) >= cut:
        return amp
    return cut


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: _safe_cut(text, limit - 1)].rstrip() + "…"


def _chunks(text: str, limit: int) -> Iterator[str]:
    """Split escaped text into pieces of at most `limit`, at a line break or a space when there is one in
    the second half of the piece; whitespace-only pieces are dropped (Slack rejects empty text)."""
    while len(text) > limit:
        cut = text.rfind("\n", limit // 2, limit + 1)
        if cut == -1:
            cut = text.rfind(" ", limit // 2, limit + 1)
        if cut == -1:
            cut = _safe_cut(text, limit)
        piece, text = text[:cut], text[cut:].lstrip("\n ")
        if piece.strip():
            yield piece
    if text.strip():
        yield text
