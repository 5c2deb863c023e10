"""Column types that behave the same on SQLite and PostgreSQL.

SQLite has neither time zones nor exact decimals, so the two types here make both databases agree:
times are always stored and returned as aware UTC datetimes, and money is stored as integer minor
units (cents) so that `SUM()` is exact in SQL on both engines and Python always sees a `Decimal`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

_CENTS = Decimal(100)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime; naive values are refused so no local time is ever stored by accident."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} would be ambiguous; pass an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        assert isinstance(moment, datetime)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    """A Decimal amount with two places, stored as integer cents for exact SQL aggregates."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int((Decimal(value) * _CENTS).to_integral_value())

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return (Decimal(value) / _CENTS).quantize(Decimal("0.01"))
