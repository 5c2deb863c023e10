"""The authorization matrix: which role may do what, decided in one place for every platform.

Deal ownership matters only for reps (they change their own deals). Founders read everything and
change nothing: the point of the engagement is that the system runs without the founder's hands on it.
"""

from __future__ import annotations

from enum import StrEnum

from storage.models import Person, Role


class Action(StrEnum):
    READ_DEALS = "deal.read"
    CREATE_DEAL = "deal.create"
    EDIT_DEAL = "deal.edit"
    REASSIGN_DEAL = "deal.reassign"
    RUN_RITUAL = "ritual.run"
    PAUSE_CADENCE = "cadence.pause"
    CALL_FORECAST = "forecast.call"
    RECORD_DECISION = "review.record"
    UPDATE_PLAN = "plan.update"
    VIEW_DIGEST = "digest.view"


_ALL = frozenset(Role)
_OPERATORS = frozenset({Role.CRO, Role.MANAGER})

# action -> (roles allowed on anything, roles allowed only on what they own)
MATRIX: dict[Action, tuple[frozenset[Role], frozenset[Role]]] = {
    Action.READ_DEALS: (_ALL, frozenset()),
    Action.CREATE_DEAL: (_OPERATORS | {Role.REP}, frozenset()),
    Action.EDIT_DEAL: (_OPERATORS, frozenset({Role.REP})),
    Action.REASSIGN_DEAL: (_OPERATORS, frozenset()),
    Action.RUN_RITUAL: (_OPERATORS, frozenset()),
    Action.PAUSE_CADENCE: (frozenset({Role.CRO}), frozenset()),
    Action.CALL_FORECAST: (_OPERATORS, frozenset()),
    Action.RECORD_DECISION: (_OPERATORS, frozenset({Role.REP})),
    Action.UPDATE_PLAN: (_OPERATORS | {Role.FOUNDER}, frozenset({Role.REP})),
    Action.VIEW_DIGEST: (frozenset({Role.CRO, Role.FOUNDER, Role.MANAGER}), frozenset()),
}


def allowed(person: Person, action: Action, *, owns: bool = False) -> bool:
    """True when `person` may do `action`; `owns` says whether the target is theirs."""
    if not person.active:
        return False
    anyone, owners = MATRIX[action]
    role = Role(person.role)
    return role in anyone or (owns and role in owners)


def denial(action: Action) -> str:
    """What to tell someone who may not do `action`, in words that say why and who can."""
    return {
        Action.EDIT_DEAL: "Reps can change only their own deals; ask the deal's owner, a manager or the CRO.",
        Action.CREATE_DEAL: "Founders can read every deal but not create them; ask a rep, a manager or the CRO.",
        Action.REASSIGN_DEAL: "Only a manager or the CRO can move a deal to another owner.",
        Action.RUN_RITUAL: "Only the ritual's host, a manager or the CRO can run it.",
        Action.PAUSE_CADENCE: "Only the CRO can pause or resume the cadence.",
        Action.CALL_FORECAST: "Only the forecast owner, a manager or the CRO can call the forecast.",
    }.get(action, "You don't have permission to do that in this engagement.")
