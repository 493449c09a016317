"""Sealed values: what must cross RabbitMQ but no one on the way may read (clone credentials in
job orders today, job secrets next).

`seal(key, data)` encrypts and authenticates (Fernet: AES-128-CBC with HMAC-SHA256) with the key
shared by the functions, which seal, and the executors, which open: the `TASUKI_ORDER_KEY`
setting (`Settings.order_key_value()`). A `Sealed` value is a message field like any other;
its repr and str show no content, so it never reaches a log in plain text, and a dead letter or
a message read off a queue holds only the ciphertext. `unseal` raises `SealError` for a value
sealed with another key or changed on the way.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from pydantic import BaseModel, ConfigDict, Field

from tasuki.shared.errors import SealError

MAX_SEALED = 64 * 1024  # characters of ciphertext a message may carry in one sealed value


class Sealed(BaseModel):
    """Ciphertext (a Fernet token). Nothing of it shows in a repr, a str or a log line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: str = Field(repr=False, min_length=1, max_length=MAX_SEALED)

    def __str__(self) -> str:
        return "Sealed(***)"

    __repr__ = __str__


def new_key() -> str:
    """A fresh key, as TASUKI_ORDER_KEY takes it (url-safe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode()


def _fernet(key: str, setting: str = "TASUKI_ORDER_KEY") -> Fernet:
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError):
        raise SealError(
            f"{setting}: expected a key of 32 bytes in url-safe base64 (44 characters, like the "
            "key files Tasuki generates in its data dir)"
        ) from None


def check_key(key: str, setting: str = "TASUKI_ORDER_KEY") -> None:
    """SealError naming the setting when `key` is not a usable key."""
    _fernet(key, setting)


def seal(key: str, data: bytes, *, setting: str = "TASUKI_ORDER_KEY") -> Sealed:
    """`data` encrypted and authenticated with `key` (the value of `setting`)."""
    return Sealed(token=_fernet(key, setting).encrypt(data).decode())


def unseal(key: str, sealed: Sealed, *, setting: str = "TASUKI_ORDER_KEY") -> bytes:
    """What `seal` sealed; SealError naming `setting` for another key or a changed value."""
    try:
        return _fernet(key, setting).decrypt(sealed.token.encode())
    except InvalidToken:
        where = (
            "every function and executor host needs the same key"
            if setting == "TASUKI_ORDER_KEY"
            else "every process that opens the store needs the key it was written with"
        )
        raise SealError(
            f"cannot open a sealed value: it was sealed with another {setting} or changed; {where}"
        ) from None


def seal_json(key: str, value: Any) -> Sealed:
    return seal(key, json.dumps(value, separators=(",", ":")).encode())


def unseal_json(key: str, sealed: Sealed) -> Any:
    try:
        return json.loads(unseal(key, sealed))
    except ValueError:
        raise SealError("a sealed value holds no JSON") from None
