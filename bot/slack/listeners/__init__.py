"""Slack listeners, one module per feature, each with `register(app, deps)`; `register_all` calls them in
the order Bolt needs (Bolt runs the first listener that matches, and `actions` ends with a catch-all
for any button that carries a command)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners import actions, commands, events, home, shortcuts, views

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps


def register_all(app: AsyncApp, deps: SlackDeps) -> None:
    commands.register(app, deps)
    shortcuts.register(app, deps)
    views.register(app, deps)
    home.register(app, deps)
    events.register(app, deps)
    actions.register(app, deps)
