"""manifest.yaml: valid against Slack's published schema, and in step with the listeners both ways — every
command, shortcut and event it declares has a listener, and every listener is declared. Every action id
the message model can put on a button is handled too."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.settings import Settings
from bot.slack.app import SlackDeps, create_slack_app
from bot.slack.installations import BOT_SCOPES
from bot.slack.modals import CALLBACKS
from cadences.catalog import build_router
from cadences.clock import ManualClock
from storage.db import Database

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = ROOT.parent / "shared" / "schemas" / "slack-app-manifest.v1.schema.json"
MANIFEST = yaml.safe_load((ROOT / "manifest.yaml").read_text(encoding="utf-8"))


def _deps() -> tuple[SlackDeps, Any]:
    deps = SlackDeps(
        Database("sqlite+aiosqlite:///:memory:"), ManualClock(datetime(2026, 11, 24, 18, tzinfo=UTC)), build_router()
    )
    app = create_slack_app(deps, Settings(slack_bot_token="xoxb-x", slack_signing_secret="s"))
    return deps, app


def test_the_manifest_validates_against_slacks_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.exists():
        pytest.skip(f"{SCHEMA} is absent: ../shared is beside the checkout in CI, not in a user's clone")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(MANIFEST)
    ]
    assert errors == []


def test_every_declared_command_shortcut_and_event_has_a_listener_and_the_reverse() -> None:
    deps, app = _deps()
    features, settings = MANIFEST["features"], MANIFEST["settings"]
    assert {c["command"] for c in features["slash_commands"]} == deps.registry.commands
    assert {s["callback_id"] for s in features["shortcuts"]} == deps.registry.shortcuts
    assert set(settings["event_subscriptions"]["bot_events"]) == deps.registry.events
    assert settings["interactivity"]["is_enabled"] is True
    assert bool(settings["interactivity"].get("message_menu_options_url")) == bool(deps.registry.options)
    assert set(CALLBACKS) == deps.registry.views
    # Nothing is registered behind the registry's back: one Bolt listener per entry (the message event
    # serves three subscriptions) plus the catch-all for buttons that carry a command.
    expected = deps.registry.count - len(["message.groups", "message.im"]) + 1
    assert len(app._async_listeners) == expected


def test_the_requested_scopes_are_the_manifests_least_privilege_list() -> None:
    assert MANIFEST["oauth_config"]["scopes"]["bot"] == list(BOT_SCOPES)
    assert "chat:write.public" not in BOT_SCOPES and not MANIFEST["oauth_config"]["scopes"].get("user")


def test_every_request_url_is_the_one_events_endpoint() -> None:
    urls = [c["url"] for c in MANIFEST["features"]["slash_commands"]]
    urls += [
        MANIFEST["settings"]["event_subscriptions"]["request_url"],
        MANIFEST["settings"]["interactivity"]["request_url"],
    ]
    assert set(urls) == {"https://YOUR-HOST/slack/events"}
    assert MANIFEST["oauth_config"]["redirect_urls"] == ["https://YOUR-HOST/slack/oauth_redirect"]


def _model_action_ids() -> set[str]:
    """Every literal `action_id=` the platform-neutral code puts on a Button or Choice."""
    found: set[str] = set()
    for path in (ROOT / "cadences").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "action_id" and isinstance(node.value, ast.Constant):
                found.add(str(node.value.value))
    return found


def test_every_action_the_message_model_emits_has_a_listener() -> None:
    deps, _ = _deps()
    emitted = _model_action_ids()
    assert {"deal_update", "deal_confirm", "run_command", "debrief_open"} <= emitted
    assert emitted - deps.registry.actions == set()
