"""Tasuki's stateless HTTP functions, each a functions-framework target of the same name.

ingress (git hosts -> tasuki.events), router (events -> run.requested), dispatcher (runs -> jobs),
reporter (run and job statuses -> commit statuses on the git host).
"""

from pathlib import Path

# Every function, each a module here and a functions-framework target of the same name.
NAMES = ("ingress", "router", "dispatcher", "reporter", "web")


def source(name: str) -> Path:
    """The file of function `name`, as functions-framework's `--source` wants it (read, never written)."""
    return Path(__file__).with_name(f"{name}.py")
