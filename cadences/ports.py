"""The chat port: the one seam between the rituals and a chat platform.

`cadences/` addresses people and channels of the engagement, never platform ids; a port (console,
Slack, Teams, or a transcript fake in tests) resolves the address, renders the message and sends it.
Every ritual message carries its delivery key, so after a crash between sending and recording the
engine can ask the port whether that delivery already went out (`find_sent`).
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from cadences.messages import Message


class Target(BaseModel):
    """Where a message goes: a person's DM or one of the engagement's channels, with a thread parent."""

    model_config = ConfigDict(frozen=True)

    engagement_id: int
    kind: Literal["person", "channel"]
    person_id: int | None = None
    person_name: str | None = None
    identities: dict[str, str] = {}
    timezone: str | None = None
    channel: str | None = None
    thread: SentRef | None = None

    def describe(self) -> str:
        if self.kind == "person":
            return f"DM to {self.person_name}"
        return f"#{self.channel}" + (" (thread)" if self.thread else "")


class SentRef(BaseModel):
    """How a platform names a sent message (Slack channel + ts, Teams conversation + activity id)."""

    model_config = ConfigDict(frozen=True)

    platform: str
    conversation: str
    message_id: str
    thread_id: str | None = None


class DeliveryFailed(Exception):
    """A send that failed. `permanent` failures (channel not found, user deactivated) are not retried."""

    def __init__(self, reason: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after


class ChatPort(Protocol):
    """What a chat platform offers the cadence engine."""

    platform: str

    async def send(self, target: Target, message: Message, *, delivery_key: str) -> SentRef:
        """Post `message` to `target`, tagged with `delivery_key`; raise DeliveryFailed on failure."""
        ...

    async def find_sent(self, target: Target, delivery_key: str) -> SentRef | None:
        """The message already posted with this key, if the platform can tell; None when it was not (or
        the platform cannot know — then the engine sends, the one honest limit of exactly-once)."""
        ...

    async def update(self, ref: SentRef, message: Message) -> None:
        """Replace a posted message in place (a nudge once answered, the review as deals change)."""
        ...


Target.model_rebuild()
