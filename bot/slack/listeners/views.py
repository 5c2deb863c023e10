"""Modals: opening the deal, new-deal, debrief, forecast and log-a-note forms, filling the deal form when
a deal is picked, searching deals for large pipelines, and the submissions.

A submission runs the same service as the text command (`update_deal` with the version the person
saw, `create_deal`, `answer_debrief`, the `/pipeline forecast` command) before it acks, because Slack
shows refusals only in the ack: each `FieldErrors` entry next to its field, a conflict or a denial on
the first field. Every attempt is audited with what was submitted, accepted or not, like a command.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.slack import modals
from bot.slack.listeners.requests import NOT_LINKED, Who, answer, direct, ids, who
from cadences import deal_events, deal_views
from cadences.authz import Action, allowed, denial
from cadences.context import Context
from cadences.deals import Conflict, DealError, FieldErrors, Outcome, check_can_edit, create_deal, not_in_engagement
from cadences.deals import update_deal as update_deal_service
from cadences.debriefs import answer_debrief, get_debrief, load_view, may_answer
from cadences.engagement_file import engagement_settings
from cadences.messages import Message, Paragraph, reply
from cadences.parsing import ParseError, parse_amount
from cadences.pipeline_metrics import quarter_numbers
from storage import audit
from storage import engagements as engagement_repo
from storage.models import Deal, Person

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps

Say = Callable[[str], Awaitable[None]]
"""Tells the person one line (an ephemeral answer) when a form cannot be opened for them."""


# --- deals a person may edit ----------------------------------------------------------------------


def _editable(engagement_id: int, person: Person) -> Any:
    stmt = select(Deal).where(Deal.engagement_id == engagement_id, Deal.is_open.is_(True))
    if not allowed(person, Action.EDIT_DEAL):  # a rep: their own deals only
        stmt = stmt.where(Deal.owner_id == person.id)
    return stmt


async def editable_deals(
    session: AsyncSession, engagement_id: int, person: Person, search: str = "", limit: int = 100
) -> tuple[list[modals.DealChoice], int]:
    """The open deals `person` may change (a rep's own; everyone's for a manager or the CRO), matching
    `search`, by name, at most `limit`; and how many there are in all."""
    stmt = _editable(engagement_id, person)
    if search.strip():
        stmt = stmt.where(func.lower(Deal.name).contains(search.strip().lower(), autoescape=True))
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    deals = (await session.execute(stmt.order_by(func.lower(Deal.name)).limit(limit))).scalars().all()
    operator = allowed(person, Action.EDIT_DEAL)
    owners = {p.id: p.name for p in await engagement_repo.people(session, engagement_id, active_only=False)}
    choices = [
        modals.DealChoice(d.id, f"{d.name} · {owners.get(d.owner_id, '?')}" if operator else d.name) for d in deals
    ]
    return choices, total


def deal_values(deal: Deal, stage_key: str) -> modals.DealValues:
    return modals.DealValues(
        id=deal.id,
        version=deal.version,
        name=deal.name,
        stage=stage_key,
        amount=deal.amount,
        close=deal.close_date,
        forecast=deal.forecast_category,
        next_step=deal.next_step,
        next_date=deal.next_step_date,
        risk=deal.risk,
    )


async def _stages(session: AsyncSession, engagement_id: int) -> tuple[list[tuple[str, str]], dict[int, str]]:
    stages = await engagement_repo.stages(session, engagement_id)
    return [(s.key, s.name) for s in stages], {s.id: s.key for s in stages}


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
    person = asker.person
    if person is None:
        await say(not_in_engagement(asker.context(deps)))
        return
    if not allowed(person, Action.EDIT_DEAL, owns=True):
        await say(denial(Action.EDIT_DEAL))
        return
    async with deps.db.session() as session:
        stages, keys = await _stages(session, asker.engagement.id)
        if deal_id is not None:
            deal = await session.get(Deal, deal_id)
            if deal is None or deal.engagement_id != asker.engagement.id:
                await say("That deal is no longer in the pipeline.")
                return
            try:
                await check_can_edit(asker.context(deps), deal)
            except DealError as exc:
                await say(exc.message)
                return
            view = modals.deal_form(None, stages, deal_values(deal, keys[deal.stage_id]), meta or {})
        else:
            choices, total = await editable_deals(session, asker.engagement.id, person)
            if total == 0:
                await say('You have no open deals to update. Add one with /deal new "Name" amount=... close=...')
                return
            view = modals.deal_form(modals.deal_picker(choices, total), stages, None, meta or {})
    await client.views_open(trigger_id=trigger_id, view=view)


async def open_new_deal_form(
    deps: SlackDeps, client: AsyncWebClient, asker: Who, trigger_id: str, say: Say, meta: Mapping[str, Any]
) -> None:
    if asker.person is None:
        await say(not_in_engagement(asker.context(deps)))
        return
    if not allowed(asker.person, Action.CREATE_DEAL):
        await say(denial(Action.CREATE_DEAL))
        return
    async with deps.db.session() as session:
        stages = [
            (s.key, s.name) for s in await engagement_repo.stages(session, asker.engagement.id) if s.kind == "open"
        ]
    await client.views_open(trigger_id=trigger_id, view=modals.new_deal_form(stages, meta))


async def open_debrief_form(
    deps: SlackDeps,
    client: AsyncWebClient,
    asker: Who,
    trigger_id: str,
    say: Say,
    debrief_id: int,
    meta: Mapping[str, Any],
) -> None:
    if asker.person is None:
        await say(not_in_engagement(asker.context(deps)))
        return
    settings = engagement_settings(asker.engagement)
    async with deps.db.session() as session:
        try:
            debrief = await get_debrief(session, asker.engagement.id, debrief_id)
        except DealError as exc:
            await say(exc.message)
            return
        if not may_answer(asker.person, debrief):
            await say(f"Debrief #{debrief_id} is for its deal's owner to answer (or a manager, or the CRO).")
            return
        view = await load_view(session, settings, asker.context(deps).tz, debrief)
    if debrief.status == "answered" and not view.questions:
        await say(f"Debrief #{debrief_id} has no questions left to answer.")
        return
    form = modals.debrief_form(
        debrief_id, f"Debrief #{debrief_id}", f"{view.reason}.", view.questions, debrief.answers, meta
    )
    await client.views_open(trigger_id=trigger_id, view=form)


async def open_forecast_form(
    deps: SlackDeps, client: AsyncWebClient, asker: Who, trigger_id: str, say: Say, meta: Mapping[str, Any]
) -> None:
    """Prefilled with this quarter's roll-up (closed won + commit, and + best case) as a starting point."""
    if asker.person is None:
        await say(not_in_engagement(asker.context(deps)))
        return
    ctx = asker.context(deps)
    async with deps.db.session() as session:
        numbers = await quarter_numbers(session, ctx.engagement, ctx.today())
    commit = numbers.won + numbers.rollup.commit
    best = commit + numbers.rollup.best_case
    view = modals.forecast_form(numbers.label, modals.amount_text(commit), modals.amount_text(best), meta)
    await client.views_open(trigger_id=trigger_id, view=view)


async def open_log_note_form(
    deps: SlackDeps, client: AsyncWebClient, asker: Who, trigger_id: str, say: Say, note: str, meta: Mapping[str, Any]
) -> None:
    person = asker.person
    if person is None:
        await say(not_in_engagement(asker.context(deps)))
        return
    if not allowed(person, Action.EDIT_DEAL, owns=True):
        await say(denial(Action.EDIT_DEAL))
        return
    async with deps.db.session() as session:
        choices, total = await editable_deals(session, asker.engagement.id, person)
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
    if asker.person is None:
        await say(not_in_engagement(asker.context(deps)))
        return
    async with deps.db.session() as session:
        deal = await session.get(Deal, deal_id)
        people = await engagement_repo.people(session, asker.engagement.id)
    if deal is None or deal.engagement_id != asker.engagement.id:
        await say("That deal is no longer in the pipeline.")
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
            choices, _ = await editable_deals(session, asker.engagement.id, asker.person, str(body.get("value", "")))
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
        stages, keys = await _stages(session, asker.engagement.id)
        choices, total = await editable_deals(session, asker.engagement.id, asker.person)
    selected = next((c for c in choices if c.id == deal.id), modals.DealChoice(deal.id, deal.name))
    form = modals.deal_form(
        modals.deal_picker(choices, total, selected), stages, deal_values(deal, keys[deal.stage_id]), meta
    )
    await client.views_update(view_id=view["id"], hash=view.get("hash"), view=form)


# --- submissions ----------------------------------------------------------------------------------


async def _audit(ctx: Context, action: str, outcome: str, target: str | None, detail: dict[str, Any]) -> None:
    async with ctx.db.session() as session:
        audit.record(
            session,
            at=ctx.now(),
            channel=ctx.channel,
            action=action,
            outcome=outcome,
            engagement_id=ctx.engagement.id,
            actor_id=ctx.actor.id if ctx.actor else None,
            actor_ref=ctx.actor_ref,
            target=target,
            detail=detail,
        )


async def confirm(
    deps: SlackDeps, client: AsyncWebClient, asker: Who, meta: Mapping[str, Any], messages: list[Message]
) -> None:
    """Answer a submission where the form was opened from (its response_url), else in the person's DM."""
    url = meta.get("response_url")
    if url:
        await answer(AsyncRespond(response_url=str(url)), messages)
    else:
        await direct(client, asker.user_id, messages)


async def deal_confirmation(ctx: Context, outcome: Outcome, intro: str) -> Message:
    """The deal card after a change, with each field's before → after (as the text command answers)."""
    async with ctx.db.session() as session:
        names = await deal_views.load_names(session, ctx.engagement.id, ctx.engagement.currency)
    card = deal_views.deal_card(outcome.deal, names, intro=intro)
    blocks = list(card.blocks)
    lines = deal_views.change_lines(outcome.changes, names) if outcome.kind != "create" else []
    if lines:
        blocks.insert(1, Paragraph(text="\n".join(lines)))
    if outcome.note:
        blocks.insert(1, Paragraph(text=f"Note: {outcome.note}", muted=True))
    return Message(text=intro, blocks=blocks, ephemeral=True)


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
        await ack(response_action="errors", errors={first: "That deal is no longer in the pipeline."})
        return
    seen = meta.get("version") if meta.get("deal") == deal.id else None
    target = f"deal:{deal.id}"
    detail: dict[str, Any] = {"form": {k: v for k, v in submitted.items() if v}, "version": seen}
    if seen is not None and deal.version != seen:
        await _audit(ctx, "deal.update", "conflict", target, detail)
        await ack(response_action="errors", errors={first: _conflict_text(deal, names)})
        return
    stage_key = names.stages[deal.stage_id].key
    raw = modals.changed_fields(submitted, deal_values(deal, stage_key))
    if not raw:
        await ack(response_action="errors", errors={first: "Nothing changed: edit a field or add a note."})
        return
    try:
        outcome = await update_deal_service(
            ctx, deal.id, raw, expected_version=seen if seen is not None else deal.version
        )
    except FieldErrors as exc:
        await _audit(ctx, "deal.update", exc.outcome, target, {**detail, "errors": exc.errors})
        await ack(response_action="errors", errors=modals.field_errors(exc.errors, blocks, first))
        return
    except Conflict as exc:
        await _audit(ctx, "deal.update", exc.outcome, target, detail)
        await ack(response_action="errors", errors={first: _conflict_text(exc.deal, names)})
        return
    except DealError as exc:
        await _audit(ctx, "deal.update", exc.outcome, target, detail)
        await ack(response_action="errors", errors={first: exc.message[:2000]})
        return
    await _audit(
        ctx, f"deal.{outcome.kind}", "ok", target, {**detail, "changes": outcome.changes, "events": outcome.events}
    )
    await ack()
    intro = {"won": f"Congratulations — {deal.name} is won!", "lost": f"{deal.name} marked as lost."}.get(
        outcome.kind, f"Updated {outcome.deal.name}." if outcome.changes else f"Note added to {deal.name}."
    )
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
    await confirm(deps, client, asker, meta, [await deal_confirmation(ctx, outcome, intro)])


async def _submit_new_deal(
    deps: SlackDeps, ack: AsyncAck, asker: Who, view: dict[str, Any], client: AsyncWebClient
) -> None:
    blocks = modals.block_ids(view)
    name, raw = modals.new_deal_fields(modals.state_values(view))
    ctx = asker.context(deps)
    detail: dict[str, Any] = {"form": {"name": name, **raw}}
    try:
        outcome = await create_deal(ctx, name, raw)
    except FieldErrors as exc:
        await _audit(ctx, "deal.create", exc.outcome, None, {**detail, "errors": exc.errors})
        await ack(response_action="errors", errors=modals.field_errors(exc.errors, blocks, "name"))
        return
    except DealError as exc:
        await _audit(ctx, "deal.create", exc.outcome, None, detail)
        await ack(response_action="errors", errors={"name": exc.message[:2000]})
        return
    await _audit(ctx, "deal.create", "ok", f"deal:{outcome.deal.id}", {**detail, "changes": outcome.changes})
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
    async with deps.db.session() as session:
        try:
            debrief = await get_debrief(session, asker.engagement.id, debrief_id)
        except DealError as exc:
            await ack(response_action="errors", errors={blocks[0]: exc.message})
            return
    raw = modals.debrief_answers(modals.state_values(view), debrief.answers)
    target = f"debrief:{debrief_id}"
    if not raw:
        await ack(response_action="errors", errors={blocks[0]: "Answer at least one question."})
        return
    try:
        answered = await answer_debrief(ctx, debrief_id, raw)
    except FieldErrors as exc:
        await _audit(ctx, "debrief.answer", exc.outcome, target, {"answers": raw, "errors": exc.errors})
        await ack(response_action="errors", errors=modals.field_errors(exc.errors, blocks, blocks[0]))
        return
    except DealError as exc:
        await _audit(ctx, "debrief.answer", exc.outcome, target, {"answers": raw})
        await ack(response_action="errors", errors={blocks[0]: exc.message[:2000]})
        return
    await _audit(ctx, "debrief.answer", "ok", target, {"answers": answered.saved, "complete": answered.completed})
    await ack()
    deal = answered.view.deal.name
    if answered.completed:
        text = f"Thanks — debrief #{debrief_id} on {deal} is complete."
    elif answered.still_missing:
        text = f"Saved. Still to answer for debrief #{debrief_id}: " + "; ".join(q.text for q in answered.still_missing)
    else:
        text = f"Updated debrief #{debrief_id} on {deal}."
    deps.background.spawn(confirm(deps, client, asker, meta, [reply(text)]), what="confirm debrief answers")


async def _submit_forecast(
    deps: SlackDeps, ack: AsyncAck, asker: Who, view: dict[str, Any], client: AsyncWebClient
) -> None:
    """Amounts are checked here (errors next to each); the call itself is the `/pipeline forecast` command,
    so its rules (who may call, a note for a big change) and its audit are the command's."""
    meta = modals.metadata(view)
    submitted = modals.state_values(view)
    currency = asker.engagement.currency
    errors: dict[str, str] = {}
    amounts: dict[str, Any] = {}
    for key in ("commit", "best_case"):
        try:
            money = parse_amount(submitted.get(key, ""), currency)
        except ParseError as exc:
            errors[key] = exc.message
            continue
        if money.currency != currency:
            errors[key] = f"This engagement reports in {currency}; give the amount in {currency}."
        amounts[key] = money.amount
    if not errors and amounts["best_case"] < amounts["commit"]:
        errors["best_case"] = "Best case includes commit, so it can't be below it."
    if errors:
        await ack(response_action="errors", errors=errors)
        return
    await ack()
    note = submitted.get("note", "").strip().replace('"', "'")
    args = f"forecast commit={amounts['commit']} best={amounts['best_case']}" + (f' note="{note}"' if note else "")
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
        outcome = await update_deal_service(ctx, int(picked), {"note": note})
    except FieldErrors as exc:
        await _audit(ctx, "deal.note", exc.outcome, target, {**detail, "errors": exc.errors})
        await ack(response_action="errors", errors=modals.field_errors(exc.errors, ["deal", "note"], "note"))
        return
    except DealError as exc:
        await _audit(ctx, "deal.note", exc.outcome, target, detail)
        await ack(response_action="errors", errors={modals.PICK_BLOCK: exc.message[:2000]})
        return
    await _audit(ctx, "deal.note", "ok", target, detail)
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
        await ack(response_action="errors", errors={"text": "That deal is no longer in the pipeline."})
        return
    await ack()
    text = " ".join(submitted.get("text", "").split()).replace('"', "'")
    args = (
        f'action "{deal.name}" owner=@{submitted.get("owner", "")}' + (f" due={due}" if due else "") + f' text="{text}"'
    )
    deps.background.spawn(_run_and_confirm(deps, client, asker, meta, "pipeline", args), what="add an action item")
