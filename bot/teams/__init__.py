"""Microsoft Teams: the one place that knows the Bot Framework.

Everything that imports botbuilder / botframework lives in this package, so moving from the archived
Bot Framework Python SDK to the Microsoft 365 Agents SDK touches only `bot/teams/`. `render.py` turns
the neutral message model into Adaptive Cards (pure functions, no SDK); `port.py` delivers them through
the Bot Connector API for the cadence engine; `package.py` builds the app package for side-loading.
"""
