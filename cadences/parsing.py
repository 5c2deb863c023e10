"""Parse the amounts and dates people type into chat, and format money back.

Why this module exists: users type into Slack, Teams or a console, in a hurry
and in many styles ("48k", "$48,000", "Dec 15th", "+2w", "12/11").  The bot
must either understand exactly what was meant or say, in one friendly line,
what it could not read and what to type instead.  It must never guess: a
value that could be read two ways (``12/11``) is handed back as a question
via :class:`AmbiguousInput` so the conversation can ask the user.

Design rules:

* Every user-caused failure is a :class:`ParseError` whose ``message`` is a
  single user-facing line; nothing else escapes for any input text, so
  callers can catch one exception type.
* Money is always :class:`~decimal.Decimal`, never ``float``, quantised to
  cents with ROUND_HALF_UP (the rounding people expect for money).
* Pure functions: "today" and the fiscal calendar are parameters, so results
  are reproducible and testable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from cadences.periods import end_of_month, fiscal_quarter_bounds, fiscal_year_bounds

__all__ = [
    "AmbiguousInput",
    "Money",
    "ParseError",
    "format_money",
    "format_money_short",
    "parse_amount",
    "parse_date",
]


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class ParseError(ValueError):
    """Input the bot could not understand.

    ``message`` is written for the person who typed the input (one line, no
    jargon) so handlers can reply with it verbatim.  Subclassing ValueError
    keeps it catchable by generic validation code.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message: str = message


class AmbiguousInput(ParseError):
    """Input with more than one sensible reading.

    ``options`` lists the readings (e.g. ISO dates) so the bot can offer them
    back as a question rather than silently picking one.
    """

    def __init__(self, message: str, options: list[str]) -> None:
        super().__init__(message)
        self.options: list[str] = list(options)


def _shown(text: str, limit: int = 40) -> str:
    """The user's text as echoed in messages: single line and not too long."""
    flat = " ".join(text.split()).replace('"', "'")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# Longest input worth trying to read; anything longer is not an amount or a
# date someone typed, and capping keeps Decimal and regex work trivially cheap.
_MAX_INPUT_CHARS = 64


# --------------------------------------------------------------------------
# Money
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Money:
    """An amount with its ISO 4217 currency code (e.g. ``"USD"``)."""

    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return format_money(self.amount, self.currency)


_CENTS = Decimal("0.01")
_MAX_AMOUNT = Decimal(1_000_000_000_000)

_SYMBOL_TO_CODE: dict[str, str] = {"$": "USD", "€": "EUR", "£": "GBP"}
_CODE_TO_SYMBOL: dict[str, str] = {code: sym for sym, code in _SYMBOL_TO_CODE.items()}

# "$" is the generic dollar sign, so "$50k CAD" is one currency, not two.
_DOLLAR_CODES = frozenset({"USD", "CAD", "AUD", "NZD", "SGD", "HKD"})

# Active ISO 4217 currencies (funds, metals and test codes excluded).
_ISO_CODES = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND
    BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF
    DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD
    HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW
    KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR
    MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
    PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN
    SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES
    VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)

# Codes that are also everyday English words.  Lower-case "try 50k" or
# "50k all" is far more likely chat than Turkish lira or Albanian lek, so these
# only count as currencies when typed in capitals.
_WORDLIKE_CODES = frozenset({"ALL", "BOB", "CUP", "DOP", "ERN", "GEL", "MAD", "MOP", "PEN", "RON", "SOS", "TOP", "TRY"})

_SUFFIX_MULTIPLIER: dict[str, int] = {
    "k": 1_000,
    "m": 1_000_000,
    "mm": 1_000_000,  # finance shorthand: "$5mm"
    "b": 1_000_000_000,
    "bn": 1_000_000_000,
}

_AMOUNT_RE = re.compile(
    r"""
    (?P<lead>[a-z]{3})?\s*                       # USD 50k
    (?P<symbol>[$€£])?\s*                        # $48k
    (?P<number>[0-9][0-9.,]*|\.[0-9][0-9.,]*)\s* # loose here, validated below
    (?P<suffix>k|mm|m|bn|b)?\s*                  # 48k, 1.2m, 2bn
    (?P<trail>[a-z]{3})?                         # 50k USD
    """,
    re.VERBOSE | re.IGNORECASE | re.ASCII,
)
_THOUSANDS_RE = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+", re.ASCII)
_DECIMAL_COMMA_RE = re.compile(r"[0-9]+,[0-9]{1,2}", re.ASCII)
_MINUS_RE = re.compile(r"(?P<before>[^0-9.]*?)[-−–—](?P<after>.*)", re.DOTALL)

_AMOUNT_HINT = "try 48k, $48,000 or 1.2m."


def _unreadable_amount(text: str) -> ParseError:
    return ParseError(f'I couldn\'t read "{_shown(text)}" as an amount — {_AMOUNT_HINT}')


def _currency_from_code(token: str, text: str) -> str:
    """ISO code for a 3-letter token typed next to the number."""
    code = token.upper()
    if code in _ISO_CODES and (token.isupper() or code not in _WORDLIKE_CODES):
        return code
    if token.isupper():
        # Capitals signal the user meant a currency code; say which one failed.
        raise ParseError(f'I don\'t recognise the currency "{token}" — use a code like USD, EUR or GBP.')
    raise _unreadable_amount(text)


def _resolve_currency(match: re.Match[str], default_currency: str, text: str) -> str:
    found: list[tuple[str, str]] = []  # (as typed, ISO code), in typed order
    symbol = match.group("symbol")
    for group in ("lead", "symbol", "trail"):
        token = match.group(group)
        if token:
            code = _SYMBOL_TO_CODE[token] if group == "symbol" else _currency_from_code(token, text)
            found.append((token, code))
    if not found:
        return default_currency

    codes = {code for _, code in found}
    if symbol == "$":
        # "$50k CAD": the explicit dollar code refines the generic "$".
        named = {code for token, code in found if token != "$"}
        if named and named <= _DOLLAR_CODES:
            codes = named
    if len(codes) > 1:
        first, second = found[0][0], found[-1][0]
        raise ParseError(
            f'"{_shown(text)}" mentions two currencies ({first} and {second}) — '
            f"please use just one, e.g. {match.group('number')}{match.group('suffix') or ''} {found[-1][1]}."
        )
    return codes.pop()


def _number_from(raw: str, suffix: str, text: str) -> tuple[Decimal, int]:
    """Validate separators in ``raw``; return its value and decimal places."""
    integer_part, dot, fraction = raw.partition(".")
    if "." in fraction or "," in fraction:
        raise ParseError(
            f'"{_shown(text)}" has its separators mixed up — use commas for '
            f"thousands and a dot for decimals, e.g. 1,234.56."
        )
    if "," in integer_part and not _THOUSANDS_RE.fullmatch(integer_part):
        if not dot and _DECIMAL_COMMA_RE.fullmatch(integer_part):
            suggestion = integer_part.replace(",", ".")
            raise ParseError(
                f"Please use a dot for decimals (e.g. {suggestion}{suffix} rather than "
                f"{integer_part}{suffix}) — commas are only for thousands, like 48,000."
            )
        raise ParseError(
            f'The commas in "{_shown(text)}" don\'t look like thousands separators — write 1,234,567 or 1234567.'
        )
    digits = integer_part.replace(",", "") + dot + fraction
    return Decimal(digits), len(fraction)


def _parse_unsigned_amount(text: str, default_currency: str) -> Money:
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        raise _unreadable_amount(text)
    currency = _resolve_currency(match, default_currency, text)
    typed_suffix = match.group("suffix") or ""
    value, decimals = _number_from(match.group("number"), typed_suffix, text)
    suffix = typed_suffix.lower()
    if suffix:
        value *= _SUFFIX_MULTIPLIER[suffix]
    elif decimals > 2:
        # With a suffix extra digits are just precision ("1.2345m"); without
        # one, a third decimal is almost always a typo worth flagging.
        raise ParseError(f'"{_shown(text)}" has {decimals} decimal places — amounts go down to cents, e.g. 48000.50.')
    if value > _MAX_AMOUNT:
        raise ParseError(f'"{_shown(text)}" is more than 1 trillion — that looks like a typo, please check the amount.')
    return Money(value.quantize(_CENTS, rounding=ROUND_HALF_UP), currency)


def parse_amount(text: str, default_currency: str) -> Money:
    """Read an amount such as ``48k``, ``$48,000``, ``€1.2m`` or ``usd 50000``.

    Accepts an optional currency symbol ($ € £) or ISO code before or after
    the number, comma thousands separators, a dot for decimals and the
    suffixes k, m/mm and b/bn.  Without a currency ``default_currency`` is
    used.  The result is quantised to cents.

    Raises :class:`ParseError` (with a one-line user-facing message) for
    empty, negative, malformed, over-precise (3+ decimals without a suffix),
    conflicting-currency or absurdly large (> 1 trillion) input.  Raises plain
    ValueError if ``default_currency`` is not a 3-letter code, since that is a
    configuration bug rather than something the user typed.
    """
    if not re.fullmatch(r"[A-Za-z]{3}", default_currency):
        raise ValueError(f"default_currency must be a 3-letter code, got {default_currency!r}")
    default_currency = default_currency.upper()

    # Collapse all whitespace (incl. the non-breaking spaces chat clients
    # insert) so the patterns below only ever see single ASCII spaces.
    stripped = " ".join(text.split())
    if not stripped:
        raise ParseError(f"Please type an amount — {_AMOUNT_HINT}")
    if len(stripped) > _MAX_INPUT_CHARS:
        raise _unreadable_amount(stripped)

    # Negatives are recognised (rather than reported as unreadable) so the
    # user gets the real reason: "-5k" and accounting-style "($5k)".
    negative_forms: list[str] = []
    if stripped.startswith("(") and stripped.endswith(")"):
        negative_forms.append(stripped[1:-1].strip())
    minus = _MINUS_RE.fullmatch(stripped)
    if minus:
        negative_forms.append((minus.group("before") + minus.group("after")).strip())
    for unsigned in negative_forms:
        try:
            _parse_unsigned_amount(unsigned, default_currency)
        except ParseError:
            continue
        raise ParseError("Amounts can't be negative.")
    if negative_forms:
        raise _unreadable_amount(stripped)

    return _parse_unsigned_amount(stripped, default_currency)


def _group_number(value: Decimal) -> str:
    """``48000`` -> ``"48,000"``; ``48000.5`` -> ``"48,000.50"`` (cents only if any)."""
    cents = value.quantize(_CENTS, rounding=ROUND_HALF_UP)
    if cents == cents.to_integral_value():
        return f"{int(cents):,}"
    return f"{cents:,.2f}"


def _with_currency(sign: str, number: str, currency: str) -> str:
    code = currency.upper()
    symbol = _CODE_TO_SYMBOL.get(code)
    if symbol is not None:
        return f"{sign}{symbol}{number}"
    return f"{sign}{code} {number}"


def format_money(amount: Decimal, currency: str) -> str:
    """Format for chat: ``$48,000``, ``$48,000.50``, ``€50,000``, ``CHF 50,000``.

    Cents appear only when non-zero, because "$48,000.00" is noise in a chat
    reply.  USD/EUR/GBP use their symbol; other currencies are prefixed with
    their ISO code since "$" or "kr" alone would be ambiguous.  The output is
    accepted back by :func:`parse_amount`.
    """
    cents = amount.quantize(_CENTS, rounding=ROUND_HALF_UP)
    sign = "-" if cents < 0 else ""
    return _with_currency(sign, _group_number(abs(cents)), currency)


_SHORT_UNITS: tuple[tuple[Decimal, str], ...] = (
    (Decimal(1_000), "k"),
    (Decimal(1_000_000), "M"),
    (Decimal(1_000_000_000), "B"),
    (Decimal(1_000_000_000_000), "T"),
)
_TENTHS = Decimal("0.1")


def format_money_short(amount: Decimal, currency: str) -> str:
    """Compact form for tables: ``$48k``, ``$1.2M``, ``$950``, ``€2.5M``.

    At most one decimal is shown and a trailing ``.0`` is dropped.  Rounding
    that would produce "1000k" is promoted to the next unit ("$1M").  Amounts
    under 1,000 are shown in full, as :func:`format_money` would.
    """
    sign = "-" if amount.quantize(_CENTS, rounding=ROUND_HALF_UP) < 0 else ""
    magnitude = abs(amount)
    if magnitude.quantize(_CENTS, rounding=ROUND_HALF_UP) < 1000:
        return _with_currency(sign, _group_number(magnitude), currency)
    unit_size, unit = _SHORT_UNITS[-1]  # beyond every unit: "$5,000T"
    for size, name in _SHORT_UNITS:
        if (magnitude / size).quantize(_TENTHS, rounding=ROUND_HALF_UP) < 1000:
            unit_size, unit = size, name
            break
    scaled = (magnitude / unit_size).quantize(_TENTHS, rounding=ROUND_HALF_UP)
    if scaled == scaled.to_integral_value():
        number = f"{int(scaled):,}"
    else:
        number = f"{scaled:,.1f}"
    return _with_currency(sign, number + unit, currency)


# --------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------

_MONTHS: dict[str, int] = {
    "jan": 1, "january": 1,
    "feb": 2, "february": 2,
    "mar": 3, "march": 3,
    "apr": 4, "april": 4,
    "may": 5,
    "jun": 6, "june": 6,
    "jul": 7, "july": 7,
    "aug": 8, "august": 8,
    "sep": 9, "sept": 9, "september": 9,
    "oct": 10, "october": 10,
    "nov": 11, "november": 11,
    "dec": 12, "december": 12,
}  # fmt: skip
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Longest each month can be in any year, so "Feb 29" is valid without a year.
_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_ORDINAL = r"(?:st|nd|rd|th)?"
_YEAR_TAIL = r"(?:(?:,\s*|\s+)(?P<year>[0-9]{4}))?"
_ISO_RE = re.compile(r"(?P<year>[0-9]{4})[-/](?P<month>[0-9]{1,2})[-/](?P<day>[0-9]{1,2})")
_MONTH_DAY_RE = re.compile(rf"(?P<month>[a-z]+)\.?\s*(?P<day>[0-9]{{1,2}}){_ORDINAL}{_YEAR_TAIL}")
_DAY_MONTH_RE = re.compile(rf"(?P<day>[0-9]{{1,2}}){_ORDINAL}\s*(?:of\s+)?(?P<month>[a-z]+)\.?{_YEAR_TAIL}")
_SLASH_RE = re.compile(r"(?P<first>[0-9]{1,2})/(?P<second>[0-9]{1,2})(?:/(?P<year>[0-9]{4}|[0-9]{2}))?")
_RELATIVE_RE = re.compile(
    r"\+\s*(?P<count>[0-9]{1,5})\s*"
    r"(?P<unit>d|days?|w|wks?|weeks?|m|mos?|months?|y|yrs?|years?)"
)

_DATE_HINT = "try 2026-12-15, Dec 15, 15/12, +30d, tomorrow or eom."


def _unreadable_date(text: str) -> ParseError:
    return ParseError(f'I couldn\'t read "{_shown(text)}" as a date — {_DATE_HINT}')


def _not_a_real_date(text: str) -> ParseError:
    return ParseError(f'"{_shown(text)}" isn\'t a real date — {_DATE_HINT}')


def _human(d: date) -> str:
    # Month spelled out, so the question itself cannot be misread.
    return f"{d.day} {_MONTH_ABBR[d.month - 1]} {d.year}"


def _add_months(d: date, months: int) -> date:
    """Calendar-month arithmetic, clamping to month end (Jan 31 + 1m = Feb 28/29)."""
    year, month0 = divmod(d.year * 12 + d.month - 1 + months, 12)
    last_day = end_of_month(date(year, month0 + 1, 1)).day
    return date(year, month0 + 1, min(d.day, last_day))


def _is_month_day(month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= _MAX_DAYS[month - 1]


def _next_occurrence(month: int, day: int, today: date) -> date:
    """First ``month``/``day`` on or after ``today`` (Feb 29 may be 8 years away).

    Raises OverflowError only when that would be beyond year 9999.
    """
    for year in range(today.year, min(today.year + 9, 10_000)):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate >= today:
            return candidate
    raise OverflowError("no occurrence before year 10000")


def _resolve(month: int, day: int, year: int | None, today: date) -> date | None:
    """The date for month/day[/year], or ``None`` if no such date exists."""
    if year is None:
        return _next_occurrence(month, day, today) if _is_month_day(month, day) else None
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _parse_slash(match: re.Match[str], text: str, today: date) -> date:
    first, second = int(match.group("first")), int(match.group("second"))
    raw_year = match.group("year")
    year: int | None = None
    if raw_year is not None:
        # Two-digit years are read as 20xx; nobody schedules cadences in 1926.
        year = int(raw_year) + (2000 if len(raw_year) == 2 else 0)

    month_first = _resolve(first, second, year, today)
    day_first = _resolve(second, first, year, today) if first != second else None
    if month_first is not None and day_first is not None:
        options = [month_first.isoformat(), day_first.isoformat()]
        raise AmbiguousInput(
            f'"{_shown(text)}" could be {_human(month_first)} or {_human(day_first)} — '
            f"which did you mean? Reply with {options[0]} or {options[1]} to be sure.",
            options,
        )
    result = month_first or day_first
    if result is None:
        raise _not_a_real_date(text)
    return result


def _parse_named_month(match: re.Match[str], text: str, today: date) -> date:
    month = _MONTHS.get(match.group("month"))
    if month is None:
        raise _unreadable_date(text)
    raw_year = match.group("year")
    result = _resolve(month, int(match.group("day")), int(raw_year) if raw_year else None, today)
    if result is None:
        raise _not_a_real_date(text)
    return result


def _parse_relative(match: re.Match[str], today: date) -> date:
    count = int(match.group("count"))
    unit = match.group("unit")[0]
    if unit == "d":
        return today + timedelta(days=count)
    if unit == "w":
        return today + timedelta(weeks=count)
    if unit == "m":
        return _add_months(today, count)
    return _add_months(today, 12 * count)


def _parse_date(text: str, normalized: str, today: date, fiscal_year_start_month: int) -> date:
    keywords = {
        "today": lambda: today,
        "tomorrow": lambda: today + timedelta(days=1),
        "eom": lambda: end_of_month(today),
        "eoq": lambda: fiscal_quarter_bounds(today, fiscal_year_start_month)[1],
        "eoy": lambda: fiscal_year_bounds(today, fiscal_year_start_month)[1],
    }
    if normalized in keywords:
        return keywords[normalized]()

    if match := _RELATIVE_RE.fullmatch(normalized):
        return _parse_relative(match, today)
    if match := _ISO_RE.fullmatch(normalized):
        result = _resolve(int(match.group("month")), int(match.group("day")), int(match.group("year")), today)
        if result is None:
            raise _not_a_real_date(text)
        return result
    if match := _SLASH_RE.fullmatch(normalized):
        return _parse_slash(match, text, today)
    if match := _MONTH_DAY_RE.fullmatch(normalized) or _DAY_MONTH_RE.fullmatch(normalized):
        return _parse_named_month(match, text, today)
    raise _unreadable_date(text)


def parse_date(text: str, today: date, fiscal_year_start_month: int = 1) -> date:
    """Read a date as typed in chat, relative to ``today``.

    Accepted (case-insensitive):

    * ISO ``2026-12-15`` (or ``2026/12/15``);
    * month names ``Dec 15``, ``15 Dec``, ``December 15``, ``dec 15th``,
      ``Dec 15 2026``, ``Dec 15, 2026``, ``15 December 2026``;
    * slashes ``12/31``, ``31/12``, ``12/31/2026``, ``31/12/26``;
    * relative ``+30d``, ``+2w``, ``+3m`` (calendar months, clamped to month
      end), ``+1y``, and ``today``, ``tomorrow``;
    * ``eom`` / ``eoq`` / ``eoy``: end of this month / fiscal quarter / fiscal
      year, using ``fiscal_year_start_month``.

    Without a year, the next occurrence on or after ``today`` is used.  Slash
    dates that are valid both month-first and day-first raise
    :class:`AmbiguousInput` (options: both ISO dates, month-first first)
    instead of guessing a locale.  Past dates are returned as-is; whether they
    are acceptable is the caller's decision.
    """
    if not 1 <= fiscal_year_start_month <= 12:
        raise ValueError(f"fiscal_year_start_month must be between 1 and 12, got {fiscal_year_start_month!r}")
    normalized = " ".join(text.lower().split())
    if not normalized:
        raise ParseError("Please type a date — for example 2026-12-15, Dec 15, +30d, tomorrow or eom.")
    if len(normalized) > _MAX_INPUT_CHARS or not normalized.isascii():
        raise _unreadable_date(text)
    try:
        return _parse_date(text, normalized, today, fiscal_year_start_month)
    except ParseError:
        raise
    except (ValueError, OverflowError) as exc:
        # Only reachable at the edges of the calendar (year 1 or 9999).
        raise ParseError(f'"{_shown(text)}" is outside the range of dates I can handle — {_DATE_HINT}') from exc
