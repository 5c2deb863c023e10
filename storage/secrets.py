"""Chat credentials encrypted at rest: the one place a stored token is sealed and opened.

A database dump, a backup or a read-only SQL login must not hand out the bot tokens of every client
workspace, so token columns are `EncryptedText`: the value is sealed with Fernet (AES-128-CBC with an
HMAC, from `cryptography`) under the key in `CADENCE_SECRET_KEY` on the way in and opened on the way
out, transparently for every query module and the bot layer.

- **The key** is the process environment's `CADENCE_SECRET_KEY` (`bot.app.create_app` also exports a
  key read from `.env`). It may hold several comma-separated keys: the first seals, any of them opens,
  so a key is rotated by setting `NEW,OLD`, running `cadence secrets reseal`, then dropping `OLD`.
- **Stored forms.** `fernet:<token>` is sealed. Without a key, in development, a value is stored as
  `dev-plaintext:<value>` and a warning is logged once: readable in a dev database, and recognisable by
  `cadence doctor` and `cadence secrets reseal` later. In production (`CADENCE_ENV=production`) sealing
  without a key raises instead: a token is never written in clear there. A value with neither prefix
  was written by a version before encryption (an old process during a rolling upgrade) and is read as
  it is; the next write or `reseal` seals it.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

SECRET_KEY_ENV = "CADENCE_SECRET_KEY"
ENVIRONMENT_ENV = "CADENCE_ENV"
SEALED = "fernet:"
DEV_PLAINTEXT = "dev-plaintext:"

log = logging.getLogger(__name__)


class SecretKeyError(RuntimeError):
    """The secret key is missing where it is required, malformed, or not the key a value was sealed with."""


def production_mode() -> bool:
    """True when `CADENCE_ENV=production`: sealing then refuses to fall back to the development marker."""
    return os.environ.get(ENVIRONMENT_ENV, "").strip().lower() == "production"


def new_key() -> str:
    """A fresh random key, in the form `CADENCE_SECRET_KEY` takes."""
    return Fernet.generate_key().decode("ascii")


@functools.lru_cache(maxsize=8)
def parse_keys(keys: str) -> MultiFernet:
    """The keyring of a `CADENCE_SECRET_KEY` value (comma-separated keys, the first seals). Raises
    SecretKeyError naming the bad key's position when one is not a Fernet key."""
    parts = [part.strip() for part in keys.split(",") if part.strip()]
    if not parts:
        raise SecretKeyError(f"{SECRET_KEY_ENV} is empty")
    fernets = []
    for position, part in enumerate(parts, start=1):
        try:
            fernets.append(Fernet(part.encode("ascii")))
        except (ValueError, UnicodeEncodeError) as exc:
            raise SecretKeyError(
                f"key {position} of {SECRET_KEY_ENV} is not a valid key (32 url-safe base64 bytes); "
                "make one with `cadence secrets new-key`"
            ) from exc
    return MultiFernet(fernets)


def keyring() -> MultiFernet | None:
    """The keyring from the environment, or None when no key is set."""
    keys = os.environ.get(SECRET_KEY_ENV, "").strip()
    return parse_keys(keys) if keys else None


@functools.cache
def _warn_unsealed() -> None:
    log.warning(
        "%s is not set: chat tokens are stored UNENCRYPTED, marked %r (development only; production "
        "refuses to start without the key)",
        SECRET_KEY_ENV,
        DEV_PLAINTEXT,
    )


def seal(plaintext: str) -> str:
    """The stored form of a secret: sealed under the first key, or marked as development plaintext."""
    keys = keyring()
    if keys is None:
        if production_mode():
            raise SecretKeyError(f"{SECRET_KEY_ENV} is not set: a chat token cannot be stored in production")
        _warn_unsealed()
        return DEV_PLAINTEXT + plaintext
    return SEALED + keys.encrypt(plaintext.encode("utf-8")).decode("ascii")


def unseal(stored: str) -> str:
    """The secret behind a stored value (see the module docstring for the three forms)."""
    if stored.startswith(SEALED):
        keys = keyring()
        if keys is None:
            raise SecretKeyError(f"a stored chat token is encrypted but {SECRET_KEY_ENV} is not set")
        try:
            return keys.decrypt(stored[len(SEALED) :].encode("ascii")).decode("utf-8")
        except InvalidToken as exc:
            raise SecretKeyError(
                f"a stored chat token was encrypted with a key that is not in {SECRET_KEY_ENV}"
            ) from exc
    if stored.startswith(DEV_PLAINTEXT):
        return stored[len(DEV_PLAINTEXT) :]
    return stored


def stored_form(stored: str) -> str:
    """ "sealed", "dev-plaintext" or "legacy-plaintext": how a stored value is kept (for `cadence doctor`)."""
    if stored.startswith(SEALED):
        return "sealed"
    return "dev-plaintext" if stored.startswith(DEV_PLAINTEXT) else "legacy-plaintext"


class EncryptedText(TypeDecorator[str]):
    """A text column whose values are sealed at rest. Sealing is randomised, so the column can be read
    and written but not compared with a value in SQL (only `IS NULL`)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else seal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else unseal(str(value))
