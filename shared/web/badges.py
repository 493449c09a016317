"""Status badges: the latest run of a repository's branch as a small SVG (pure).

    GET /badge/acme/api.svg?branch=main     ->  [ tasuki | success ]

Public only when the operator allows it (TASUKI_PUBLIC_BADGES); otherwise the badge needs the
session or the token like every page. A badge of a repository Tasuki does not know reads
"unknown", the same as one with no runs, so a public badge tells nobody which names exist.
"""

from __future__ import annotations

from html import escape

from tasuki.shared.store import RunRecord

COLOURS = {
    "success": "#1f883d",
    "failure": "#cf222e",
    "error": "#cf222e",
    "running": "#bf8700",
    "queued": "#6b7385",
    "cancelled": "#8c959f",
}
UNKNOWN = "#8c959f"
LABEL = "tasuki"
CHAR_WIDTH = 7  # an approximate width of one character at 11px, enough for a badge


def latest(runs: list[RunRecord], branch: str) -> RunRecord | None:
    """The newest run of the branch among `runs` (newest first), or of any ref without a branch."""
    for run in runs:
        ref = run.event.ref
        if not branch or (ref is not None and ref.kind == "branch" and ref.name == branch):
            return run
    return None


def svg(status: str) -> str:
    """A two-part badge: `tasuki` and the status, coloured by it."""
    colour = COLOURS.get(status, UNKNOWN)
    text = escape(status)
    left, right = 10 + CHAR_WIDTH * len(LABEL), 10 + CHAR_WIDTH * len(status)
    width = left + right
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{LABEL}: {text}"><title>{LABEL}: {text}</title>'
        f'<rect width="{left}" height="20" fill="#1d2330"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2}" y="14">{LABEL}</text><text x="{left + right / 2}" y="14">{text}</text></g></svg>'
    )
