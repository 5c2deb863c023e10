"""What happens after a deal changes, wherever the change came from (text, modal, card, nudge button).

The deal service only records the change; this module lets the rituals react — a debrief prompt when
a deal is won, lost, slips or regresses; a nudge updated in place once its deal is fixed.
"""

from __future__ import annotations

from cadences import debriefs
from cadences.context import Context
from cadences.deals import Outcome


async def publish(ctx: Context, outcome: Outcome) -> None:
    """Tell the rituals about an accepted deal change (called after the change has committed)."""
    await debriefs.on_deal_change(ctx, outcome)
