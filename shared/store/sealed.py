"""Secrets at rest: the fields of a stored record that are secrets, encrypted with the store key.

A repository registered at run time keeps its webhook secret and its API credentials (`token`,
`app_password`) in the store. They are written sealed (`shared.sealing`, Fernet) with the key
of `TASUKI_STORE_KEY` (`Settings.store_key_value()`: by default generated once as
<data_dir>/store.key), which is never in the database: a copy of the database, a backup or a
PostgreSQL dump holds only ciphertext. In the record's JSON a sealed field is the string
`sealed:<token>`; an empty field stays empty (nothing to hide, and no key needed to read it).
Migration 8 seals the fields an older Tasuki wrote in plain text (`seal_stored_repositories`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tasuki.shared import sealing

SECRET_FIELDS = ("secret", "token", "app_password")
PREFIX = "sealed:"
SETTING = "TASUKI_STORE_KEY"

Key = Callable[[], str]  # the store key, asked for only when a secret is sealed or opened


def seal_fields(key: Key, record: dict[str, Any]) -> dict[str, Any]:
    """`record` with each non-empty secret field sealed (one sealed already stays as it is)."""
    out = dict(record)
    for name in SECRET_FIELDS:
        value = out.get(name)
        if isinstance(value, str) and value and not value.startswith(PREFIX):
            out[name] = PREFIX + sealing.seal(key(), value.encode(), setting=SETTING).token
    return out


def open_fields(key: Key, record: dict[str, Any]) -> dict[str, Any]:
    """`record` with its sealed fields opened (SealError naming TASUKI_STORE_KEY for another key)."""
    out = dict(record)
    for name in SECRET_FIELDS:
        value = out.get(name)
        if isinstance(value, str) and value.startswith(PREFIX):
            sealed = sealing.Sealed(token=value[len(PREFIX) :])
            out[name] = sealing.unseal(key(), sealed, setting=SETTING).decode()
    return out


def seal_json(key: Key, record: dict[str, Any]) -> str:
    return json.dumps(seal_fields(key, record), separators=(",", ":"))


def open_json(key: Key, text: str) -> dict[str, Any]:
    return open_fields(key, json.loads(text))


def seal_stored_repositories(tx: Any, key: Key) -> None:
    """Migration 9: the repositories' secrets an older Tasuki stored in plain text, sealed."""
    for full_name, record in tx.execute("SELECT full_name, record FROM repositories").fetchall():
        sealed = seal_json(key, json.loads(record))
        if sealed != record:
            tx.execute("UPDATE repositories SET record = ? WHERE full_name = ?", (sealed, full_name))
