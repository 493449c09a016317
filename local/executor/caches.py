"""Caches: folders a job keeps between runs (dependencies it downloads), in object storage.

    before the job: scope (repository, branch; none for a fork's pull request) -> key (its
        hashFiles digests) -> the cache saved under the key on the branch, else on the fallback
        branch (a pull request's target, the repository's default branch), else the newest whose
        key starts with a restore key -> extracted into the workspace (nothing out of it)
    after a successful job whose exact key had no cache: the paths as one .tar.gz -> refused
        over TASUKI_CACHE_MAX_BYTES -> stored -> the repository's caches kept under the same
        limit, least recently used evicted

Objects: caches/<repository>/<branch>/<key>.tar.gz, and caches/<repository>/%index.json with
when each was last used (a hint: with two executors writing it at once one entry may be lost,
and an entry it lacks counts from its object's modification time). Caches never fail a job: a
cache that cannot be restored or saved is said in the log and the job goes on without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tasuki.local.executor.artifacts import Say, Tick, Ticking, matching
from tasuki.shared import objects
from tasuki.shared.errors import FilesRefused, ObjectsError
from tasuki.shared.flowfile.model import HASH_FILES, Cache, cache_key_files
from tasuki.shared.messages import Event
from tasuki.shared.objects import ObjectInfo, Objects
from tasuki.shared.text import size_text

INDEX = "%index.json"  # no branch is named so: branch names are quoted, % as %25
SUFFIX = ".tar.gz"


@dataclass(frozen=True)
class Scope:
    """Where a job's caches are read and written: the repository, its branch first, then a
    fallback branch (read only)."""

    repository: str
    branch: str
    fallback: str = ""

    @property
    def branches(self) -> list[str]:
        return [b for b in dict.fromkeys((self.branch, self.fallback)) if b]


def scope_of(event: Event) -> Scope | None:
    """The event's cache scope; None for a pull request from a fork (it neither reads nor
    writes caches: its code is not the repository's people's) or without a branch."""
    if event.from_fork:
        return None
    pr = event.pull_request
    branch = pr.source_branch if pr else (event.ref.name if event.ref and event.ref.kind == "branch" else "")
    fallback = (pr.target_branch if pr else "") or event.repository.default_branch
    if not branch and not fallback:
        return None
    return Scope(event.repository.full_name, branch or fallback, fallback)


def render_key(template: str, workspace: Path) -> str:
    """The key with each `{{ hashFiles('glob', ...) }}` replaced by a digest of the files the
    globs match (their paths and contents, in path order; no file: the digest of nothing)."""
    digests = iter(_digest(workspace, globs) for globs in cache_key_files(template))
    return HASH_FILES.sub(lambda _m: next(digests), template)


def _digest(workspace: Path, globs: list[str]) -> str:
    digest = hashlib.sha256()
    files = sorted({f for group in matching(workspace, globs).values() for f in group})
    for rel, path in files:
        digest.update(rel.encode() + b"\0")
        with open(path, "rb") as source:
            while chunk := source.read(objects.CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def entry_key(scope: Scope, branch: str, key: str) -> str:
    return objects.check_key(objects.cache_prefix(scope.repository, branch) + key + SUFFIX)


def restore(
    store: Objects, scope: Scope, spec: Cache, key: str, workspace: Path, *, say: Say, tick: Tick = lambda: None
) -> bool:
    """Restore the best cache into the workspace; True when it was saved under `key` exactly
    (then the job saves none after it)."""
    try:
        found = _find(store, scope, spec, key)
        if found is None:
            say(f"cache: none for {key} (it is saved after the job succeeds)")
            return False
        name, exact = found
        started = time.monotonic()
        with tempfile.TemporaryFile() as archive:
            size = store.get(name, Ticking(archive, tick))  # type: ignore[arg-type]
            archive.seek(0)
            with tarfile.open(fileobj=archive, mode="r:gz") as tar:
                # The "data" filter refuses absolute names, .., links out of the workspace, devices.
                tar.extractall(workspace.resolve(), filter="data")
        _touch(store, scope, name)
        say(
            f"cache: restored {name.rpartition('/')[2].removesuffix(SUFFIX)} {size_text(size)} "
            f"in {time.monotonic() - started:.1f} s" + ("" if exact else f" (a fallback for {key})")
        )
        return exact
    except (ObjectsError, OSError, tarfile.TarError) as exc:
        say(f"cache: not restored: {exc}")
        return False


def _find(store: Objects, scope: Scope, spec: Cache, key: str) -> tuple[str, bool] | None:
    for branch in scope.branches:
        name = entry_key(scope, branch, key)
        if store.size(name) is not None:
            return name, True
    for prefix in spec.restore_keys:
        for branch in scope.branches:
            start = objects.cache_prefix(scope.repository, branch)
            candidates = [
                o for o in store.list(start + prefix) if o.key.endswith(SUFFIX) and "/" not in o.key[len(start) :]
            ]
            if candidates:
                return max(candidates, key=lambda o: o.modified).key, False
    return None


def save(
    store: Objects,
    scope: Scope,
    spec: Cache,
    key: str,
    workspace: Path,
    *,
    limit: int,
    say: Say,
    tick: Tick = lambda: None,
) -> bool:
    """Save the paths under `key` on the scope's branch, then evict what the limit leaves no room
    for; False (and why, in the log) when it is not saved."""
    root = workspace.resolve()
    present = [p for p in spec.paths if (root / p).exists() or (root / p).is_symlink()]
    if not present:
        say(f"cache: not saved: none of {', '.join(spec.paths)} is in the workspace")
        return False
    name = entry_key(scope, scope.branch, key)
    started = time.monotonic()
    try:
        with tempfile.TemporaryFile() as archive:
            # GNU headers: no pax record per member to write and parse (a third of the time of a restore).
            with tarfile.open(
                fileobj=Ticking(archive, tick), mode="w:gz", compresslevel=1, format=tarfile.GNU_FORMAT
            ) as tar:  # type: ignore[call-overload]
                for path in present:
                    if not (root / path).resolve().is_relative_to(root):
                        raise FilesRefused(f"{path} leads out of the workspace")
                    tar.add(root / path, arcname=path)
            size = archive.tell()
            if size > limit:
                say(
                    f"cache: not saved: {size_text(size)} is more than the limit of {size_text(limit)} "
                    f"(TASUKI_CACHE_MAX_BYTES)"
                )
                return False
            archive.seek(0)
            store.put(name, Ticking(archive, tick))  # type: ignore[arg-type]
        _touch(store, scope, name)
        say(f"cache: saved {key} {size_text(size)} in {time.monotonic() - started:.1f} s")
        evicted = evict(store, scope.repository, limit, keep=name)
        if evicted:
            say(
                f"cache: evicted {len(evicted)} least recently used cache(s) of {scope.repository} to stay under the limit"
            )
        return True
    except (FilesRefused, ObjectsError, OSError, tarfile.TarError) as exc:
        say(f"cache: not saved: {exc}")
        return False


def evict(store: Objects, repository: str, limit: int, *, keep: str = "") -> list[str]:
    """Delete the repository's least recently used caches until the rest fit in `limit`."""
    prefix = objects.cache_prefix(repository)
    used = _index(store, prefix)
    entries = [o for o in store.list(prefix) if o.key.endswith(SUFFIX)]
    total = sum(o.size for o in entries)
    evicted = []
    for entry in sorted(entries, key=lambda o: _last_used(o, used.get(o.key[len(prefix) :]))):
        if total <= limit:
            break
        if entry.key == keep:
            continue
        store.delete(entry.key)
        total -= entry.size
        evicted.append(entry.key)
    if evicted:
        _write_index(store, prefix, {k: v for k, v in used.items() if prefix + k not in evicted})
    return evicted


def _last_used(entry: ObjectInfo, mark: str | None) -> datetime:
    try:
        return max(entry.modified, datetime.fromisoformat(mark)) if mark else entry.modified
    except ValueError:
        return entry.modified


def _touch(store: Objects, scope: Scope, name: str) -> None:
    prefix = objects.cache_prefix(scope.repository)
    used = _index(store, prefix)
    used[name[len(prefix) :]] = datetime.now(UTC).isoformat()
    _write_index(store, prefix, used)


def _index(store: Objects, prefix: str) -> dict[str, str]:
    out = io.BytesIO()
    try:
        store.get(prefix + INDEX, out)
        data = json.loads(out.getvalue())
    except (ObjectsError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_index(store: Objects, prefix: str, used: dict[str, str]) -> None:
    store.put(prefix + INDEX, io.BytesIO(json.dumps(used, sort_keys=True).encode()))
