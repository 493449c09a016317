"""Tasuki's stateless HTTP functions, each a functions-framework target of the same name.

ingress (git hosts -> tasuki.events), router (events -> run.requested), dispatcher (runs -> jobs),
reporter (run and job statuses -> commit statuses on the git host), logs (job.log chunks -> the store),
web (the page and the API).
"""

import pkgutil
from pathlib import Path

# Every function: each module of this package (a new module is a new function everywhere: the
# bundles, the deploy descriptors), not a list kept by hand.
NAMES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


def source(name: str) -> Path:
    """The file of function `name`, as functions-framework's `--source` wants it (read, never written)."""
    return Path(__file__).with_name(f"{name}.py")
