"""Turn what people type to Cadence into structured commands.

Why this module exists: the same words must do the same thing whether they
were typed in Slack, in Teams or in the local console, so the bot has one
grammar and every chat adapter hands it plain text.  Chat clients mangle that
text in small ways (curly quotes from autocorrect, non-breaking spaces, mention
markup such as ``<at>Cadence</at>`` or ``<@U123|dana>``), and people type in a
hurry (``stage = proposal``, ``next=Send MSA`` without quotes, a pasted
``/deal`` at the front).  This module absorbs those differences once, here,
instead of in every command handler.

Design rules:

* Pure and stdlib-only: text in, dataclasses out; no I/O, no clock, no CRM.
  Values stay raw strings because reading ``48k`` or ``eoq`` is the job of
  :mod:`cadences.parsing`, which knows money, dates and the fiscal calendar.
* Every user-caused failure is a :class:`GrammarError` whose ``message`` is one
  friendly, user-facing line, so handlers can reply with it verbatim and catch
  a single exception type.  Nothing else escapes for any input text.
* When input could silently do the wrong thing, refuse with a hint rather than
  guess (e.g. fields given to ``list``, a field named twice).
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "COMMAND_NAMES",
    "DEAL_FIELDS",
    "DEAL_FIELD_ALIASES",
    "DealCommand",
    "DealVerb",
    "GrammarError",
    "Invocation",
    "QuotedWord",
    "parse_deal_command",
    "parse_invocation",
    "parse_key_values",
    "split_invocation",
    "tokenize",
]


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class GrammarError(ValueError):
    """Text that does not fit the command grammar.

    ``message`` is written for the person who typed the command (one line,
    possibly ending in a short usage hint) so handlers can reply with it
    verbatim.  Subclassing ValueError keeps it catchable by generic
    validation code, like :class:`cadences.parsing.ParseError`.
    """

    def __init__(self, message: str) -> None:
        # Collapsing whitespace guarantees the one-line promise even when the
        # message echoes user text that contained newlines.
        one_line = " ".join(message.split())
        super().__init__(one_line)
        self.message: str = one_line


def _shown(text: str, limit: int = 40) -> str:
    """The user's text as echoed in messages: single line and not too long."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --------------------------------------------------------------------------
# Invocations: "/deal …", "deal …", "@Cadence deal …", "<at>Cadence</at> deal …"
# --------------------------------------------------------------------------

COMMAND_NAMES: Final[frozenset[str]] = frozenset(
    {"deal", "pipeline", "debrief", "cadence", "digest", "action", "forecast", "help"}
)

# Characters some clients insert that are invisible to the user but would
# otherwise glue words together or hide a command name.  The zero-width joiner
# is deliberately absent: it is part of emoji sequences people put in notes.
_INVISIBLE: Final[dict[int, None]] = dict.fromkeys(map(ord, "\u200b\u2060\ufeff"), None)

# One leading mention: Teams markup, a Slack user reference, or the bot's name
# typed as plain text (console, or a client that flattened the mention).  The
# platform forms are stripped whatever the name: Slack and Teams only deliver a
# channel message to the bot when the bot is the one mentioned.
_LEADING_MENTION: Final = re.compile(
    r"\s*(?:<at>[^<]*</at>|<@[^>]+>|@cadence\b)(?:&nbsp;|[\s,:;])*",
    re.IGNORECASE,
)
_COMMAND_HEAD: Final = re.compile(r"/?([A-Za-z]+)(?:\s+(.*))?", re.DOTALL)


def _clean(text: str) -> str:
    """Drop invisible characters that chat clients slip into pasted text."""
    return text.translate(_INVISIBLE)


@dataclass(frozen=True)
class Invocation:
    """A command name and the raw text after it.

    Why a separate step: adapters first need to know *which* command was
    meant (to route it) before a command-specific grammar reads its args.
    """

    name: str
    args: str


def parse_invocation(text: str) -> Invocation | None:
    """Read a message as a command invocation, or return None for plain chat.

    Accepts ``/deal …`` (slash commands, console), ``deal …`` (DMs, console)
    and either of those after a mention.  The name is case-insensitive and
    must be one of :data:`COMMAND_NAMES` followed by whitespace or the end, so
    "Dealing with it" or "Deal, closed!" stay plain chat.
    """
    rest = _clean(text)
    while (mention := _LEADING_MENTION.match(rest)) is not None:
        rest = rest[mention.end() :]
    head = _COMMAND_HEAD.fullmatch(rest.strip())
    if head is None:
        return None
    name = head.group(1).lower()
    if name not in COMMAND_NAMES:
        return None
    return Invocation(name=name, args=(head.group(2) or "").strip())


def split_invocation(text: str) -> tuple[str, str] | None:
    """``'/deal Acme stage=x'`` -> ``('deal', 'Acme stage=x')``; None for plain chat.

    A tuple-returning convenience over :func:`parse_invocation` for callers
    that just unpack ``name, args``.
    """
    invocation = parse_invocation(text)
    return None if invocation is None else (invocation.name, invocation.args)


# --------------------------------------------------------------------------
# Tokens: quote-aware splitting shared by every command's grammar
# --------------------------------------------------------------------------


class QuotedWord(str):
    """A word the user wrote inside quotes.

    Why a str subclass: quoting means "take this literally" — ``"Show Co"`` is
    a deal name rather than the ``show`` verb, and ``"a=b"`` is a word rather
    than a field.  :func:`tokenize` still returns plain strings for callers
    that do not care, and the grammar functions can ask ``isinstance``.
    """

    __slots__ = ()


# Autocorrect (macOS, iOS, Teams, Slack) turns straight quotes into curly ones,
# and other locales type „…“ or «…» / »…«.  Any quote of a family closes any
# quote of the same family, so mixed pairs such as "…” still work.
_DOUBLE_QUOTES: Final = frozenset('"“”„‟«»')
_SINGLE_QUOTES: Final = frozenset("'‘’‚‛‹›")
_QUOTE_FAMILY: Final[dict[str, frozenset[str]]] = {
    **dict.fromkeys(_DOUBLE_QUOTES, _DOUBLE_QUOTES),
    **dict.fromkeys(_SINGLE_QUOTES, _SINGLE_QUOTES),
}

# What may stand left of "=" to make a field: a word, optionally hyphenated
# ("close-date").  Anything else ("https://x.io/?a=b") is an ordinary word.
_KEY: Final = re.compile(r"[^\W\d]\w*(?:-\w+)*")


class _QuoteIndex:
    """Where each quote family could close, for quick look-ups.

    Why the preference: apostrophes look exactly like closing single quotes
    (autocorrect even makes ``Dana's`` into ``Dana’s``), so a closing quote
    is preferably one followed by whitespace or the end of the text;
    ``‘Call Dana’s boss’`` then reads as one value.  Only when no such quote
    exists does the first matching quote close.  Positions are precomputed
    and bisected so hostile input with many quotes stays linear-ish.
    """

    def __init__(self, text: str) -> None:
        self._preferred: dict[frozenset[str], list[int]] = {_DOUBLE_QUOTES: [], _SINGLE_QUOTES: []}
        self._any: dict[frozenset[str], list[int]] = {_DOUBLE_QUOTES: [], _SINGLE_QUOTES: []}
        last = len(text) - 1
        for pos, char in enumerate(text):
            family = _QUOTE_FAMILY.get(char)
            if family is None:
                continue
            self._any[family].append(pos)
            if pos == last or text[pos + 1].isspace():
                self._preferred[family].append(pos)

    def closing(self, opener: str, after: int) -> int | None:
        """Position of the quote closing ``opener`` found at ``after``, if any."""
        family = _QUOTE_FAMILY[opener]
        for positions in (self._preferred[family], self._any[family]):
            index = bisect.bisect_right(positions, after)
            if index < len(positions):
                return positions[index]
        return None


@dataclass(frozen=True)
class _Lexeme:
    """One whitespace-delimited chunk before ``=`` handling.

    ``quoted``: the whole chunk was in quotes (a literal word).
    ``value_quoted``: a ``key="…"`` chunk, so an empty value was explicit.
    """

    text: str
    quoted: bool = False
    value_quoted: bool = False


def _unterminated(text: str, at: int) -> GrammarError:
    return GrammarError(
        f"There's an opening {text[at]} with no closing quote (at “{_shown(text[at:], 24)}”). "
        "Close the quote, or put the whole value in double quotes."
    )


def _lex(text: str) -> list[_Lexeme]:
    """Split on whitespace, keeping quoted stretches (and ``key="…"``) whole.

    A quote only opens at the start of a word or right after the first ``=``
    of a word; elsewhere it is an apostrophe or inch mark and stays literal.
    A closing quote ends the word, so ``"Acme Corp"amount=5`` is two words.
    """
    quotes = _QuoteIndex(text)
    lexemes: list[_Lexeme] = []
    pos, length = 0, len(text)
    while pos < length:
        char = text[pos]
        if char.isspace():
            pos += 1
            continue
        if char in _QUOTE_FAMILY:
            close = quotes.closing(char, pos)
            if close is None:
                raise _unterminated(text, pos)
            lexemes.append(_Lexeme(text[pos + 1 : close], quoted=True))
            pos = close + 1
            continue
        start, seen_equals = pos, False
        while pos < length and not text[pos].isspace():
            if text[pos] == "=" and not seen_equals:
                seen_equals = True
                if pos + 1 < length and text[pos + 1] in _QUOTE_FAMILY:
                    close = quotes.closing(text[pos + 1], pos + 1)
                    if close is None:
                        raise _unterminated(text, pos + 1)
                    lexemes.append(_Lexeme(text[start : pos + 1] + text[pos + 2 : close], value_quoted=True))
                    pos = close + 1
                    break
            pos += 1
        else:
            lexemes.append(_Lexeme(text[start:pos]))
    return lexemes


def _looks_like_field(lexeme: _Lexeme) -> bool:
    """Whether a chunk is (the start of) ``key=value`` rather than a plain word."""
    if lexeme.quoted:
        return False
    key, equals, _ = lexeme.text.partition("=")
    return bool(equals) and (not key or _KEY.fullmatch(key) is not None)


def _is_key_word(token: str) -> bool:
    return not isinstance(token, QuotedWord) and _KEY.fullmatch(token) is not None


def tokenize(args: str) -> list[str]:
    """Split command args into words and ``key=value`` tokens, quote-aware.

    Each field comes back as one canonical ``key=value`` string with its
    quotes removed, however it was spaced: ``stage = proposal``,
    ``stage= proposal``, ``next="Send MSA"`` and ``next = “Send MSA”`` all
    tokenize the same way.  Words written in quotes come back as
    :class:`QuotedWord` so later steps never read them as keywords or fields.

    A ``key=`` followed by a plain word takes that word as its value; followed
    by another field or the end, its value is empty (how fields are cleared).

    Raises GrammarError for an unterminated quote or an ``=`` with no field
    name before it.
    """
    lexemes = _lex(_clean(args))
    tokens: list[str] = []
    index = 0
    while index < len(lexemes):
        lexeme = lexemes[index]
        index += 1
        if lexeme.quoted:
            tokens.append(QuotedWord(lexeme.text))
            continue
        if not _looks_like_field(lexeme):
            tokens.append(lexeme.text)
            continue
        key, _, value = lexeme.text.partition("=")
        if not key:
            # "stage = proposal" / "stage =proposal": the key is the word before.
            if not tokens or not _is_key_word(tokens[-1]):
                raise GrammarError(
                    f"“{_shown(lexeme.text, 24)}” has no field name before the “=”. "
                    "Write fields as name=value, like stage=proposal."
                )
            key = tokens.pop()
        if not value and not lexeme.value_quoted and index < len(lexemes) and not _looks_like_field(lexemes[index]):
            value = lexemes[index].text
            index += 1
        tokens.append(f"{key}={value}")
    return tokens


# --------------------------------------------------------------------------
# Fields: key=value pairs with aliases, shared by every command's grammar
# --------------------------------------------------------------------------


def _split_field(token: str) -> tuple[str, str] | None:
    """``'stage=proposal'`` -> ``('stage', 'proposal')``; None for plain words."""
    if isinstance(token, QuotedWord):
        return None
    key, equals, value = token.partition("=")
    if not equals:
        return None
    if not key:
        raise GrammarError(
            f"“{_shown(token, 24)}” has no field name before the “=”. Write fields as name=value, like stage=proposal."
        )
    if _KEY.fullmatch(key) is None:
        return None
    return key, value


def _field_list(allowed: Mapping[str, str]) -> str:
    return ", ".join(dict.fromkeys(allowed.values()))


def _canonical_field(key: str, allowed: Mapping[str, str]) -> str:
    """Map a typed field name to its canonical name, or explain the mistake."""
    folded = key.casefold()
    for candidate in (folded, folded.replace("-", "_")):
        if candidate in allowed:
            return allowed[candidate]
    close = difflib.get_close_matches(folded, list(allowed), n=1, cutoff=0.6)
    hint = f" Did you mean {allowed[close[0]]}?" if close else ""
    raise GrammarError(f"I don't know the field “{key}”.{hint} Valid fields: {_field_list(allowed)}.")


def parse_key_values(
    tokens: Sequence[str],
    allowed: Mapping[str, str],
    *,
    clearable: Collection[str] = frozenset(),
) -> tuple[list[str], dict[str, str]]:
    """Separate leading words from ``key=value`` fields.

    ``allowed`` maps every accepted spelling (lower case; ``-`` and ``_`` are
    interchangeable when typed) to its canonical field name.  Returns the
    words before the first field, in order, and the fields by canonical name
    with values stripped.

    Words after a field continue its value, so ``next=Send MSA to legal
    stage=proposal`` needs no quotes: a value runs until the next field.
    That is the reading people intend in chat far more often than a stray
    word, and anything odd surfaces when the value itself is parsed.

    Empty values (``risk=``) are how a field is cleared, so they are accepted
    only for fields in ``clearable``.  Raises GrammarError for unknown fields
    (with a suggestion), a field given twice, or a disallowed empty value.
    """
    words: list[str] = []
    parts: dict[str, list[str]] = {}  # canonical field -> value pieces, in order
    spelled: dict[str, str] = {}  # canonical field -> the name as typed, for messages
    current: list[str] | None = None
    for token in tokens:
        pair = _split_field(token)
        if pair is None:
            # Before any field it's a leading word; after one it continues that value.
            if current is None:
                words.append(token)
            else:
                current.append(token)
            continue
        key, value = pair
        canonical = _canonical_field(key, allowed)
        if canonical in parts:
            twice = f"“{spelled[canonical]}” and “{key}”" if spelled[canonical] != key else f"“{key}”"
            raise GrammarError(f"You gave {canonical} twice ({twice}). Keep just one of them.")
        current = parts[canonical] = [value]
        spelled[canonical] = key
    fields = {canonical: " ".join(pieces).strip() for canonical, pieces in parts.items()}
    for canonical, value in fields.items():
        if not value and canonical not in clearable:
            can_clear = (
                f" (only {', '.join(sorted(clearable))} can be cleared with an empty value)" if clearable else ""
            )
            raise GrammarError(
                f"{spelled[canonical]}= has no value{can_clear}. "
                f'Put the value right after the “=”, in quotes if it has spaces: {canonical}="…".'
            )
    return words, fields


# --------------------------------------------------------------------------
# /deal
# --------------------------------------------------------------------------

DealVerb = Literal["update", "new", "note", "won", "lost", "list", "show", "history", "help", "confirm"]

DEAL_FIELDS: Final[tuple[str, ...]] = (
    "stage",
    "amount",
    "close",
    "next",
    "next_date",
    "forecast",
    "risk",
    "note",
    "reason",
    "competitor",
    "account",
    "source",
    "segment",
    "owner",
    "name",
    "crm_id",
)

_DEAL_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "amount": ("amt", "value"),
    "close": ("close_date", "closedate", "close-date"),
    "next": ("next_step", "nextstep"),
    "next_date": ("nextdate", "next_step_date", "due"),
    "forecast": ("fc", "category", "forecast_category"),
    "note": ("notes", "comment"),
    "reason": ("loss_reason",),
    "account": ("company",),
    "name": ("rename",),
}

DEAL_FIELD_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        **{canonical: canonical for canonical in DEAL_FIELDS},
        **{alias: canonical for canonical, aliases in _DEAL_ALIASES.items() for alias in aliases},
    }
)
"""Every accepted spelling of a /deal field -> its canonical name (read-only)."""

# Fields a rep may clear by giving an empty value ("risk=" once it's resolved).
_DEAL_CLEARABLE: Final = frozenset({"next", "next_date", "risk"})

_HELP_WORDS: Final = frozenset({"help", "?"})
_ME_WORDS: Final = frozenset({"mine", "me", "my"})
# Trailing outcome words, longest first so "closed won" beats "won".
_TRAILING_VERBS: Final[tuple[tuple[tuple[str, ...], DealVerb], ...]] = (
    (("closed", "won"), "won"),
    (("closed", "lost"), "lost"),
    (("still", "accurate"), "confirm"),
    (("still", "ok"), "confirm"),
    (("still", "good"), "confirm"),
    (("won",), "won"),
    (("closed-won",), "won"),
    (("closed_won",), "won"),
    (("lost",), "lost"),
    (("closed-lost",), "lost"),
    (("closed_lost",), "lost"),
    (("ok",), "confirm"),
    (("okay",), "confirm"),
    (("confirm",), "confirm"),
    (("confirmed",), "confirm"),
)
_MISSING_TARGET: Final[dict[DealVerb, str]] = {
    "won": "Which deal did you win? Put the deal's name first: /deal Acme won",
    "lost": "Which deal was lost? Put the deal's name first: /deal Acme lost reason=price",
    "confirm": "Which deal is still accurate? Put the deal's name first: /deal Acme ok",
    "update": "Which deal? Put the deal's name before the fields: /deal Acme stage=proposal",
    "show": "Which deal? Try /deal show Acme",
    "history": "Which deal? Try /deal history Acme",
}

_SLACK_USER: Final = re.compile(r"<@([A-Za-z0-9]+)(?:\|[^>]*)?>")
_TEAMS_MENTION: Final = re.compile(r"<at>(.*?)</at>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class DealCommand:
    """One parsed ``/deal`` command.

    ``target`` is the deal name or prefix as typed, whitespace collapsed
    (resolving it to a deal is the handler's job); for ``new`` it is the new deal's name and for
    ``help`` the optional topic.  ``fields`` maps canonical field names to raw
    value strings, read later by :mod:`cadences.parsing`; ``""`` means clear
    the field.  ``person`` is set only by ``list``: a name, handle (no ``@``)
    or Slack user id, or None for the caller's own deals.
    """

    verb: DealVerb
    target: str | None
    # Excluded from hashing so the frozen command stays hashable despite the dict.
    fields: dict[str, str] = field(hash=False)
    person: str | None = None


def _keyword(word: str) -> str | None:
    """A bare word as a keyword candidate; quoted words never are keywords."""
    return None if isinstance(word, QuotedWord) else word.casefold()


def _joined(words: Sequence[str]) -> str | None:
    """Words as one name, whitespace collapsed (even inside quotes); None if blank.

    Why collapse: a doubled space or a stray newline in a deal name is never
    meant, and names must match the deals they refer to.
    """
    return " ".join(" ".join(words).split()) or None


def _strip_deal_prefix(args: str) -> str:
    """Drop a pasted ``/deal`` or ``deal`` (or ``@Cadence deal``) from the front.

    People copy commands from docs or earlier messages into the slash
    command's box; ``/deal /deal Acme won`` should still mean ``Acme won``.
    """
    invocation = parse_invocation(args)
    return invocation.args if invocation is not None and invocation.name == "deal" else args


def _refuse_fields(verb: str, words: Sequence[str], fields: Mapping[str, str]) -> None:
    """Keyword verbs that take no fields refuse them rather than drop them.

    Why: ``Help Scout stage=proposal`` is far more likely an update to a deal
    whose name starts with a keyword than a request for help, and silently
    ignoring the fields would lose the rep's update.
    """
    if fields:
        name = _joined(words) or verb
        raise GrammarError(
            f"“{verb}” doesn't take fields (you gave {next(iter(fields))}=). "
            f'If that\'s a deal whose name starts with “{verb}”, put the name in quotes: /deal "{_shown(name, 30)}" …'
        )


def _parse_person(words: Sequence[str]) -> str | None:
    """Whose deals ``list`` should show: None means the caller's own."""
    text = _joined(words) or ""
    if not text or text.casefold() in _ME_WORDS:
        return None
    mentions = sum(1 for word in words if word.startswith(("@", "<@")) or word.casefold().startswith("<at>"))
    if mentions > 1:
        raise GrammarError("I can list one person's deals at a time: /deal list @dana")
    if (slack := _SLACK_USER.fullmatch(text)) is not None:
        return slack.group(1)
    if (teams := _TEAMS_MENTION.fullmatch(text)) is not None:
        text = teams.group(1).strip()
    person = text.removeprefix("@").strip()
    if not person:
        raise GrammarError("Whose deals should I list? Try /deal list @dana, or /deal list for yours.")
    return person


def _split_trailing_verb(words: Sequence[str]) -> tuple[DealVerb | None, list[str]]:
    """Find an outcome word (won, lost, ok, …) at the end of the leading words."""
    folded = [_keyword(word) for word in words]
    for phrase, verb in _TRAILING_VERBS:
        if len(phrase) <= len(words) and tuple(folded[len(words) - len(phrase) :]) == phrase:
            return verb, list(words[: len(words) - len(phrase)])
    return None, list(words)


def parse_deal_command(args: str) -> DealCommand:
    """Parse the text after ``/deal`` into a :class:`DealCommand`.

    Leading keywords (``new``, ``list``, ``show``, ``history``, ``help``)
    choose the verb; otherwise the words before the first field are the deal's
    name, optionally ending in ``won``, ``lost`` or ``ok``/``still accurate``.
    A name alone shows the deal; a lone ``note=`` is a note; any other fields
    are an update.  A deal whose name starts with a keyword must be quoted.
    Raises GrammarError with a one-line, user-facing message.
    """
    tokens = tokenize(_strip_deal_prefix(args))
    words, fields = parse_key_values(tokens, DEAL_FIELD_ALIASES, clearable=_DEAL_CLEARABLE)
    if not words and not fields:
        return DealCommand("help", None, {})
    head, rest = _keyword(words[0]) if words else None, words[1:]

    if head in _HELP_WORDS:
        _refuse_fields("help", words, fields)
        return DealCommand("help", _joined(rest), {})
    if head == "list":
        _refuse_fields("list", words, fields)
        return DealCommand("list", None, {}, person=_parse_person(rest))
    if head == "show" or head == "history":
        lookup: DealVerb = "show" if head == "show" else "history"
        _refuse_fields(lookup, words, fields)
        target = _joined(rest)
        if target is None:
            raise GrammarError(_MISSING_TARGET[lookup])
        return DealCommand(lookup, target, {})
    if head == "new":
        renamed = fields.pop("name", None)
        named = _joined(rest)
        if named is not None and renamed is not None:
            raise GrammarError(f'Give the new deal\'s name once: /deal new "{_shown(named, 30)}" amount=…')
        target = named or renamed
        if not target:
            raise GrammarError('A new deal needs a name: /deal new "Globex Corp" amount=120k close=eoq stage=discovery')
        return DealCommand("new", target, fields)

    verb, target_words = _split_trailing_verb(words)
    target = _joined(target_words)
    if verb is None:
        verb = "update" if fields else "show"
        if fields.keys() == {"note"}:
            verb = "note"
    if target is None:
        raise GrammarError(_MISSING_TARGET["update" if verb == "note" else verb])
    if verb == "confirm" and fields:
        said = _joined(words[len(target_words) :])
        raise GrammarError(
            f"“{said}” confirms the deal as it is, so it can't come with changes. "
            f"Drop the “{said}” to update it: /deal {_shown(target, 30)} {next(iter(fields))}=…"
        )
    return DealCommand(verb, target, fields)
