"""Every ritual the engine runs, in one list (the engine, `cadence simulate` and the tests share it)."""

from __future__ import annotations

from cadences.debriefs import DebriefFollowUp, DebriefPrompt
from cadences.digest import FounderDigest
from cadences.handoff import ExitPlanning, HandoffOverdue, HandoffReminder, OwnerWarning
from cadences.milestones import MilestoneCheckin, MilestoneScorecard, OverdueChase
from cadences.pipeline_review import ActionReminder, LastCall, PipelineReview, PreReviewNudge
from cadences.rituals import Ritual


def all_rituals() -> list[Ritual]:
    return [
        DebriefPrompt(),
        DebriefFollowUp(),
        MilestoneCheckin(),
        MilestoneScorecard(),
        OverdueChase(),
        HandoffReminder(),
        HandoffOverdue(),
        ExitPlanning(),
        OwnerWarning(),
        PipelineReview(),
        PreReviewNudge(),
        LastCall(),
        ActionReminder(),
        FounderDigest(),
    ]
