"""The platform-neutral message model: what the bot says, before any platform decides how it looks.

Every text field holds *plain* text. Renderers (console, Slack Block Kit, Teams Adaptive Cards) escape
it for their markup, so a deal named `<!channel>` can never ping anyone. Emphasis is structural
(a `Header`, a field's label) rather than inline markup, for the same reason.

A `Button` carries both an `action_id`/`value` (for platforms with interactive components) and the
equivalent text `command`, so the console and any text-only surface can offer the same action.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Button(_Model):
    label: str
    action_id: str
    value: str = ""
    command: str | None = None
    style: Literal["primary", "danger"] | None = None


class Option(_Model):
    label: str
    value: str


class Header(_Model):
    type: Literal["header"] = "header"
    text: str


class Paragraph(_Model):
    type: Literal["paragraph"] = "paragraph"
    text: str
    muted: bool = False


class FieldItem(_Model):
    label: str
    value: str


class Fields(_Model):
    """Label/value pairs, shown as a two-column grid where the platform has one."""

    type: Literal["fields"] = "fields"
    items: list[FieldItem]


class DealItem(_Model):
    deal_id: int
    name: str
    summary: str
    reasons: list[str] = Field(default_factory=list)
    buttons: list[Button] = Field(default_factory=list)


class DealList(_Model):
    type: Literal["deal_list"] = "deal_list"
    title: str | None = None
    items: list[DealItem]
    empty_text: str = "No deals."


class Table(_Model):
    """A small table (roll-ups, scorecards); renderers may fall back to aligned text."""

    type: Literal["table"] = "table"
    columns: list[str]
    rows: list[list[str]]


class Actions(_Model):
    type: Literal["actions"] = "actions"
    buttons: list[Button]


class Choice(_Model):
    """Pick one of a few options (a loss reason, a milestone status)."""

    type: Literal["choice"] = "choice"
    label: str
    action_id: str
    options: list[Option]


class Image(_Model):
    """A picture (the digest chart). `key` names stored PNG bytes the platform uploads or links."""

    type: Literal["image"] = "image"
    key: str
    alt_text: str
    title: str | None = None


class Divider(_Model):
    type: Literal["divider"] = "divider"


Block = Annotated[
    Header | Paragraph | Fields | DealList | Table | Actions | Choice | Image | Divider,
    Field(discriminator="type"),
]


class Message(_Model):
    """One message. `text` is the one-line summary used for notifications and text-only fallbacks."""

    text: str
    blocks: list[Block] = Field(default_factory=list)
    ephemeral: bool = False
    thread: list[Message] = Field(default_factory=list)
    opens_thread: bool = False
    """Replies to this message are a discussion of its subject (a flagged deal in the review). Sent as a
    thread reply, it goes where the platform lets it have its own thread: Teams keeps it in the parent's
    thread; Slack, whose threads cannot nest, posts it to the channel."""


def reply(text: str, *blocks: Block, ephemeral: bool = True) -> Message:
    """An answer to the person who typed a command; with no blocks, the text itself is the body."""
    return Message(text=text, blocks=list(blocks) or [Paragraph(text=text)], ephemeral=ephemeral)
