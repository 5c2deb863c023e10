"""Adaptive Cards from the neutral message model: what a cadence message looks like in Teams.

- **Cards.** Version 1.5 (what Teams renders today; the `Table` element needs it). Buttons are
  `Action.Submit` whose `data` is `{"action_id", "value", "command"}` — the model's own names, so the
  inbound handler maps a click back to the same action Slack and the console run (`submitted_action`).
  Plain buttons submit no inputs (`associatedInputs: none`), so a required choice elsewhere on the card
  never blocks them; a choice's submit carries `"input"`, the id under which Teams adds the pick.
- **Escaping.** Teams renders a Markdown subset in TextBlocks and FactSets, so every piece of user text
  is escaped: Markdown punctuation gets a backslash, a list or heading marker at the start of a line is
  neutralised, and `<`, `>`, `&` become entities, so a deal named `[x](https://evil)` or `<at>Dana</at>`
  shows as typed and can neither link nor mention. Button titles, input labels and alt text are not
  Markdown and stay as they are.
- **Size.** Teams refuses a message over about 28 KB. `split_for_limit` continues a long message (a
  review with many flagged deals) in follow-up cards, splitting deal lists, tables and fields between
  items; `render_activities` sends an image too large to sit in any card as an image attachment of its
  own (a base64 `data:` URI: a bot cannot upload to a channel without Microsoft Graph).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
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

CARD_LIMIT = 28_000
"""Bytes of compact JSON one activity may take; Teams' documented ceiling is about 28 KB, and the port
adds a little channel data, so this keeps a margin."""
CARD_VERSION = "1.5"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
CONTINUED = "Continued in the replies."

JSONDict = dict[str, Any]

_BACKSLASHED = frozenset("\\`*_[]()#~")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BLOCK_MARKER = re.compile(r"[-+](?=\s|$)|-(?=-)|=+\s*$")
"""A bullet (`- `, `+ `), a rule or setext underline (`--`, `===`) opening a line. Any whitespace counts
(a no-break space too): CommonMark would not read `=\u00a0` as an underline, but a renderer that does
costs a heading, and an escaped `=` costs nothing."""
_ORDERED_MARKER = re.compile(r"\d{1,9}[.)](?=\s|$)")
_STYLES = {"primary": "positive", "danger": "destructive"}


@dataclass(frozen=True)
class ImageData:
    """The bytes behind an `Image` block (its `key`), as the attachment table holds them."""

    content: bytes
    mime: str = "image/png"
    filename: str = "image.png"

    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.content).decode('ascii')}"


Images = Mapping[str, ImageData]


@dataclass(frozen=True)
class Submitted:
    """What a card submission asked for: the model's action id, the value and the equivalent command."""

    action_id: str
    value: str
    command: str | None


# --- text -------------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Plain text as Teams' card Markdown shows it literally. Indentation is dropped (four spaces would
    start a code block, where escapes show as typed); line breaks are kept."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(_escape_line(line.lstrip(" \t")) for line in lines)


def _escape_line(line: str) -> str:
    body = "".join(_ENTITIES.get(c) or (f"\\{c}" if c in _BACKSLASHED else c) for c in line)
    if _BLOCK_MARKER.match(line):
        return "\\" + body
    marker = _ORDERED_MARKER.match(line)
    if marker and line[marker.end() - 1] == ".":  # "1. " starts an ordered list; ")" is escaped above
        cut = marker.end() - 1
        return body[:cut] + "\\" + body[cut:]
    return body


# --- cards ------------------------------------------------------------------------------------------


def render_card(message: Message, *, images: Images | None = None) -> JSONDict:
    """One Adaptive Card for the whole message, whatever its size (`render_activities` splits). Images
    whose bytes are in `images` are inlined as data URIs; others become a one-line mention."""
    ids = _InputIds()
    body: list[JSONDict] = []
    for block in message.blocks or [Paragraph(text=message.text)]:
        body += _block(block, images or {}, ids)
    return {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "body": body,
        "fallbackText": escape(message.text),
        "msteams": {"width": "Full"},
    }


def render_activity(message: Message, *, images: Images | None = None) -> JSONDict:
    """A message activity carrying the card. The one-line summary goes in `summary` (notifications and
    the chat list), not `text`: Teams would print `text` above the card as a second copy."""
    return {
        "type": "message",
        "summary": message.text,
        "attachments": [{"contentType": ADAPTIVE_CARD, "content": render_card(message, images=images)}],
    }


def image_activity(image: Image, data: ImageData) -> JSONDict:
    """An image as a message of its own (an inline image attachment), for one too large for a card."""
    return {
        "type": "message",
        "summary": image.title or image.alt_text,
        "attachments": [{"contentType": data.mime, "contentUrl": data.data_uri(), "name": data.filename}],
    }


def card_size(card: JSONDict) -> int:
    """Bytes of the compact JSON, as it goes over the wire (works for a card or a whole activity)."""
    return len(json.dumps(card, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def render_activities(message: Message, *, images: Images | None = None, limit: int = CARD_LIMIT) -> list[JSONDict]:
    """Every activity one message becomes, in order: its card, the continuation cards when it is too
    large for one, then each image too large for any card. `message.thread` replies are not included:
    they are messages of their own. Raises ValueError when some block cannot fit a card at all."""
    images = images or {}
    shown = [block for block in message.blocks if isinstance(block, Image) and block.key in images]
    inline = {b.key: images[b.key] for b in shown if _image_fits(message.text, b, images[b.key], limit)}
    parts = split_for_limit(message, limit, images=inline)
    out = [render_activity(part, images=inline) for part in parts]
    out += [image_activity(block, images[block.key]) for block in shown if block.key not in inline]
    return out


def split_for_limit(message: Message, limit: int = CARD_LIMIT, *, images: Images | None = None) -> list[Message]:
    """The message as one or more messages whose activities each stay within `limit` bytes: the first
    keeps the text, the rest are "(continued)" and every part but the last ends with a note. Deal lists,
    tables, fields and button rows are split between items (a deal list's title is repeated, marked
    continued); an overlong paragraph is cut at spaces. `images` must hold only images that fit a card.
    `message.thread` is not carried into the parts."""
    images = images or {}
    blocks: list[Block] = list(message.blocks or [Paragraph(text=message.text)])
    continued = f"{message.text} (continued)"
    note = Paragraph(text=CONTINUED, muted=True)

    def size(part: Sequence[Block], *, last: bool) -> int:
        shown = Message(text=continued, blocks=[*part, *([] if last else [note])], ephemeral=message.ephemeral)
        return card_size(render_activity(shown, images=images))

    if size(blocks, last=True) <= limit:
        return [message.model_copy(update={"thread": []})]
    parts: list[list[_Atom]] = [[]]
    for atom in _atoms(blocks, paragraph_chars=max(limit // 8, 1)):
        if parts[-1]:
            merged = _merge(parts[-1], atom)
            if size([a.block for a in merged], last=False) <= limit:
                parts[-1] = merged
                continue
            parts.append([])
        parts[-1] = _merge([], atom)
        if size([parts[-1][0].block], last=False) > limit:
            raise ValueError(f"a {atom.block.type} block is too large for a Teams card (limit {limit} bytes)")
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        out.append(
            Message(
                text=message.text if i == 0 else continued,
                blocks=[a.block for a in part] + ([] if last else [note]),
                ephemeral=message.ephemeral,
            )
        )
    return out


def submitted_action(data: Any) -> Submitted | None:
    """The button or choice behind a card submission (Teams' `activity.value`), or None when the data
    did not come from a card this module rendered."""
    if not isinstance(data, Mapping) or not isinstance(data.get("action_id"), str):
        return None
    value = data.get("value")
    field = data.get("input")
    if isinstance(field, str):
        value = data.get(field)
    command = data.get("command")
    return Submitted(
        action_id=data["action_id"],
        value="" if value is None else str(value),
        command=command if isinstance(command, str) else None,
    )


# --- elements ---------------------------------------------------------------------------------------


class _InputIds:
    """Input ids unique within one card (two choices with one action id must not collide)."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def unique(self, base: str) -> str:
        candidate, counter = base, 1
        while candidate in self._used:
            counter += 1
            candidate = f"{base}-{counter}"
        self._used.add(candidate)
        return candidate


def _block(block: Block, images: Images, ids: _InputIds) -> list[JSONDict]:
    match block:
        case Header():
            if not block.text.strip():
                return []
            return [_text(block.text, size="Large", weight="Bolder", style="heading")]
        case Paragraph():
            if not block.text.strip():
                return []
            return [_text(block.text, isSubtle=True) if block.muted else _text(block.text)]
        case Fields():
            facts = [{"title": escape(item.label), "value": escape(item.value)} for item in block.items]
            return [{"type": "FactSet", "facts": facts}] if facts else []
        case DealList():
            return _deal_list(block)
        case Table():
            return [_table(block)]
        case Actions():
            return [_action_set([_submit(button) for button in block.buttons])] if block.buttons else []
        case Choice():
            return _choice(block, ids)
        case Image():
            return _image(block, images.get(block.key))
        case Divider():
            return [{"type": "Container", "separator": True, "spacing": "Medium", "items": []}]
    raise TypeError(f"unknown block {block!r}")


def _text(text: str, **props: Any) -> JSONDict:
    return {"type": "TextBlock", "text": escape(text), "wrap": True, **props}


def _deal_list(block: DealList) -> list[JSONDict]:
    out: list[JSONDict] = []
    if block.title and block.title.strip():
        out.append(_text(block.title, size="Medium", weight="Bolder"))
    if not block.items:
        out.append(_text(block.empty_text, isSubtle=True))
    for item in block.items:
        items = [_text(item.name, weight="Bolder")]
        if item.summary.strip():
            items.append(_text(item.summary, spacing="None"))
        items += [_text(f"• {reason}", isSubtle=True, spacing="None") for reason in item.reasons if reason.strip()]
        if item.buttons:
            items.append(_action_set([_submit(button) for button in item.buttons]))
        out.append({"type": "Container", "separator": True, "spacing": "Medium", "items": items})
    return out


def _table(block: Table) -> JSONDict:
    width = max([len(block.columns), *(len(row) for row in block.rows)])

    def row(cells: Sequence[str], **props: Any) -> JSONDict:
        padded = [*cells, *[""] * (width - len(cells))]
        return {
            "type": "TableRow",
            "cells": [{"type": "TableCell", "items": [_text(cell, **props)]} for cell in padded],
        }

    return {
        "type": "Table",
        "columns": [{"width": 1} for _ in range(width)],
        "rows": [row(block.columns, weight="Bolder"), *(row(cells) for cells in block.rows)],
        "firstRowAsHeader": True,
        "showGridLines": True,
    }


def _submit(button: Button) -> JSONDict:
    action: JSONDict = {
        "type": "Action.Submit",
        "title": button.label.strip() or "…",
        "data": {"action_id": button.action_id, "value": button.value, "command": button.command},
        "associatedInputs": "none",
    }
    if button.style:
        action["style"] = _STYLES[button.style]
    return action


def _action_set(actions: list[JSONDict]) -> JSONDict:
    return {"type": "ActionSet", "actions": actions}


def _choice(block: Choice, ids: _InputIds) -> list[JSONDict]:
    if not block.options:
        raise ValueError(f"choice {block.label!r} has no options")
    input_id = ids.unique(block.action_id)
    choice_set = {
        "type": "Input.ChoiceSet",
        "id": input_id,
        "label": block.label,
        "style": "compact",
        "isRequired": True,
        "errorMessage": "Choose one",
        "choices": [{"title": option.label, "value": option.value} for option in block.options],
    }
    submit = {
        "type": "Action.Submit",
        "title": "Submit",
        "data": {"action_id": block.action_id, "value": "", "command": None, "input": input_id},
    }
    return [choice_set, _action_set([submit])]


def _image(block: Image, data: ImageData | None) -> list[JSONDict]:
    if data is None:
        return [_text(f"Image: {block.title or block.alt_text}", isSubtle=True)]
    out = [_text(block.title, weight="Bolder")] if block.title and block.title.strip() else []
    out.append({"type": "Image", "url": data.data_uri(), "altText": block.alt_text, "size": "Stretch"})
    return out


def _image_fits(text: str, image: Image, data: ImageData, limit: int) -> bool:
    """Whether the image fits a continuation card on its own, as `split_for_limit` would place it."""
    alone = Message(text=f"{text} (continued)", blocks=[image, Paragraph(text=CONTINUED, muted=True)])
    return card_size(render_activity(alone, images={image.key: data})) <= limit


# --- splitting --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Atom:
    """The smallest piece a split keeps together, with the block it came from (`origin`) and its place
    in it (`index`), so neighbouring pieces of one block join again."""

    origin: int
    index: int
    block: Block


def _atoms(blocks: Sequence[Block], *, paragraph_chars: int) -> Iterator[_Atom]:
    for origin, block in enumerate(blocks):
        pieces: list[Block]
        match block:
            case DealList() if len(block.items) > 1:
                pieces = [block.model_copy(update={"items": [item]}) for item in block.items]
            case Table() if len(block.rows) > 1:
                pieces = [block.model_copy(update={"rows": [row]}) for row in block.rows]
            case Fields() if len(block.items) > 1:
                pieces = [block.model_copy(update={"items": [item]}) for item in block.items]
            case Actions() if len(block.buttons) > 1:
                pieces = [block.model_copy(update={"buttons": [button]}) for button in block.buttons]
            case Paragraph() if len(block.text) > paragraph_chars:
                pieces = [block.model_copy(update={"text": t}) for t in _chunks(block.text, paragraph_chars)]
            case _:
                pieces = [block]
        for index, piece in enumerate(pieces):
            yield _Atom(origin, index, piece)


def _merge(part: list[_Atom], atom: _Atom) -> list[_Atom]:
    """`part` with `atom` appended, joined into the previous block when both pieces are of one block."""
    if part and part[-1].origin == atom.origin:
        joined = _join(part[-1].block, atom.block)
        if joined is not None:
            return [*part[:-1], _Atom(atom.origin, part[-1].index, joined)]
    block = atom.block
    if isinstance(block, DealList) and block.title and atom.index > 0:
        block = block.model_copy(update={"title": f"{block.title} (continued)"})
    return [*part, _Atom(atom.origin, atom.index, block)]


def _join(first: Block, second: Block) -> Block | None:
    if isinstance(first, DealList) and isinstance(second, DealList):
        return first.model_copy(update={"items": [*first.items, *second.items]})
    if isinstance(first, Table) and isinstance(second, Table):
        return first.model_copy(update={"rows": [*first.rows, *second.rows]})
    if isinstance(first, Fields) and isinstance(second, Fields):
        return first.model_copy(update={"items": [*first.items, *second.items]})
    if isinstance(first, Actions) and isinstance(second, Actions):
        return first.model_copy(update={"buttons": [*first.buttons, *second.buttons]})
    return None


def _chunks(text: str, limit: int) -> Iterator[str]:
    """Pieces of at most `limit` characters, cut at a line break or space in the second half of a piece."""
    while len(text) > limit:
        cut = text.rfind("\n", limit // 2, limit + 1)
        if cut == -1:
            cut = text.rfind(" ", limit // 2, limit + 1)
        if cut <= 0:
            cut = limit
        piece, text = text[:cut], text[cut:].lstrip("\n ")
        if piece.strip():
            yield piece
    if text.strip():
        yield text
