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
from datetime import date
from decimal import Decimal
from typing import Any

from bot.teams.render import CARD_SCHEMA, CARD_VERSION, escape
from cadences.deal_form import DealChoice, DealValues, FieldKind, FormField, amount_text, fields
from cadences.deal_form import changed_fields as fields_changed
from cadences.debrief_form import DebriefForm, changed_answers
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
AMOUNT_PLACEHOLDER = "48000"
"""Input.Number takes digits only, so not the form's usual "48k, $48,000" example."""
DEAL_INPUTS = tuple(f.key for f in fields((), new=False))


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
        try:
            element["value"] = float(value) if "." in value else int(value)
        except ValueError:  # refused text such as "48k" from a client that does not enforce numbers:
            element = {"type": "Input.Text", "id": ident, "label": label, "value": value}  # keep what was typed
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


# --- the deal form (its fields: cadences.deal_form) ------------------------------------------------


def _field_input(field: FormField, value: str | None) -> JSONDict:
    """One input of the deal form. An input has no hint line in Adaptive Cards 1.5, so a hint goes in
    its label, in brackets."""
    if field.kind is FieldKind.CHOICE:
        return _choices(field.key, field.label, field.choices, value, required=field.required)
    if field.kind is FieldKind.DATE:
        return _input_date(field.key, field.label, value, required=field.required)
    if field.kind is FieldKind.AMOUNT:
        return _input_number(field.key, field.label, value, placeholder=AMOUNT_PLACEHOLDER)
    hint = field.hint.rstrip(".")
    label = f"{field.label} ({hint[:1].lower()}{hint[1:]})" if hint else field.label
    multiline = field.kind is FieldKind.LONG_TEXT
    return _input_text(
        field.key, label, value, multiline=multiline, placeholder=field.placeholder, required=field.required
    )


def _deal_inputs(stages: Sequence[tuple[str, str]], shown: Mapping[str, str], *, new: bool) -> list[JSONDict]:
    return [_field_input(field, shown.get(field.key)) for field in fields(stages, new=new)]


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
    """`cadences.deal_form.changed_fields` of a card: Input.Number hands back `48000` or `48000.0` for an amount
    the person did not touch, so an amount equal to the current one is read as the current one."""
    before = amount_text(current.amount)
    typed = submitted.get("amount", "").strip()
    if typed and before and _same_amount(typed, before):
        submitted = {**submitted, "amount": before}
    return fields_changed(submitted, current)


def _same_amount(typed: str, current: str) -> bool:
    try:
        return Decimal(typed) == Decimal(current)
    except ArithmeticError:
        return False


def deal_picker(choices: Sequence[DealChoice], *, error: str | None = None) -> JSONDict:
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


# --- debrief --------------------------------------------------------------------------------------


def debrief_form(form: DebriefForm, *, errors: Mapping[str, str] | None = None, notice: str | None = None) -> JSONDict:
    """One input per question (a choice set for a question with choices), the answers so far filled in,
    errors (keyed by question) under their question."""
    placed, rest = place_errors(errors or {}, [q.key for q in form.questions])
    body = [_title(form.title), _text(form.reason)]
    for line in (notice, rest):
        if line:
            body.append(_error(line))
    for question in form.questions:
        answered = str(form.answers.get(question.key) or "")
        ident = ANSWER_PREFIX + question.key
        if question.choices:
            body.append(_choices(ident, question.text, [(c, c) for c in question.choices], answered or None))
        else:
            body.append(_input_text(ident, question.text, answered or None, multiline=True))
        if question.key in placed:
            body.append(_error(placed[question.key]))
    return _card(body, [_submit("Save answers", DEBRIEF_FORM, debrief=form.debrief_id)])


def debrief_answers(submitted: Mapping[str, str], answers: Mapping[str, Any]) -> dict[str, str]:
    """`cadences.debrief_form.changed_answers` of a card, whose answer inputs are `answer_<question key>`."""
    typed = {
        ident[len(ANSWER_PREFIX) :]: value for ident, value in submitted.items() if ident.startswith(ANSWER_PREFIX)
    }
    return changed_answers(typed, answers)


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
