"""A transcript chat port: records every message the engine sends, can fail on demand, and answers
`find_sent` from its record, like a platform that stores the delivery key with each message."""

from __future__ import annotations

from dataclasses import dataclass, field

from cadences.messages import Message
from cadences.ports import DeliveryFailed, SentRef, Target


@dataclass
class Sent:
    target: Target
    message: Message
    key: str
    ref: SentRef


@dataclass
class TranscriptPort:
    platform: str = "transcript"
    sent: list[Sent] = field(default_factory=list)
    updates: list[tuple[SentRef, Message]] = field(default_factory=list)
    fail_next: list[DeliveryFailed] = field(default_factory=list)
    remembers: bool = True

    async def send(self, target: Target, message: Message, *, delivery_key: str) -> SentRef:
        if self.fail_next:
            raise self.fail_next.pop(0)
        where = f"dm:{target.person_id}" if target.kind == "person" else f"channel:{target.channel}"
        ref = SentRef(
            platform=self.platform,
            conversation=where,
            message_id=str(len(self.sent) + 1),
            thread_id=target.thread.message_id if target.thread else None,
        )
        self.sent.append(Sent(target, message, delivery_key, ref))
        return ref

    async def find_sent(self, target: Target, delivery_key: str) -> SentRef | None:
        if not self.remembers:
            return None
        return next((s.ref for s in self.sent if s.key == delivery_key), None)

    async def update(self, ref: SentRef, message: Message) -> None:
        self.updates.append((ref, message))

    def to(self, name: str) -> list[Sent]:
        """Messages to a person (by name) or a channel (by name without '#')."""
        return [s for s in self.sent if name in (s.target.person_name, s.target.channel)]

    def texts(self) -> list[str]:
        return [s.message.text for s in self.sent]
