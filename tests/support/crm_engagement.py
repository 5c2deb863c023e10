"""A CRM-shaped engagement built directly from models: stages carry HubSpot and Salesforce labels."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from storage.db import Database
from storage.models import Engagement, Person, Stage

SLUG = "acme"


async def add_test_engagement(db: Database, slug: str = SLUG) -> str:
    """An engagement like the example: a CRO, a founder, a manager, four reps and a five-stage pipeline
    whose stages carry HubSpot internal names and Salesforce labels as `crm_names`."""
    async with db.write() as s:
        eng = Engagement(
            slug=slug, company="Acme Analytics", start_date=date(2026, 9, 1), exit_date=date(2027, 5, 31),
            timezone="America/Los_Angeles", currency="USD", quota_per_quarter=Decimal(600_000),
            fiscal_year_start_month=1, holidays=[], settings={},
        )  # fmt: skip
        s.add(eng)
        await s.flush()
        people = [
            ("dana", "Dana Whitfield", "cro"), ("sam", "Sam Okafor", "founder"), ("morgan", "Morgan Lee", "manager"),
            ("priya", "Priya Raman", "rep"), ("jordan", "Jordan Blake", "rep"), ("alex", "Alex Moreno", "rep"),
            ("casey", "Casey Nguyen", "rep"),
        ]  # fmt: skip
        s.add_all(
            Person(engagement_id=eng.id, key=k, name=n, email=f"{k}@acme.example", role=r, timezone=None)
            for k, n, r in people
        )
        stages = [
            ("discovery", "Discovery", 10, "open", ["appointmentscheduled", "Prospecting"]),
            ("qualification", "Qualification", 25, "open", ["qualifiedtobuy", "Qualification", "Needs Analysis"]),
            ("solution", "Solution", 50, "open", ["presentationscheduled", "Value Proposition"]),
            ("proposal", "Proposal", 70, "open", ["decisionmakerboughtin", "Proposal/Price Quote", "Proposal",
                                                  "Price Quote"]),
            ("negotiation", "Negotiation", 85, "open", ["contractsent", "Negotiation/Review", "Negotiation",
                                                        "Review"]),
            ("closed_won", "Closed won", 100, "won", ["closedwon", "Closed Won"]),
            ("closed_lost", "Closed lost", 0, "lost", ["closedlost", "Closed Lost"]),
        ]  # fmt: skip
        s.add_all(
            Stage(engagement_id=eng.id, key=k, name=n, position=i, probability_pct=p, kind=kind, crm_names=crm)
            for i, (k, n, p, kind, crm) in enumerate(stages)
        )
    return slug
