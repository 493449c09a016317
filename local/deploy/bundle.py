"""Deployable bundles: one self-contained folder and zip per function (`tasuki deploy bundle`).

    build/bundles/
        manifest.json        every function: its folder, zip, target, the zip's sha256 and whether
                             the bridge pushes to it (then TASUKI_<NAME>_URL points at it); the
                             Python version; the clock's schedules (read by infra/gcp and
                             `tasuki deploy aws`)
        router/              what a platform runs, and nothing else:
            main.py          the entry point: exports `router` (functions-framework target:
                             Cloud Functions 2nd gen, Cloud Run, `functions-framework --source
                             main.py --target router`) and `lambda_handler` (AWS Lambda)
            requirements.txt pinned (local/deploy/requirements.py)
            tasuki/functions/, tasuki/shared/   the package as installed here (no tests, no .venv)
        router.zip           the same folder, zipped reproducibly (same content, same bytes)

The functions are the modules of tasuki.functions (`functions.NAMES`), not a list kept here.
Only tasuki.functions and tasuki.shared go in: functions import nothing else of Tasuki.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tasuki import functions
from tasuki.local.deploy import requirements
from tasuki.local.deploy.clock import schedules
from tasuki.shared import topics
from tasuki.shared.errors import ConfigError

PACKAGES = ("tasuki.functions", "tasuki.shared")
DEFAULT_OUT = Path("build/bundles")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # zip entries carry no build time, so equal content zips equally

MAIN = '''"""Tasuki's `{name}` function, as deployed (made by `tasuki deploy bundle`; do not edit).

Google Cloud Functions (2nd gen), Cloud Run and functions-framework: target `{name}`
    functions-framework --source main.py --target {name}
AWS Lambda behind a Function URL (payload format 2.0): handler `main.lambda_handler`

The platform starts the process here, so the log lines are set up here (TASUKI_LOG_FORMAT,
TASUKI_LOG_LEVEL; JSON lines by default, since no terminal is attached). An invalid setting
stops the start with a message naming it.
"""

from tasuki.functions.{name} import {name}
from tasuki.shared import lambda_url
from tasuki.shared.logs import configure as configure_log_lines
from tasuki.shared.runtime import runtime

configure_log_lines(runtime().settings.log_format, runtime().settings.log_level)
lambda_handler = lambda_url.handler("{name}", __file__)

__all__ = ["{name}", "lambda_handler"]
'''


@dataclass(frozen=True)
class Bundle:
    name: str
    folder: Path
    zip: Path
    sha256: str


def pushed_functions() -> list[str]:
    """The functions the bridge pushes to (each has a TASUKI_<NAME>_URL setting)."""
    return sorted({s.endpoint for s in topics.SUBSCRIPTIONS})


def package_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not an installed package")
    return Path(next(iter(spec.submodule_search_locations)))


def package_files() -> dict[str, Path]:
    """Path inside a bundle -> file, for every file of the bundled packages (package data too),
    without caches and hidden files."""
    files: dict[str, Path] = {}
    for package in PACKAGES:
        root = package_folder(package)
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            hidden = any(p.startswith((".", "__pycache__")) for p in relative.parts)
            if path.is_file() and not hidden and path.suffix not in (".pyc", ".pyo"):
                files[str(Path(*package.split(".")) / relative)] = path
    return files


def build(out: Path = DEFAULT_OUT) -> list[Bundle]:
    """Build every function's bundle under `out` (its previous content replaced)."""
    files = package_files()
    sources = [path for name, path in files.items() if name.endswith(".py")]
    outside = sorted(
        m for m in requirements.imported_modules(sources) if m.startswith("tasuki.") and not m.startswith(PACKAGES)
    )
    if outside:
        raise ConfigError(f"the functions import {', '.join(outside)}, which bundles leave out: import from {PACKAGES}")
    pins = requirements.pinned(sources)
    out.mkdir(parents=True, exist_ok=True)
    bundles = [build_one(name, out, files, pins) for name in functions.NAMES]
    pushed = pushed_functions()
    manifest = {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "functions": {
            b.name: {
                "folder": b.name,
                "zip": b.zip.name,
                "target": b.name,
                "sha256": b.sha256,
                "pushed": b.name in pushed,
            }
            for b in bundles
        },
        "schedules": schedules(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return bundles


def build_one(name: str, out: Path, files: dict[str, Path], pins: str) -> Bundle:
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    contents: dict[str, bytes] = {
        "main.py": MAIN.format(name=name).encode(),
        "requirements.txt": pins.encode(),
        **{inside: path.read_bytes() for inside, path in files.items()},
    }
    for inside, data in contents.items():
        target = folder / inside
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    archive = out / f"{name}.zip"
    write_zip(archive, contents)
    return Bundle(name, folder, archive, hashlib.sha256(archive.read_bytes()).hexdigest())


def write_zip(path: Path, contents: dict[str, bytes]) -> None:
    """A zip whose bytes depend on the contents only: sorted names, a fixed time, fixed modes."""
    tmp = path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for inside in sorted(contents):
            info = zipfile.ZipInfo(inside, ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, contents[inside])
    tmp.replace(path)
