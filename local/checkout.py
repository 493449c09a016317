"""Checkouts: a repository at an exact commit, through a per-repository mirror cache.

The first job of a repository clones a bare mirror under `<data_dir>/cache`; later jobs only
fetch into it. A workspace is a local clone of the mirror (hard-linked objects, so it is fast and
needs no network) checked out at the commit, and is removed after the job. Git runs with argv
lists only, never a shell, and never prompts. Failures raise `CheckoutFailed` with git's words.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.errors import CheckoutFailed

GIT_TIMEOUT = 600
_ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}


def git(*args: str, cwd: Path | None = None, timeout: float = GIT_TIMEOUT) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=_ENV, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise CheckoutFailed(f"git {args[0]} took longer than {timeout:g}s") from None
    except OSError as exc:
        raise CheckoutFailed(f"cannot run git: {exc}; install git on the executor host") from None
    if done.returncode != 0:
        raise CheckoutFailed(f"git {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


class Checkouts:
    def __init__(self, cache_dir: Path, workspace_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self.workspace_dir = Path(workspace_dir)

    def mirror_path(self, clone_url: str) -> Path:
        return self.cache_dir / (hashlib.sha256(clone_url.encode()).hexdigest()[:20] + ".git")

    @contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        """One writer per mirror across every executor process on this host."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def mirror(self, clone_url: str, commit: str = "") -> Path:
        """The mirror of `clone_url`, fetched when it lacks `commit` (or when no commit is given)."""
        if not clone_url:
            raise CheckoutFailed("no clone URL for this repository: register it in the repository registry")
        path = self.mirror_path(clone_url)
        with self._locked(path):
            if not (path / "HEAD").exists():
                tmp = path.with_suffix(".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                git("clone", "--mirror", "--quiet", "--", clone_url, str(tmp))
                tmp.rename(path)
            elif not commit or not self.has_commit(path, commit):
                git("fetch", "--prune", "--quiet", "origin", cwd=path)
        if commit and not self.has_commit(path, commit):
            raise CheckoutFailed(f"commit {commit} is not in {clone_url} (was it force-pushed away?)")
        return path

    @staticmethod
    def has_commit(mirror: Path, commit: str) -> bool:
        try:
            git("cat-file", "-e", f"{commit}^{{commit}}", cwd=mirror)
            return True
        except CheckoutFailed:
            return False

    def read_file(self, clone_url: str, commit: str, path: str) -> bytes | None:
        """A file's content at a commit, straight from the mirror; None if it does not exist."""
        mirror = self.mirror(clone_url, commit)
        try:
            done = subprocess.run(
                ["git", "show", f"{commit}:{path}"], cwd=mirror, env=_ENV, capture_output=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CheckoutFailed(f"cannot read {path} at {commit}: {exc}") from None
        return done.stdout if done.returncode == 0 else None

    def changed_paths(self, clone_url: str, before: str, after: str) -> list[str] | None:
        """Paths changed between two commits; None when it cannot be known (new branch, lost base)."""
        if not before or not after or set(before) == {"0"}:
            return None
        mirror = self.mirror(clone_url, after)
        if not self.has_commit(mirror, before):
            return None
        return [p for p in git("diff", "--name-only", before, after, cwd=mirror).splitlines() if p]

    @contextmanager
    def workspace(self, clone_url: str, commit: str, name: str) -> Iterator[Path]:
        """A working tree at `commit`, removed when the block ends."""
        mirror = self.mirror(clone_url, commit)
        self.workspace_dir.mkdir(parents=True, exist_ok=True)
        path = self.workspace_dir / name
        shutil.rmtree(path, ignore_errors=True)
        try:
            git("clone", "--no-checkout", "--quiet", "--", str(mirror), str(path))
            git("checkout", "--quiet", "--detach", commit, cwd=path)
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
