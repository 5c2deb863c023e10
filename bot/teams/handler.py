"""The Teams activity handler: Teams activities in, the same `cadences/` services, Adaptive Cards out.

A thin translation layer on botbuilder's `TeamsActivityHandler`; what happens is decided by the command
router and the deal, debrief and plan services, exactly as for Slack and the console — and what the forms
hold, what a submission or a button does and who a user is, in `cadences/` (`deal_form`, `debrief_form`,
`forecast_form`, `button_actions`, `thread_replies`, `people`), shared with Slack.

- **Every activity** first refreshes its conversation's reference in the database (`DbReferenceStore`),
  so the scheduler can post to people and channels proactively — captured on install, on every message
  and on every card action, never only in memory.
- **Typed commands** (`deal Acme stage=proposal`, `/deal ...`, `@Cadence pipeline start`, `debrief`,
  `cadence ...`, `digest ...`): the bot's @mention is taken out, the HTML Teams wraps text in is undone,
  and the words go through the router as the person the activity comes from (`identity.py`). The
  answer is posted within the request, in the conversation (in a channel, in the thread).
  `cadence setup <slug>` typed in a channel by the engagement's CRO links the tenant to the engagement
  and makes that channel the review channel. Bare `deal`, `deal new` and bare `pipeline forecast`
  answer with a form card, as Slack opens a modal. Past the person's command limit (shared with
  Slack's, `bot/command_limit.py`) the answer is the "slow down" line and nothing runs.
- **A reply in a review thread** (a channel message in the thread of the review post) becomes what it
  says on the deal it names ("Acme: champion moved", "Acme: action: send pricing by Dec 4"), through
  `record_note_from_thread`, like a Slack thread reply.
- **Card actions** arrive as a message whose `value` is the card's data (`Action.Submit`) or as an
  `adaptiveCard/action` invoke (`Action.Execute`). A form submission runs the same service as the text
  command with the version the person saw; a refusal comes back on the card, each error under its
  field (`cards.py`). A card that changes is replaced in place — `update_activity` on the activity the
  action came from, or the invoke's response card for Action.Execute, which Teams shows every viewer.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any

from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.core.teams import TeamsActivityHandler, TeamsInfo
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount
from botbuilder.schema.teams import TeamInfo, TeamsChannelAccount
from msrest.exceptions import HttpOperationError

from bot.command_limit import SLOW_DOWN, CommandLimit
from bot.settings import Settings
from bot.teams import cards
from bot.teams.identity import PLATFORM, TeamsIdentities, TeamsUser
from bot.teams.port import THREAD_MARK, base_conversation, stored_images
from bot.teams.references import DbReferenceStore, conversation_type, tenant_of
from bot.teams.render import ADAPTIVE_CARD, ImageData, JSONDict, render_activities, render_card, split_for_limit
from bot.teams.render import submitted_action as read_button
from cadences import button_actions, deal_events, deal_form, debrief_form, forecast_form, forms
from cadences.authz import Action
from cadences.button_actions import StatusChange
from cadences.clock import Clock
from cadences.commands import CommandRouter
from cadences.context import Cadence, Context
from cadences.deal_commands import change_intro, confirmation
from cadences.deals import Conflict, DealError, FieldErrors, not_in_engagement
from cadences.engagement_file import engagement_settings
from cadences.grammar import split_invocation
from cadences.messages import Button, Image, Message, reply
from cadences.people import engagement_for_workspace
from cadences.thread_replies import record_reply
from storage import audit, chat_workspaces, teams_refs
from storage import engagements as engagement_repo
from storage.db import Database
from storage.models import Deal, Delivery, Engagement, Person, Role

log = logging.getLogger(__name__)

NOT_LINKED = (
    "This Microsoft Teams organisation isn't linked to a Cadence engagement yet. The engagement's CRO links "
    "it by typing “cadence setup <engagement-slug>” (the slug: in the engagement file) to me in the channel "
    "where the pipeline review should be posted."
)
SETUP_USAGE = (
    "Type “cadence setup <engagement-slug>” (the slug: in the engagement file) to me in the channel where the "
    "pipeline review should be posted. Only the engagement's CRO can do it."
)
COMMAND = re.compile(r"^/[a-z]")
_TAG = re.compile(r"<(?!/?at[\s>])[^<>]*>", re.IGNORECASE)
EXECUTE_MESSAGE = "application/vnd.microsoft.activity.message"


@dataclass
class TeamsDeps:
    """What the handler works with. `settings` carries the Bot Framework credentials; `cadence` is the
    engine (rituals triggered by commands, in-place updates of sent cards); `on_link` runs after a
    tenant is linked (so the engine's ports can be rebuilt); `limit` is the per-user command limit for
    typed commands (None: no limit)."""

    db: Database
    clock: Clock
    router: CommandRouter
    settings: Settings
    cadence: Cadence | None = None
    identities: TeamsIdentities | None = None
    references: DbReferenceStore | None = None
    on_link: Callable[[], Awaitable[None]] | None = None
    limit: CommandLimit | None = None

    @property
    def people(self) -> TeamsIdentities:
        if self.identities is None:
            self.identities = TeamsIdentities(self.db, self.clock)
        return self.identities

    @property
    def refs(self) -> DbReferenceStore:
        if self.references is None:
            self.references = DbReferenceStore(self.db, self.clock)
        return self.references


@dataclass(frozen=True)
class Asker:
    """The person behind a Teams activity, in the engagement of their tenant (`person` is None for
    someone who is not part of it: the router answers them so)."""

    engagement: Engagement
    person: Person | None
    user: TeamsUser

    def context(self, deps: TeamsDeps) -> Context:
        ref = f"teams:{self.user.aad or self.user.id}"
        return Context(deps.db, deps.clock, self.engagement, self.person, PLATFORM, ref, deps.cadence)


@dataclass
class CardAnswer:
    """What a card action leads to: a card to put in place of the one acted on, new form cards to
    send, replies to send; `status` is the line Teams shows for an Action.Execute with no new card."""

    card: JSONDict | None = None
    forms: list[JSONDict] = field(default_factory=list)
    replies: list[Message] = field(default_factory=list)
    status: str | None = None


# --- text ---------------------------------------------------------------------------------------------


def typed_text(activity: Activity) -> str:
    """What the person typed: the bot's own @mention taken out (only its exact `<at>…</at>` markup —
    botbuilder's `remove_recipient_mention` also deletes the bot's name wherever it appears, which would
    eat the word in "Cadence status"), other markup Teams adds dropped, and entities (`&amp;`,
    `&nbsp;`) turned back into characters. Other people's mentions stay for the grammar to read."""
    text = activity.text or ""
    bot_id = activity.recipient.id if activity.recipient else None
    for entity in activity.entities or []:
        props = entity if isinstance(entity, dict) else {"type": entity.type, **(entity.additional_properties or {})}
        mentioned = props.get("mentioned") or {}
        if str(props.get("type")).lower() == "mention" and mentioned.get("id") == bot_id and props.get("text"):
            text = text.replace(str(props["text"]), " ")
    return html.unescape(_TAG.sub(" ", text)).strip()


def thread_root(activity: Activity) -> str | None:
    """The root activity id when a channel message is a reply in a thread (a new post's conversation id
    names the post itself, which is no reply)."""
    conversation = str(activity.conversation.id) if activity.conversation else ""
    if THREAD_MARK not in conversation:
        return None
    root = conversation.split(THREAD_MARK, 1)[1]
    return root if root and root != activity.id else None


def card_activity(card: JSONDict, summary: str, *, activity_id: str | None = None) -> Activity:
    body: JSONDict = {
        "type": "message",
        "summary": summary,
        "attachments": [{"contentType": ADAPTIVE_CARD, "content": card}],
    }
    if activity_id:
        body["id"] = activity_id
    return Activity().deserialize(body)


# --- the handler --------------------------------------------------------------------------------------


class CadenceTeamsBot(TeamsActivityHandler):  # type: ignore[misc]
    """Cadence in Microsoft Teams."""

    def __init__(self, deps: TeamsDeps) -> None:
        self.deps = deps
        self._images = stored_images(deps.db)

    async def on_turn(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        engagement = await engagement_for_workspace(self.deps.db, PLATFORM, tenant_of(activity))
        await self.deps.refs.capture(activity, engagement.id if engagement else None)
        if activity.type == ActivityTypes.message and activity.id and not await self._first_sight(activity):
            log.info("Teams message %s was already handled; ignoring the redelivery", activity.id)
            return
        await super().on_turn(turn_context)

    async def _first_sight(self, activity: Activity) -> bool:
        """Whether a message is new: the Bot Framework redelivers one it thinks was lost, and a command
        must not run twice (a deal note added twice, a review started twice)."""
        conversation = base_conversation(str(activity.conversation.id)) if activity.conversation else ""
        key = hashlib.sha256(f"{conversation}/{activity.id}".encode()).hexdigest()
        async with self.deps.db.write() as session:
            return await chat_workspaces.first_sight(session, PLATFORM, key, self.deps.clock.now())

    # --- install ----------------------------------------------------------------------------------

    async def on_teams_members_added_dispatch(
        self, members_added: list[ChannelAccount], team_info: TeamInfo, turn_context: TurnContext
    ) -> None:
        """Only the bot's own arrival matters (its install; the reference is already stored), so the
        other new members are not looked up one by one as botbuilder would."""
        bot_id = turn_context.activity.recipient.id if turn_context.activity.recipient else None
        added = [TeamsChannelAccount(id=m.id, name=m.name) for m in members_added if m.id == bot_id]
        if added:
            await self.on_teams_members_added(added, team_info, turn_context)

    async def on_teams_members_added(
        self, teams_members_added: list[TeamsChannelAccount], team_info: TeamInfo, turn_context: TurnContext
    ) -> None:
        """The bot was installed: say what it is and how the CRO links it."""
        engagement = await engagement_for_workspace(self.deps.db, PLATFORM, tenant_of(turn_context.activity))
        if engagement is not None:
            text = f"Hi, I'm Cadence, the operating cadence of {engagement.company}. Type “help” to see what I can do."
        elif conversation_type(turn_context.activity) == teams_refs.PERSONAL:
            text = "Hi, I'm Cadence. " + NOT_LINKED
        else:
            text = "Hi, I'm Cadence. " + SETUP_USAGE
        await self._say(turn_context, [reply(text, ephemeral=False)])

    # --- messages ---------------------------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if isinstance(activity.value, Mapping):
            await self._submit(turn_context, await self._card_action(turn_context, activity.value))
            return
        if not await self._within_limit(activity):
            await self._say(turn_context, [reply(SLOW_DOWN)])
            return
        text = typed_text(activity)
        invocation = split_invocation(text)
        if invocation is not None and invocation[0] == "cadence":
            head, _, rest = invocation[1].partition(" ")
            if head.casefold() == "setup":
                await self._setup(turn_context, rest.strip())
                return
        asker = await self._asker(turn_context)
        if asker is None:
            await self._say(turn_context, [reply(NOT_LINKED)])
            return
        root = thread_root(activity)
        if invocation is None and root is not None and await self._thread_reply(turn_context, asker, root, text):
            return
        if invocation is None:
            await self._say(turn_context, await self.deps.router.handle_text(asker.context(self.deps), text))
            return
        name, args = invocation
        form = await self._form_for(asker, name, args.strip().casefold())
        if form is not None:
            await self._send_cards(turn_context, [form])
            return
        messages = await self.deps.router.run(asker.context(self.deps), name, args, raw=text)
        await self._say(turn_context, messages)

    async def _within_limit(self, activity: Activity) -> bool:
        """Count a typed command by this person; False when it is over their limit (then say SLOW_DOWN)."""
        if self.deps.limit is None:
            return True
        user = _user(activity)
        return await self.deps.limit.allow(PLATFORM, tenant_of(activity) or "", user.aad_object_id or user.id)

    async def _form_for(self, asker: Asker, name: str, args: str) -> JSONDict | Message | None:
        """Bare `deal`, `deal new` and bare `pipeline forecast` open a form card (or say why not)."""
        if name == "deal" and args == "":
            return await self._deal_picker(asker)
        if name == "deal" and args == "new":
            return await self._new_deal_form(asker)
        if name == "pipeline" and args == "forecast":
            return await self._forecast_form(asker)
        return None

    # --- card actions -----------------------------------------------------------------------------

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        """`adaptiveCard/action` (Action.Execute) is answered here with a plain JSON body: botbuilder's
        own path would run it through msrest models that cannot hold Teams' message response."""
        if turn_context.activity.name != "adaptiveCard/action":
            return await super().on_invoke_activity(turn_context)
        value = turn_context.activity.value
        action: Mapping[str, Any] = value.get("action") or {} if isinstance(value, Mapping) else {}
        if not isinstance(action, Mapping) or action.get("type") != "Action.Execute":
            return InvokeResponse(status=int(HTTPStatus.BAD_REQUEST), body=_error_body("Not an Action.Execute."))
        data = dict(action.get("data") or {})
        if "action_id" not in data and cards.FORM_KEY not in data and action.get("verb"):
            data["action_id"] = str(action["verb"])
        answer = await self._card_action(turn_context, data)
        await self._send_cards(turn_context, answer.forms)
        await self._say(turn_context, answer.replies)
        if answer.card is not None:
            body = {"statusCode": 200, "type": ADAPTIVE_CARD, "value": answer.card}
        else:
            status = answer.status or (answer.replies[0].text if answer.replies else "Done.")
            body = {"statusCode": 200, "type": EXECUTE_MESSAGE, "value": status}
        return InvokeResponse(status=int(HTTPStatus.OK), body=body)

    async def _submit(self, turn_context: TurnContext, answer: CardAnswer) -> None:
        """Action.Submit: the new card replaces the one the action came from, in place."""
        if answer.card is not None:
            source = turn_context.activity.reply_to_id
            summary = _summary(answer.card)
            if source:
                await turn_context.update_activity(card_activity(answer.card, summary, activity_id=source))
            else:
                await turn_context.send_activity(card_activity(answer.card, summary))
        await self._send_cards(turn_context, answer.forms)
        await self._say(turn_context, answer.replies)

    async def _card_action(self, turn_context: TurnContext, data: Mapping[str, Any]) -> CardAnswer:
        asker = await self._asker(turn_context)
        if asker is None:
            return CardAnswer(replies=[reply(NOT_LINKED)])
        if asker.person is None:
            return CardAnswer(replies=[reply(not_in_engagement(asker.context(self.deps)))])
        form = cards.form_data(data)
        if form is not None:
            return await self._form_submitted(asker, *form)
        button = read_button(data)
        if button is None:
            return CardAnswer(replies=[reply("I couldn't tell which button that was; type the command instead.")])
        handlers: dict[str, Callable[[TurnContext, Asker, str, str | None], Awaitable[CardAnswer]]] = {
            "deal_update": self._deal_update,
            "deal_confirm": self._deal_confirm,
            "debrief_open": self._debrief_open,
            "deliverable_status": self._deliverable_status,
            "handoff_status": self._handoff_status,
            "handoff_assign": self._handoff_assign,
            "run_command": self._run_command,
            "debrief_choice": self._run_command,
        }
        handler = handlers.get(button.action_id, self._any_button)
        try:
            return await handler(turn_context, asker, button.value, button.command)
        except ValueError:
            return CardAnswer(replies=[reply("That button is out of date; type the command instead.")])

    async def _deal_update(self, _: TurnContext, asker: Asker, value: str, command: str | None) -> CardAnswer:
        """Update: the deal form, filled in with the deal's values."""
        return await self._open_deal_form(asker, int(value))

    async def _open_deal_form(self, asker: Asker, deal_id: int) -> CardAnswer:
        try:
            values, stages = await deal_form.values_to_edit(asker.context(self.deps), deal_id)
        except DealError as exc:
            return CardAnswer(replies=[reply(exc.message)])
        return CardAnswer(forms=[cards.deal_form(values, stages)])

    async def _deal_confirm(
        self, turn_context: TurnContext, asker: Asker, value: str, command: str | None
    ) -> CardAnswer:
        """Still accurate: recorded, and the card shows "✓ Still accurate" for that deal instead of its buttons."""
        deal_id = int(value)
        try:
            line = await button_actions.still_accurate(asker.context(self.deps), deal_id, "card")
        except DealError as exc:
            return CardAnswer(replies=[reply(exc.message)])

        def done(button: Button) -> bool:
            return button.action_id in ("deal_confirm", "deal_update") and button.value == str(deal_id)

        return await self._settled(turn_context, asker, done, line)

    async def _debrief_open(self, _: TurnContext, asker: Asker, value: str, command: str | None) -> CardAnswer:
        form = await self._debrief_card(asker, int(value))
        return CardAnswer(forms=[form]) if isinstance(form, dict) else CardAnswer(replies=[form])

    async def _deliverable_status(
        self, turn_context: TurnContext, asker: Asker, value: str, command: str | None
    ) -> CardAnswer:
        """A check-in's status button: `cadence deliverable <key> status=<status>`."""
        try:
            change = await button_actions.deliverable_status(asker.context(self.deps), self.deps.router, value)
        except DealError as exc:
            return CardAnswer(replies=[reply(exc.message)])

        def done(button: Button) -> bool:
            return button.action_id == "deliverable_status" and button.value.startswith(f"{change.target_id}:")

        return await self._settle_status(turn_context, asker, change, done)

    async def _handoff_status(
        self, turn_context: TurnContext, asker: Asker, value: str, command: str | None
    ) -> CardAnswer:
        """Mark done: `cadence handoff <key> done`."""
        try:
            change = await button_actions.handoff_status(asker.context(self.deps), self.deps.router, value)
        except DealError as exc:
            return CardAnswer(replies=[reply(exc.message)])

        def done(button: Button) -> bool:
            used = button.action_id in ("handoff_status", "handoff_assign")
            return used and button.value.split(":")[0] == str(change.target_id)

        return await self._settle_status(turn_context, asker, change, done)

    async def _settle_status(
        self, turn_context: TurnContext, asker: Asker, change: StatusChange, done: cards.ButtonTest
    ) -> CardAnswer:
        """The buttons `done` picks give way to the line saying what was done; else the command's answer."""
        if change.done is None:
            return CardAnswer(replies=change.messages)
        return await self._settled(turn_context, asker, done, change.done)

    async def _handoff_assign(self, _: TurnContext, asker: Asker, value: str, command: str | None) -> CardAnswer:
        """Assign needs a name, so it answers with the command to type."""
        try:
            task = await button_actions.handoff_task(asker.context(self.deps), int(value))
        except DealError as exc:
            return CardAnswer(replies=[reply(exc.message)])
        return CardAnswer(replies=[reply(f"Who takes over “{task.title}”? Type: cadence handoff {task.key} to=@name")])

    async def _run_command(self, _: TurnContext, asker: Asker, value: str, command: str | None) -> CardAnswer:
        """A button or choice that carries its command: run it as if typed."""
        return CardAnswer(replies=await self.deps.router.handle_text(asker.context(self.deps), value))

    async def _any_button(self, turn_context: TurnContext, asker: Asker, value: str, command: str | None) -> CardAnswer:
        """Any other button runs its command when that is complete (no `...` left to fill in), else says
        what to type."""
        if COMMAND.match(value):
            return await self._run_command(turn_context, asker, value, command)
        if command and "..." not in command and "…" not in command:
            return await self._run_command(turn_context, asker, command, command)
        return CardAnswer(replies=[reply(f"Type the command to do that: {command or 'help'}")])

    async def _settled(self, turn_context: TurnContext, asker: Asker, done: cards.ButtonTest, line: str) -> CardAnswer:
        """The ritual message the action came from, with the used buttons replaced by `line` (and kept
        that way for the next change); just the line when the card was no ritual message."""
        delivery = await self._source(turn_context, asker)
        if delivery is None:
            return CardAnswer(replies=[reply(line)], status=line)
        message = cards.settle(Message.model_validate(delivery.payload), done, line)
        async with self.deps.db.write() as session:
            await teams_refs.replace_payload(session, delivery.id, message.model_dump(mode="json"))
        first = split_for_limit(message)[0]
        return CardAnswer(card=render_card(first, images=await self._load_images(first)), status=line)

    async def _source(self, turn_context: TurnContext, asker: Asker) -> Delivery | None:
        source = turn_context.activity.reply_to_id
        if not source:
            return None
        async with self.deps.db.session() as session:
            return await teams_refs.delivery_of_activity(session, asker.engagement.id, str(source))

    # --- forms ------------------------------------------------------------------------------------

    async def _form_submitted(
        self, asker: Asker, form: str, data: dict[str, Any], inputs: dict[str, str]
    ) -> CardAnswer:
        if form == cards.DEAL_FORM:
            return await self._save_deal(asker, data, inputs)
        if form == cards.DEAL_PICK:
            picked = inputs.get(cards.PICK_INPUT, "")
            if not picked.isdigit():
                picker = await self._deal_picker(asker, error="Choose a deal.")
                return CardAnswer(card=picker) if isinstance(picker, dict) else CardAnswer(replies=[picker])
            opened = await self._open_deal_form(asker, int(picked))
            return CardAnswer(card=opened.forms[0]) if opened.forms else opened
        if form == cards.NEW_DEAL_FORM:
            return await self._create_deal(asker, inputs)
        if form == cards.DEBRIEF_FORM:
            return await self._save_debrief(asker, int(data.get("debrief") or 0), inputs)
        return await self._call_forecast(asker, inputs)

    async def _save_deal(self, asker: Asker, data: Mapping[str, Any], inputs: dict[str, str]) -> CardAnswer:
        """The deal form: the fields the person changed, as them, at the version they saw. A refusal comes
        back on the form: field errors under their fields with what they typed kept, a conflict with the
        deal's new values (and version), a denial in place of the form."""
        ctx = asker.context(self.deps)
        async with self.deps.db.session() as session:
            deal = await session.get(Deal, int(data.get("deal") or 0))
            stages = await deal_form.form_stages(session, asker.engagement.id)
        if deal is None or deal.engagement_id != asker.engagement.id:
            return CardAnswer(card=render_card(reply(deal_form.GONE)))
        seen = int(data["version"]) if str(data.get("version", "")).isdigit() else deal.version
        values = stages.values(deal)
        try:
            outcome = await deal_form.save_update(ctx, deal, inputs, cards.changed_fields(inputs, values), seen=seen)
        except FieldErrors as exc:
            return CardAnswer(card=cards.deal_form(values, stages.choices, submitted=inputs, errors=exc.errors))
        except Conflict as exc:
            return CardAnswer(card=cards.deal_form(stages.values(exc.deal), stages.choices, notice=exc.message))
        except DealError as exc:
            if exc.outcome == "denied":
                return CardAnswer(card=render_card(reply(exc.message)), status=exc.message)
            return CardAnswer(card=cards.deal_form(values, stages.choices, submitted=inputs, notice=exc.message))
        await deal_events.publish(ctx, outcome)
        intro = change_intro(deal.name, outcome)
        return CardAnswer(card=render_card(await confirmation(ctx, outcome, intro)), status=intro)

    async def _create_deal(self, asker: Asker, inputs: dict[str, str]) -> CardAnswer:
        ctx = asker.context(self.deps)
        async with self.deps.db.session() as session:
            stages = (await deal_form.form_stages(session, asker.engagement.id, new=True)).choices
        try:
            outcome = await deal_form.save_new(ctx, inputs)
        except FieldErrors as exc:
            return CardAnswer(card=cards.new_deal_form(stages, submitted=inputs, errors=exc.errors))
        except DealError as exc:
            return CardAnswer(card=cards.new_deal_form(stages, submitted=inputs, notice=exc.message))
        await deal_events.publish(ctx, outcome)
        intro = f"Created {outcome.deal.name}."
        return CardAnswer(card=render_card(await confirmation(ctx, outcome, intro)), status=intro)

    async def _save_debrief(self, asker: Asker, debrief_id: int, inputs: dict[str, str]) -> CardAnswer:
        ctx = asker.context(self.deps)
        try:
            answers = await debrief_form.answers_so_far(ctx, debrief_id)
        except DealError as exc:
            return CardAnswer(card=render_card(reply(exc.message)))
        raw = cards.debrief_answers(inputs, answers)
        if not raw:
            return CardAnswer(
                card=_as_card(await self._debrief_card(asker, debrief_id, notice=debrief_form.NO_ANSWERS))
            )
        try:
            text = await debrief_form.save_answers(ctx, debrief_id, raw)
        except FieldErrors as exc:
            return CardAnswer(card=_as_card(await self._debrief_card(asker, debrief_id, errors=exc.errors, typed=raw)))
        except DealError as exc:
            return CardAnswer(card=render_card(reply(exc.message)), status=exc.message)
        return CardAnswer(card=render_card(reply(text)), status=text)

    async def _call_forecast(self, asker: Asker, inputs: dict[str, str]) -> CardAnswer:
        """Amounts are checked first (errors under each); the call itself is the `pipeline forecast`
        command, so its rules (who may call, a note for a big change) and its audit are the command's."""
        ctx = asker.context(self.deps)
        try:
            args = forecast_form.call_args(inputs, asker.engagement.currency)
        except FieldErrors as exc:
            quarter = await forecast_form.quarter_label(ctx)
            note = inputs.get("note", "").strip()
            card = cards.forecast_form(
                quarter, inputs.get("commit", ""), inputs.get("best_case", ""), note=note, errors=exc.errors
            )
            return CardAnswer(card=card)
        messages = await self.deps.router.run(ctx, "pipeline", args, raw=f"/pipeline {args}")
        first, rest = messages[0], messages[1:]
        return CardAnswer(card=render_card(first), replies=rest, status=first.text)

    # --- opening forms ----------------------------------------------------------------------------

    async def _deal_picker(self, asker: Asker, *, error: str | None = None) -> JSONDict | Message:
        try:
            person = forms.opener(asker.context(self.deps), Action.EDIT_DEAL, owns=True)
        except DealError as exc:
            return reply(exc.message)
        async with self.deps.db.session() as session:
            choices, _ = await deal_form.editable_choices(
                session, asker.engagement.id, person, limit=cards.CHOICES_MAX + 1
            )
        if not choices:
            return reply('You have no open deals to update. Add one with: deal new "Name" amount=... close=...')
        return cards.deal_picker(choices, error=error)

    async def _new_deal_form(self, asker: Asker) -> JSONDict | Message:
        try:
            forms.opener(asker.context(self.deps), Action.CREATE_DEAL)
        except DealError as exc:
            return reply(exc.message)
        async with self.deps.db.session() as session:
            stages = await deal_form.form_stages(session, asker.engagement.id, new=True)
        return cards.new_deal_form(stages.choices)

    async def _forecast_form(self, asker: Asker) -> JSONDict | Message:
        """Prefilled with this quarter's roll-up (closed won + commit, and + best case) as a starting point."""
        ctx = asker.context(self.deps)
        try:
            forms.opener(ctx)
        except DealError as exc:
            return reply(exc.message)
        start = await forecast_form.starting_point(ctx)
        return cards.forecast_form(start.quarter, start.commit, start.best_case)

    async def _debrief_card(
        self,
        asker: Asker,
        debrief_id: int,
        *,
        errors: Mapping[str, str] | None = None,
        notice: str | None = None,
        typed: Mapping[str, str] | None = None,
    ) -> JSONDict | Message:
        try:
            form = await debrief_form.form_for(asker.context(self.deps), debrief_id)
        except DealError as exc:
            return reply(exc.message)
        shown = replace(form, answers={**form.answers, **(typed or {})})
        return cards.debrief_form(shown, errors=errors, notice=notice)

    # --- review thread replies --------------------------------------------------------------------

    async def _thread_reply(self, turn_context: TurnContext, asker: Asker, root: str, text: str) -> bool:
        """A reply in the thread of a review post, recorded on the deal it is about; False when the thread
        is not a review's (then the text is answered like any other)."""
        channel = base_conversation(str(turn_context.activity.conversation.id))

        def is_parent(delivery: Delivery) -> bool:
            """Teams stores a thread message's conversation with its `;messageid=` suffix."""
            ref = delivery.ref or {}
            return ref.get("message_id") == root and base_conversation(str(ref.get("conversation") or "")) == channel

        messages = await record_reply(asker.context(self.deps), is_parent, text)
        if messages is None:
            return False
        await self._say(turn_context, messages)
        return True

    # --- setup --------------------------------------------------------------------------------------

    async def _setup(self, turn_context: TurnContext, slug: str) -> None:
        """`cadence setup <slug>` in a channel, by the engagement's CRO: the tenant is linked to the
        engagement, this channel becomes its review channel, and the team's members are matched to the
        engagement's people. What the CRO sees: the link confirmed, who was matched, and what is left."""
        activity = turn_context.activity
        tenant = tenant_of(activity)
        if not slug or " " in slug or tenant is None:
            await self._say(turn_context, [reply(SETUP_USAGE)])
            return
        if conversation_type(activity) != teams_refs.CHANNEL:
            await self._say(
                turn_context,
                [
                    reply(
                        "Type it in the channel where the pipeline review should be posted, not in a chat. "
                        + SETUP_USAGE
                    )
                ],
            )
            return
        async with self.deps.db.session() as session:
            engagement = await engagement_repo.get_engagement(session, slug)
        user = _user(activity)
        person = await self._person(turn_context, engagement, user) if engagement is not None else None
        if engagement is None or person is None or person.role != Role.CRO:
            await self._setup_audit(engagement, None, user, "denied", {"slug": slug, "tenant": tenant})
            await self._say(
                turn_context,
                [
                    reply(
                        f"I can't link this organisation to “{slug}”: there is no such engagement, or you are not its "
                        "CRO (the engagement file names the CRO; their teams: object id or email must be yours)."
                    )
                ],
            )
            return
        channel = base_conversation(str(activity.conversation.id))
        review_channel = engagement_settings(engagement).pipeline_review.channel
        async with self.deps.db.write() as session:
            current = await chat_workspaces.workspace_of(session, engagement.id, PLATFORM)
            if current is not None and current.workspace_id != tenant:
                refused = (
                    f"{engagement.company} is already served by another Microsoft Teams organisation "
                    f"({current.workspace_id})."
                )
                await self._setup_audit(
                    engagement, person.id, user, "rejected", {"tenant": tenant, "linked": current.workspace_id}
                )
                await self._say(turn_context, [reply(refused + " Remove Cadence there first, then run this again.")])
                return
            await chat_workspaces.link(session, PLATFORM, tenant, engagement.id, now=self.deps.clock.now())
            await teams_refs.adopt_tenant(session, tenant, engagement.id)
            await teams_refs.name_channel(session, engagement.id, channel, review_channel)
        roster = await self._roster(turn_context)
        lines = [
            f"Linked this Microsoft Teams organisation to {engagement.company} ({engagement.slug}). The pipeline "
            f"review will be posted in this channel (the engagement file's #{review_channel})."
        ]
        matched = 0
        if roster is None:
            lines.append("I couldn't read this team's members; people are matched as they first write to me.")
        else:
            report = await self.deps.people.sync(engagement, roster)
            matched = len(report.matched)
            lines.append(report.summary())
        if engagement.paused:
            lines.append("The cadence is paused; “cadence resume” starts it again.")
        await self._setup_audit(
            engagement, person.id, user, "ok", {"tenant": tenant, "channel": channel, "matched": matched}
        )
        if self.deps.on_link is not None:
            await self.deps.on_link()
        await self._say(turn_context, [reply("\n".join(lines), ephemeral=False)])

    async def _roster(self, turn_context: TurnContext) -> list[TeamsUser] | None:
        """Everyone in the team (or chat), page by page; None when Teams would not say."""
        members: list[TeamsUser] = []
        token: str | None = None
        try:
            while True:
                page = await TeamsInfo.get_paged_members(turn_context, token)
                members += [_member_user(m) for m in page.members or []]
                token = page.continuation_token
                if not token:
                    return members
        except HttpOperationError:
            log.warning("could not read the members of %s", turn_context.activity.conversation.id, exc_info=True)
            return None

    async def _setup_audit(
        self, engagement: Engagement | None, actor_id: int | None, user: TeamsUser, outcome: str, detail: dict[str, Any]
    ) -> None:
        async with self.deps.db.session() as session:
            audit.record(
                session,
                at=self.deps.clock.now(),
                channel=PLATFORM,
                action="teams.setup",
                outcome=outcome,
                engagement_id=engagement.id if engagement else None,
                actor_id=actor_id,
                actor_ref=f"teams:{user.aad or user.id}",
                target=f"teams:{detail.get('tenant')}",
                detail=detail,
            )

    # --- who, and answering -----------------------------------------------------------------------

    async def _asker(self, turn_context: TurnContext) -> Asker | None:
        """Who is acting; None when their tenant is not linked to an engagement (then say NOT_LINKED)."""
        engagement = await engagement_for_workspace(self.deps.db, PLATFORM, tenant_of(turn_context.activity))
        if engagement is None:
            return None
        user = _user(turn_context.activity)
        return Asker(engagement, await self._person(turn_context, engagement, user), user)

    async def _person(self, turn_context: TurnContext, engagement: Engagement, user: TeamsUser) -> Person | None:
        async def lookup() -> TeamsUser | None:
            try:
                member = await TeamsInfo.get_member(turn_context, user.id)
            except HttpOperationError:
                log.info("Teams does not know member %s", user.id, exc_info=True)
                return None
            return _member_user(member)

        zone = turn_context.activity.local_timezone
        return await self.deps.people.person(engagement, user, lookup, timezone=zone)

    async def _say(self, turn_context: TurnContext, messages: Sequence[Message]) -> None:
        """Post the replies in the conversation (a channel message's thread): each message's cards, what
        did not fit in one, then its thread replies."""
        for message in messages:
            for body in render_activities(message, images=await self._load_images(message)):
                await turn_context.send_activity(Activity().deserialize(body))
            await self._say(turn_context, message.thread)

    async def _send_cards(self, turn_context: TurnContext, forms: Sequence[JSONDict | Message]) -> None:
        for form in forms:
            if isinstance(form, Message):
                await self._say(turn_context, [form])
            else:
                await turn_context.send_activity(card_activity(form, _summary(form)))

    async def _load_images(self, message: Message) -> dict[str, ImageData]:
        found: dict[str, ImageData] = {}
        for block in message.blocks:
            if isinstance(block, Image) and block.key not in found:
                data = await self._images(block.key)
                if data is not None:
                    found[block.key] = data
        return found


# --- helpers ------------------------------------------------------------------------------------------


def _user(activity: Activity) -> TeamsUser:
    sender = activity.from_property or ChannelAccount(id="")
    return TeamsUser(id=str(sender.id or ""), aad_object_id=sender.aad_object_id, name=sender.name)


def _member_user(member: TeamsChannelAccount) -> TeamsUser:
    return TeamsUser(
        id=str(member.id or ""),
        aad_object_id=member.aad_object_id,
        email=member.email or member.user_principal_name,
        name=member.name,
    )


def _as_card(card: JSONDict | Message) -> JSONDict:
    return card if isinstance(card, dict) else render_card(card)


def _summary(card: JSONDict) -> str:
    first = next((b for b in card.get("body", []) if b.get("type") == "TextBlock"), None)
    return html.unescape(str(first["text"])).replace("\\", "") if first else "Cadence"


def _error_body(message: str) -> JSONDict:
    return {
        "statusCode": 400,
        "type": "application/vnd.microsoft.error",
        "value": {"code": "BadRequest", "message": message},
    }
