"""The App Home tab: each person's own view of what needs them.

Everyone sees their deals needing attention (with Update / Still accurate), their open debriefs, their
open action items and their hand-over tasks; the CRO also sees the engagement clock (day N of M, days
to the exit) and the rituals due in the next week. It is built from the neutral message model and
rendered like any message, so the words and buttons are the console's; each list is capped so the
view stays within Slack's 100 blocks, with a line saying where the rest is.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.listeners.requests import NOT_LINKED, Who, ids, who
from bot.slack.render import JSONDict, escape, render_message
from cadences import deal_views, handoff
from cadences.deals import not_in_engagement
from cadences.debriefs import answer_button, business_age, debrief_item, load_view, outstanding
from cadences.messages import (
    Actions,
    Block,
    Button,
    DealList,
    FieldItem,
    Fields,
    Header,
    Message,
    Paragraph,
)
from cadences.pipeline_metrics import attention, open_action_items
from cadences.pipeline_review import action_line
from cadences.rituals import load_facts
from storage.models import Role

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps

HOME_BLOCKS_MAX = 100
SHOWN = {"deals": 10, "debriefs": 5, "actions": 10, "tasks": 8, "rituals": 8}
UPCOMING = timedelta(days=7)
RITUAL_NAMES = {
    "pipeline_review": "Pipeline review",
    "review_nudge": "Deal update nudges",
    "review_last_call": "Last call before the review",
    "action_reminder": "Action item reminders",
    "founder_digest": "Founder digest",
    "debrief": "Debrief requests",
    "debrief_followup": "Debrief reminders",
    "milestone_checkin": "Milestone check-ins",
    "milestone_scorecard": "Milestone scorecard",
    "milestone_chase": "Overdue deliverables chase",
    "handoff_reminder": "Hand-over reminders",
    "handoff_overdue": "Overdue hand-over tasks",
    "exit_planning": "Exit planning",
    "handoff_owner_warning": "Hand-over owner warning",
}
"""How the Home names each ritual; an unknown one is shown by its name with spaces."""


def register(app: AsyncApp, deps: SlackDeps) -> None:
    async def home_opened(body: dict[str, Any], event: dict[str, Any], client: AsyncWebClient) -> None:
        """Opening the Home tab publishes a fresh view."""
        if event.get("tab", "home") != "home":
            return
        deps.background.spawn(_publish_for(deps, client, body), what="publish the Home tab")

    app.event("app_home_opened")(home_opened)
    deps.registry.events.add("app_home_opened")


async def _publish_for(deps: SlackDeps, client: AsyncWebClient, body: dict[str, Any]) -> None:
    team_id, user_id = ids(body)
    asker = await who(deps, client, team_id, user_id)
    if asker is None:
        await client.views_publish(user_id=user_id, view=_view([Message(text=NOT_LINKED)]))
        return
    await publish(deps, client, asker)


async def publish(deps: SlackDeps, client: AsyncWebClient, asker: Who) -> None:
    """Publish the person's Home (after it was opened, or after a button on it changed something)."""
    await client.views_publish(user_id=asker.user_id, view=_view(await home_messages(deps, asker)))


def _view(messages: list[Message]) -> JSONDict:
    blocks: list[JSONDict] = []
    for message in messages:
        blocks += render_message(message)["blocks"]
    if len(blocks) > HOME_BLOCKS_MAX:
        more = "There is more than fits here: /deal list, /debrief, /pipeline actions and /cadence handoff show it all."
        blocks = [
            *blocks[: HOME_BLOCKS_MAX - 1],
            {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(more)}]},
        ]
    return {"type": "home", "blocks": blocks}


def _more(shown: int, total: int, where: str) -> list[Block]:
    return [Paragraph(text=f"And {total - shown} more: {where}", muted=True)] if total > shown else []


async def home_messages(deps: SlackDeps, asker: Who) -> list[Message]:
    """The Home as neutral messages, one per section."""
    ctx = asker.context(deps)
    person = asker.person
    if person is None:
        return [Message(text=not_in_engagement(ctx))]
    today, now = ctx.today(), ctx.now()
    engagement = asker.engagement
    out: list[Message] = []
    async with deps.db.session() as session:
        facts = await load_facts(session, engagement)
        names = await deal_views.load_names(session, engagement.id, engagement.currency)
        needing = await attention(session, facts, today, now, owner_id=person.id)
        debriefs = await outstanding(session, engagement.id, person.id)
        debrief_views = [
            await load_view(session, facts.settings, facts.tz, d, names) for d in debriefs[: SHOWN["debriefs"]]
        ]
        actions = await open_action_items(session, engagement.id, owner_id=person.id, limit=SHOWN["actions"] + 1)
        tasks = [
            t
            for t in await handoff.tasks(session, engagement.id)
            if t.status == "open" and person.id in (t.to_id, t.from_id)
        ]
    me = facts.person(person.id)
    zone = me.timezone if me else facts.tz
    heading: list[Block] = [Header(text=f"{engagement.company} · Cadence")]
    if person.role == Role.CRO:
        length = facts.day_of_engagement(engagement.exit_date)
        day = min(max(facts.day_of_engagement(today), 0), length)
        left = (engagement.exit_date - today).days
        heading.append(
            Fields(
                items=[
                    FieldItem(label="Engagement", value=f"day {day} of {length}"),
                    FieldItem(label="Exit", value=f"{engagement.exit_date:%b %-d, %Y} · {max(left, 0)} days to go"),
                    FieldItem(label="Cadence", value="paused (/cadence resume)" if engagement.paused else "running"),
                ]
            )
        )
        if deps.cadence is not None:
            dues = await deps.cadence.upcoming(engagement, now, UPCOMING)
            lines: list[str] = []
            seen: set[str] = set()
            for due in dues:  # each ritual once, at its next time
                if due.ritual in seen:
                    continue
                seen.add(due.ritual)
                at = due.due_at.astimezone(zone)
                name = RITUAL_NAMES.get(due.ritual, due.ritual.replace("_", " ").capitalize())
                lines.append(f"{at:%a %b %-d %H:%M} — {name}")
            shown = lines[: SHOWN["rituals"]]
            text = "\n".join(f"• {line}" for line in shown) if shown else "Nothing due in the next 7 days."
            heading.append(Paragraph(text=f"Next rituals (your time)\n{text}"))
    out.append(Message(text="Cadence", blocks=heading))

    deal_items = [
        deal_views.deal_item(a.deal, names, a.reasons, deal_views.deal_buttons(a.deal))
        for a in needing[: SHOWN["deals"]]
    ]
    out.append(
        Message(
            text="Your deals needing attention",
            blocks=[
                DealList(
                    title="Your deals needing attention",
                    items=deal_items,
                    empty_text="Nothing to fix: your deals are up to date.",
                ),
                *_more(len(deal_items), len(needing), "/deal list"),
            ],
        )
    )
    debrief_items = [
        debrief_item(
            view, business_age(view.debrief.created_at, today, facts.tz, facts.holidays), [answer_button(view)]
        )
        for view in debrief_views
    ]
    out.append(
        Message(
            text="Your open debriefs",
            blocks=[
                DealList(title="Your open debriefs", items=debrief_items, empty_text="No debriefs waiting for you."),
                *_more(len(debrief_items), len(debriefs), "/debrief"),
            ],
        )
    )
    shown_actions = actions[: SHOWN["actions"]]
    action_blocks: list[Block] = [Paragraph(text="Your action items")]
    if shown_actions:
        action_blocks.append(Paragraph(text="\n".join(f"• {action_line(a, today)}" for a in shown_actions)))
        action_blocks.append(
            Actions(
                buttons=[
                    Button(
                        label=f"Done #{a.id}",
                        action_id="action_done",
                        value=str(a.id),
                        command=f"/pipeline done {a.id}",
                    )
                    for a in shown_actions
                ]
            )
        )
    else:
        action_blocks.append(Paragraph(text="No open action items.", muted=True))
    action_blocks += _more(len(shown_actions), len(actions), "/pipeline actions")
    out.append(Message(text="Your action items", blocks=action_blocks))
    if tasks:
        task_blocks: list[Block] = [Paragraph(text="Your hand-over tasks")]
        for task in tasks[: SHOWN["tasks"]]:
            by = handoff.task_due(facts, task.due_days_before_exit)
            task_blocks.append(Paragraph(text=f"{task.title} — due {by:%b %-d, %Y} ({handoff.when(by, today)})"))
            task_blocks.append(Actions(buttons=handoff.task_buttons(task)))
        task_blocks += _more(min(len(tasks), SHOWN["tasks"]), len(tasks), "/cadence handoff")
        out.append(Message(text="Your hand-over tasks", blocks=task_blocks))
    return out
