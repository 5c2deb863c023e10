"""Tests for cadences.grammar: what people type -> structured commands.

The tables are the spec: each row is something a rep might type in Slack,
Teams or the console, and what the bot must understand from it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadences.grammar import (
    COMMAND_NAMES,
    DEAL_FIELD_ALIASES,
    DEAL_FIELDS,
    DealCommand,
    DealVerb,
    GrammarError,
    Invocation,
    QuotedWord,
    parse_deal_command,
    parse_invocation,
    parse_key_values,
    split_invocation,
    tokenize,
)


def cmd(verb: DealVerb, target: str | None = None, person: str | None = None, **fields: str) -> DealCommand:
    """Build an expected DealCommand tersely for the tables below."""
    return DealCommand(verb, target, dict(fields), person)


# --------------------------------------------------------------------------
# split_invocation
# --------------------------------------------------------------------------

INVOCATIONS: list[tuple[str, tuple[str, str] | None]] = [
    ("/deal Acme stage=x", ("deal", "Acme stage=x")),
    ("deal Acme", ("deal", "Acme")),
    ("<at>Cadence</at> deal list", ("deal", "list")),
    ("<at>Cadence</at>\xa0deal list", ("deal", "list")),
    ("<at>Cadence</at>&nbsp;deal list", ("deal", "list")),
    ("@Cadence deal list", ("deal", "list")),
    ("@cadence, deal list", ("deal", "list")),
    ("<@U0BOT> deal list", ("deal", "list")),
    ("/pipeline start", ("pipeline", "start")),
    ("/DEAL Acme", ("deal", "Acme")),
    ("Deal Acme", ("deal", "Acme")),
    ("  /deal   Acme  won  ", ("deal", "Acme  won")),
    ("/deal", ("deal", "")),
    ("help", ("help", "")),
    ("/cadence pause", ("cadence", "pause")),
    ("digest", ("digest", "")),
    ("/forecast\ncommit=400k", ("forecast", "commit=400k")),
    ("\u200b/deal list", ("deal", "list")),
    # Plain chat is not a command.
    ("", None),
    ("   ", None),
    ("hello there", None),
    ("Dealing with it today", None),
    ("Deal, closed!", None),
    ("/unknown thing", None),
    ("@Cadence how are you?", None),
    ("<at>Cadence</at>", None),
    ("What's the deal /deal", None),
]


@pytest.mark.parametrize(("text", "expected"), INVOCATIONS)
def test_split_invocation(text: str, expected: tuple[str, str] | None) -> None:
    assert split_invocation(text) == expected


def test_parse_invocation_returns_invocation() -> None:
    assert parse_invocation("/Digest weekly") == Invocation(name="digest", args="weekly")
    assert parse_invocation("chit chat") is None


def test_command_names() -> None:
    assert {"deal", "pipeline", "debrief", "cadence", "digest", "action", "forecast", "help"} == COMMAND_NAMES


# --------------------------------------------------------------------------
# parse_deal_command: the happy paths
# --------------------------------------------------------------------------

DEAL_COMMANDS: list[tuple[str, DealCommand]] = [
    # updates
    (
        'Acme stage=proposal amount=48k close=2026-12-15 next="Send MSA" forecast=commit',
        cmd("update", "Acme", stage="proposal", amount="48k", close="2026-12-15", next="Send MSA", forecast="commit"),
    ),
    ("Acme Corp stage=proposal", cmd("update", "Acme Corp", stage="proposal")),
    ('"Acme Corp" amount=5k', cmd("update", "Acme Corp", amount="5k")),
    ("'Acme Corp' amount=5k", cmd("update", "Acme Corp", amount="5k")),
    ("“Acme Corp” amount=5k", cmd("update", "Acme Corp", amount="5k")),
    ('"Acme Corp"amount=5k', cmd("update", "Acme Corp", amount="5k")),
    ("  Acme    stage=proposal   ", cmd("update", "Acme", stage="proposal")),
    ("Acme stage = proposal", cmd("update", "Acme", stage="proposal")),
    ("Acme stage= proposal", cmd("update", "Acme", stage="proposal")),
    ("Acme stage =proposal", cmd("update", "Acme", stage="proposal")),
    ('Acme next = "Send MSA"', cmd("update", "Acme", next="Send MSA")),
    ('Acme next= "Send MSA"', cmd("update", "Acme", next="Send MSA")),
    ('Acme next ="Send MSA"', cmd("update", "Acme", next="Send MSA")),
    ("Acme next=Send MSA to legal stage=proposal", cmd("update", "Acme", next="Send MSA to legal", stage="proposal")),
    ("Acme\tstage=proposal\namount=5k", cmd("update", "Acme", stage="proposal", amount="5k")),
    ("Acme\xa0stage=proposal", cmd("update", "Acme", stage="proposal")),
    # curly and foreign quotes (autocorrect)
    ("Acme next=“Send MSA”", cmd("update", "Acme", next="Send MSA")),
    ("Acme next=‘Send MSA’", cmd("update", "Acme", next="Send MSA")),
    ("Acme next=«Send MSA»", cmd("update", "Acme", next="Send MSA")),
    ('Acme next="Send MSA”', cmd("update", "Acme", next="Send MSA")),
    ("Acme next=„Send MSA“", cmd("update", "Acme", next="Send MSA")),
    # apostrophes are not quotes
    ("Acme next=‘Call Dana’s boss’", cmd("update", "Acme", next="Call Dana’s boss")),
    ("Acme next='Call Dana's boss'", cmd("update", "Acme", next="Call Dana's boss")),
    ("O'Brien Ltd stage=proposal", cmd("update", "O'Brien Ltd", stage="proposal")),
    ("Acme next=Call Dana's boss", cmd("update", "Acme", next="Call Dana's boss")),
    # values keep their punctuation; "=" inside values is fine
    ("new Globex amount=$120,000", cmd("new", "Globex", amount="$120,000")),
    ("Acme note=https://x.io/?a=b&c=d", cmd("note", "Acme", note="https://x.io/?a=b&c=d")),
    ('Acme note="a=b, c=d"', cmd("note", "Acme", note="a=b, c=d")),
    ('Acme next=" padded "', cmd("update", "Acme", next="padded")),
    # aliases, case-insensitive names, hyphen/underscore
    (
        "Acme AMT=5k Close-Date=eoq NextStep=demo due=fri fc=commit comment=hi loss_reason=x company=Acme rename=Acme2",
        cmd(
            "update",
            "Acme",
            amount="5k",
            close="eoq",
            next="demo",
            next_date="fri",
            forecast="commit",
            note="hi",
            reason="x",
            account="Acme",
            name="Acme2",
        ),
    ),
    ("Acme value=5k category=best", cmd("update", "Acme", amount="5k", forecast="best")),
    ("Acme crm-id=006ABC next-step=demo", cmd("update", "Acme", crm_id="006ABC", next="demo")),
    ("Acme forecast=best case", cmd("update", "Acme", forecast="best case")),
    # clearing the clearable fields
    ("Acme risk=", cmd("update", "Acme", risk="")),
    ('Acme next="" next_date=', cmd("update", "Acme", next="", next_date="")),
    ("Acme risk= stage=proposal", cmd("update", "Acme", risk="", stage="proposal")),
    # new
    (
        'new "Globex Corp" amount=$120,000 close=eoq stage=discovery',
        cmd("new", "Globex Corp", amount="$120,000", close="eoq", stage="discovery"),
    ),
    ("new Globex Corp amount=1", cmd("new", "Globex Corp", amount="1")),
    ("NEW Globex", cmd("new", "Globex")),
    ('new name="Globex Corp" amount=1', cmd("new", "Globex Corp", amount="1")),
    # note
    ('Acme note="Champion left"', cmd("note", "Acme", note="Champion left")),
    ("Acme notes=Champion left", cmd("note", "Acme", note="Champion left")),
    ('Acme note="Champion left" stage=negotiation', cmd("update", "Acme", note="Champion left", stage="negotiation")),
    # won / lost
    ("Acme won", cmd("won", "Acme")),
    ("Acme Corp WON", cmd("won", "Acme Corp")),
    ("Acme won amount=50k", cmd("won", "Acme", amount="50k")),
    ("Acme closed won", cmd("won", "Acme")),
    ("Acme closed-lost", cmd("lost", "Acme")),
    ('Acme lost reason="no decision"', cmd("lost", "Acme", reason="no decision")),
    ('Acme lost reason=price competitor="Initech"', cmd("lost", "Acme", reason="price", competitor="Initech")),
    ('"Lost Horizon" stage=proposal', cmd("update", "Lost Horizon", stage="proposal")),
    ("Lost Horizon Inc stage=proposal", cmd("update", "Lost Horizon Inc", stage="proposal")),
    ('Acme "won"', cmd("show", "Acme won")),
    # confirm
    ("Acme ok", cmd("confirm", "Acme")),
    ("Acme OK", cmd("confirm", "Acme")),
    ("Acme still accurate", cmd("confirm", "Acme")),
    ("Acme confirm", cmd("confirm", "Acme")),
    ("Acme Corp confirmed", cmd("confirm", "Acme Corp")),
    # list
    ("list", cmd("list")),
    ("list mine", cmd("list")),
    ("list me", cmd("list")),
    ("list @dana", cmd("list", person="dana")),
    ("list dana", cmd("list", person="dana")),
    ("list <@U123ABC>", cmd("list", person="U123ABC")),
    ("list <@U123ABC|dana>", cmd("list", person="U123ABC")),
    ("list <at>Dana Scully</at>", cmd("list", person="Dana Scully")),
    ('list "Dana Scully"', cmd("list", person="Dana Scully")),
    ("List @Dana.Scully", cmd("list", person="Dana.Scully")),
    # show / history / help
    ("show Acme", cmd("show", "Acme")),
    ("show Acme Corp", cmd("show", "Acme Corp")),
    ("history Acme", cmd("history", "Acme")),
    ("Acme", cmd("show", "Acme")),
    ("Acme Corp", cmd("show", "Acme Corp")),
    ("help", cmd("help")),
    ("?", cmd("help")),
    ("help new", cmd("help", "new")),
    ("", cmd("help")),
    ("   ", cmd("help")),
    # a pasted "/deal" or "deal" in front
    ("/deal Acme won", cmd("won", "Acme")),
    ("deal list", cmd("list")),
    ("/deal", cmd("help")),
    ("@Cadence deal Acme ok", cmd("confirm", "Acme")),
    ('"Deal Co" stage=proposal', cmd("update", "Deal Co", stage="proposal")),
    # quoted words are never keywords
    ('"Show Co" stage=proposal', cmd("update", "Show Co", stage="proposal")),
    ('"New Relic" amount=5k', cmd("update", "New Relic", amount="5k")),
    ('"help" stage=x', cmd("update", "help", stage="x")),
    # names are whitespace-collapsed, even when quoted
    ('"  Acme   Corp " stage=x', cmd("update", "Acme Corp", stage="x")),
    # invisible characters some clients insert
    ("Acme\u200b stage=proposal", cmd("update", "Acme", stage="proposal")),
]


@pytest.mark.parametrize(("args", "expected"), DEAL_COMMANDS, ids=[row[0] or "<empty>" for row in DEAL_COMMANDS])
def test_parse_deal_command(args: str, expected: DealCommand) -> None:
    assert parse_deal_command(args) == expected


def test_deal_command_results_are_plain_strings() -> None:
    """QuotedWord is an internal marker; it must not leak into commands."""
    command = parse_deal_command('"Acme Corp" next="Send MSA"')
    assert type(command.target) is str
    assert all(type(value) is str for value in command.fields.values())
    assert type(parse_deal_command('list "Dana"').person) is str


def test_deal_command_is_hashable() -> None:
    assert hash(cmd("update", "Acme", stage="x")) == hash(cmd("update", "Acme", stage="x"))


# --------------------------------------------------------------------------
# parse_deal_command: mistakes get a friendly, specific message
# --------------------------------------------------------------------------

DEAL_ERRORS: list[tuple[str, list[str]]] = [
    # unknown field: name it, suggest the closest, list valid ones
    ("Acme stgae=proposal", ["“stgae”", "Did you mean stage?", "Valid fields:", "amount", "crm_id"]),
    ("Acme amnt=5k", ["“amnt”", "Did you mean amount?"]),
    ("Acme closing=eoq", ["Did you mean close?"]),
    ("Acme zzz=1", ["“zzz”", "Valid fields: stage, amount, close"]),
    # duplicates, including via aliases
    ("Acme amount=1 amount=2", ["amount twice"]),
    ("Acme amount=1 amt=2", ["amount twice", "“amount” and “amt”"]),
    ("Acme note=a comment=b", ["note twice"]),
    # unterminated quotes
    ('Acme note="Champion left', ["no closing quote", "Champion left"]),
    ('"Acme Corp stage=proposal', ["no closing quote"]),
    ("Acme next=“Send MSA", ["no closing quote"]),
    ("Acme next=Call 'em", ["no closing quote"]),
    # = with no key
    ("=proposal", ["“=proposal”", "no field name"]),
    ("Acme =5", ["I don't know the field “Acme”"]),
    ("= proposal", ["no field name"]),
    ('"Acme" =5', ["no field name"]),
    # empty values where they can't clear anything
    ("Acme stage=", ["stage= has no value", "next, next_date, risk"]),
    ('Acme amount=""', ["amount= has no value"]),
    ("Acme stage= amount=5", ["stage= has no value"]),
    ("Acme note=", ["note= has no value"]),
    # verbs with no deal
    ("won", ["Which deal did you win?", "/deal Acme won"]),
    ("won amount=50k", ["Which deal did you win?"]),
    ("lost reason=price", ["Which deal was lost?"]),
    ("ok", ["Which deal is still accurate?"]),
    ("still accurate", ["Which deal is still accurate?"]),
    ("stage=proposal", ["Which deal?", "/deal Acme stage=proposal"]),
    ('note="hi"', ["Which deal?"]),
    ("show", ["Which deal?", "/deal show Acme"]),
    ('" "', ["Which deal?"]),
    ("history", ["/deal history Acme"]),
    ("new", ["needs a name", '/deal new "Globex Corp"']),
    ("new amount=5k", ["needs a name"]),
    ('new Globex name="Globex Corp"', ["name once"]),
    # keyword verbs refuse fields instead of dropping them
    ("list stage=proposal", ["“list” doesn't take fields", "stage="]),
    ("Help Scout stage=proposal", ["“help” doesn't take fields", '/deal "Help Scout"']),
    ("show Acme amount=5", ["“show” doesn't take fields"]),
    # confirm means "nothing changed"
    ("Acme ok amount=5k", ["“ok” confirms", "/deal Acme amount="]),
    ("Acme still accurate note=hi", ["“still accurate” confirms"]),
    # list one person, and someone real
    ("list @dana @sam", ["one person"]),
    ("list @", ["Whose deals"]),
]


@pytest.mark.parametrize(("args", "fragments"), DEAL_ERRORS, ids=[row[0] for row in DEAL_ERRORS])
def test_parse_deal_command_errors(args: str, fragments: list[str]) -> None:
    with pytest.raises(GrammarError) as caught:
        parse_deal_command(args)
    message = caught.value.message
    assert "\n" not in message
    assert str(caught.value) == message
    for fragment in fragments:
        assert fragment in message


def test_grammar_error_is_a_value_error_with_one_line_message() -> None:
    error = GrammarError("first line\nsecond   line")
    assert isinstance(error, ValueError)
    assert error.message == "first line second line"


# --------------------------------------------------------------------------
# tokenize and parse_key_values: shared with the other commands' grammars
# --------------------------------------------------------------------------

TOKENS: list[tuple[str, list[str]]] = [
    ("forecast commit=400k best=650k", ["forecast", "commit=400k", "best=650k"]),
    ("pause", ["pause"]),
    ("", []),
    ('a "b c" d', ["a", "b c", "d"]),
    ("x = 1 y =2 z= 3", ["x=1", "y=2", "z=3"]),
    ('note = "a b"', ["note=a b"]),
    ("risk= next=x", ["risk=", "next=x"]),
    ("risk=", ["risk="]),
    ("https://x.io/?a=b", ["https://x.io/?a=b"]),
    ("it's fine", ["it's", "fine"]),
    ("“one” ‘two’ «three»", ["one", "two", "three"]),
    ('""', [""]),
]


@pytest.mark.parametrize(("args", "expected"), TOKENS)
def test_tokenize(args: str, expected: list[str]) -> None:
    assert tokenize(args) == expected


def test_tokenize_marks_quoted_words() -> None:
    tokens = tokenize('plain "quoted word" k="v"')
    assert [isinstance(token, QuotedWord) for token in tokens] == [False, True, False]


def test_parse_key_values_for_another_command() -> None:
    allowed = {"commit": "commit", "best": "best_case", "best_case": "best_case"}
    words, fields = parse_key_values(tokenize("forecast commit=400k best=650k"), allowed)
    assert words == ["forecast"]
    assert fields == {"commit": "400k", "best_case": "650k"}


def test_parse_key_values_quoted_equals_is_a_word() -> None:
    words, fields = parse_key_values(tokenize('"a=b" k=v'), {"k": "k"})
    assert words == ["a=b"]
    assert fields == {"k": "v"}


def test_parse_key_values_accepts_plain_lists() -> None:
    words, fields = parse_key_values(["pause", "until=monday", "next", "week"], {"until": "until"})
    assert words == ["pause"]
    assert fields == {"until": "monday next week"}


def test_parse_key_values_clearable_is_opt_in() -> None:
    with pytest.raises(GrammarError, match="until= has no value"):
        parse_key_values(["until="], {"until": "until"})
    assert parse_key_values(["until="], {"until": "until"}, clearable={"until"}) == ([], {"until": ""})


def test_parse_key_values_rejects_bare_equals() -> None:
    with pytest.raises(GrammarError, match="no field name"):
        parse_key_values(["=x"], {"k": "k"})


def test_deal_field_aliases() -> None:
    assert set(DEAL_FIELD_ALIASES.values()) == set(DEAL_FIELDS)
    assert all(DEAL_FIELD_ALIASES[name] == name for name in DEAL_FIELDS)
    assert DEAL_FIELD_ALIASES["close-date"] == "close"
    assert DEAL_FIELD_ALIASES["due"] == "next_date"
    assert DEAL_FIELD_ALIASES["loss_reason"] == "reason"
    with pytest.raises(TypeError):
        DEAL_FIELD_ALIASES["x"] = "y"  # type: ignore[index]


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------

# Text biased towards the grammar's sharp edges: quotes, "=", mentions, keywords.
_PIECES = st.sampled_from(
    [
        "Acme",
        "Corp",
        "=",
        "stage",
        "stage=",
        "amt=5k",
        "note=",
        "risk=",
        '"',
        "'",
        "“",
        "”",
        "‘",
        "’",
        "«",
        "»",
        '"x y"',
        "won",
        "lost",
        "closed",
        "ok",
        "still",
        "list",
        "new",
        "show",
        "help",
        "?",
        "@",
        "@dana",
        "<@U1|d>",
        "<at>",
        "</at>",
        "deal",
        "/deal",
        "name=",
        "\n",
        "\xa0",
        "\u200b",
        "",
    ]
)
_GRAMMARISH = st.lists(_PIECES, max_size=12).map(" ".join) | st.lists(_PIECES, max_size=12).map("".join)


@settings(max_examples=500, deadline=None)
@given(st.text() | _GRAMMARISH)
def test_parse_deal_command_only_raises_grammar_error(text: str) -> None:
    try:
        command = parse_deal_command(text)
    except GrammarError as error:
        assert error.message
        assert "\n" not in error.message
    else:
        assert command.target is None or command.target.strip() == command.target != ""
        assert set(command.fields) <= set(DEAL_FIELDS)


@settings(max_examples=300, deadline=None)
@given(st.text() | _GRAMMARISH)
def test_split_invocation_never_raises(text: str) -> None:
    result = split_invocation(text)
    assert result is None or result[0] in COMMAND_NAMES


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzACME0123456789&.-", min_size=1, max_size=8).filter(
    lambda word: (
        word.casefold()
        not in {"new", "list", "show", "history", "help", "won", "lost", "ok", "okay", "confirm", "confirmed", "deal"}
        and not word.casefold().startswith(("closed", "still"))
    )
)
_VALUE = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789$,.-", min_size=1, max_size=8), min_size=1).map(
    " ".join
)


@settings(max_examples=300, deadline=None)
@given(
    target=st.lists(_WORD, min_size=1, max_size=3).map(" ".join),
    fields=st.dictionaries(st.sampled_from(DEAL_FIELDS), _VALUE, min_size=1, max_size=5),
    quote=st.sampled_from(['"{}"', "“{}”", "'{}'", "«{}»"]),
)
def test_quoted_updates_round_trip(target: str, fields: dict[str, str], quote: str) -> None:
    text = f"{target} " + " ".join(f"{key}={quote.format(value)}" for key, value in fields.items())
    command = parse_deal_command(text)
    assert command.target == target
    assert command.fields == fields
    assert command.verb == ("note" if fields.keys() == {"note"} else "update")
