"""The command router: text typed in any chat goes through here, so every platform speaks one grammar.

Each command module registers a handler for its name (`deal`, later `pipeline`, `debrief`, `cadence`,
...). The router turns refusals into replies and writes the audit row for every attempted change,
including rejected and denied ones with the exact text typed, so nothing a person submitted is lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cadences import deal_views
from cadences.context import Context
from cadences.deals import AmbiguousDeal, Conflict, DealError, not_in_engagement
from cadences.grammar import GrammarError, split_invocation
from cadences.messages import Actions, Button, Message, Paragraph, reply
from storage import audit


@dataclass
class CommandResult:
    """What a handler did: the replies, and for the audit log what it tried and how that ended."""

    messages: list[Message]
    action: str
    outcome: str = "ok"
    target: str | None = None
    detail: dict[str, object] = field(default_factory=dict)


Handler = Callable[[Context, str], Awaitable[CommandResult]]
READ_OUTCOMES = frozenset({"read", "help"})


@dataclass(frozen=True)
class CommandSpec:
    name: str
    handler: Handler
    summary: str
    usage: str
    public: bool = False  # usable by people outside the engagement (help)


class CommandRouter:
    def __init__(self) -> None:
        self._commands: dict[str, CommandSpec] = {}

    def register(self, spec: CommandSpec) -> None:
        self._commands[spec.name] = spec

    @property
    def names(self) -> list[str]:
        return sorted(self._commands)

    def help(self) -> Message:
        lines = [f"{spec.usage} — {spec.summary}" for spec in sorted(self._commands.values(), key=lambda s: s.name)]
        return reply("Here's what I understand:\n" + "\n".join(lines))

    async def handle_text(self, ctx: Context, text: str) -> list[Message]:
        """Run one typed command as `ctx.actor`; returns the replies to show them."""
        invocation = split_invocation(text)
        if invocation is None:
            return [reply("I didn't catch a command there. Type /deal help, or /help for everything I can do.")]
        name, args = invocation
        return await self.run(ctx, name, args, raw=text)

    async def run(self, ctx: Context, name: str, args: str, *, raw: str | None = None) -> list[Message]:
        spec = self._commands.get(name)
        if spec is None or name == "help":
            return [self.help()]
        if ctx.actor is None and not spec.public:
            result = CommandResult([reply(not_in_engagement(ctx))], action=name, outcome="denied")
        else:
            try:
                result = await spec.handler(ctx, args)
            except GrammarError as exc:
                result = CommandResult([reply(f"{exc.message}\n{spec.usage}")], action=name, outcome="rejected")
            except AmbiguousDeal as exc:
                result = CommandResult([_ambiguity_question(name, args, exc)], action=name, outcome="ambiguous")
            except Conflict as exc:
                card = await deal_views.conflict_card(ctx, exc.deal, exc.message)
                result = CommandResult([card], action=name, outcome=exc.outcome, target=f"deal:{exc.deal.id}")
            except DealError as exc:
                result = CommandResult([reply(exc.message)], action=name, outcome=exc.outcome)
        if result.outcome not in READ_OUTCOMES:
            async with ctx.db.session() as session:
                audit.record(
                    session,
                    at=ctx.now(),
                    channel=ctx.channel,
                    action=result.action,
                    outcome=result.outcome,
                    engagement_id=ctx.engagement.id,
                    actor_id=ctx.actor.id if ctx.actor else None,
                    actor_ref=ctx.actor_ref,
                    target=result.target,
                    detail={"text": raw if raw is not None else f"/{name} {args}", **result.detail},
                )
        return result.messages


def _ambiguity_question(name: str, args: str, exc: AmbiguousDeal) -> Message:
    """Offer each candidate as a button that re-runs the same command with the exact deal name."""
    rest = args.strip()
    typed = exc.typed
    index = rest.casefold().find(typed.casefold())
    buttons = []
    for _, candidate in exc.candidates[:5]:
        quoted = f'"{candidate}"'
        command = f"/{name} {rest[:index]}{quoted}{rest[index + len(typed) :]}" if index >= 0 else f"/{name} {quoted}"
        buttons.append(Button(label=candidate, action_id="run_command", value=command, command=command))
    return Message(text=exc.message, blocks=[Paragraph(text=exc.message), Actions(buttons=buttons)], ephemeral=True)
