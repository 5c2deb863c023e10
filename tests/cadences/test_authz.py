"""The authorization matrix, cell by cell (role × action × ownership), and what a denial does: a clear
answer, an audit row, and no data crossing from one engagement to another."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from cadences.authz import Action, allowed
from storage.models import AuditLog, Person, Role
from support.engagements import FIXTURES, apply_file

R, M, C, F = Role.REP, Role.MANAGER, Role.CRO, Role.FOUNDER
# action -> roles allowed on anything, roles allowed on what they own (the matrix as the product defines it)
EXPECTED: dict[Action, tuple[set[Role], set[Role]]] = {
    Action.READ_DEALS: ({R, M, C, F}, {R, M, C, F}),
    Action.CREATE_DEAL: ({R, M, C}, {R, M, C}),
    Action.EDIT_DEAL: ({M, C}, {R, M, C}),
    Action.REASSIGN_DEAL: ({M, C}, {M, C}),
    Action.RUN_RITUAL: ({M, C}, {M, C}),
    Action.PAUSE_CADENCE: ({C}, {C}),
    Action.CALL_FORECAST: ({M, C}, {M, C}),
    Action.RECORD_DECISION: ({M, C}, {R, M, C}),
    Action.UPDATE_PLAN: ({M, C, F}, {R, M, C, F}),
    Action.VIEW_DIGEST: ({M, C, F}, {M, C, F}),
}
CELLS = [(action, role, owns) for action in Action for role in Role for owns in (False, True)]


@pytest.mark.parametrize(
    ("action", "role", "owns"), CELLS, ids=[f"{a.value}-{r.value}-{'own' if o else 'other'}" for a, r, o in CELLS]
)
def test_every_cell_of_the_matrix(action: Action, role: Role, owns: bool) -> None:
    person = Person(key="p", name="P", role=role.value, active=True)
    on_anything, on_own = EXPECTED[action]
    assert allowed(person, action, owns=owns) == (role in (on_own if owns else on_anything))


@pytest.mark.parametrize("role", list(Role))
def test_a_deactivated_person_may_do_nothing(role: Role) -> None:
    person = Person(key="p", name="P", role=role.value, active=False)
    assert not any(allowed(person, action, owns=True) for action in Action)


async def test_denials_are_audited_with_what_was_typed(world: Any) -> None:
    await world.say("jordan", '/deal new "Globex" amount=10k close=eoq')
    attempts = [
        ("priya", "/deal Globex amount=1k"),
        ("sam", "/deal Globex amount=1k"),
        ("maya", "/cadence pause"),
        ("jordan", "/pipeline start"),
        ("priya", "/digest preview"),
    ]
    for who, line in attempts:
        await world.say(who, line)
    async with world.db.session() as session:
        rows = await session.execute(select(AuditLog).where(AuditLog.outcome == "denied").order_by(AuditLog.id))
        denied = [(row.actor_ref, row.detail["text"]) for row in rows.scalars()]
    assert denied == attempts


async def test_no_data_crosses_engagements(world: Any, tmp_path: Any) -> None:
    other_file = tmp_path / "other.yaml"
    other_file.write_text(
        (FIXTURES / "engagement_small.yaml")
        .read_text()
        .replace("slug: acme-test", "slug: other")
        .replace("company: Testco", "company: Otherco")
        .replace("U0", "U9"),
        encoding="utf-8",
    )
    other = await apply_file(world.db, other_file, world.clock.now())
    await world.say("jordan", '/deal new "Globex" amount=10k close=eoq')
    from support.worlds import World

    elsewhere = World(world.db, world.clock, other)
    assert 'No deal matches "Globex"' in await elsewhere.text("jordan", "/deal show Globex")
    assert "no open deals" in await elsewhere.text("jordan", "/deal list")
    assert "Nothing is" not in await elsewhere.text("dana", "/pipeline")
    assert "$10,000" not in await elsewhere.text("dana", "/pipeline")
