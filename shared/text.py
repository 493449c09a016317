"""Text for people: what a sender wrote, cut to a length a page, a status or a message can hold."""

from __future__ import annotations


def clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` characters with `…` where it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
