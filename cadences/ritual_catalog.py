"""Every ritual the engine runs, in one list (the engine, `cadence simulate` and the tests share it)."""

from __future__ import annotations

from cadences.debriefs import DebriefFollowUp, DebriefPrompt
from cadences.rituals import Ritual


def all_rituals() -> list[Ritual]:
    return [DebriefPrompt(), DebriefFollowUp()]
