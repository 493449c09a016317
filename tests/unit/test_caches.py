"""Caches on the executor's side: scope (fork pull requests get none), keys, restore and save,
fallbacks, and least-recently-used eviction, through a folder of objects."""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path

import pytest

from tasuki.local.executor import caches
from tasuki.shared import objects
from tasuki.shared.flowfile.model import Cache
from tasuki.shared.messages import Event, PullRequest, Ref, Repository

SPEC = Cache(key="pip-{{ hashFiles('requirements.txt') }}", paths=[".cache/pip"], restore_keys=["pip-"])


def event(**extra) -> Event:
    base = dict(
        host="github",
        event="push",
        kind="push",
        delivery_id="d",
        repository=Repository(full_name="acme/api", default_branch="main"),
        ref=Ref(kind="branch", name="feature/x"),
        after="a" * 40,
    )
    return Event(**{**base, **extra})


def pull_request(source_repository: str) -> Event:
    pr = PullRequest(number=7, source_branch="fix", target_branch="develop", source_repository=source_repository)
    return event(event="pull_request.opened", kind="pull_request", pull_request=pr)


def test_scope_of_a_push_falls_back_to_the_default_branch() -> None:
    assert caches.scope_of(event()) == caches.Scope("acme/api", "feature/x", "main")
    assert caches.scope_of(event()).branches == ["feature/x", "main"]
    on_main = event(ref=Ref(kind="branch", name="main"))
    assert caches.scope_of(on_main).branches == ["main"]


def test_scope_of_a_pull_request_falls_back_to_its_target() -> None:
    assert caches.scope_of(pull_request("acme/api")) == caches.Scope("acme/api", "fix", "develop")


def test_a_fork_pull_request_has_no_cache() -> None:
    assert caches.scope_of(pull_request("mallory/api")) is None
    assert caches.scope_of(pull_request("")) is None  # a deleted fork


def test_render_key_digests_the_files(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("requests\n")
    first = caches.render_key(SPEC.key, tmp_path)
    assert first.startswith("pip-") and len(first) == 4 + 24
    assert caches.render_key(SPEC.key, tmp_path) == first
    (tmp_path / "requirements.txt").write_text("requests\nflask\n")
    assert caches.render_key(SPEC.key, tmp_path) != first
    assert caches.render_key("plain-key", tmp_path) == "plain-key"


def fill(workspace: Path, data: bytes = b"wheel") -> None:
    (workspace / ".cache/pip").mkdir(parents=True, exist_ok=True)
    (workspace / ".cache/pip/pkg.whl").write_bytes(data)


@pytest.fixture
def store(tmp_path: Path) -> objects.FolderObjects:
    return objects.FolderObjects(tmp_path / "objects")


def test_save_then_restore_on_the_same_branch(tmp_path: Path, store) -> None:
    scope, said = caches.Scope("acme/api", "main"), []
    first = tmp_path / "first"
    fill(first)
    assert not caches.restore(store, scope, SPEC, "pip-1", first, say=said.append)
    assert said[-1] == "cache: none for pip-1 (it is saved after the job succeeds)"
    assert caches.save(store, scope, SPEC, "pip-1", first, limit=10**6, say=said.append)
    assert said[-1].startswith("cache: saved pip-1 ")
    second = tmp_path / "second"
    second.mkdir()
    assert caches.restore(store, scope, SPEC, "pip-1", second, say=said.append)
    assert said[-1].startswith("cache: restored pip-1 ")
    assert (second / ".cache/pip/pkg.whl").read_bytes() == b"wheel"


def test_a_branch_reads_the_fallback_branch_but_writes_its_own(tmp_path: Path, store) -> None:
    main, feature = caches.Scope("acme/api", "main"), caches.Scope("acme/api", "feature", "main")
    ws = tmp_path / "ws"
    fill(ws)
    caches.save(store, main, SPEC, "pip-1", ws, limit=10**6, say=print)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert caches.restore(store, feature, SPEC, "pip-1", fresh, say=print)  # exact key, fallback branch
    caches.save(store, feature, SPEC, "pip-2", ws, limit=10**6, say=print)
    assert store.size(caches.entry_key(feature, "feature", "pip-2")) is not None
    assert store.size(caches.entry_key(main, "main", "pip-2")) is None  # never written to main
    other_repo = caches.Scope("acme/web", "main")
    assert not caches.restore(store, other_repo, SPEC, "pip-1", fresh, say=print)


def test_a_restore_key_brings_the_newest_match_but_is_not_a_hit(tmp_path: Path, store) -> None:
    scope, said = caches.Scope("acme/api", "main"), []
    ws = tmp_path / "ws"
    fill(ws, b"old")
    caches.save(store, scope, SPEC, "pip-old", ws, limit=10**6, say=print)
    time.sleep(0.01)
    fill(ws, b"new")
    caches.save(store, scope, SPEC, "pip-new", ws, limit=10**6, say=print)
    os.utime(store.root / caches.entry_key(scope, "main", "pip-old"), (0, 0))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert not caches.restore(store, scope, SPEC, "pip-3", fresh, say=said.append)
    assert (fresh / ".cache/pip/pkg.whl").read_bytes() == b"new"
    assert "(a fallback for pip-3)" in said[-1]


def test_over_the_limit_a_cache_is_not_saved(tmp_path: Path, store) -> None:
    said: list[str] = []
    ws = tmp_path / "ws"
    fill(ws, os.urandom(50_000))
    assert not caches.save(store, caches.Scope("a/b", "main"), SPEC, "k", ws, limit=10_000, say=said.append)
    assert "(TASUKI_CACHE_MAX_BYTES)" in said[-1]
    assert [o for o in store.list("") if o.key.endswith(".tar.gz")] == []


def test_least_recently_used_caches_are_evicted(tmp_path: Path, store) -> None:
    scope = caches.Scope("acme/api", "main")
    ws = tmp_path / "ws"
    for name in ("a", "b", "c"):
        fill(ws, os.urandom(20_000))
        caches.save(store, scope, SPEC, name, ws, limit=10**6, say=print)
        time.sleep(0.01)
    caches.restore(store, scope, SPEC, "a", tmp_path / "r", say=print)  # a is used again: b is the oldest now
    fill(ws, os.urandom(20_000))
    said: list[str] = []
    caches.save(store, scope, SPEC, "d", ws, limit=70_000, say=said.append)
    left = sorted(o.key.rpartition("/")[2] for o in store.list("") if o.key.endswith(".tar.gz"))
    assert left == ["a.tar.gz", "c.tar.gz", "d.tar.gz"]
    assert "evicted 1 least recently used" in said[-1]


def test_a_hostile_archive_extracts_nothing_outside(tmp_path: Path, store) -> None:
    # Given a cache object holding a member that climbs out of the workspace
    scope = caches.Scope("acme/api", "main")
    archive = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("pwned")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, arcname="../../escaped")
    with open(archive, "rb") as f:
        store.put(caches.entry_key(scope, "main", "k"), f)
    ws = tmp_path / "a" / "b" / "ws"
    ws.mkdir(parents=True)
    said: list[str] = []
    # When it is restored, Then it is refused, said, and nothing escapes
    assert not caches.restore(store, scope, SPEC, "k", ws, say=said.append)
    assert said[-1].startswith("cache: not restored:")
    assert not (tmp_path / "a" / "escaped").exists()


def test_cache_syntax() -> None:
    assert Cache.model_validate({"key": "k", "paths": ".cache/pip/", "restore_keys": "pip-"}).paths == [".cache/pip"]
    for bad in (
        {"key": "a b", "paths": ["x"]},
        {"key": "k", "paths": ["../x"]},
        {"key": "k", "paths": ["*.x"]},
        {"key": "{{ hashFiles('../x') }}", "paths": ["x"]},
        {"key": "{{ env.SECRET }}", "paths": ["x"]},
        {"key": "k", "paths": ["x"], "restore_keys": ["a/b"]},
    ):
        with pytest.raises(ValueError):
            Cache.model_validate(bad)


def test_hashfiles_of_a_symlink_out_of_the_workspace_leaves_the_cache_unused(tmp_path: Path, store) -> None:
    from tasuki.local.executor.jobfiles import JobFiles
    from tasuki.shared.flowfile import Job

    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "secret").write_text("secret")
    os.symlink(tmp_path / "secret", ws / "requirements.txt")
    files = JobFiles(store, "r", caches.Scope("acme/api", "main"), 10**6, 10**6)
    said: list[str] = []
    job = Job(name="b", image="x", run="ci/b", cache=SPEC)
    files.before(job, ws, said.append)
    assert said == [
        f"cache: not used: requirements.txt is a symlink out of the workspace (to {tmp_path / 'secret'}); refused"
    ]
    fill(ws)
    from tasuki.local.executor.jobs import Outcome

    files.after(job, ws, Outcome("success", 0), said.append)
    assert store.list("") == []  # nothing saved either
