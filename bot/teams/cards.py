"""Input cards (Adaptive Cards 1.5): the deal form, the deal picker, the new-deal form, the debrief
questions and the forecast call — pure builders and parsers, no connector and no database.

Every input's `id` is the field name the services use in `FieldErrors` (`stage`, `amount`, `close`, ...;
a debrief answer is `answer_<question key>`), so a refusal is shown as a red line right under its field,
the way Slack modals show it. What a form needs to know on submission (which form, the deal and the
version the person saw) travels in the submit action's `data` under `FORM_KEY`, which Teams hands back
merged with the inputs' values — as a message `value` for Action.Submit, or in an `adaptiveCard/action`
invoke for Action.Execute. Read-only text goes through the renderer's Markdown escaping like every card;
labels, choice titles and input values are not Markdown and stay as typed (Teams hands values back
verbatim).

Also here: `settle`, which rewrites a sent neutral message once one of its buttons has worked (the
nudge's "Still accurate", a check-in's status), so the card shows what was done instead of inviting a
second tap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from bot.teams.render import CARD_SCHEMA, CARD_VERSION, escape
from cadences.engagement_file import DebriefQuestion
from cadences.messages import Actions, Block, Button, DealItem, DealList, Message, Paragraph

JSONDict = dict[str, Any]

FORM_KEY = "cadence_form"
"""The key of a form's own data in what Teams sends back (never an input id)."""
DEAL_FORM = "deal_form"
DEAL_PICK = "deal_pick"
NEW_DEAL_FORM = "new_deal_form"
DEBRIEF_FORM = "debrief_form"
FORECAST_FORM = "forecast_form"
FORMS = (DEAL_FORM, DEAL_PICK, NEW_DEAL_FORM, DEBRIEF_FORM, FORECAST_FORM)
ANSWER_PREFIX = "answer_"
PICK_INPUT = "deal"
CHOICES_MAX = 100
INPUT_MAX = 3000
FORECASTS = (("commit", "Commit"), ("best_case", "Best case"), ("pipeline", "Pipeline"), ("omitted", "Omitted"))
DEAL_INPUTS = ("stage", "amount", "close", "forecast", "next", "next_date", "risk", "note")


# --- elements -------------------------------------------------------------------------------------


def _card(body: list[JSONDict], actions: list[JSONDict]) -> JSONDict:
    return {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "body": body,
        "actions": actions,
        "msteams": {"width": "Full"},
    }


def _text(text: str, **style: Any) -> JSONDict:
    return {"type": "TextBlock", "text": escape(text), "wrap": True, **style}


def _title(text: str) -> JSONDict:
    return _text(text, size="Medium", weight="Bolder")


def _error(text: str) -> JSONDict:
    """The red line under a field (or at the top of the form, for what concerns the whole form)."""
    return _text(text, color="Attention", size="Small", spacing="None")


def _submit(title: str, form: str, **data: Any) -> JSONDict:
    return {"type": "Action.Submit", "title": title, "style": "positive", "data": {FORM_KEY: {"form": form, **data}}}


def _input_text(
    ident: str, label: str, value: str | None, *, multiline: bool = False, placeholder: str = "", required: bool = False
) -> JSONDict:
    element: JSONDict = {
        "type": "Input.Text",
        "id": ident,
        "label": label,
        "isMultiline": multiline,
        "maxLength": INPUT_MAX,
    }
    if value:
        element["value"] = value[:INPUT_MAX]
    if placeholder:
        element["placeholder"] = placeholder
    if required:
        element |= {"isRequired": True, "errorMessage": f"{label} is required."}
    return element


def _input_number(ident: str, label: str, value: str | None, *, placeholder: str = "") -> JSONDict:
    element: JSONDict = {"type": "Input.Number", "id": ident, "label": label, "min": 0}
    if value:
        element["value"] = float(value) if "." in value else int(value)
    if placeholder:
        element["placeholder"] = placeholder
    return element


def _input_date(ident: str, label: str, value: date | str | None, *, required: bool = False) -> JSONDict:
    element: JSONDict = {"type": "Input.Date", "id": ident, "label": label}
    if value:
        element["value"] = value.isoformat() if isinstance(value, date) else value
    if required:
        element |= {"isRequired": True, "errorMessage": f"{label} is required."}
    return element


def _choices(
    ident: str, label: str, options: Sequence[tuple[str, str]], value: str | None, *, required: bool = False
) -> JSONDict:
    element: JSONDict = {
        "type": "Input.ChoiceSet",
        "id": ident,
        "label": label,
        "style": "compact",
        "choices": [{"title": title or "—", "value": key} for key, title in options[:CHOICES_MAX]],
    }
    if value and any(key == value for key, _ in options):
        element["value"] = value
    if required:
        element |= {"isRequired": True, "errorMessage": f"Choose a {label.lower()}."}
    return element


def _with_errors(inputs: list[JSONDict], errors: Mapping[str, str]) -> list[JSONDict]:
    """Each input followed by its error line, if it has one."""
    body: list[JSONDict] = []
    for element in inputs:
        body.append(element)
        message = errors.get(str(element.get("id")))
        if message:
            body.append(_error(message))
    return body


def place_errors(errors: Mapping[str, str], inputs: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """Errors keyed by input id, and what belongs to no input (an unknown field, the whole deal) joined
    into one line for the top of the form, so nothing is lost."""
    placed = {key: message for key, message in errors.items() if key in inputs}
    rest = " ".join(message for key, message in errors.items() if key not in inputs)
    return placed, rest or None


def form_data(value: Mapping[str, Any] | None) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    """(form, its data, the inputs' values as text) of a submitted form; None for anything else."""
    if not isinstance(value, Mapping):
        return None
    own = value.get(FORM_KEY)
    if not isinstance(own, Mapping) or own.get("form") not in FORMS:
        return None
    inputs = {
        str(k): "" if v is None else str(v) for k, v in value.items() if k != FORM_KEY and not isinstance(v, dict)
    }
    return str(own["form"]), dict(own), inputs


# --- the deal form --------------------------------------------------------------------------------


def amount_text(amount: Decimal | None) -> str:
    """An amount as a person would type it back: 48000, 48000.5 (no separators, no currency)."""
    if amount is None:
        return ""
    text = f"{amount:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class DealValues:
    """A deal's editable fields as the form shows them."""

    id: int
    version: int
    name: str
    stage: str
    amount: Decimal | None
    close: date | None
    forecast: str
    next_step: str | None
    next_date: date | None
    risk: str | None

    def as_raw(self) -> dict[str, str]:
        """What the form would submit untouched, in the `/deal` grammar's field names."""
        return {
            "stage": self.stage,
            "amount": amount_text(self.amount),
            "close": self.close.isoformat() if self.close else "",
            "forecast": self.forecast,
            "next": self.next_step or "",
            "next_date": self.next_date.isoformat() if self.next_date else "",
            "risk": self.risk or "",
        }


def _deal_inputs(stages: Sequence[tuple[str, str]], shown: Mapping[str, str], *, new: bool) -> list[JSONDict]:
    inputs = []
    if new:
        inputs.append(_input_text("name", "Deal name", shown.get("name"), placeholder="Globex Corp", required=True))
    inputs += [
        _choices("stage", "Stage", stages, shown.get("stage")),
        _input_number("amount", "Amount", shown.get("amount"), placeholder="48000"),
        _input_date("close", "Close date", shown.get("close"), required=new),
        _choices("forecast", "Forecast", FORECASTS, shown.get("forecast")),
        _input_text("next", "Next step", shown.get("next"), placeholder="Send the MSA"),
        _input_date("next_date", "Next step by", shown.get("next_date")),
    ]
    if not new:
        inputs.append(_input_text("risk", "Risk", shown.get("risk"), multiline=True))
    inputs.append(_input_text("note", "Note (kept in the deal's history with your name)", None, multiline=True))
    return inputs


def deal_form(
    values: DealValues,
    stages: Sequence[tuple[str, str]],
    *,
    submitted: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    notice: str | None = None,
) -> JSONDict:
    """The deal update form, filled with the deal's values (or, after a refusal, with what the person
    submitted, so nothing they typed is lost), each error under its field, and the version they saw in
    the submit data. `notice` is a line for the whole form (a conflict, a denial) shown at the top."""
    shown = {**values.as_raw(), **{k: v for k, v in (submitted or {}).items() if k in DEAL_INPUTS and k != "note"}}
    placed, rest = place_errors(errors or {}, DEAL_INPUTS)
    body = [_title(f"Update {values.name}")]
    for line in (notice, rest):
        if line:
            body.append(_error(line))
    body += _with_errors(_deal_inputs(stages, shown, new=False), placed)
    return _card(body, [_submit("Save", DEAL_FORM, deal=values.id, version=values.version)])


def changed_fields(submitted: Mapping[str, str], current: DealValues) -> dict[str, str]:
    """The fields the person changed, in the `/deal` grammar (untouched fields are not re-sent, so a close
    date already in the past is not refused when they only changed the next step). Input.Number hands
    back `48000` or `48000.0`; an amount equal to the current one is no change. A note always counts."""
    before = current.as_raw()
    raw: dict[str, str] = {}
    for key, value in submitted.items():
        if key not in before:
            continue
        typed = value.strip()
        if key == "amount" and typed and before[key] and _same_amount(typed, before[key]):
            continue
        if typed != before[key]:
            raw[key] = typed
    note = submitted.get("note", "").strip()
    if note:
        raw["note"] = note
    return raw


def _same_amount(typed: str, current: str) -> bool:
    try:
        return Decimal(typed) == Decimal(current)
    except ArithmeticError:
        return False


def deal_picker(choices: Sequence[tuple[int, str]], *, error: str | None = None) -> JSONDict:
    """Bare `deal`: choose one of the deals the person may change; submitting sends its form."""
    body = [_title("Update a deal")]
    if error:
        body.append(_error(error))
    body.append(_choices(PICK_INPUT, "Deal", [(str(i), label) for i, label in choices], None, required=True))
    if len(choices) > CHOICES_MAX:
        body.append(_text(f"Showing the first {CHOICES_MAX}; type `deal <name>` to find another.", isSubtle=True))
    return _card(body, [_submit("Edit", DEAL_PICK)])


def new_deal_form(
    stages: Sequence[tuple[str, str]],
    *,
    submitted: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    notice: str | None = None,
) -> JSONDict:
    inputs = ("name", *DEAL_INPUTS)
    placed, rest = place_errors(errors or {}, inputs)
    body = [_title("New deal")]
    for line in (notice, rest):
        if line:
            body.append(_error(line))
    shown = {k: v for k, v in (submitted or {}).items() if k in inputs and k != "note"}
    body += _with_errors(_deal_inputs(stages, shown, new=True), placed)
    return _card(body, [_submit("Create", NEW_DEAL_FORM)])


def new_deal_fields(submitted: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """(name, fields) of the new-deal form, empty fields left out."""
    fields = {key: value.strip() for key, value in submitted.items() if key in DEAL_INPUTS and value.strip()}
    return submitted.get("name", "").strip(), fields


# --- debrief --------------------------------------------------------------------------------------


def debrief_form(
    debrief_id: int,
    title: str,
    reason: str,
    questions: Sequence[DebriefQuestion],
    answers: Mapping[str, Any],
    *,
    errors: Mapping[str, str] | None = None,
    notice: str | None = None,
) -> JSONDict:
    """One input per question (a choice set for a question with choices), the answers so far filled in,
    errors (keyed by question) under their question."""
    placed, rest = place_errors(errors or {}, [q.key for q in questions])
    body = [_title(title), _text(reason)]
    for line in (notice, rest):
        if line:
            body.append(_error(line))
    for question in questions:
        answered = str(answers.get(question.key) or "")
        ident = ANSWER_PREFIX + question.key
        if question.choices:
            body.append(_choices(ident, question.text, [(c, c) for c in question.choices], answered or None))
        else:
            body.append(_input_text(ident, question.text, answered or None, multiline=True))
        if question.key in placed:
            body.append(_error(placed[question.key]))
    return _card(body, [_submit("Save answers", DEBRIEF_FORM, debrief=debrief_id)])


def debrief_answers(submitted: Mapping[str, str], answers: Mapping[str, Any]) -> dict[str, str]:
    """The answers given or changed in the form, by question key (empty inputs are not answers)."""
    found: dict[str, str] = {}
    for ident, value in submitted.items():
        if not ident.startswith(ANSWER_PREFIX) or not value.strip():
            continue
        key = ident[len(ANSWER_PREFIX) :]
        if value.strip() != str(answers.get(key) or ""):
            found[key] = value.strip()
    return found


# --- forecast call --------------------------------------------------------------------------------


def forecast_form(
    quarter: str,
    commit: str,
    best_case: str,
    *,
    note: str | None = None,
    errors: Mapping[str, str] | None = None,
) -> JSONDict:
    """The forecast owner's call: commit and best case for the quarter, this quarter's roll-up (or what
    they typed, after a refusal) as the starting point."""
    inputs = [
        _input_text("commit", "Commit", commit, placeholder="450k", required=True),
        _input_text("best_case", "Best case", best_case, placeholder="600k", required=True),
        _input_text("note", "Note", note, multiline=True),
    ]
    body = [_title("Forecast call"), _text(f"Your call for {quarter}.")]
    body += _with_errors(inputs, errors or {})
    return _card(body, [_submit("Call it", FORECAST_FORM, quarter=quarter)])


# --- settling a sent message once a button worked --------------------------------------------------


ButtonTest = Callable[[Button], bool]


def settle(message: Message, done: ButtonTest, line: str) -> Message:
    """`message` with every button that `done` picks taken away and `line` shown in its place: a deal's
    item loses its buttons and gains `line` as a reason; an actions row with such a button becomes the
    line (its other buttons go too: the row asked one question, now answered)."""
    blocks: list[Block] = []
    for block in message.blocks:
        if isinstance(block, Actions) and any(done(b) for b in block.buttons):
            blocks.append(Paragraph(text=line))
        elif isinstance(block, DealList):
            items = [_settled_item(item, done, line) for item in block.items]
            blocks.append(block.model_copy(update={"items": items}))
        else:
            blocks.append(block)
    return message.model_copy(update={"blocks": blocks})


def _settled_item(item: DealItem, done: ButtonTest, line: str) -> DealItem:
    if not any(done(b) for b in item.buttons):
        return item
    return item.model_copy(update={"buttons": [], "reasons": [*item.reasons, line]})
