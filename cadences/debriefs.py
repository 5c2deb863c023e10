"""Deal-coaching debriefs: the questions a rep answers after a deal is won, lost, slips, regresses or
stalls, and the follow-up that makes sure they are answered.

Why debriefs: the lessons of a lost late-stage deal, a slipping close date or a deal stuck in one stage
are what feed the ICP and the sales process, and they fade within days. So the bot asks at once, in a
DM, reminds after 1 and 3 business days, then hands the unanswered ones to the rep's manager; and a
late-stage loss goes straight to the CRO, with the rep's answers once they come in.

Exactly-once, by construction:
- a `Debrief` row is unique by (deal, trigger, trigger key), so each prompt is asked once whatever
  replays the event;
- a prompt (or the CRO's copy of the answers) is "sent" when a delivery about `debrief:<id>` with that
  purpose exists; whoever plans one first locks the debrief row and checks, so the event-driven path
  (`deal_events.publish` → `Engine.trigger`) and the daily follow-up never both send it;
- reminders and the escalation follow from a debrief's age in business days on the follow-up's own
  date, which is unique per day, so a repeated tick of the same day plans nothing new.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, case, exists, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cadences.authz import Action, allowed
from cadences.context import Context
from cadences.deal_views import Names, load_names, money, summary
from cadences.deals import MAX_TEXT, DealError, FieldErrors, Outcome, update_deal
from cadences.engagement_file import DebriefQuestion, RitualSettings, engagement_settings
from cadences.messages import (
    Actions,
    Block,
    Button,
    Choice,
    DealItem,
    DealList,
    FieldItem,
    Fields,
    Header,
    Message,
    Option,
    Paragraph,
)
from cadences.periods import business_days_between, is_business_day
from cadences.rituals import Due, EngagementFacts, Outgoing, PersonFacts, Recipient, RitualRun, daily, in_window
from storage.models import Deal, DealHistory, Debrief, Delivery, Engagement, Person, Stage, StageKind

EVENT_TRIGGERS = ("won", "lost", "slipped", "regressed")
OUTSTANDING = ("open", "escalated")
TRIGGER_LABELS = {"won": "won", "lost": "lost", "slipped": "slipped", "regressed": "moved back", "stalled": "stalled"}
LOSS_FIELDS = {"reason": "reason", "competitor": "competitor"}  # lost-debrief answer -> /deal field it fills
NO_COMPETITOR = frozenset({"none", "no", "n/a", "na", "-", "nobody", "no one"})
GRACE = timedelta(hours=8)  # a reminder a few hours late is still useful the same working day
STALL_BATCH = 50  # new stalls asked per day; the rest are asked on the next days, oldest first
SHARE_LOOKBACK = timedelta(days=14)
LIST_LIMIT = 100
HISTORY_SCAN = 500  # history rows read to find a slip: far more changes than any real deal has


def subject(debrief_id: int) -> str:
    return f"debrief:{debrief_id}"


def questions_for(settings: RitualSettings, trigger: str) -> list[DebriefQuestion]:
    """The engagement's question set for a trigger (an empty set turns that debrief off)."""
    questions: list[DebriefQuestion] = getattr(settings.debrief_questions, trigger)
    return questions


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def day_words(day: date) -> str:
    return f"{day:%b} {day.day}"


def _quote(value: str) -> str:
    return f'"{value}"' if (not value or any(c.isspace() for c in value)) else value


# --- answers --------------------------------------------------------------------------------------


def match_choice(typed: str, choices: Sequence[str]) -> str | list[str]:
    """The choice someone means: exact (case-insensitive), else the one choice that starts with it.
    Returns the candidates (empty or several) when there is no single match."""
    needle = " ".join(typed.split()).casefold()
    exact = [c for c in choices if c.casefold() == needle]
    if exact:
        return exact[0]
    starting = [c for c in choices if c.casefold().startswith(needle)] if needle else []
    return starting[0] if len(starting) == 1 else starting


def validate_answers(questions: Sequence[DebriefQuestion], raw: Mapping[str, str]) -> dict[str, str]:
    """Typed answers checked against the question set; raises `FieldErrors` (one sentence per bad key)
    so nothing is saved unless every answer given is valid."""
    by_key = {q.key: q for q in questions}
    clean: dict[str, str] = {}
    errors: dict[str, str] = {}
    for key, value in raw.items():
        question = by_key.get(key)
        text = " ".join(value.split())
        if question is None:
            errors[key] = f'This debrief has no question "{key}"; its questions are {", ".join(by_key)}.'
        elif not text:
            errors[key] = f'Give an answer for {key}, e.g. {key}="...".'
        elif len(text) > MAX_TEXT:
            errors[key] = f"The answer to {key} is {len(text)} characters; keep it under {MAX_TEXT}."
        elif question.choices:
            found = match_choice(text, question.choices)
            if isinstance(found, str):
                clean[key] = found
            elif found:
                errors[key] = f'"{text}" could be {" or ".join(found)}; type more of it.'
            else:
                errors[key] = f'"{text}" is not an option for {key}; choose one of: {", ".join(question.choices)}.'
        else:
            clean[key] = text
    if errors:
        raise FieldErrors(errors)
    return clean


def missing(questions: Sequence[DebriefQuestion], answers: Mapping[str, Any]) -> list[DebriefQuestion]:
    """Every question is required: a debrief is answered when each one has an answer."""
    return [q for q in questions if not str(answers.get(q.key) or "").strip()]


def prefill(questions: Sequence[DebriefQuestion], deal: Deal) -> dict[str, str]:
    """A loss reason or competitor the rep already gave with `/deal ... lost` is not asked again."""
    known = {"reason": deal.loss_reason, "competitor": deal.competitor}
    raw = {q.key: value for q in questions if (value := known.get(q.key))}
    answers: dict[str, str] = {}
    for key, value in raw.items():
        try:
            answers |= validate_answers(questions, {key: value})
        except FieldErrors:
            continue  # a free-text reason that fits none of the choices is asked for properly
    return answers


# --- recording debriefs ---------------------------------------------------------------------------


async def _insert(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Insert unless the (deal, trigger, key) debrief exists; the new id, or None when it did."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(Debrief)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["deal_id", "trigger", "trigger_key"])
        .returning(Debrief.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def _status(questions: Sequence[DebriefQuestion], answers: Mapping[str, Any]) -> str:
    return "open" if missing(questions, answers) else "answered"


async def record_debrief(
    session: AsyncSession, settings: RitualSettings, deal: Deal, trigger: str, key: str, now: datetime
) -> int | None:
    """Create the debrief for one deal event; None when it was already asked or the trigger is off."""
    questions = questions_for(settings, trigger)
    if not questions:
        return None
    answers = prefill(questions, deal) if trigger == "lost" else {}
    status = _status(questions, answers)
    return await _insert(
        session,
        {
            "engagement_id": deal.engagement_id,
            "deal_id": deal.id,
            "owner_id": deal.owner_id,
            "trigger": trigger,
            "trigger_key": key,
            "status": status,
            "answers": answers,
            "created_at": now,
            "answered_at": now if status == "answered" else None,
        },
    )


def event_key(outcome: Outcome, trigger: str) -> str:
    """Slips are keyed by the slip count after the slip; the others by the history row of the change."""
    if trigger == "slipped":
        return str(outcome.deal.slip_count)
    if outcome.history_id is None:
        raise ValueError(f"a {trigger} outcome without its history row cannot be debriefed")
    return str(outcome.history_id)


async def on_deal_change(ctx: Context, outcome: Outcome) -> list[int]:
    """Record a debrief for each debriefable event of an accepted change and prompt its owner now
    (or, with no cadence engine at hand, at the next daily follow-up). Returns the new debrief ids."""
    triggers = [t for t in EVENT_TRIGGERS if t in outcome.events]
    if not triggers:
        return []
    settings = engagement_settings(ctx.engagement)
    created: list[int] = []
    async with ctx.db.write() as session:
        for trigger in triggers:
            new_id = await record_debrief(
                session, settings, outcome.deal, trigger, event_key(outcome, trigger), ctx.now()
            )
            if new_id is not None:
                created.append(new_id)
    if ctx.cadence is not None:
        for debrief_id in created:
            await ctx.cadence.trigger(
                ctx.engagement, "debrief", f"debrief-{debrief_id}", detail={"debrief_id": debrief_id}
            )
    return created


# --- a debrief in words ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DebriefView:
    """One debrief with what it takes to describe it: its deal, names, questions and trigger in words."""

    debrief: Debrief
    deal: Deal
    names: Names
    questions: list[DebriefQuestion]
    reason: str
    lost_from: Stage | None

    @property
    def id(self) -> int:
        return self.debrief.id

    @property
    def owner(self) -> Person:
        return self.names.people[self.debrief.owner_id]

    @property
    def unanswered(self) -> list[DebriefQuestion]:
        return missing(self.questions, self.debrief.answers)

    def answer_template(self) -> str:
        fields = " ".join(f'{q.key}="..."' for q in self.unanswered or self.questions)
        return f"/debrief {self.id} {fields}"


async def _history(session: AsyncSession, deal_id: int, key: str) -> DealHistory | None:
    row = await session.get(DealHistory, int(key)) if key.isdigit() else None
    return row if row is not None and row.deal_id == deal_id else None


async def _slip_row(session: AsyncSession, debrief: Debrief, names: Names) -> DealHistory | None:
    """The change that made the deal's N-th slip (N is the trigger key), counted as the deal service and
    the importer count slips: a close date moved later on a deal that was open before and after it."""
    history = select(DealHistory).where(DealHistory.deal_id == debrief.deal_id).order_by(DealHistory.id)
    rows = (await session.execute(history.limit(HISTORY_SCAN))).scalars()
    is_open, slips = True, 0
    for row in rows:
        was_open = is_open
        if stage := row.changes.get("stage"):
            now_in = names.stage_by_key(str(stage[1]))
            is_open = now_in is None or now_in.kind == StageKind.OPEN
        before, after = row.changes.get("close_date", (None, None))
        if was_open and is_open and before and after and date.fromisoformat(after) > date.fromisoformat(before):
            slips += 1
            if str(slips) == debrief.trigger_key:
                return row
    return None


def _stage_named(names: Names, key: Any) -> Stage | None:
    return names.stage_by_key(str(key)) if key else None


async def load_view(
    session: AsyncSession, settings: RitualSettings, tz: ZoneInfo, debrief: Debrief, names: Names | None = None
) -> DebriefView:
    deal = await session.get(Deal, debrief.deal_id)
    assert deal is not None
    names = names or await load_names(session, deal.engagement_id, deal.currency)
    lost_from: Stage | None = None
    trigger = debrief.trigger
    if trigger in ("won", "lost", "regressed"):
        row = await _history(session, deal.id, debrief.trigger_key)
        before, after = row.changes.get("stage", (None, None)) if row else (None, None)
        on = day_words(row.at.astimezone(tz).date()) if row else day_words(debrief.created_at.astimezone(tz).date())
        if trigger == "won":
            reason = f"{deal.name} ({money(deal.amount, deal.currency)}) was won on {on}"
        elif trigger == "lost":
            lost_from = _stage_named(names, before)
            where = f" from {lost_from.name}" if lost_from else ""
            reason = f"{deal.name} ({money(deal.amount, deal.currency)}) was lost{where} on {on}"
        else:
            moved_from, moved_to = _stage_named(names, before), _stage_named(names, after)
            reason = (
                f"{deal.name} moved back from {moved_from.name} to {moved_to.name} on {on}"
                if moved_from and moved_to
                else f"{deal.name} moved back to an earlier stage on {on}"
            )
    elif trigger == "slipped":
        slips = int(debrief.trigger_key)
        row = await _slip_row(session, debrief, names)
        if row is not None:
            before, after = row.changes["close_date"]
            moved = f"from {day_words(date.fromisoformat(before))} to {day_words(date.fromisoformat(after))}"
            reason = f"{deal.name} slipped {moved}"
        else:
            reason = f"{deal.name}'s close date moved out"
        if slips >= 2:
            reason += f" — that's the {ordinal(slips)} time, so it's flagged in the pipeline review"
    else:
        since = date.fromisoformat(debrief.trigger_key)
        days = (debrief.created_at.astimezone(tz).date() - since).days
        reason = f"{deal.name} has had no stage change since {day_words(since)} ({days} days"
        if deal.stage_changed_at.astimezone(tz).date() == since:  # still in the stage it stalled in
            reason += f" in {names.stages[deal.stage_id].name}"
        reason += ")"
    return DebriefView(debrief, deal, names, questions_for(settings, trigger), reason, lost_from)


def is_late_loss(view: DebriefView, settings: RitualSettings) -> bool:
    """A loss from the `debriefs.late_stage` stage or a later one (by stage position)."""
    late = view.names.stage_by_key(settings.debriefs.late_stage) if settings.debriefs.late_stage else None
    return (
        view.debrief.trigger == "lost"
        and late is not None
        and view.lost_from is not None
        and view.lost_from.position >= late.position
    )


# --- messages -------------------------------------------------------------------------------------


def answer_button(view: DebriefView) -> Button:
    return Button(
        label="Answer", action_id="debrief_open", value=str(view.id), command=view.answer_template(), style="primary"
    )


def answer_fields(view: DebriefView) -> Fields:
    return Fields(
        items=[FieldItem(label=q.text, value=str(view.debrief.answers.get(q.key) or "—")) for q in view.questions]
    )


def prompt_message(view: DebriefView, *, intro: str | None = None) -> Message:
    """The DM asking the owner: the deal, the trigger in words, the questions and how to answer."""
    debrief = view.debrief
    blocks: list[Block] = [Header(text=f"Debrief #{view.id}: {view.deal.name}")]
    if intro:
        blocks.append(Paragraph(text=intro))
    blocks += [Paragraph(text=f"{view.reason}."), Paragraph(text=summary(view.deal, view.names), muted=True)]
    free: list[str] = []
    for q in view.unanswered:
        if q.choices:
            options = [Option(label=c, value=f"/debrief {view.id} {q.key}={_quote(c)}") for c in q.choices]
            blocks.append(Choice(label=f"{q.text} ({q.key})", action_id="debrief_choice", options=options))
        else:
            free.append(f"• {q.key}: {q.text}")
    if free:
        blocks.append(Paragraph(text="And in your own words:\n" + "\n".join(free)))
    noted = [f"{q.key} = {debrief.answers[q.key]}" for q in view.questions if debrief.answers.get(q.key)]
    if noted:
        blocks.append(Paragraph(text="Already noted from your update: " + "; ".join(noted) + ".", muted=True))
    blocks += [Paragraph(text=f"Answer in one line: {view.answer_template()}"), Actions(buttons=[answer_button(view)])]
    return Message(text=f"Debrief: {view.reason}. A few questions for you.", blocks=blocks)


def live_debrief_button(view: DebriefView, cro: PersonFacts) -> Button:
    name = f'"{view.deal.name}"' if " " in view.deal.name else view.deal.name
    command = f'/pipeline action {name} owner=@{cro.key} text="Live debrief with {view.owner.name}"'
    return Button(label="Debrief live", action_id="run_command", value=command, command=command)


def late_loss_message(view: DebriefView, cro: PersonFacts) -> Message:
    """The CRO hears of a late-stage loss at once, before the rep has answered anything."""
    deal = view.deal
    stage = view.lost_from.name if view.lost_from else "a late stage"
    text = (
        f"{view.owner.name} lost {deal.name} ({money(deal.amount, deal.currency)}) from {stage}. "
        f"I've asked for a debrief and will send you the answers."
    )
    blocks: list[Block] = [
        Header(text=f"Late-stage loss: {deal.name}"),
        Paragraph(text=text),
        Paragraph(text=summary(deal, view.names), muted=True),
    ]
    if view.debrief.answers:
        blocks += [Paragraph(text="Noted so far:"), answer_fields(view)]
    show = f"/debrief show {view.id}"
    blocks.append(
        Actions(
            buttons=[
                live_debrief_button(view, cro),
                Button(label="Show debrief", action_id="run_command", value=show, command=show),
            ]
        )
    )
    return Message(text=text, blocks=blocks)


def shared_message(view: DebriefView, cro: PersonFacts) -> Message:
    """The rep's answers on a late-stage loss, for the CRO."""
    text = f"{view.owner.name} answered the debrief on {view.deal.name}: {view.reason}."
    return Message(
        text=text,
        blocks=[
            Header(text=f"Debrief answered: {view.deal.name}"),
            Paragraph(text=text),
            answer_fields(view),
            Actions(buttons=[live_debrief_button(view, cro)]),
        ],
    )


def debrief_card(view: DebriefView, *, intro: str | None = None, age: int | None = None) -> Message:
    """A debrief as it stands: trigger, owner, status and every question with its answer."""
    debrief = view.debrief
    status = {"open": "waiting for answers", "answered": "answered", "escalated": "escalated"}[debrief.status]
    if age is not None and debrief.status != "answered":
        status += f", asked {age} business day{'s' if age != 1 else ''} ago"
    blocks: list[Block] = []
    if intro:
        blocks.append(Paragraph(text=intro))
    blocks += [
        Header(text=f"Debrief #{view.id}: {view.deal.name}"),
        Paragraph(text=f"{view.reason}."),
        Paragraph(text=f"{view.owner.name} · {status}", muted=True),
        answer_fields(view),
    ]
    if debrief.status != "answered":
        blocks.append(Actions(buttons=[answer_button(view)]))
    return Message(text=intro or f"Debrief #{view.id}: {view.reason}", blocks=blocks, ephemeral=True)


def debrief_item(view: DebriefView, age: int, buttons: Sequence[Button] = ()) -> DealItem:
    trigger = TRIGGER_LABELS[view.debrief.trigger]
    asked = f"asked {age} business day{'s' if age != 1 else ''} ago"
    extra = " · escalated" if view.debrief.status == "escalated" else ""
    return DealItem(
        deal_id=view.deal.id,
        name=f"#{view.id} {view.deal.name}",
        summary=f"{trigger} · {view.owner.name} · {asked}{extra}",
        reasons=[view.reason],
        buttons=list(buttons),
    )


def reminder_message(items: Sequence[tuple[DebriefView, int]]) -> Message:
    count = len(items)
    text = f"Reminder: {count} debrief{'s are' if count > 1 else ' is'} waiting for your answers."
    return Message(
        text=text,
        blocks=[
            Paragraph(text=text),
            DealList(items=[debrief_item(view, age, [answer_button(view)]) for view, age in items]),
        ],
    )


def nudge_button(view: DebriefView) -> Button:
    command = f"/debrief nudge {view.id}"
    return Button(label="Nudge", action_id="run_command", value=command, command=command)


def escalation_message(items: Sequence[tuple[DebriefView, int]], reminders: int) -> Message:
    """To the manager (or CRO): whose debriefs went unanswered after the reminders, with a nudge each."""
    reps = sorted({view.owner.name for view, _ in items})
    who = reps[0] if len(reps) == 1 else ", ".join(reps[:-1]) + " and " + reps[-1]
    count = len(items)
    text = (
        f"{who} {'hasn' if len(reps) == 1 else 'haven'}'t answered {count} debrief{'s' if count > 1 else ''} "
        f"after {reminders} reminder{'s' if reminders != 1 else ''}. "
        "Nudge them, or answer for them with /debrief <id> key=value."
    )
    return Message(
        text=text,
        blocks=[
            Paragraph(text=text),
            DealList(items=[debrief_item(view, age, [nudge_button(view)]) for view, age in items]),
        ],
    )


def nudge_message(view: DebriefView, by: str) -> Message:
    return prompt_message(view, intro=f"{by} asked me to nudge you about this debrief.")


# --- answering ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    """What an answer did: the debrief after it, what is still missing, and whether it just completed."""

    view: DebriefView
    saved: dict[str, str]
    still_missing: list[DebriefQuestion]
    completed: bool


def business_age(created_at: datetime, on: date, tz: ZoneInfo, holidays: frozenset[date]) -> int:
    """Business days since the debrief was asked, counted on the engagement's calendar."""
    return business_days_between(created_at.astimezone(tz).date(), on, holidays)


def holidays_of(ctx: Context) -> frozenset[date]:
    return frozenset(date.fromisoformat(d) for d in ctx.engagement.holidays or [])


async def get_debrief(session: AsyncSession, engagement_id: int, debrief_id: int, *, lock: bool = False) -> Debrief:
    stmt = select(Debrief).where(Debrief.id == debrief_id, Debrief.engagement_id == engagement_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    found = (await session.execute(stmt)).scalar_one_or_none()
    if found is None:
        raise DealError(f"There's no debrief #{debrief_id}. Type /debrief to see the ones waiting.")
    return found


def may_answer(actor: Person, debrief: Debrief) -> bool:
    """A rep answers their own debriefs; a manager or the CRO may answer for anyone."""
    return allowed(actor, Action.EDIT_DEAL, owns=debrief.owner_id == actor.id)


async def answer_debrief(ctx: Context, debrief_id: int, raw: Mapping[str, str]) -> Answered:
    """Save answers (all valid or none saved); complete the debrief once every question is answered.

    A lost deal's reason and competitor answers also fill the deal (through the deal service, so the
    change has its history row), which is what the win/loss figures count. Completing a late-stage
    loss sends the answers to the CRO, once."""
    actor = ctx.actor
    assert actor is not None
    settings = engagement_settings(ctx.engagement)
    if not raw:
        raise DealError(f"Give at least one answer, e.g. /debrief {debrief_id} key=value.")
    async with ctx.db.write() as session:
        debrief = await get_debrief(session, ctx.engagement.id, debrief_id, lock=True)
        if not may_answer(actor, debrief):
            owner = await session.get(Person, debrief.owner_id)
            raise DealError(
                f"Debrief #{debrief_id} is {owner.name if owner else 'someone else'}'s to answer; "
                "reps answer their own, and a manager or the CRO can answer for anyone.",
                outcome="denied",
            )
        questions = questions_for(settings, debrief.trigger)
        saved = validate_answers(questions, raw)
        debrief.answers = {**debrief.answers, **saved}
        still = missing(questions, debrief.answers)
        completed = not still and debrief.status != "answered"
        if completed:
            debrief.status = "answered"
            debrief.answered_at = ctx.now()
        await session.flush()
        view = await load_view(session, settings, ctx.tz, debrief)
    if debrief.trigger == "lost":
        await _fill_deal(ctx, view.deal, saved)
    if completed and ctx.cadence is not None:
        await ctx.cadence.update_sent(
            subject(debrief_id), debrief_card(view, intro="Answered — thank you."), purpose_prefix="prompt"
        )
        if is_late_loss(view, settings):
            await ctx.cadence.trigger(
                ctx.engagement, "debrief", f"debrief-{debrief_id}/shared", detail={"share": debrief_id}
            )
    return Answered(view, saved, still, completed)


async def _fill_deal(ctx: Context, deal: Deal, saved: Mapping[str, str]) -> None:
    changes = {field: value for key, field in LOSS_FIELDS.items() if (value := saved.get(key)) is not None}
    if changes.get("competitor", "").casefold() in NO_COMPETITOR:
        changes.pop("competitor")
    current = {"reason": deal.loss_reason, "competitor": deal.competitor}
    changes = {k: v for k, v in changes.items() if (current[k] or "").casefold() != v.casefold()}
    if changes and not deal.is_open:
        await update_deal(ctx, deal.id, changes)


async def nudge(ctx: Context, debrief_id: int) -> bool:
    """A manager or the CRO re-sends the prompt to the owner, at most once a day per debrief.
    False when it was already nudged today."""
    actor = ctx.actor
    assert actor is not None
    if not allowed(actor, Action.RUN_RITUAL):
        raise DealError("Only a manager or the CRO can nudge someone about a debrief.", outcome="denied")
    async with ctx.db.session() as session:
        debrief = await get_debrief(session, ctx.engagement.id, debrief_id)
    if debrief.status == "answered":
        raise DealError(f"Debrief #{debrief_id} is already answered: /debrief show {debrief_id}.", outcome="unchanged")
    if ctx.cadence is None:
        raise DealError("Cadence isn't running here, so I can't send the nudge now.", outcome="unchanged")
    period = f"debrief-{debrief_id}/nudge-{ctx.today().isoformat()}"
    return (
        await ctx.cadence.trigger(ctx.engagement, "debrief", period, detail={"nudge": debrief_id, "by": actor.id})
        is not None
    )


async def outstanding(session: AsyncSession, engagement_id: int, owner_id: int | None) -> list[Debrief]:
    """Unanswered debriefs (open or escalated), oldest first; one owner's, or everyone's."""
    stmt = select(Debrief).where(Debrief.engagement_id == engagement_id, Debrief.status.in_(OUTSTANDING))
    if owner_id is not None:
        stmt = stmt.where(Debrief.owner_id == owner_id)
    return list((await session.execute(stmt.order_by(Debrief.created_at, Debrief.id).limit(LIST_LIMIT))).scalars())


# --- the rituals ----------------------------------------------------------------------------------


async def _sent_before(session: AsyncSession, debriefs: Sequence[Debrief], purpose: str) -> set[int]:
    """The debriefs (of those given, locked by the caller) about which a message of this kind was
    already planned, by the triggered path (`purpose`) or the daily one (`purpose-<id>`)."""
    by_subject = {subject(d.id): d.id for d in debriefs}
    if not by_subject:
        return set()
    rows = await session.execute(
        select(Delivery.subject, Delivery.purpose).where(
            Delivery.subject.in_(list(by_subject)), Delivery.purpose.startswith(purpose)
        )
    )
    found: set[int] = set()
    for about, sent_as in rows:
        debrief_id = by_subject[str(about)]
        if sent_as in (purpose, f"{purpose}-{debrief_id}"):
            found.add(debrief_id)
    return found


async def _prompt(run: RitualRun, debrief: Debrief, names: Names, suffix: str) -> list[Outgoing]:
    """The owner's prompt and, for a late-stage loss, the CRO's notice."""
    facts = run.facts
    view = await load_view(run.session, facts.settings, facts.tz, debrief, names)
    out = [
        Outgoing(
            Recipient.person(debrief.owner_id), f"prompt{suffix}", prompt_message(view), subject=subject(debrief.id)
        )
    ]
    cro = facts.cro
    if cro is not None and cro.id != debrief.owner_id and is_late_loss(view, facts.settings):
        out.append(
            Outgoing(
                Recipient.person(cro.id),
                f"late-loss{suffix}",
                late_loss_message(view, cro),
                subject=subject(debrief.id),
            )
        )
    return out


async def _share(run: RitualRun, debrief: Debrief, names: Names, suffix: str) -> list[Outgoing]:
    """The answers of a late-stage loss to the CRO (never to the CRO about their own deal)."""
    facts = run.facts
    cro = facts.cro
    if cro is None or cro.id == debrief.owner_id:
        return []
    view = await load_view(run.session, facts.settings, facts.tz, debrief, names)
    if not is_late_loss(view, facts.settings):
        return []
    return [
        Outgoing(Recipient.person(cro.id), f"shared{suffix}", shared_message(view, cro), subject=subject(debrief.id))
    ]


async def _locked(session: AsyncSession, engagement_id: int, *conditions: ColumnElement[bool]) -> list[Debrief]:
    stmt = (
        select(Debrief)
        .where(Debrief.engagement_id == engagement_id, *conditions)
        .order_by(Debrief.created_at, Debrief.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())


class DebriefPrompt:
    """`debrief`: never on a schedule; triggered per debrief (prompt), per completed late-stage loss
    (`share`) and per manager nudge (`nudge`)."""

    name = "debrief"

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        return ()

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        detail = run.occurrence.detail
        debrief_id = int(detail.get("share") or detail.get("nudge") or detail["debrief_id"])
        found = await _locked(run.session, run.facts.id, Debrief.id == debrief_id)
        if not found:
            return []
        debrief = found[0]
        names = await load_names(run.session, run.facts.id, run.facts.engagement.currency)
        if "share" in detail:
            done = debrief.status == "answered" and not await _sent_before(run.session, found, "shared")
            return await _share(run, debrief, names, "") if done else []
        if debrief.status == "answered":
            return []
        if "nudge" in detail:
            view = await load_view(run.session, run.facts.settings, run.facts.tz, debrief, names)
            by = names.people.get(int(detail["by"]))
            message = nudge_message(view, by.name if by else "Your manager")
            return [Outgoing(Recipient.person(debrief.owner_id), "nudge", message, subject=subject(debrief_id))]
        return [] if await _sent_before(run.session, found, "prompt") else await _prompt(run, debrief, names, "")


class DebriefFollowUp:
    """`debrief_followup`: each business day at `debriefs.time`, ask about newly stalled deals, send any
    prompt not sent yet, remind owners after 1 and 3 business days and escalate the day after."""

    name = "debrief_followup"

    def due_between(self, facts: EngagementFacts, start: datetime, end: datetime) -> Iterable[Due]:
        at = facts.settings.debriefs.time
        for day in daily(start, end, facts.tz):
            if is_business_day(day, facts.holidays):
                due = Due(self.name, day.isoformat(), facts.local(day, at), GRACE)
                if in_window(due, start, end):
                    yield due

    async def plan(self, run: RitualRun) -> Sequence[Outgoing]:
        facts = run.facts
        await _detect_stalls(run)
        names = await load_names(run.session, facts.id, facts.engagement.currency)
        out: list[Outgoing] = []
        waiting = await _locked(run.session, facts.id, Debrief.status.in_(OUTSTANDING))
        prompted = await _sent_before(run.session, waiting, "prompt")
        for debrief in waiting:
            if debrief.id not in prompted:
                out += await _prompt(run, debrief, names, f"-{debrief.id}")
        answered = await _locked(
            run.session,
            facts.id,
            Debrief.status == "answered",
            Debrief.trigger == "lost",
            Debrief.answered_at >= run.now - SHARE_LOOKBACK,
        )
        shared = await _sent_before(run.session, answered, "shared")
        for debrief in answered:
            if debrief.id not in shared:
                out += await _share(run, debrief, names, f"-{debrief.id}")
        # A debrief whose questions go out only now is not chased in the same breath.
        chase = [d for d in waiting if d.status == "open" and d.id in prompted]
        out += await _remind_and_escalate(run, date.fromisoformat(run.occurrence.period), chase, names)
        return out


async def _detect_stalls(run: RitualRun) -> None:
    """Debriefs for open deals with no stage change for `stalled_days`, not yet asked about this stall."""
    facts = run.facts
    if not questions_for(facts.settings, "stalled"):
        return
    cutoff = run.now - timedelta(days=facts.settings.debriefs.stalled_days)
    asked = exists().where(
        Debrief.deal_id == Deal.id, Debrief.trigger == "stalled", Debrief.created_at >= Deal.stage_changed_at
    )
    stalled = (
        select(Deal)
        .where(Deal.engagement_id == facts.id, Deal.is_open.is_(True), Deal.stage_changed_at <= cutoff, ~asked)
        .order_by(Deal.stage_changed_at, Deal.id)
        .limit(STALL_BATCH)
    )
    for deal in (await run.session.execute(stalled)).scalars().all():
        key = deal.stage_changed_at.astimezone(facts.tz).date().isoformat()
        await record_debrief(run.session, facts.settings, deal, "stalled", key, run.now)


def escalation_target(facts: EngagementFacts, owner: PersonFacts) -> PersonFacts | None:
    """The rep's manager (or the person `escalate_to` names), else the CRO; never the owner themself."""
    setting = facts.settings.debriefs.escalate_to
    target = facts.person(owner.manager_id if setting == "manager" else setting)
    if target is None or not target.active or target.id == owner.id:
        target = facts.cro
    return target if target is not None and target.id != owner.id else None


async def _remind_and_escalate(run: RitualRun, on: date, debriefs: Sequence[Debrief], names: Names) -> list[Outgoing]:
    """One reminder per owner with a debrief aged exactly 1 or 3 business days today (listing all their
    open ones); debriefs past the last reminder's next business day go to the escalation target."""
    facts = run.facts
    remind_at = set(facts.settings.debriefs.remind_after_business_days)
    escalate_at = max(remind_at) + 1 if remind_at else None
    open_of: dict[int, list[tuple[Debrief, int]]] = defaultdict(list)
    due_reminder: set[int] = set()
    escalate: dict[int, list[tuple[Debrief, int]]] = defaultdict(list)
    for debrief in debriefs:
        owner = facts.person(debrief.owner_id)
        if owner is None or not owner.active or owner.away_on(on):
            continue
        age = business_age(debrief.created_at, on, facts.tz, facts.holidays)
        target = escalation_target(facts, owner) if escalate_at is not None and age >= escalate_at else None
        if target is not None:
            debrief.status = "escalated"
            debrief.escalated_to_id = target.id
            escalate[target.id].append((debrief, age))
            continue
        open_of[owner.id].append((debrief, age))
        if age in remind_at:
            due_reminder.add(owner.id)

    async def described(items: list[tuple[Debrief, int]]) -> list[tuple[DebriefView, int]]:
        return [(await load_view(run.session, facts.settings, facts.tz, d, names), age) for d, age in items]

    out = [
        Outgoing(Recipient.person(owner_id), "reminder", reminder_message(await described(open_of[owner_id])))
        for owner_id in sorted(due_reminder)
    ]
    out += [
        Outgoing(Recipient.person(target_id), "escalation", escalation_message(await described(items), len(remind_at)))
        for target_id, items in sorted(escalate.items())
    ]
    return out


# --- win/loss -------------------------------------------------------------------------------------


def _rate(part: Decimal | int, other: Decimal | int) -> float | None:
    total = part + other
    return float(part) / float(total) if total else None


@dataclass(frozen=True)
class WinLoss:
    """Won and lost deals of one slice, by count and by value."""

    label: str
    won: int
    lost: int
    won_value: Decimal
    lost_value: Decimal

    @property
    def win_rate(self) -> float | None:
        """won ÷ (won + lost), by count; None with no closed deals."""
        return _rate(self.won, self.lost)

    @property
    def value_win_rate(self) -> float | None:
        """won ÷ (won + lost), by value."""
        return _rate(self.won_value, self.lost_value)


@dataclass(frozen=True)
class Tally:
    label: str
    count: int
    value: Decimal


@dataclass(frozen=True)
class Lesson:
    deal_id: int
    deal_name: str
    trigger: str
    text: str

    def line(self) -> str:
        return f"{self.deal_name} ({self.trigger}): {self.text}"


@dataclass(frozen=True)
class WinLossSummary:
    """Win/loss over deals whose close date falls in [start, end]: the figures the founder digest and
    `/debrief insights` show. `median_cycle_days` is median(close date − created date) over won deals."""

    start: date
    end: date
    overall: WinLoss
    median_cycle_days: float | None
    by_source: list[WinLoss]
    by_segment: list[WinLoss]
    by_rep: list[WinLoss]
    loss_reasons: list[Tally]
    competitors: list[Tally]
    lessons: list[Lesson]


_WON = Stage.kind == StageKind.WON.value
_LOST = Stage.kind == StageKind.LOST.value
UNSET = "not recorded"


def _closed_in(engagement_id: int, start: date, end: date) -> list[ColumnElement[bool]]:
    return [
        Deal.engagement_id == engagement_id,
        Deal.is_open.is_(False),
        Deal.close_date >= start,
        Deal.close_date <= end,
        Stage.kind.in_((StageKind.WON.value, StageKind.LOST.value)),
    ]


async def _win_loss(session: AsyncSession, where: list[ColumnElement[bool]], *group: Any) -> list[WinLoss]:
    tallies = (
        func.coalesce(func.sum(case((_WON, 1), else_=0)), 0),
        func.coalesce(func.sum(case((_LOST, 1), else_=0)), 0),
        func.sum(case((_WON, Deal.amount))),
        func.sum(case((_LOST, Deal.amount))),
    )
    stmt = select(*group, *tallies).select_from(Deal).join(Stage, Stage.id == Deal.stage_id).where(*where)
    if group:
        stmt = stmt.group_by(*group)
    out = []
    for row in (await session.execute(stmt)).all():
        label = row[len(group) - 1] if group else "all"  # grouped by (id, name): the name labels the row
        won, lost, won_value, lost_value = row[len(group) :]
        out.append(
            WinLoss(
                str(label) if label is not None else UNSET,
                int(won),
                int(lost),
                won_value or Decimal(0),
                lost_value or Decimal(0),
            )
        )
    return sorted(out, key=lambda w: (-(w.won + w.lost), w.label)) if group else out


async def win_loss_summary(session: AsyncSession, engagement_id: int, start: date, end: date) -> WinLossSummary:
    """Win rate (by count and value) overall and by source, segment and rep; loss reasons; competitors;
    the median sales cycle; and one-line lessons from answered win and loss debriefs."""
    where = _closed_in(engagement_id, start, end)
    overall = (await _win_loss(session, where))[0]
    # The median is not portable SQL, and neither is date subtraction: fetch the two dates of won deals.
    cycles = [
        (closed - created).days
        for created, closed in (
            await session.execute(
                select(Deal.created_on, Deal.close_date).join(Stage, Stage.id == Deal.stage_id).where(*where, _WON)
            )
        )
        if closed is not None
    ]
    reasons = (
        await session.execute(
            select(Deal.loss_reason, func.count(Deal.id), func.sum(Deal.amount))
            .join(Stage, Stage.id == Deal.stage_id)
            .where(*where, _LOST)
            .group_by(Deal.loss_reason)
            .order_by(func.count(Deal.id).desc(), Deal.loss_reason)
            .limit(7)
        )
    ).all()
    rivals = (
        await session.execute(
            select(func.max(Deal.competitor), func.count(Deal.id), func.sum(Deal.amount))
            .join(Stage, Stage.id == Deal.stage_id)
            .where(*where, _LOST, Deal.competitor.is_not(None))
            .group_by(func.lower(Deal.competitor))
            .order_by(func.count(Deal.id).desc(), func.lower(Deal.competitor))
            .limit(7)
        )
    ).all()
    return WinLossSummary(
        start=start,
        end=end,
        overall=overall,
        median_cycle_days=float(statistics.median(cycles)) if cycles else None,
        by_source=await _win_loss(session, where, Deal.source),
        by_segment=await _win_loss(session, where, Deal.segment),
        by_rep=await _win_loss(session, [*where, Person.id == Deal.owner_id], Person.id, Person.name),
        loss_reasons=[Tally(r or UNSET, n, v or Decimal(0)) for r, n, v in reasons],
        competitors=[Tally(str(c), n, v or Decimal(0)) for c, n, v in rivals],
        lessons=await _lessons(session, engagement_id, start, end),
    )


async def _lessons(session: AsyncSession, engagement: int, start: date, end: date, limit: int = 10) -> list[Lesson]:
    """The last free-text answer of each answered win/loss debrief ("what to repeat", "what to do
    differently" in the playbook's sets): the line worth passing on."""
    found = await session.get(Engagement, engagement)
    assert found is not None
    settings = engagement_settings(found)
    rows = (
        await session.execute(
            select(Debrief, Deal.name)
            .join(Deal, Deal.id == Debrief.deal_id)
            .where(
                Debrief.engagement_id == engagement,
                Debrief.status == "answered",
                Debrief.trigger.in_(("won", "lost")),
                Deal.close_date >= start,
                Deal.close_date <= end,
            )
            .order_by(Debrief.answered_at.desc(), Debrief.id.desc())
            .limit(limit)
        )
    ).all()
    lessons = []
    for debrief, name in rows:
        free = [q.key for q in questions_for(settings, debrief.trigger) if not q.choices]
        text = next((str(debrief.answers[k]) for k in reversed(free) if debrief.answers.get(k)), None)
        if text:
            lessons.append(Lesson(debrief.deal_id, name, debrief.trigger, text))
    return lessons
