"""The msgpack codec: message models to bytes and back.

Bodies are msgpack maps of the model's JSON-compatible form. Decoding never crashes on garbage:
any malformed body raises `DecodeError` saying what was expected and what was found.
"""

from __future__ import annotations

from typing import TypeVar

import msgpack
from pydantic import BaseModel, ValidationError

from tasuki.shared.errors import DecodeError, first_problem

CONTENT_TYPE = "application/msgpack"
M = TypeVar("M", bound=BaseModel)


def encode(message: BaseModel) -> bytes:
    return msgpack.packb(message.model_dump(mode="json"), use_bin_type=True)


def decode(data: bytes, model: type[M]) -> M:
    name = getattr(model, "TYPE", model.__name__)
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise DecodeError(f"expected a msgpack body for {name}, found undecodable bytes ({exc})") from None
    if not isinstance(raw, dict):
        raise DecodeError(f"expected a msgpack map for {name}, found {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        where, problem = first_problem(exc)
        raise DecodeError(f"{name}: {where or 'body'}: {problem}") from None
