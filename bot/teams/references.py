"""The database behind `TeamsPort`'s `ReferenceStore`, and the capture of references from inbound activities.

Teams gives a bot its service URL, tenant and conversation ids only inside activities it sends, so
every inbound activity (an install, a message, a card action) refreshes its conversation's row, and
the scheduler posts through those rows later — in this process or another, before or after a restart.
A channel's thread replies arrive on `"<channel>;messageid=<root>"`: they are stored under the channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity

from bot.teams.port import PLATFORM, base_conversation
from bot.teams.render import JSONDict
from cadences.clock import Clock
from cadences.ports import SentRef
from storage import teams_refs
from storage.db import Database
from storage.models import ConversationRef


def tenant_of(activity: Activity) -> str | None:
    """The tenant an activity comes from: the conversation's, else Teams' channel data. (Teams spells it
    `tenantId`, which botbuilder-python's model, expecting `tenantID`, leaves in additional properties.)"""
    conversation = activity.conversation
    if conversation is not None:
        tenant = conversation.tenant_id or (conversation.additional_properties or {}).get("tenantId")
        if tenant:
            return str(tenant)
    tenant = (activity.channel_data or {}).get("tenant") if isinstance(activity.channel_data, dict) else None
    return str(tenant["id"]) if isinstance(tenant, dict) and tenant.get("id") else None


def team_of(activity: Activity) -> str | None:
    team = (activity.channel_data or {}).get("team") if isinstance(activity.channel_data, dict) else None
    return str(team["id"]) if isinstance(team, dict) and team.get("id") else None


def conversation_type(activity: Activity) -> str | None:
    kind = activity.conversation.conversation_type if activity.conversation else None
    return kind if kind in teams_refs.CONVERSATION_TYPES else None


def reference_json(activity: Activity) -> JSONDict:
    """The Bot Framework conversation reference of an inbound activity, addressed to the conversation
    itself (a channel, not the thread the activity was in; no particular activity), with its tenant —
    which creating a 1:1 chat needs and botbuilder's model drops when Teams spells it `tenantId`."""
    reference = TurnContext.get_conversation_reference(activity)
    reference.activity_id = None
    if reference.conversation is not None:
        if reference.conversation.id:
            reference.conversation.id = base_conversation(reference.conversation.id)
        reference.conversation.tenant_id = tenant_of(activity)
    serialized: JSONDict = reference.serialize()
    return serialized


@dataclass
class DbReferenceStore:
    """`ReferenceStore` on the `conversation_ref` and `sent_activity` tables."""

    db: Database
    clock: Clock

    async def capture(self, activity: Activity, engagement_id: int | None) -> ConversationRef | None:
        """Store (or refresh) the conversation of an inbound Teams activity; None when the activity names
        no tenant or no Teams conversation type (the emulator, other channels)."""
        tenant, kind = tenant_of(activity), conversation_type(activity)
        if tenant is None or kind is None or activity.conversation is None or not activity.service_url:
            return None
        user = activity.from_property
        aad = user.aad_object_id if user is not None and kind == teams_refs.PERSONAL else None
        async with self.db.write() as session:
            return await teams_refs.save_ref(
                session,
                conversation_id=base_conversation(str(activity.conversation.id)),
                tenant_id=tenant,
                service_url=str(activity.service_url),
                conversation_type=kind,
                reference=reference_json(activity),
                now=self.clock.now(),
                engagement_id=engagement_id,
                aad_object_id=aad,
                team_id=team_of(activity),
            )

    # --- ReferenceStore ---------------------------------------------------------------------------

    async def get_personal(self, engagement_id: int, aad_object_id: str) -> JSONDict | None:
        async with self.db.session() as session:
            return _reference(await teams_refs.personal(session, engagement_id, aad_object_id))

    async def get_channel(self, engagement_id: int, channel_name: str) -> JSONDict | None:
        async with self.db.session() as session:
            return _reference(await teams_refs.channel(session, engagement_id, channel_name))

    async def get_team(self, engagement_id: int) -> JSONDict | None:
        async with self.db.session() as session:
            return _reference(await teams_refs.in_team(session, engagement_id))

    async def get_conversation(self, conversation_id: str) -> JSONDict | None:
        async with self.db.session() as session:
            return _reference(await teams_refs.by_conversation(session, base_conversation(conversation_id)))

    async def save_personal(self, engagement_id: int, aad_object_id: str, reference: JSONDict) -> None:
        conversation: dict[str, Any] = reference.get("conversation") or {}
        tenant = conversation.get("tenantId") or conversation.get("tenantID")
        async with self.db.write() as session:
            await teams_refs.save_ref(
                session,
                conversation_id=str(conversation["id"]),
                tenant_id=str(tenant or ""),
                service_url=str(reference["serviceUrl"]),
                conversation_type=teams_refs.PERSONAL,
                reference=dict(reference),
                now=self.clock.now(),
                engagement_id=engagement_id,
                aad_object_id=aad_object_id,
            )

    async def record_sent(self, delivery_key: str, ref: SentRef) -> None:
        async with self.db.write() as session:
            await teams_refs.record_sent(
                session, delivery_key, ref.conversation, ref.message_id, self.clock.now(), thread_id=ref.thread_id
            )

    async def find_sent(self, delivery_key: str) -> SentRef | None:
        async with self.db.session() as session:
            row = await teams_refs.find_sent(session, delivery_key)
        if row is None:
            return None
        return SentRef(
            platform=PLATFORM, conversation=row.conversation_id, message_id=row.activity_id, thread_id=row.thread_id
        )


def _reference(row: ConversationRef | None) -> JSONDict | None:
    return dict(row.reference) if row is not None else None
