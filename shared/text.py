"""Text for people: what a sender wrote, cut to a length a page, a status or a message can hold."""

from __future__ import annotations


def clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` characters with `…` where it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def size_text(size: float) -> str:
    """Bytes for people: `512 B`, `12.3 MB`, `1.0 GB` (powers of 1000, as file managers show)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")
