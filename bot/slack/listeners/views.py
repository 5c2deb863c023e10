"""Modals: opening the deal, new-deal, debrief, forecast and log-a-note forms, filling the deal form when
a deal is picked, searching deals for large pipelines, and the submissions.

What the forms hold and what a submission does are decided in `cadences/` (`deal_form`,
`debrief_form`, `forecast_form`), as for Teams; here they become Block Kit and Slack's acks. A
submission runs the same service as the text command (`update_deal` with the version the person saw,
`create_deal`, `answer_debrief`, the `/pipeline forecast` command) before it acks, because Slack shows
refusals only in the ack: each `FieldErrors` entry next to its field, a conflict or a denial on the
first field. Every attempt is audited with what was submitted, accepted or not, like a command.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import modals
from bot.slack.listeners.requests import NOT_LINKED, Who, answer, direct, ids, who
from cadences import deal_events, deal_form, deal_views, debrief_form, forecast_form, forms
from cadences.authz import Action
from cadences.context import Context
from cadences.deal_commands import change_intro, confirmation
from cadences.deals import Conflict, DealError, FieldErrors, Outcome, not_in_engagement, update_deal
from cadences.messages import Message, reply
from storage import engagements as engagement_repo
from storage.models import Deal

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps

Say = Callable[[str], Awaitable[None]]
"""Tells the person one line (an ephemeral answer) when a form cannot be opened for them."""


def origin(body: Mapping[str, Any]) -> dict[str, Any]:
    """Where to confirm a submission: the response_url of the command, button or shortcut that opened it."""
    url = body.get("response_url") or next(
        (u.get("response_url") for u in body.get("response_urls") or [] if u.get("response_url")), None
    )
    return {"response_url": url} if url else {}


# --- opening forms --------------------------------------------------------------------------------


async def open_deal_form(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    trigger_id: str,
    say: Say,
    *,
    deal_id: int | None = None,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """The deal form: for one deal (a nudge's Update button), or with a picker of the deals the person
    may change (bare `/deal`)."""
    ctx = asker.context(deps)
    try:
        person = forms.opener(ctx, Action.EDIT_DEAL, owns=True)
    except DealError as exc:
        await say(exc.message)
        return
    if deal_id is not None:
        try:
            values, stages = await deal_form.values_to_edit(ctx, deal_id)
        except DealError as exc:
            await say(exc.message)
            return
        view = modals.deal_form(None, stages, values, meta or {})
    else:
        async with deps.db.session() as session:
            choices, total = await deal_form.editable_choices(session, asker.engagement.id, person)
        if total == 0:
            await say('You have no open deals to update. Add one with /deal new "Name" amount=... close=...')
            return
        view = modals.deal_form(modals.deal_picker(choices, total), [], None, meta or {})
    await client.views_open(trigger_id=trigger_id, view=view)


async def open_new_deal_form(
    deps: SlackDeps, client: AsyncWebClient, asker: Who, trigger_id: str, say: Say, meta: Mapping[str, Any]
) -> None:
    try:
        forms.opener(asker.context(deps), Action.CREATE_DEAL)
    except DealError as exc:
        await say(exc.message)
        return
    async with deps.db.session() as session:
        stages = await deal_form.form_stages(session, asker.engagement.id, new=True)
    await client.views_open(trigger_id=trigger_id, view=modals.new_deal_form(stages.choices, meta))


async def open_debrief_form(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    trigger_id: str,
    say: Say,
    debrief_id: int,
    meta: Mapping[str, Any],
) -> None:
    try:
        form = await debrief_form.form_for(asker.context(deps), debrief_id)
    except DealError as exc:
        await say(exc.message)
        return
    await client.views_open(trigger_id=trigger_id, view=modals.debrief_form(form, meta))


async def open_forecast_form(
    deps: SlackDeps, client: AsyncWebClient, asker: Who, trigger_id: str, say: Say, meta: Mapping[str, Any]
) -> None:
    """Prefilled with this quarter's roll-up (closed won + commit, and + best case) as a starting point."""
    ctx = asker.context(deps)
    try:
        forms.opener(ctx)
    except DealError as exc:
        await say(exc.message)
        return
    start = await forecast_form.starting_point(ctx)
    view = modals.forecast_form(start.quarter, start.commit, start.best_case, meta)
    await client.views_open(trigger_id=trigger_id, view=view)


async def open_log_note_form(
    deps: SlackDeps, client: AsyncWebClient, asker: Who, trigger_id: str, say: Say, note: str, meta: Mapping[str, Any]
) -> None:
    try:
        person = forms.opener(asker.context(deps), Action.EDIT_DEAL, owns=True)
    except DealError as exc:
        await say(exc.message)
        return
    async with deps.db.session() as session:
        choices, total = await deal_form.editable_choices(session, asker.engagement.id, person)
    if total == 0:
        await say("You have no open deals to add a note to.")
        return
    picker = modals.deal_picker(choices, total, dispatch=False)
    await client.views_open(trigger_id=trigger_id, view=modals.log_note_form(picker, note[:3000], meta))


async def open_action_item_form(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    trigger_id: str,
    say: Say,
    deal_id: int,
    meta: Mapping[str, Any],
) -> None:
    """Add an action item on a deal (the review thread's button): text, owner (the deal's by default), due."""
    try:
        forms.opener(asker.context(deps))
    except DealError as exc:
        await say(exc.message)
        return
    async with deps.db.session() as session:
        deal = await session.get(Deal, deal_id)
        people = await engagement_repo.people(session, asker.engagement.id)
    if deal is None or deal.engagement_id != asker.engagement.id:
        await say(deal_form.GONE)
        return
    owner = next((p.key for p in people if p.id == deal.owner_id), None)
    view = modals.action_item_form(deal.name, [(p.key, p.name) for p in people], owner, {**meta, "deal": deal.id})
    await client.views_open(trigger_id=trigger_id, view=view)


# --- listeners ------------------------------------------------------------------------------------


def register(app: AsyncApp, deps: SlackDeps) -> None:
    async def deal_picked(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        """A deal chosen in the deal form: the form fills in with that deal's values."""
        await ack()
        view = body.get("view") or {}
        if view.get("callback_id") != modals.DEAL_FORM:
            return
        deps.background.spawn(_fill_deal_form(deps, client, body, view), what="fill the deal form")

    async def deal_search(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        """Deals matching what the person typed in an external deal picker (pipelines over 100 deals)."""
        team_id, user_id = ids(body)
        asker = await who(deps, client, team_id, user_id)
        if asker is None or asker.person is None:
            await ack(options=[])
            return
        async with deps.db.session() as session:
            choices, _ = await deal_form.editable_choices(
                session, asker.engagement.id, asker.person, search=str(body.get("value", ""))
            )
        await ack(options=modals.deal_options(choices))

    app.action(modals.DEAL_PICK)(deal_picked)
    app.options(modals.DEAL_PICK)(deal_search)
    deps.registry.actions.add(modals.DEAL_PICK)
    deps.registry.options.add(modals.DEAL_PICK)

    submissions: dict[str, Callable[..., Awaitable[None]]] = {
        modals.DEAL_FORM: _submit_deal,
        modals.NEW_DEAL_FORM: _submit_new_deal,
        modals.DEBRIEF_FORM: _submit_debrief,
        modals.FORECAST_FORM: _submit_forecast,
        modals.LOG_NOTE_FORM: _submit_note,
        modals.ACTION_ITEM_FORM: _submit_action_item,
    }
    for callback_id, submit in submissions.items():
        app.view(callback_id)(_submission(deps, submit))
        deps.registry.views.add(callback_id)


Submit = Callable[["SlackDeps", AsyncAck, Who, dict[str, Any], AsyncWebClient], Awaitable[None]]


def _submission(deps: SlackDeps, submit: Submit) -> Callable[..., Awaitable[None]]:
    async def listener(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
        team_id, user_id = ids(body)
        asker = await who(deps, client, team_id, user_id)
        first = (modals.block_ids(view) or ["note"])[0]
        if asker is None:
            await ack(response_action="errors", errors={first: NOT_LINKED[:2000]})
            return
        if asker.person is None:
            await ack(response_action="errors", errors={first: not_in_engagement(asker.context(deps))})
            return
        await submit(deps, ack, asker, view, client)

    return listener


async def _fill_deal_form(deps: SlackDeps, client: AsyncWebClient, body: dict[str, Any], view: dict[str, Any]) -> None:
    team_id, user_id = ids(body)
    asker = await who(deps, client, team_id, user_id)
    action = (body.get("actions") or [{}])[0]
    picked = (action.get("selected_option") or {}).get("value")
    if asker is None or asker.person is None or not picked:
        return
    meta = {k: v for k, v in modals.metadata(view).items() if k not in ("deal", "version")}
    async with deps.db.session() as session:
        deal = await session.get(Deal, int(picked))
        if deal is None or deal.engagement_id != asker.engagement.id:
            return
        stages = await deal_form.form_stages(session, asker.engagement.id)
        choices, total = await deal_form.editable_choices(session, asker.engagement.id, asker.person)
    selected = next((c for c in choices if c.id == deal.id), deal_form.DealChoice(deal.id, deal.name))
    form = modals.deal_form(modals.deal_picker(choices, total, selected), stages.choices, stages.values(deal), meta)
    await client.views_update(view_id=view["id"], hash=view.get("hash"), view=form)


# --- submissions ----------------------------------------------------------------------------------


async def confirm(
    deps: SlackDeps, client: AsyncWebClient, asker: Who, meta: Mapping[str, Any], messages: list[Message]
) -> None:
    """Answer a submission where the form was opened from (its response_url), else in the person's DM."""
    url = meta.get("response_url")
    if url:
        await answer(AsyncRespond(response_url=str(url)), messages)
    else:
        await direct(client, asker.user_id, messages)


def _conflict_text(deal: Deal, names: deal_views.Names) -> str:
    return (
        f"{deal.name} was changed by someone else while you were editing, so nothing was saved. "
        f"It is now: {deal_views.summary(deal, names)}. Cancel and open the form again to start from there."
    )


async def _submit_deal(
    deps: SlackDeps, ack: AsyncAck, asker: Who, view: dict[str, Any], client: AsyncWebClient
) -> None:
    meta = modals.metadata(view)
    submitted = modals.state_values(view)
    blocks = modals.block_ids(view)
    first = blocks[0]
    picked = submitted.get(modals.PICK_BLOCK)
    deal_id = int(picked) if picked else meta.get("deal")
    if not deal_id:
        await ack(response_action="errors", errors={first: "Choose a deal."})
        return
    ctx = asker.context(deps)
    async with deps.db.session() as session:
        deal = await session.get(Deal, int(deal_id))
        names = await deal_views.load_names(session, asker.engagement.id, asker.engagement.currency)
    if deal is None or deal.engagement_id != asker.engagement.id:
        await ack(response_action="errors", errors={first: deal_form.GONE})
        return
    seen = meta.get("version") if meta.get("deal") == deal.id else None
    current = deal_form.DealValues.of(deal, names.stages[deal.stage_id].key)
    changes = deal_form.changed_fields(submitted, current)
    try:
        outcome = await deal_form.save_update(ctx, deal, submitted, changes, seen=seen)
    except FieldErrors as exc:
        await ack(response_action="errors", errors=modals.field_errors(exc.errors, blocks, first))
        return
    except Conflict as exc:
        await ack(response_action="errors", errors={first: _conflict_text(exc.deal, names)})
        return
    except DealError as exc:
        await ack(response_action="errors", errors={first: exc.message[:2000]})
        return
    await ack()
    intro = change_intro(deal.name, outcome)
    deps.background.spawn(_after_change(deps, client, asker, meta, ctx, outcome, intro), what="confirm a deal update")


async def _after_change(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    meta: Mapping[str, Any],
    ctx: Context,
    outcome: Outcome,
    intro: str,
) -> None:
    await deal_events.publish(ctx, outcome)
    await confirm(deps, client, asker, meta, [await confirmation(ctx, outcome, intro)])


async def _submit_new_deal(
    deps: SlackDeps, ack: AsyncAck, asker: Who, view: dict[str, Any], client: AsyncWebClient
) -> None:
    blocks = modals.block_ids(view)
    ctx = asker.context(deps)
    try:
        outcome = await deal_form.save_new(ctx, modals.state_values(view))
    except FieldErrors as exc:
        await ack(response_action="errors", errors=modals.field_errors(exc.errors, blocks, "name"))
        return
    except DealError as exc:
        await ack(response_action="errors", errors={"name": exc.message[:2000]})
        return
    await ack()
    meta = modals.metadata(view)
    deps.background.spawn(
        _after_change(deps, client, asker, meta, ctx, outcome, f"Created {outcome.deal.name}."),
        what="confirm a new deal",
    )


async def _submit_debrief(
    deps: SlackDeps, ack: AsyncAck, asker: Who, view: dict[str, Any], client: AsyncWebClient
) -> None:
    meta = modals.metadata(view)
    blocks = modals.block_ids(view)
    debrief_id = int(meta.get("debrief") or 0)
    ctx = asker.context(deps)
    try:
        answers = await debrief_form.answers_so_far(ctx, debrief_id)
    except DealError as exc:
        await ack(response_action="errors", errors={blocks[0]: exc.message})
        return
    raw = debrief_form.changed_answers(modals.state_values(view), answers)
    if not raw:
        await ack(response_action="errors", errors={blocks[0]: debrief_form.NO_ANSWERS})
        return
    try:
        text = await debrief_form.save_answers(ctx, debrief_id, raw)
    except FieldErrors as exc:
        await ack(response_action="errors", errors=modals.field_errors(exc.errors, blocks, blocks[0]))
        return
    except DealError as exc:
        await ack(response_action="errors", errors={blocks[0]: exc.message[:2000]})
        return
    await ack()
    deps.background.spawn(confirm(deps, client, asker, meta, [reply(text)]), what="confirm debrief answers")


async def _submit_forecast(
    deps: SlackDeps, ack: AsyncAck, asker: Who, view: dict[str, Any], client: AsyncWebClient
) -> None:
    """Amounts are checked here (errors next to each); the call itself is the `/pipeline forecast` command,
    so its rules (who may call, a note for a big change) and its audit are the command's."""
    meta = modals.metadata(view)
    try:
        args = forecast_form.call_args(modals.state_values(view), asker.engagement.currency)
    except FieldErrors as exc:
        await ack(response_action="errors", errors=exc.errors)
        return
    await ack()
    deps.background.spawn(_run_and_confirm(deps, client, asker, meta, "pipeline", args), what="forecast call")


async def _run_and_confirm(
    deps: SlackDeps, client: AsyncWebClient, asker: Who, meta: Mapping[str, Any], name: str, args: str
) -> None:
    messages = await deps.router.run(asker.context(deps), name, args, raw=f"/{name} {args}")
    await confirm(deps, client, asker, meta, messages)


async def _submit_note(
    deps: SlackDeps, ack: AsyncAck, asker: Who, view: dict[str, Any], client: AsyncWebClient
) -> None:
    meta = modals.metadata(view)
    submitted = modals.state_values(view)
    picked = submitted.get(modals.PICK_BLOCK)
    note = submitted.get("note", "").strip()
    if not picked:
        await ack(response_action="errors", errors={modals.PICK_BLOCK: "Choose a deal."})
        return
    if not note:
        await ack(response_action="errors", errors={"note": "The note is empty."})
        return
    ctx = asker.context(deps)
    target = f"deal:{picked}"
    detail: dict[str, Any] = {"note": note, "from": "message shortcut"}
    try:
        outcome = await update_deal(ctx, int(picked), {"note": note})
    except FieldErrors as exc:
        await forms.record(ctx, "deal.note", exc.outcome, target, {**detail, "errors": exc.errors})
        await ack(response_action="errors", errors=modals.field_errors(exc.errors, ["deal", "note"], "note"))
        return
    except DealError as exc:
        await forms.record(ctx, "deal.note", exc.outcome, target, detail)
        await ack(response_action="errors", errors={modals.PICK_BLOCK: exc.message[:2000]})
        return
    await forms.record(ctx, "deal.note", "ok", target, detail)
    await ack()
    intro = f"Note added to {outcome.deal.name}."
    deps.background.spawn(_after_change(deps, client, asker, meta, ctx, outcome, intro), what="confirm a logged note")


async def _submit_action_item(
    deps: SlackDeps, ack: AsyncAck, asker: Who, view: dict[str, Any], client: AsyncWebClient
) -> None:
    """The item itself is the `/pipeline action` command (its rules, its audit); a past due date is
    refused here, next to the field."""
    meta = modals.metadata(view)
    submitted = modals.state_values(view)
    due = submitted.get("due", "")
    if due and due < asker.context(deps).today().isoformat():
        await ack(response_action="errors", errors={"due": "That date is in the past; pick today or later."})
        return
    async with deps.db.session() as session:
        deal = await session.get(Deal, int(meta.get("deal") or 0))
    if deal is None or deal.engagement_id != asker.engagement.id:
        await ack(response_action="errors", errors={"text": deal_form.GONE})
        return
    await ack()
    text = " ".join(submitted.get("text", "").split()).replace('"', "'")
    args = (
        f'action "{deal.name}" owner=@{submitted.get("owner", "")}' + (f" due={due}" if due else "") + f' text="{text}"'
    )
    deps.background.spawn(_run_and_confirm(deps, client, asker, meta, "pipeline", args), what="add an action item")
