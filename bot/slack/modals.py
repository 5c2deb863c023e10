"""Block Kit modals: the deal form (update and new), the debrief questions, the forecast call and "log as
deal update" — pure builders and parsers, no client and no database.

Every input block's `block_id` is the field name the services use in `FieldErrors` (`stage`, `amount`,
`close`, ...), so a refusal lands next to its field with `response_action: errors`. What a form needs
to know on submission (the deal and the version the person saw, where to confirm) travels in
`private_metadata` as JSON. Text shown in labels and options is escaped like every other Slack text;
initial values of inputs are not (Slack shows them as typed and hands them back verbatim).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bot.slack.render import JSONDict, escape
from cadences.deal_form import DealChoice, DealValues, FieldKind, FormField, fields
from cadences.debrief_form import DebriefForm

DEAL_FORM = "deal_form"
NEW_DEAL_FORM = "new_deal_form"
DEBRIEF_FORM = "debrief_form"
FORECAST_FORM = "forecast_form"
LOG_NOTE_FORM = "log_deal_note"
ACTION_ITEM_FORM = "action_item_form"
DEAL_PICK = "deal_pick"
"""The action id of every deal picker (a static or external select)."""
PICK_BLOCK = "deal"
CALLBACKS = (DEAL_FORM, NEW_DEAL_FORM, DEBRIEF_FORM, FORECAST_FORM, LOG_NOTE_FORM, ACTION_ITEM_FORM)

STATIC_OPTIONS_MAX = 100
LABEL_MAX = 2000
OPTION_TEXT_MAX = 75
TITLE_MAX = 24
INPUT_MAX = 3000


def _plain(text: str, limit: int = LABEL_MAX) -> JSONDict:
    escaped = escape(text)
    return {"type": "plain_text", "text": escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"}


def _option(label: str, value: str) -> JSONDict:
    return {"text": _plain(label or "—", OPTION_TEXT_MAX), "value": value}


def _view(callback_id: str, title: str, blocks: list[JSONDict], metadata: Mapping[str, Any], submit: str) -> JSONDict:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": _plain(title, TITLE_MAX),
        "submit": _plain(submit, TITLE_MAX),
        "close": _plain("Cancel", TITLE_MAX),
        "private_metadata": json.dumps(dict(metadata), separators=(",", ":")),
        "blocks": blocks,
    }


def metadata(view: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON a form carries (`{}` for a view with none)."""
    raw = view.get("private_metadata") or ""
    try:
        found = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


# --- inputs ---------------------------------------------------------------------------------------


def _input(block_id: str, label: str, element: JSONDict, *, optional: bool = True, hint: str | None = None) -> JSONDict:
    block: JSONDict = {
        "type": "input",
        "block_id": block_id,
        "label": _plain(label),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = _plain(hint)
    return block


def _text(action_id: str, initial: str | None = None, *, multiline: bool = False, placeholder: str = "") -> JSONDict:
    element: JSONDict = {"type": "plain_text_input", "action_id": action_id, "multiline": multiline}
    if initial:
        element["initial_value"] = initial[:INPUT_MAX]
    if placeholder:
        element["placeholder"] = _plain(placeholder, 150)
    return element


def _date(action_id: str, initial: str | None) -> JSONDict:
    """A date picker; `initial` in ISO form."""
    element: JSONDict = {"type": "datepicker", "action_id": action_id}
    if initial:
        element["initial_date"] = initial
    return element


def _select(action_id: str, options: Sequence[tuple[str, str]], initial: str | None) -> JSONDict:
    rendered = [_option(label, value) for value, label in options]
    element: JSONDict = {"type": "static_select", "action_id": action_id, "options": rendered}
    chosen = next((o for o in rendered if o["value"] == initial), None)
    if chosen is not None:
        element["initial_option"] = chosen
    return element


# --- the deal picker ------------------------------------------------------------------------------


def deal_picker(
    choices: Sequence[DealChoice], total: int, selected: DealChoice | None = None, *, dispatch: bool = True
) -> JSONDict:
    """A static select of up to 100 deals, or an external select (options from the `deal_pick` options
    listener, searched as the person types) when they can change more. With `dispatch`, choosing a deal
    sends a block action at once so the form can fill in that deal's values."""
    if total <= STATIC_OPTIONS_MAX and choices:
        element = _select(DEAL_PICK, [(str(c.id), c.label) for c in choices], str(selected.id) if selected else None)
    else:
        element = {"type": "external_select", "action_id": DEAL_PICK, "min_query_length": 1}
        if selected is not None:
            element["initial_option"] = _option(selected.label, str(selected.id))
    element["placeholder"] = _plain("Choose a deal", 150)
    block = _input(PICK_BLOCK, "Deal", element, optional=False)
    block["dispatch_action"] = dispatch
    return block


def deal_options(choices: Sequence[DealChoice]) -> list[JSONDict]:
    """Options for an external select (at most 100)."""
    return [_option(c.label, str(c.id)) for c in choices[:STATIC_OPTIONS_MAX]]


# --- the deal form (its fields: cadences.deal_form) ------------------------------------------------


def _field_block(field: FormField, initial: str | None) -> JSONDict:
    if field.kind is FieldKind.CHOICE:
        element = _select(field.key, field.choices, initial)
    elif field.kind is FieldKind.DATE:
        element = _date(field.key, initial)
    else:
        multiline = field.kind is FieldKind.LONG_TEXT
        element = _text(field.key, initial, multiline=multiline, placeholder=field.placeholder)
    return _input(field.key, field.label, element, optional=not field.required, hint=field.hint or None)


def _deal_fields(stages: Sequence[tuple[str, str]], values: DealValues | None, *, new: bool) -> list[JSONDict]:
    shown = values.as_raw() if values else {}
    return [_field_block(field, shown.get(field.key)) for field in fields(stages, new=new)]


def deal_form(
    picker: JSONDict | None,
    stages: Sequence[tuple[str, str]],
    values: DealValues | None,
    meta: Mapping[str, Any],
) -> JSONDict:
    """The deal update form. With a picker and no deal yet, only the picker shows; picking a deal rebuilds
    the form with that deal's values (`values`) and its version in the metadata."""
    blocks = [picker] if picker is not None else []
    if values is not None:
        if picker is None:
            blocks.append({"type": "header", "text": _plain(values.name, 150)})
        blocks += _deal_fields(stages, values, new=False)
    else:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "Choose a deal to update."}]})
    full = {**meta, "deal": values.id if values else None, "version": values.version if values else None}
    return _view(DEAL_FORM, "Update a deal", blocks, full, "Save")


def new_deal_form(stages: Sequence[tuple[str, str]], meta: Mapping[str, Any]) -> JSONDict:
    return _view(NEW_DEAL_FORM, "New deal", _deal_fields(stages, None, new=True), meta, "Create")


def state_values(view: Mapping[str, Any]) -> dict[str, str]:
    """Every input's submitted value as text: a select's value, a date in ISO form, typed text as typed
    ("" when left empty), keyed by block id."""
    found: dict[str, str] = {}
    for block_id, actions in (view.get("state") or {}).get("values", {}).items():
        for element in actions.values():
            kind = element.get("type")
            if kind in ("static_select", "external_select"):
                option = element.get("selected_option") or {}
                found[block_id] = str(option.get("value") or "")
            elif kind == "datepicker":
                found[block_id] = str(element.get("selected_date") or "")
            else:
                found[block_id] = str(element.get("value") or "")
    return found


def field_errors(errors: Mapping[str, str], blocks: Sequence[str], fallback: str) -> dict[str, str]:
    """Errors keyed by block id: a field the form has gets its own; any other (an unknown field, the
    whole deal) is put on `fallback`, joined, so nothing is lost."""
    placed: dict[str, str] = {}
    for key, message in errors.items():
        target = key if key in blocks else fallback
        placed[target] = f"{placed[target]} {message}" if target in placed else message
    return {key: value[:LABEL_MAX] for key, value in placed.items()}


def block_ids(view: Mapping[str, Any]) -> list[str]:
    return [str(b["block_id"]) for b in view.get("blocks", []) if b.get("type") == "input" and "block_id" in b]


# --- debrief --------------------------------------------------------------------------------------


def debrief_form(form: DebriefForm, meta: Mapping[str, Any]) -> JSONDict:
    """One input per question (a select for a question with choices), the answers so far filled in."""
    blocks: list[JSONDict] = [{"type": "section", "text": {"type": "mrkdwn", "text": escape(form.reason)[:3000]}}]
    for question in form.questions:
        answered = str(form.answers.get(question.key) or "")
        if question.choices:
            element = _select(question.key, [(c, c) for c in question.choices], answered or None)
        else:
            element = _text(question.key, answered or None, multiline=True)
        blocks.append(_input(question.key, question.text, element))
    return _view(DEBRIEF_FORM, form.title, blocks, {**meta, "debrief": form.debrief_id}, "Save answers")


# --- forecast call --------------------------------------------------------------------------------


def forecast_form(quarter: str, commit: str, best_case: str, meta: Mapping[str, Any]) -> JSONDict:
    """The forecast owner's call: commit and best case for the quarter, with this quarter's roll-up as
    the starting point."""
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": escape(f"Your call for {quarter}.")}},
        _input("commit", "Commit", _text("commit", commit, placeholder="450k"), optional=False),
        _input("best_case", "Best case", _text("best_case", best_case, placeholder="600k"), optional=False),
        _input("note", "Note", _text("note", multiline=True)),
    ]
    return _view(FORECAST_FORM, "Forecast call", blocks, {**meta, "quarter": quarter}, "Call it")


# --- log a message as a deal note -----------------------------------------------------------------


def log_note_form(picker: JSONDict, note: str, meta: Mapping[str, Any]) -> JSONDict:
    blocks = [
        picker,
        _input("note", "Note", _text("note", note, multiline=True), optional=False),
    ]
    return _view(LOG_NOTE_FORM, "Log as deal update", blocks, meta, "Add note")


# --- an action item on a deal (from the review thread) --------------------------------------------


def action_item_form(
    deal_name: str, people: Sequence[tuple[str, str]], owner: str | None, meta: Mapping[str, Any]
) -> JSONDict:
    """What is to be done, by whom (the deal's owner by default) and by when."""
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{escape(deal_name)}*"}},
        _input(
            "text",
            "What needs doing",
            _text("text", multiline=True, placeholder="Book the CFO meeting"),
            optional=False,
        ),
        _input("owner", "Owner", _select("owner", people, owner), optional=False),
        _input("due", "Due", _date("due", None)),
    ]
    return _view(ACTION_ITEM_FORM, "Add action item", blocks, meta, "Add")
