"""Logging for every `cadence` command: plain text for a terminal, or one JSON object per line
(`LOG_FORMAT=json`) for a log pipeline.

Two rules keep secrets and people's words out of the logs:
- **Libraries stay at INFO or above**, even with `--debug`: at DEBUG slack_sdk prints every request and
  response body, Bolt and the Bot Framework whole payloads; SQLAlchemy and aiosqlite stay at WARNING, as
  they print every statement's parameters. Cadence's own loggers (`bot`, `cadences`, `storage`) follow
  the level asked for, and never format a token or a payload at any level.
- **A redaction filter** on the handler masks anything shaped like a Slack token (`xoxb-…`, `xapp-…`,
  `xoxe-…`) or an `Authorization: Bearer …` value in any record that reaches it, whoever logged it:
  the last line of defence, not the first.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LIBRARIES = (
    "slack_sdk",
    "slack_bolt",
    "bot.slack.bolt",  # Bolt's own framework logger, named into our tree by bot/slack/app.py
    "botbuilder",
    "botframework",
    "msrest",
    "msal",
    "aiohttp",
    "urllib3",
    "asyncio",
)
STATEMENT_LOGGERS = ("sqlalchemy", "aiosqlite")
"""They log every SQL statement with its parameters (what people typed) at INFO or DEBUG: WARNING at least."""
OWN = ("bot", "cadences", "storage")
SECRET = re.compile(r"\b(xox[a-z]|xapp)-[A-Za-z0-9-]+|(?i:(bearer)\s+)[A-Za-z0-9._~+/=-]+")
REDACTED = "[redacted]"
STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime", "taskName"}
)


def redact(text: str) -> str:
    """`text` with every token-shaped word replaced by its prefix and `[redacted]`."""
    return SECRET.sub(lambda m: f"{m.group(1)}-{REDACTED}" if m.group(1) else f"{m.group(2)} {REDACTED}", text)


class RedactSecrets(logging.Filter):
    """Masks tokens in a record's final message (its arguments merged in) and its exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class WithoutBodies(logging.Filter):
    """Bolt logs the whole body of a request whose signature fails (at INFO: anyone on the internet could
    put words in our logs that way) and of one a global middleware left unanswered: the line is kept,
    the body is dropped."""

    BODY = re.compile(r" \((?:signature: .*|\{.*\})\)\Z", re.S)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.BODY.sub(" (request body not logged)", message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


BODY_LOGGERS = ("slack_bolt.RequestVerification", "slack_bolt.AsyncRequestVerification", "bot.slack.bolt")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the record's `extra`
    fields, and `exception` with the stack when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in STANDARD_ATTRIBUTES and not key.startswith("_"):
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _Installed(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` installs (so calling it again replaces it instead of adding one)."""


def checked(level: str | int, fmt: str) -> int:
    """The numeric level; raises ValueError, saying which variable is wrong, for an unknown level or format."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"LOG_LEVEL {level!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)")
    if fmt not in ("text", "json"):
        raise ValueError(f"LOG_FORMAT {fmt!r} is not 'text' or 'json'")
    return numeric


def configure_logging(level: str | int = "WARNING", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every log record to `stream` (stderr) as text or JSON; `level` for Cadence's own loggers,
    at least INFO for the libraries. Raises ValueError for an unknown level or format."""
    numeric = checked(level, fmt)
    handler = _Installed(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Installed)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in OWN:
        logging.getLogger(name).setLevel(numeric)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))
    for name in STATEMENT_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    for name in BODY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, WithoutBodies) for f in logger.filters):
            logger.addFilter(WithoutBodies())
