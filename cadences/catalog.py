"""Every command the bot understands, registered in one place for all platforms."""

from __future__ import annotations

from cadences import debrief_commands, deal_commands
from cadences.commands import CommandRouter


def build_router() -> CommandRouter:
    router = CommandRouter()
    router.register(deal_commands.SPEC)
    router.register(debrief_commands.SPEC)
    return router
