"""Tests for cadences.parsing: amounts and dates as people type them in chat."""

from dataclasses import FrozenInstanceError
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cadences.parsing import (
    AmbiguousInput,
    Money,
    ParseError,
    format_money,
    format_money_short,
    parse_amount,
    parse_date,
)

# A Tuesday, so "next occurrence" cases have both earlier and later dates.
TODAY = date(2026, 11, 24)


def _assert_friendly(error: ParseError) -> None:
    assert error.message
    assert "\n" not in error.message
    assert str(error) == error.message


# --- parse_amount: accepted ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "amount", "currency"),
    [
        ("48k", "48000.00", "USD"),
        ("48K", "48000.00", "USD"),
        ("$48,000", "48000.00", "USD"),
        ("1.2m", "1200000.00", "USD"),
        ("2.5M", "2500000.00", "USD"),
        ("48000.50", "48000.50", "USD"),
        ("€50k", "50000.00", "EUR"),
        ("£1,200", "1200.00", "GBP"),
        ("50k USD", "50000.00", "USD"),
        ("USD 50k", "50000.00", "USD"),
        ("usd 50000", "50000.00", "USD"),
        ("120000", "120000.00", "USD"),
        ("1,234.56", "1234.56", "USD"),
        (" $ 48k ", "48000.00", "USD"),
        ("50\u00a0k", "50000.00", "USD"),  # non-breaking space from a chat client
        ("CHF 50,000", "50000.00", "CHF"),
        ("50k sek", "50000.00", "SEK"),
        ("jpy 1.5m", "1500000.00", "JPY"),
        ("$50k CAD", "50000.00", "CAD"),  # "$" is the generic dollar sign
        ("€50k EUR", "50000.00", "EUR"),
        ("50k TRY", "50000.00", "TRY"),  # word-like code accepted in capitals
        ("0", "0.00", "USD"),
        ("$0", "0.00", "USD"),
        (".5k", "500.00", "USD"),
        ("5mm", "5000000.00", "USD"),
        ("2bn", "2000000000.00", "USD"),
        ("1.2345678k", "1234.57", "USD"),  # extra precision is fine with a suffix
        ("1,000,000,000,000", "1000000000000.00", "USD"),  # exactly the cap
    ],
)
def test_parse_amount_accepts(typed: str, amount: str, currency: str) -> None:
    money = parse_amount(typed, "usd")
    assert money == Money(Decimal(amount), currency)
    assert money.amount.as_tuple().exponent == -2  # always quantised to cents


def test_parse_amount_uses_default_currency() -> None:
    assert parse_amount("48k", "EUR") == Money(Decimal("48000.00"), "EUR")
    assert parse_amount("$48k", "EUR").currency == "USD"


def test_parse_amount_is_exact_decimal_arithmetic() -> None:
    # 1.1 * 1_000_000 in float is 1100000.0000000002; Decimal keeps it exact.
    money = parse_amount("1.1m", "USD")
    assert isinstance(money.amount, Decimal)
    assert money.amount == Decimal("1100000")


def test_parse_amount_rejects_bad_default_currency() -> None:
    with pytest.raises(ValueError, match="default_currency") as info:
        parse_amount("48k", "dollars")
    assert not isinstance(info.value, ParseError)  # configuration bug, not user input


# --- parse_amount: rejected ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("-5k", "Amounts can't be negative."),
        ("($5k)", "Amounts can't be negative."),
        ("$-5k", "Amounts can't be negative."),
        ("USD -5k", "Amounts can't be negative."),
        ("fifty", 'I couldn\'t read "fifty" as an amount — try 48k, $48,000 or 1.2m.'),
    ],
)
def test_parse_amount_exact_messages(typed: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_amount(typed, "USD")
    assert info.value.message == message


@pytest.mark.parametrize(
    ("typed", "fragment"),
    [
        ("", "Please type an amount"),
        ("   ", "Please type an amount"),
        ("1,2,3", "thousands separators"),
        ("12,34", "use a dot for decimals"),
        ("1,5k", "e.g. 1.5k rather than 1,5k"),
        ("1.234,56", "a dot for decimals"),
        ("1.2.3", "a dot for decimals"),
        ("48000.505", "3 decimal places"),
        ("1000000000000.01", "more than 1 trillion"),
        ("2000b", "more than 1 trillion"),
        ("$50k EUR", "two currencies ($ and EUR)"),
        ("£5k USD", "two currencies"),
        ("USD 5k EUR", "two currencies"),
        ("50k XYZ", 'don\'t recognise the currency "XYZ"'),
        ("try 50k", "couldn't read"),  # lower-case word, not Turkish lira
        ("--5k", "couldn't read"),
        ("5-10k", "couldn't read"),
        ("1e6", "couldn't read"),
        ("NaN", "couldn't read"),
        ("48k!", "couldn't read"),
        ("$$5", "couldn't read"),
        ("5" * 100, "couldn't read"),
    ],
)
def test_parse_amount_rejects(typed: str, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_amount(typed, "USD")
    assert fragment in info.value.message
    assert not isinstance(info.value, AmbiguousInput)  # amounts are never offered as a choice
    _assert_friendly(info.value)


def test_long_input_is_truncated_in_the_message() -> None:
    with pytest.raises(ParseError) as info:
        parse_amount("x" * 200, "USD")
    assert len(info.value.message) < 120


amount_like = st.from_regex(
    r"\A[ (\-$€£]{0,2}(usd|EUR|Try|xyz)? ?[0-9.,]{1,14} ?(k|M|mm|bn)? ?(usd|EUR|chf|ABC)?[ )]{0,2}\Z"
)


@given(text=st.one_of(st.text(), amount_like))
@example(text="1" * 64)
@example(text="0." + "0" * 60 + "1k")
@example(text="9" * 30 + "bn")
def test_parse_amount_only_ever_raises_parse_error(text: str) -> None:
    try:
        money = parse_amount(text, "USD")
    except ParseError as error:
        _assert_friendly(error)
    else:
        assert Decimal(0) <= money.amount <= Decimal(10**12)
        assert money.amount.as_tuple().exponent == -2
        assert len(money.currency) == 3 and money.currency.isupper()


@given(
    amount=st.decimals(min_value=0, max_value=10**12, places=2, allow_nan=False, allow_infinity=False),
    currency=st.sampled_from(["USD", "EUR", "GBP", "CHF", "JPY", "SEK"]),
)
def test_format_money_round_trips_through_parse_amount(amount: Decimal, currency: str) -> None:
    assert parse_amount(format_money(amount, currency), "USD") == Money(amount, currency)


def test_money_is_immutable_and_prints_nicely() -> None:
    money = Money(Decimal("48000.50"), "USD")
    with pytest.raises(FrozenInstanceError):
        money.amount = Decimal(0)  # type: ignore[misc]
    assert str(money) == "$48,000.50"


# --- parse_date: accepted -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        # ISO
        ("2026-12-15", date(2026, 12, 15)),
        ("2026/12/15", date(2026, 12, 15)),
        ("2020-01-01", date(2020, 1, 1)),  # past dates are the caller's call
        # month names
        ("Dec 15", date(2026, 12, 15)),
        ("15 Dec", date(2026, 12, 15)),
        ("December 15", date(2026, 12, 15)),
        ("dec 15th", date(2026, 12, 15)),
        ("Dec. 15", date(2026, 12, 15)),
        ("Dec 15 2026", date(2026, 12, 15)),
        ("Dec 15, 2026", date(2026, 12, 15)),
        ("15 December 2026", date(2026, 12, 15)),
        ("15th of December", date(2026, 12, 15)),
        ("Sept 1", date(2027, 9, 1)),
        # without a year: next occurrence on or after today
        ("Nov 24", date(2026, 11, 24)),
        ("Nov 23", date(2027, 11, 23)),
        ("Jan 5", date(2027, 1, 5)),
        ("Feb 29", date(2028, 2, 29)),  # next leap year
        # relative
        ("today", TODAY),
        ("  TODAY ", TODAY),
        ("tomorrow", date(2026, 11, 25)),
        ("+0d", TODAY),
        ("+30d", date(2026, 12, 24)),
        ("+2w", date(2026, 12, 8)),
        ("+3m", date(2027, 2, 24)),
        ("+1y", date(2027, 11, 24)),
        ("+ 10 days", date(2026, 12, 4)),
        # slashes with a single valid reading
        ("12/31", date(2026, 12, 31)),
        ("31/12", date(2026, 12, 31)),
        ("12/31/2026", date(2026, 12, 31)),
        ("31/12/2026", date(2026, 12, 31)),
        ("31/12/26", date(2026, 12, 31)),
        ("5/5", date(2027, 5, 5)),  # same number both ways is not ambiguous
        ("5/5/2026", date(2026, 5, 5)),
        ("2/29", date(2028, 2, 29)),
    ],
)
def test_parse_date_accepts(typed: str, expected: date) -> None:
    assert parse_date(typed, TODAY) == expected


@pytest.mark.parametrize(
    ("today", "typed", "expected"),
    [
        (date(2026, 1, 31), "+1m", date(2026, 2, 28)),  # clamp to month end
        (date(2024, 1, 31), "+1m", date(2024, 2, 29)),
        (date(2026, 8, 31), "+3m", date(2026, 11, 30)),
        (date(2024, 2, 29), "+1y", date(2025, 2, 28)),
        (date(2026, 12, 31), "tomorrow", date(2027, 1, 1)),
    ],
)
def test_parse_date_relative_edges(today: date, typed: str, expected: date) -> None:
    assert parse_date(typed, today) == expected


@pytest.mark.parametrize(
    ("typed", "fy_start", "expected"),
    [
        ("eom", 1, date(2026, 11, 30)),
        ("eom", 2, date(2026, 11, 30)),  # months are months
        ("eoq", 1, date(2026, 12, 31)),
        ("eoq", 2, date(2027, 1, 31)),  # Nov-Jan quarter
        ("eoq", 7, date(2026, 12, 31)),
        ("eoy", 1, date(2026, 12, 31)),
        ("eoy", 2, date(2027, 1, 31)),
        ("eoy", 7, date(2027, 6, 30)),
        ("EOQ", 10, date(2026, 12, 31)),
    ],
)
def test_parse_date_period_keywords(typed: str, fy_start: int, expected: date) -> None:
    assert parse_date(typed, TODAY, fy_start) == expected


# --- parse_date: ambiguous and rejected ---------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "options"),
    [
        ("12/11", ["2026-12-11", "2027-11-12"]),  # 12 Nov has passed this year
        ("12/11/2026", ["2026-12-11", "2026-11-12"]),
        ("1/2", ["2027-01-02", "2027-02-01"]),
    ],
)
def test_parse_date_refuses_to_guess_ambiguous_slash_dates(typed: str, options: list[str]) -> None:
    with pytest.raises(AmbiguousInput) as info:
        parse_date(typed, TODAY)
    error = info.value
    assert error.options == options
    assert isinstance(error, ParseError)  # callers catching ParseError still see it
    assert f'"{typed}"' in error.message
    assert "which did you mean" in error.message
    for option in options:
        assert option in error.message  # suggests typing the ISO form
    _assert_friendly(error)


@pytest.mark.parametrize(
    ("typed", "fragment"),
    [
        ("Feb 30", "isn't a real date"),
        ("Feb 29 2027", "isn't a real date"),
        ("2026-13-01", "isn't a real date"),
        ("2026-02-30", "isn't a real date"),
        ("31/11", "isn't a real date"),
        ("13/13", "isn't a real date"),
        ("2/29/2027", "isn't a real date"),
        ("blah", "couldn't read"),
        ("Decembr 15", "couldn't read"),
        ("next week", "couldn't read"),
        ("-3d", "couldn't read"),
        ("+3q", "couldn't read"),
        ("15.12.2026", "couldn't read"),
    ],
)
def test_parse_date_rejects(typed: str, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_date(typed, TODAY)
    message = info.value.message
    assert fragment in message
    assert f'"{typed}"' in message  # names what was typed ...
    assert "2026-12-15" in message and "+30d" in message  # ... and what would work
    assert not isinstance(info.value, AmbiguousInput)
    _assert_friendly(info.value)


def test_parse_date_empty() -> None:
    with pytest.raises(ParseError, match="Please type a date"):
        parse_date("  ", TODAY)


def test_parse_date_out_of_calendar_range_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="outside the range"):
        parse_date("+9999y", TODAY)
    with pytest.raises(ParseError, match="outside the range"):
        parse_date("tomorrow", date.max)


@pytest.mark.parametrize("bad_month", [0, 13])
def test_parse_date_rejects_bad_fiscal_config(bad_month: int) -> None:
    with pytest.raises(ValueError, match="fiscal_year_start_month"):
        parse_date("today", TODAY, bad_month)


date_like = st.from_regex(
    r"\A ?(\+ ?[0-9]{1,6} ?(d|w|m|y|days|months)|[0-9]{1,4}[-/][0-9]{1,2}([-/][0-9]{1,4})?"
    r"|(dec|feb|sept|xyz) ?[0-9]{1,3}(th)?(,? [0-9]{2,5})?|eo[mqy]|today|tomorrow) ?\Z"
)


@given(
    text=st.one_of(st.text(), date_like),
    today=st.dates(),
    fy_start=st.integers(min_value=1, max_value=12),
)
@example(text="eoy", today=date.max, fy_start=2)
@example(text="Feb 29", today=date(9999, 3, 1), fy_start=1)
def test_parse_date_only_ever_raises_parse_error(text: str, today: date, fy_start: int) -> None:
    try:
        result = parse_date(text, today, fy_start)
    except AmbiguousInput as error:
        assert len(error.options) == 2
        _assert_friendly(error)
    except ParseError as error:
        _assert_friendly(error)
    else:
        assert isinstance(result, date)


# --- formatting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("48000", "USD", "$48,000"),
        ("48000.00", "USD", "$48,000"),  # no ".00" noise
        ("48000.50", "USD", "$48,000.50"),
        ("48000.5", "usd", "$48,000.50"),
        ("0.5", "USD", "$0.50"),
        ("0", "USD", "$0"),
        ("50000", "EUR", "€50,000"),
        ("1200", "GBP", "£1,200"),
        ("50000", "CHF", "CHF 50,000"),
        ("50000", "CAD", "CAD 50,000"),  # not "$": that would read as USD
        ("1234567.891", "USD", "$1,234,567.89"),
        ("-5000", "USD", "-$5,000"),
    ],
)
def test_format_money(amount: str, currency: str, expected: str) -> None:
    assert format_money(Decimal(amount), currency) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("48000", "USD", "$48k"),
        ("48500", "USD", "$48.5k"),
        ("1200000", "USD", "$1.2M"),
        ("950", "USD", "$950"),
        ("950.50", "USD", "$950.50"),
        ("2500000", "EUR", "€2.5M"),
        ("1000", "GBP", "£1k"),
        ("1050", "USD", "$1.1k"),  # half-up
        ("999999", "USD", "$1M"),  # not "$1000k"
        ("999.999", "USD", "$1k"),  # not "$1,000"
        ("1500000000", "USD", "$1.5B"),
        ("1000000000000", "USD", "$1T"),
        ("48000", "CHF", "CHF 48k"),
        ("-48000", "USD", "-$48k"),
        ("0", "USD", "$0"),
    ],
)
def test_format_money_short(amount: str, currency: str, expected: str) -> None:
    assert format_money_short(Decimal(amount), currency) == expected
