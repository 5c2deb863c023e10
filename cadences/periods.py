"""Fiscal-calendar and business-day arithmetic.

Why this module exists: cadences ("remind me at end of quarter", "due in 5
business days") depend on a company's fiscal calendar, which rarely matches
the calendar year.  Keeping the arithmetic here -- pure, stdlib-only and free
of I/O or "now" -- lets the bot, the scheduler and the tests all agree on what
"end of Q3" means, and lets every rule be tested with fixed dates.

Conventions used throughout:

* ``fiscal_year_start_month`` is the calendar month (1..12) in which the
  fiscal year begins; quarters are the consecutive three-month blocks from it.
* A fiscal year is named after the calendar year in which it *ends* (the
  common US convention: a year running Feb 2026 - Jan 2027 is "FY2027").
* Holidays are supplied by the caller as a set of dates, because they are
  per-company and per-country configuration, not something to hard-code.
"""

from __future__ import annotations

from datetime import date, timedelta

Holidays = frozenset[date] | set[date]
"""A caller-supplied set of non-working dates (weekends need not be listed)."""

_ONE_DAY = timedelta(days=1)


def _check_start_month(fiscal_year_start_month: int) -> None:
    # A bad value here is a configuration bug, so fail loudly rather than
    # silently wrapping e.g. 13 around to January.
    if not 1 <= fiscal_year_start_month <= 12:
        raise ValueError(f"fiscal_year_start_month must be between 1 and 12, got {fiscal_year_start_month!r}")


def _month_index(d: date) -> int:
    """Months since year 0; makes "n months earlier" plain integer arithmetic."""
    return d.year * 12 + (d.month - 1)


def _first_of_month_index(index: int) -> date:
    year, month0 = divmod(index, 12)
    return date(year, month0 + 1, 1)


def _months_into_fiscal_year(d: date, fiscal_year_start_month: int) -> int:
    """0 for the first month of the fiscal year, 11 for the last."""
    return (d.month - fiscal_year_start_month) % 12


def end_of_month(d: date) -> date:
    """Last day of ``d``'s month.

    Computed as "first of next month minus a day" so leap years come for free;
    December is special-cased so ``date(9999, 12, x)`` does not overflow.
    """
    if d.month == 12:
        return date(d.year, 12, 31)
    return date(d.year, d.month + 1, 1) - _ONE_DAY


def fiscal_quarter_bounds(d: date, fiscal_year_start_month: int) -> tuple[date, date]:
    """First and last day of the fiscal quarter containing ``d``.

    With ``fiscal_year_start_month=2`` quarters start in Feb, May, Aug and Nov,
    so 2026-01-15 falls in the quarter 2025-11-01 .. 2026-01-31.
    """
    _check_start_month(fiscal_year_start_month)
    offset_in_quarter = _months_into_fiscal_year(d, fiscal_year_start_month) % 3
    start_index = _month_index(d) - offset_in_quarter
    start = _first_of_month_index(start_index)
    end = end_of_month(_first_of_month_index(start_index + 2))
    return start, end


def fiscal_year_bounds(d: date, fiscal_year_start_month: int) -> tuple[date, date]:
    """First and last day of the fiscal year containing ``d``."""
    _check_start_month(fiscal_year_start_month)
    start_index = _month_index(d) - _months_into_fiscal_year(d, fiscal_year_start_month)
    start = _first_of_month_index(start_index)
    end = end_of_month(_first_of_month_index(start_index + 11))
    return start, end


def quarter_label(d: date, fiscal_year_start_month: int) -> str:
    """Human label such as ``"FY2027 Q1"`` for the fiscal quarter containing ``d``.

    The fiscal year is named by the calendar year in which it ends, and the
    ``FY<year> Q<n>`` shape is used even for calendar-year companies
    (``fiscal_year_start_month=1``) so labels sort and compare uniformly.
    """
    _, fy_end = fiscal_year_bounds(d, fiscal_year_start_month)
    quarter = _months_into_fiscal_year(d, fiscal_year_start_month) // 3 + 1
    return f"FY{fy_end.year} Q{quarter}"


def iso_week_key(d: date) -> str:
    """ISO-8601 week key such as ``"2026-W48"``.

    Uses the ISO week-numbering year, not the calendar year, so that
    2027-01-01 (a Friday) correctly maps to ``"2026-W53"``; keys sort
    lexicographically in chronological order.
    """
    iso = d.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def is_business_day(d: date, holidays: Holidays) -> bool:
    """True for Monday-Friday dates that are not in ``holidays``."""
    return d.weekday() < 5 and d not in holidays


def next_business_day_on_or_after(d: date, holidays: Holidays) -> date:
    """``d`` itself if it is a business day, otherwise the next one after it.

    This is the "roll forward" rule for a due date that lands on a weekend or
    holiday.
    """
    while not is_business_day(d, holidays):
        d += _ONE_DAY
    return d


def previous_business_day(d: date, holidays: Holidays) -> date:
    """The latest business day strictly before ``d``."""
    d -= _ONE_DAY
    while not is_business_day(d, holidays):
        d -= _ONE_DAY
    return d


def add_business_days(d: date, n: int, holidays: Holidays) -> date:
    """Move ``n`` business days from ``d`` (backwards when ``n`` is negative).

    * ``n == 0`` rolls forward: ``d`` if it is a business day, else the next.
    * ``n > 0`` returns the n-th business day strictly after ``d``, so
      ``business_days_between(d, result) == n`` always holds.
    * ``n < 0`` returns the |n|-th business day strictly before ``d``.

    Starting from a non-business day is allowed: Saturday + 1 is Monday and
    Saturday - 1 is Friday, which is what people mean in chat.
    """
    if n == 0:
        return next_business_day_on_or_after(d, holidays)
    step = _ONE_DAY if n > 0 else -_ONE_DAY
    remaining = abs(n)
    while remaining:
        d += step
        if is_business_day(d, holidays):
            remaining -= 1
    return d


def business_days_between(start: date, end: date, holidays: Holidays) -> int:
    """Number of business days in the half-open interval ``(start, end]``.

    Half-open so that "due in N business days" round-trips with
    :func:`add_business_days` and consecutive intervals never double-count.
    If ``end`` is before ``start`` the result is negative (the count for the
    reversed interval), which makes "3 business days overdue" fall out
    naturally instead of silently reporting 0.

    Runs in O(len(holidays)) rather than O(days) by counting whole weeks.
    """
    if end < start:
        return -business_days_between(end, start, holidays)
    full_weeks, extra_days = divmod((end - start).days, 7)
    count = full_weeks * 5
    first_weekday = start.weekday()
    count += sum(1 for i in range(1, extra_days + 1) if (first_weekday + i) % 7 < 5)
    count -= sum(1 for h in holidays if start < h <= end and h.weekday() < 5)
    return count
