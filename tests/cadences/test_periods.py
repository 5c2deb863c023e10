"""Tests for cadences.periods: fiscal calendars and business-day arithmetic."""

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cadences.periods import (
    add_business_days,
    business_days_between,
    end_of_month,
    fiscal_quarter_bounds,
    fiscal_year_bounds,
    is_business_day,
    iso_week_key,
    next_business_day_on_or_after,
    previous_business_day,
    quarter_label,
)

D = date
NO_HOLIDAYS: frozenset[date] = frozenset()
# US-style holidays around Thanksgiving/Christmas 2026 (Thu 26 Nov, Fri 25 Dec).
HOLIDAYS = frozenset({D(2026, 11, 26), D(2026, 12, 25), D(2027, 1, 1)})

reasonable_dates = st.dates(min_value=D(1900, 1, 1), max_value=D(2200, 12, 31))
start_months = st.integers(min_value=1, max_value=12)
holiday_sets = st.frozensets(
    st.dates(min_value=D(2025, 12, 1), max_value=D(2027, 2, 1)),
    max_size=30,
)
dates_near_holidays = st.dates(min_value=D(2026, 1, 1), max_value=D(2026, 12, 31))


# --- fiscal calendar ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "fy_start", "expected"),
    [
        # calendar-year company
        (D(2026, 11, 24), 1, (D(2026, 10, 1), D(2026, 12, 31))),
        (D(2026, 1, 1), 1, (D(2026, 1, 1), D(2026, 3, 31))),
        # Feb start: quarters begin Feb / May / Aug / Nov
        (D(2026, 11, 24), 2, (D(2026, 11, 1), D(2027, 1, 31))),
        (D(2026, 1, 15), 2, (D(2025, 11, 1), D(2026, 1, 31))),
        (D(2026, 2, 1), 2, (D(2026, 2, 1), D(2026, 4, 30))),
        # July start (many universities, AU/NZ companies)
        (D(2026, 7, 4), 7, (D(2026, 7, 1), D(2026, 9, 30))),
        (D(2026, 6, 30), 7, (D(2026, 4, 1), D(2026, 6, 30))),
        # December start; the quarter ends on a leap day
        (D(2024, 2, 29), 12, (D(2023, 12, 1), D(2024, 2, 29))),
    ],
)
def test_fiscal_quarter_bounds(day: date, fy_start: int, expected: tuple[date, date]) -> None:
    assert fiscal_quarter_bounds(day, fy_start) == expected


@pytest.mark.parametrize(
    ("day", "fy_start", "expected"),
    [
        (D(2026, 11, 24), 1, (D(2026, 1, 1), D(2026, 12, 31))),
        (D(2026, 11, 24), 2, (D(2026, 2, 1), D(2027, 1, 31))),
        (D(2026, 1, 31), 2, (D(2025, 2, 1), D(2026, 1, 31))),
        (D(2026, 7, 1), 7, (D(2026, 7, 1), D(2027, 6, 30))),
        (D(2026, 3, 31), 4, (D(2025, 4, 1), D(2026, 3, 31))),
        (D(2026, 10, 1), 10, (D(2026, 10, 1), D(2027, 9, 30))),
    ],
)
def test_fiscal_year_bounds(day: date, fy_start: int, expected: tuple[date, date]) -> None:
    assert fiscal_year_bounds(day, fy_start) == expected


@pytest.mark.parametrize(
    ("day", "fy_start", "label"),
    [
        (D(2026, 11, 24), 1, "FY2026 Q4"),  # never "Q4 2026"
        (D(2026, 1, 1), 1, "FY2026 Q1"),
        (D(2026, 2, 1), 2, "FY2027 Q1"),  # named for the year it ends in
        (D(2026, 1, 31), 2, "FY2026 Q4"),
        (D(2026, 11, 24), 2, "FY2027 Q4"),
        (D(2026, 7, 1), 7, "FY2027 Q1"),
        (D(2026, 6, 30), 7, "FY2026 Q4"),
        (D(2026, 4, 1), 4, "FY2027 Q1"),
        (D(2026, 10, 1), 10, "FY2027 Q1"),  # US federal fiscal year
        (D(2026, 9, 30), 10, "FY2026 Q4"),
    ],
)
def test_quarter_label(day: date, fy_start: int, label: str) -> None:
    assert quarter_label(day, fy_start) == label


@pytest.mark.parametrize("bad_month", [0, 13, -1])
def test_fiscal_functions_reject_bad_start_month(bad_month: int) -> None:
    for fn in (fiscal_quarter_bounds, fiscal_year_bounds, quarter_label):
        with pytest.raises(ValueError, match="fiscal_year_start_month"):
            fn(D(2026, 5, 5), bad_month)


@given(day=reasonable_dates, fy_start=start_months)
def test_quarters_tile_the_fiscal_year(day: date, fy_start: int) -> None:
    fy_start_day, fy_end_day = fiscal_year_bounds(day, fy_start)
    assert fy_start_day <= day <= fy_end_day
    assert fy_start_day.day == 1 and fy_start_day.month == fy_start

    # Walk the four quarters from the start of the fiscal year: contiguous,
    # three months each, ending exactly at the end of the fiscal year.
    cursor = fy_start_day
    for n in range(1, 5):
        q_start, q_end = fiscal_quarter_bounds(cursor, fy_start)
        assert q_start == cursor
        assert q_end == end_of_month(q_end)
        assert (q_end.year * 12 + q_end.month) - (q_start.year * 12 + q_start.month) == 2
        assert quarter_label(cursor, fy_start) == f"FY{fy_end_day.year} Q{n}"
        cursor = q_end + timedelta(days=1)
    assert cursor == fy_end_day + timedelta(days=1)


@given(day=reasonable_dates, fy_start=start_months)
def test_day_lies_in_its_quarter(day: date, fy_start: int) -> None:
    q_start, q_end = fiscal_quarter_bounds(day, fy_start)
    assert q_start <= day <= q_end
    assert (q_start.month - fy_start) % 3 == 0


# --- months and weeks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (D(2026, 1, 15), D(2026, 1, 31)),
        (D(2026, 2, 1), D(2026, 2, 28)),
        (D(2024, 2, 10), D(2024, 2, 29)),  # leap year
        (D(1900, 2, 10), D(1900, 2, 28)),  # century, not a leap year
        (D(2000, 2, 10), D(2000, 2, 29)),  # 400-year rule
        (D(2026, 4, 30), D(2026, 4, 30)),
        (D(2026, 12, 1), D(2026, 12, 31)),
        (D(9999, 12, 5), D(9999, 12, 31)),  # no overflow into year 10000
    ],
)
def test_end_of_month(day: date, expected: date) -> None:
    assert end_of_month(day) == expected


@pytest.mark.parametrize(
    ("day", "key"),
    [
        (D(2026, 11, 24), "2026-W48"),
        (D(2026, 1, 1), "2026-W01"),  # a Thursday: week 1 of its own year
        (D(2027, 1, 1), "2026-W53"),  # a Friday: still in 2026's last ISO week
        (D(2024, 12, 30), "2025-W01"),  # a Monday: already 2025's first ISO week
    ],
)
def test_iso_week_key(day: date, key: str) -> None:
    assert iso_week_key(day) == key


# --- business days ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (D(2026, 11, 24), True),  # Tuesday
        (D(2026, 11, 26), False),  # Thursday, but a holiday
        (D(2026, 11, 27), True),  # Friday
        (D(2026, 11, 28), False),  # Saturday
        (D(2026, 11, 29), False),  # Sunday
    ],
)
def test_is_business_day(day: date, expected: bool) -> None:
    assert is_business_day(day, HOLIDAYS) is expected


def test_plain_set_of_holidays_is_accepted() -> None:
    assert is_business_day(D(2026, 11, 26), {D(2026, 11, 26)}) is False
    assert add_business_days(D(2026, 11, 25), 1, {D(2026, 11, 26)}) == D(2026, 11, 27)


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (D(2026, 11, 24), 0, D(2026, 11, 24)),  # business day stays put
        (D(2026, 11, 28), 0, D(2026, 11, 30)),  # Saturday rolls to Monday
        (D(2026, 11, 26), 0, D(2026, 11, 27)),  # holiday rolls forward
        (D(2026, 11, 24), 1, D(2026, 11, 25)),
        (D(2026, 11, 24), 2, D(2026, 11, 27)),  # skips Thanksgiving
        (D(2026, 11, 27), 1, D(2026, 11, 30)),  # Friday + 1 = Monday
        (D(2026, 11, 28), 1, D(2026, 11, 30)),  # Saturday + 1 = Monday
        (D(2026, 12, 18), 5, D(2026, 12, 28)),  # skips weekend and Christmas
        (D(2026, 11, 30), -1, D(2026, 11, 27)),  # Monday - 1 = Friday
        (D(2026, 11, 28), -1, D(2026, 11, 27)),  # Saturday - 1 = Friday
        (D(2026, 11, 27), -1, D(2026, 11, 25)),  # skips Thanksgiving backwards
        (D(2027, 1, 4), -3, D(2026, 12, 29)),  # skips New Year's Day and weekend
    ],
)
def test_add_business_days(start: date, n: int, expected: date) -> None:
    assert add_business_days(start, n, HOLIDAYS) == expected


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (D(2026, 11, 25), D(2026, 11, 25)),
        (D(2026, 11, 26), D(2026, 11, 27)),
        (D(2026, 11, 28), D(2026, 11, 30)),
        (D(2026, 12, 25), D(2026, 12, 28)),
    ],
)
def test_next_business_day_on_or_after(day: date, expected: date) -> None:
    assert next_business_day_on_or_after(day, HOLIDAYS) == expected


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (D(2026, 11, 25), D(2026, 11, 24)),  # strictly before, even on a business day
        (D(2026, 11, 27), D(2026, 11, 25)),  # skips the holiday
        (D(2026, 11, 30), D(2026, 11, 27)),  # Monday -> Friday
        (D(2026, 11, 29), D(2026, 11, 27)),  # Sunday -> Friday
    ],
)
def test_previous_business_day(day: date, expected: date) -> None:
    assert previous_business_day(day, HOLIDAYS) == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (D(2026, 11, 24), D(2026, 11, 24), 0),  # empty interval
        (D(2026, 11, 24), D(2026, 11, 25), 1),  # end is included
        (D(2026, 11, 24), D(2026, 11, 27), 2),  # Wed, Fri (Thu is a holiday)
        (D(2026, 11, 27), D(2026, 11, 30), 1),  # over a weekend; start excluded
        (D(2026, 11, 28), D(2026, 11, 29), 0),  # weekend only
        (D(2026, 12, 1), D(2026, 12, 31), 21),  # 22 weekdays minus Christmas
        (D(2026, 11, 27), D(2026, 11, 24), -2),  # reversed: negative
    ],
)
def test_business_days_between(start: date, end: date, expected: int) -> None:
    assert business_days_between(start, end, HOLIDAYS) == expected


def _brute_force_between(start: date, end: date, holidays: frozenset[date]) -> int:
    count, day = 0, start
    while day < end:
        day += timedelta(days=1)
        count += is_business_day(day, holidays)
    return count


@given(
    start=dates_near_holidays,
    span=st.integers(min_value=0, max_value=60),
    holidays=holiday_sets,
)
def test_business_days_between_matches_day_by_day_count(start: date, span: int, holidays: frozenset[date]) -> None:
    end = start + timedelta(days=span)
    assert business_days_between(start, end, holidays) == _brute_force_between(start, end, holidays)
    assert business_days_between(end, start, holidays) == -business_days_between(start, end, holidays)


@given(start=dates_near_holidays, n=st.integers(min_value=1, max_value=40), holidays=holiday_sets)
def test_add_business_days_round_trips_with_between(start: date, n: int, holidays: frozenset[date]) -> None:
    forward = add_business_days(start, n, holidays)
    assert is_business_day(forward, holidays)
    assert business_days_between(start, forward, holidays) == n

    backward = add_business_days(start, -n, holidays)
    assert is_business_day(backward, holidays)
    # n business days in [backward, start), i.e. (backward - 1 day, start - 1 day]
    one = timedelta(days=1)
    assert business_days_between(backward - one, start - one, holidays) == n


@given(day=dates_near_holidays, holidays=holiday_sets)
def test_neighbouring_business_days(day: date, holidays: frozenset[date]) -> None:
    after = next_business_day_on_or_after(day, holidays)
    before = previous_business_day(day, holidays)
    assert before < day <= after
    # Nothing between them but non-business days, so exactly one is counted.
    assert business_days_between(before, after, holidays) == 1
