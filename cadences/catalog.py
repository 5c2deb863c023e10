"""Every command the bot understands, registered in one place for all platforms."""

from __future__ import annotations

from cadences import deal_commands, debrief_commands, plan_commands, review_commands, schedule_commands
from cadences.commands import CommandRouter
from cadences.digest_commands import SPEC as DIGEST_SPEC


def build_router() -> CommandRouter:
    router = CommandRouter()
    router.register(deal_commands.SPEC)
    router.register(review_commands.SPEC)
    router.register(debrief_commands.SPEC)
    schedule_commands.register()
    router.register(plan_commands.SPEC)
    router.register(DIGEST_SPEC)
    return router
