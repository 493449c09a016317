"""The pinned requirements of a bundle: what the functions import, with everything it needs, at
the versions installed here.

Derived, never kept by hand: every import in the bundled packages' source (tasuki.functions and
tasuki.shared) is read with `ast`; the imports that are neither the standard library nor Tasuki
are mapped to the distributions that provide them (importlib.metadata), and the dependency closure
of those is walked with each requirement's environment markers evaluated for this interpreter
(and the extras it asks for). Each is pinned `name==version` as installed, sorted: the same
environment always gives the same file. So the bundles leave out what only the local processes
use (docker, honcho, ...), and build them with the Python version the platform runs.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tasuki.shared.errors import ConfigError

# Extras a bundle asks for beyond what the functions import: a FaaS platform has no system libpq
# for psycopg to load, psycopg[binary] brings its own. A requirement such an extra adds need not
# be installed here: it is pinned by its own exact specifier (psycopg-binary==<psycopg's version>).
PLATFORM_EXTRAS = {"psycopg": frozenset({"binary"})}


def imported_modules(sources: Iterable[Path]) -> set[str]:
    """Absolute module names imported anywhere in these files (inside functions too)."""
    found: set[str] = set()
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
    return found


def third_party(modules: Iterable[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "tasuki"}


def distribution_of(module: str) -> str:
    """The installed distribution providing `module` (for a namespace like `google`, the one whose
    files hold the module's own folder or file)."""
    top = module.split(".")[0]
    candidates = metadata.packages_distributions().get(top, [])
    if len(candidates) > 1:
        prefix = module.replace(".", "/")
        candidates = [
            name
            for name in candidates
            if any(
                str(f).startswith(prefix + "/") or str(f) == prefix + ".py"
                for f in metadata.distribution(name).files or ()
            )
        ]
    if not candidates:
        raise ConfigError(f"the functions import {module}, which no installed distribution provides: install it")
    return candidates[0]


def marker_environment(extra: str) -> dict[str, Any]:
    """This interpreter's environment markers, asked for `extra` ("" for none)."""
    return {**default_environment(), "extra": extra}


def closure(roots: Iterable[str]) -> dict[str, str]:
    """Canonical name -> version of these distributions and all they require here: installed
    ones at their installed version; one that only a platform extra asks for, at its exact pin."""
    pinned: dict[str, str] = {}
    # (requirement, extras asked of it, whether only a platform extra brought it)
    pending = [(Requirement(root), frozenset[str](), False) for root in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement, extras, by_platform_extra = pending.pop()
        name = canonicalize_name(requirement.name)
        platform = PLATFORM_EXTRAS.get(name, frozenset())
        extras |= platform
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            exact = [s.version for s in requirement.specifier if s.operator == "=="]
            if not (by_platform_extra and exact):
                raise ConfigError(
                    f"the functions need {requirement.name}, which is not installed: install it"
                ) from None
            pinned[name] = exact[0]
            continue
        pinned[name] = dist.version
        for line in dist.requires or ():
            needed = Requirement(line)
            if needed.marker is None or needed.marker.evaluate(marker_environment("")):
                pending.append((needed, frozenset(needed.extras), False))
                continue
            asked_by = {e for e in extras if needed.marker.evaluate(marker_environment(e))}
            if asked_by:
                pending.append((needed, frozenset(needed.extras), asked_by <= platform))
    return pinned


def pinned(sources: Iterable[Path]) -> str:
    """The text of requirements.txt for a bundle of these source files."""
    roots = sorted({distribution_of(module) for module in third_party(imported_modules(sources))})
    lines = [f"{name}=={version}" for name, version in sorted(closure(roots).items())]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    header = f"# Pinned by `tasuki deploy bundle` from what Python {python} had installed; install with that version.\n"
    return header + "\n".join(lines) + "\n"
