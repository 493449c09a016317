"""Artifacts: files a job keeps after it ends, put into the workspaces of the jobs that need it.

    after the job (any result but cancelled, or only success: `artifacts.when`):
        match the patterns under the workspace (`matching`) -> refuse symlinks out of it and more
        than TASUKI_ARTIFACTS_MAX_BYTES -> stream each file to object storage under
        runs/<run>/artifacts/<job>/<path> -> the list (path, size) goes back in job.finished
    before a job: every job it `needs` has its artifacts written into the workspace (`fetch`)

The executor reads and writes object storage itself; the store learns names and sizes from the
dispatcher. A pattern is a path or a glob relative to the workspace: `dist/` (a folder and
everything under it), `reports/*.xml` (`*` stays within a folder), `**/junit.xml` (`**` crosses
folders). A refusal (FilesRefused) fails the job and says why; nothing is half-kept in the log's
eyes: the job fails, and its dependants do not start.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import BinaryIO

from tasuki.shared import objects
from tasuki.shared.errors import FilesRefused, ObjectsError
from tasuki.shared.flowfile.model import Artifacts
from tasuki.shared.messages import MAX_ARTIFACTS, Artifact
from tasuki.shared.objects import Objects
from tasuki.shared.text import size_text

Say = Callable[[str], None]
MAX_PATH = 900  # characters of an artifact's path (it travels in job.finished and is an object key)
Tick = Callable[[], None]


class Ticking:
    """A file object that calls `tick` on every read or write: heartbeats go on during a long
    transfer (a lease must not run out while a large artifact streams)."""

    def __init__(self, file: BinaryIO, tick: Tick) -> None:
        self.file = file
        self.tick = tick

    def read(self, size: int = -1) -> bytes:
        self.tick()
        return self.file.read(size)

    def write(self, data: bytes) -> int:
        self.tick()
        return self.file.write(data)


@cache
def _pattern(pattern: str) -> re.Pattern[str]:
    """A glob as a regular expression over `/`-separated relative paths."""
    out = []
    for part in re.split(r"(\*\*/?|\*|\?)", pattern.rstrip("/")):
        if part.startswith("**"):
            out.append("(?:.*/)?" if part.endswith("/") else ".*")
        elif part == "*":
            out.append("[^/]*")
        elif part == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


def matches(pattern: str, path: str) -> bool:
    """The file at `path` matches when the pattern names it or one of the folders above it."""
    regex = _pattern(pattern)
    words = path.split("/")
    return any(regex.fullmatch("/".join(words[:n])) for n in range(len(words), 0, -1))


def matching(workspace: Path, patterns: Iterable[str]) -> dict[str, list[tuple[str, Path]]]:
    """For each pattern, the files under the workspace it matches: (relative path, path), in
    order. Symlinks are followed only within the workspace: one that leads out is refused."""
    root = workspace.resolve()
    patterns = list(patterns)
    found: dict[str, list[tuple[str, Path]]] = {p: [] for p in patterns}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if Path(folder) == root and ".git" in dirs:
            dirs.remove(".git")
        for name in sorted(files + [d for d in dirs if Path(folder, d).is_symlink()]):
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            wanted = [p for p in patterns if matches(p, rel)]
            if not wanted:
                continue
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root):
                    raise FilesRefused(f"{rel} is a symlink out of the workspace (to {target}); refused")
                if not target.is_file():
                    continue  # a link to a folder inside: its files are matched where they are
            elif not path.is_file():
                continue  # a socket, a fifo
            found[wanted[0]].append((rel, path))
    return found


def keep(
    store: Objects,
    run_id: str,
    job: str,
    workspace: Path,
    spec: Artifacts,
    *,
    limit: int,
    say: Say,
    tick: Tick = lambda: None,
) -> list[Artifact]:
    """Upload what the patterns match; the kept files. FilesRefused over the limit (before any
    upload), for a symlink out of the workspace, or when storage fails."""
    found = matching(workspace, spec.paths)
    files = [f for group in found.values() for f in group]
    long = next((rel for rel, _ in files if len(rel) > MAX_PATH), None)
    if long is not None:
        raise FilesRefused(f"artifacts of {job}: a path longer than {MAX_PATH} characters: {long[:80]}…")
    try:
        total = sum(path.stat().st_size for _, path in files)
    except OSError as exc:
        raise FilesRefused(f"artifacts of {job}: cannot read {exc.filename}: {exc.strerror}") from None
    if total > limit:
        raise FilesRefused(
            f"artifacts of {job}: {size_text(total)} is more than the limit of {size_text(limit)} "
            f"(TASUKI_ARTIFACTS_MAX_BYTES); keep fewer files"
        )
    if len(files) > MAX_ARTIFACTS:
        raise FilesRefused(
            f"artifacts of {job}: {len(files)} files, more than {MAX_ARTIFACTS}; archive them into fewer files"
        )
    kept = []
    for pattern, group in found.items():
        if not group:
            say(f"artifacts: nothing matches {pattern}")
            continue
        started, size = time.monotonic(), 0
        for rel, path in group:
            try:
                with open(path, "rb") as source:
                    stored = store.put(objects.artifact_key(run_id, job, rel), Ticking(source, tick))  # type: ignore[arg-type]
            except (ObjectsError, OSError) as exc:
                raise FilesRefused(f"artifacts of {job}: could not keep {rel}: {exc}") from None
            kept.append(Artifact(path=rel, size=stored))
            size += stored
        count = f" ({len(group)} files)" if len(group) > 1 else ""
        say(f"uploaded {pattern} {size_text(size)} in {time.monotonic() - started:.1f} s{count}")
    return kept


def fetch(
    store: Objects,
    run_id: str,
    needs: Iterable[str],
    workspace: Path,
    *,
    say: Say,
    tick: Tick = lambda: None,
    elsewhere: Mapping[str, str] | None = None,
) -> int:
    """Write the artifacts of the jobs in `needs` into the workspace; how many files. A file is
    written only inside the workspace, never through a symlink the checkout holds. `elsewhere`
    names the run that holds a need's artifacts when it is not `run_id`."""
    root = workspace.resolve()
    count = 0
    for need in needs:
        prefix = objects.artifacts_prefix((elsewhere or {}).get(need, run_id), need)
        try:
            found = store.list(prefix)
        except ObjectsError as exc:
            raise FilesRefused(f"artifacts of {need}: cannot list them: {exc}") from None
        if not found:
            continue
        started, size = time.monotonic(), 0
        for info in found:
            rel = info.key[len(prefix) :]
            target = _inside(root, rel)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                _inside(root, rel)  # the folders made are real folders inside
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as out:
                    size += store.get(info.key, Ticking(out, tick))  # type: ignore[arg-type]
            except (ObjectsError, OSError) as exc:
                raise FilesRefused(f"artifacts of {need}: could not write {rel}: {exc}") from None
            count += 1
        say(f"downloaded the artifacts of {need} {size_text(size)} in {time.monotonic() - started:.1f} s")
    return count


def _inside(root: Path, rel: str) -> Path:
    """`root/rel`, refused when it (or a folder on the way, through a symlink) leaves `root`."""
    target = root / rel
    if ".." in Path(rel).parts or Path(rel).is_absolute() or not target.parent.resolve().is_relative_to(root):
        raise FilesRefused(f"artifact {rel} would be written outside the workspace; it is not")
    return target
