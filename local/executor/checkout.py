"""Checkouts: a repository at an exact commit, through a per-repository mirror cache.

The first job of a repository clones a bare mirror under `<data_dir>/cache`; later jobs only
fetch into it, and only when it lacks the commit. A commit this process found in a mirror (or
fetched into it) is remembered, and not looked up again for the next job of it; should it be
gone all the same (the mirror was removed and cloned again, or git pruned it), the job's checkout
or flow file read looks it up and fetches once more. A workspace is a local clone of the mirror
checked out at the commit (its `.git` made from an empty template: hooks and info folders, and
none of git's sample hooks to write and remove again), and is removed after the job. Its objects
are copies, never hard links or alternates: a job may rewrite anything in its workspace's `.git`
without changing the mirror, or what the next job of the same commit checks out. The cache is kept within
`max_bytes`: after a clone or fetch, the least recently used mirrors (not one in use) are
removed until the rest fit.
`working_copy()` makes the workspace of `tasuki run`: the files of a developer's checkout as
they are now, committed or not (also with copied objects: a job cannot touch the checkout's).

Before git fetches anything, the clone URL is checked against the schemes the operator allows
(`TASUKI_CLONE_SCHEMES`, `shared/cloneurls.py`), and git itself is told the same list
(`GIT_ALLOW_PROTOCOL`), which also holds for redirects and submodules.

Git runs with argv lists only, never a shell, and never prompts. Clone credentials are the
repository's API credentials in the registry (the executor opens them from the order's sealed
copy), logged in as its host says (`GitHost.clone_login` in `shared/hosts/`), and reach git
through its environment only (`auth_env`); no message shows them. Failures raise
`CheckoutFailed` with git's words.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tasuki.shared import cloneurls
from tasuki.shared.errors import CheckoutFailed
from tasuki.shared.hosts import HOSTS, GitHost
from tasuki.shared.hosts.common import basic, is_commit_id
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.settings import PREFIX
from tasuki.shared.text import clip

GIT_TIMEOUT = 600


def git_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Git's environment: this process's without Tasuki's own settings (the order key,
    TASUKI_SECRETS, the broker's password are nothing git or what it runs may see; leaving them
    out also makes each git process cheaper to start), and never a prompt."""
    return {
        **{k: v for k, v in environ.items() if not k.startswith(PREFIX)},
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "LC_ALL": "C",
    }


_ENV = git_environment(os.environ)
# A clone from a folder on this machine (the mirror, a developer's checkout): git may use no other protocol.
LOCAL = {"GIT_ALLOW_PROTOCOL": "file"}
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_REF_NAME = re.compile(r"^[A-Za-z0-9._/@+-]{1,200}$")
KNOWN = 1024  # the most (mirror, commit) pairs remembered; the oldest are forgotten first


def auth_env(config: RepositoryConfig | None, host: GitHost | None) -> dict[str, str]:
    """Environment that lets git authenticate over HTTPS with a registered repository's API
    credentials, logged in as its host says: an Authorization header passed as git
    configuration through the environment, so it is in no argv and no config file. SSH URLs
    use the executor host's own SSH set-up (a deploy key in ~/.ssh)."""
    login = host.clone_login(config) if config is not None and host is not None else None
    if login is None:
        return {}
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: {basic(*login)}",
    }


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` without user:password@ in URLs and without any of `secrets`."""
    text = _USERINFO.sub("***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def git(
    *args: str,
    cwd: Path | None = None,
    timeout: float = GIT_TIMEOUT,
    env: dict[str, str] | None = None,
    secrets: tuple[str, ...] = (),
) -> str:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env={**_ENV, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CheckoutFailed(f"git {args[0]} took longer than {timeout:g}s") from None
    except OSError as exc:
        raise CheckoutFailed(f"cannot run git: {exc}; install git on this host") from None
    if done.returncode != 0:
        words = redact(done.stderr.strip() or done.stdout.strip(), secrets)
        raise CheckoutFailed(f"git {args[0]} failed: {words}")
    return done.stdout


class Checkouts:
    def __init__(
        self,
        cache_dir: Path,
        workspace_dir: Path,
        *,
        max_bytes: int = 0,
        schemes: Collection[str] = (cloneurls.DEFAULT,),
    ) -> None:
        """`max_bytes`: the size the mirror cache is kept within (0: no limit); `schemes`: the
        clone URL schemes git may fetch from (TASUKI_CLONE_SCHEMES)."""
        self.cache_dir = Path(cache_dir)
        self.workspace_dir = Path(workspace_dir)
        self.max_bytes = max_bytes
        self.schemes = tuple(schemes)
        self._known: dict[tuple[Path, str], None] = {}  # (mirror, commit): the commit was in the mirror
        self._known_lock = threading.Lock()

    def mirror_path(self, clone_url: str) -> Path:
        return self.cache_dir / (hashlib.sha256(clone_url.encode()).hexdigest()[:20] + ".git")

    @contextmanager
    def _locked(self, path: Path, *, wait: bool = True) -> Iterator[bool]:
        """One writer per mirror across every executor process on this host. Without `wait`,
        yields False at once when another holds the lock."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def mirror(self, clone_url: str, commit: str = "", auth: RepositoryConfig | None = None, *, host: str = "") -> Path:
        """The mirror of `clone_url`, fetched when it lacks `commit` (or when no commit is given);
        with the repository's registry credentials `auth`, logged in as `host` (an `Event.host`)
        says."""
        return self._mirror(clone_url, commit, auth, host)[0]

    def _mirror(
        self, clone_url: str, commit: str, auth: RepositoryConfig | None, host: str, *, recall: bool = True
    ) -> tuple[Path, bool]:
        """`mirror()`, and whether the commit was only remembered to be there (not looked up);
        without `recall`, it is looked up."""
        if not clone_url:
            raise CheckoutFailed("no clone URL for this repository: register it in the repository registry")
        self._check_commit(commit)
        wrong = cloneurls.problem(clone_url, self.schemes)
        if wrong:
            raise CheckoutFailed(f"not cloned: {wrong}")
        env = {**auth_env(auth, HOSTS.get(host)), "GIT_ALLOW_PROTOCOL": cloneurls.git_protocols(self.schemes)}
        secrets = (auth.token, auth.app_password) if auth else ()
        where = redact(clone_url)
        path = self.mirror_path(clone_url)
        grown = remembered = False
        try:
            with self._locked(path):
                path.with_suffix(".used").touch()
                if not (path / "HEAD").exists():
                    self._forget(path)
                    tmp = path.with_suffix(".tmp")
                    shutil.rmtree(tmp, ignore_errors=True)
                    git("clone", "--mirror", "--quiet", "--", clone_url, str(tmp), env=env, secrets=secrets)
                    tmp.rename(path)
                    grown = True
                elif commit and recall and self._remembers(path, commit):
                    remembered = True
                elif not commit or not self.has_commit(path, commit):
                    git("fetch", "--prune", "--quiet", "origin", cwd=path, env=env, secrets=secrets)
                    grown = True
        except CheckoutFailed as exc:
            raise CheckoutFailed(f"cannot fetch {where}: {exc}") from None
        if grown:
            self.trim(keep=path)
        if commit and grown and not self.has_commit(path, commit):  # not grown: it had the commit already
            raise CheckoutFailed(f"commit {commit} is not in {where} (was it force-pushed away?)")
        if commit:
            with self._known_lock:
                self._known[(path, commit)] = None
                if len(self._known) > KNOWN:
                    del self._known[next(iter(self._known))]
        return path, remembered

    def _remembers(self, mirror: Path, commit: str) -> bool:
        with self._known_lock:
            return (mirror, commit) in self._known

    def _forget(self, mirror: Path, commit: str | None = None) -> None:
        """Remembered no more: `commit` in `mirror`, or (None) every commit of it."""
        with self._known_lock:
            self._known = {(m, c): None for m, c in self._known if m != mirror or (commit is not None and c != commit)}

    def trim(self, keep: Path | None = None) -> list[Path]:
        """Remove the least recently used mirrors until the cache fits in `max_bytes` (a mirror
        in use by a clone or fetch, and `keep`, stay); the mirrors removed."""
        if not self.max_bytes or not self.cache_dir.is_dir():
            return []
        mirrors = []
        for path in self.cache_dir.glob("*.git"):
            used = path.with_suffix(".used")
            mirrors.append((used.stat().st_mtime if used.exists() else 0.0, path, tree_bytes(path)))
        total = sum(size for _, _, size in mirrors)
        removed = []
        for _, path, size in sorted(mirrors):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            with self._locked(path, wait=False) as mine:
                if not mine:
                    continue  # in use: it stays this time
                self._forget(path)
                remove_tree(path)
                path.with_suffix(".used").unlink(missing_ok=True)
            total -= size
            removed.append(path)
        return removed

    @staticmethod
    def _check_commit(commit: str) -> None:
        """A commit reaches git's argv only as a commit id (never an option, a path or a range)."""
        if commit and not is_commit_id(commit):
            raise CheckoutFailed(f"{clip(commit, 80)!r} is not a commit id (7 to 64 hexadecimal characters)")

    @staticmethod
    def has_commit(mirror: Path, commit: str) -> bool:
        try:
            git("cat-file", "-e", f"{commit}^{{commit}}", cwd=mirror)
            return True
        except CheckoutFailed:
            return False

    def read_file(
        self, clone_url: str, commit: str, path: str, auth: RepositoryConfig | None = None, *, host: str = ""
    ) -> bytes | None:
        """A file's content at a commit, straight from the mirror; None if it does not exist."""
        return self._read_file(clone_url, commit, path, auth, host, recall=True)

    def _read_file(
        self, clone_url: str, commit: str, path: str, auth: RepositoryConfig | None, host: str, *, recall: bool
    ) -> bytes | None:
        mirror, remembered = self._mirror(clone_url, commit, auth, host, recall=recall)
        try:
            done = subprocess.run(
                ["git", "show", f"{commit}:{path}"], cwd=mirror, env=_ENV, capture_output=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CheckoutFailed(f"cannot read {path} at {commit}: {exc}") from None
        if done.returncode != 0 and remembered:  # the commit may be gone since: look it up, fetch
            self._forget(mirror, commit)
            return self._read_file(clone_url, commit, path, auth, host, recall=False)
        return done.stdout if done.returncode == 0 else None

    def changed_paths(
        self, clone_url: str, before: str, after: str, auth: RepositoryConfig | None = None, *, host: str = ""
    ) -> list[str] | None:
        """Paths changed between two commits; None when it cannot be known (new branch, lost base)."""
        if not before or not after or set(before) == {"0"} or not is_commit_id(before):
            return None
        mirror = self.mirror(clone_url, after, auth, host=host)
        if not self.has_commit(mirror, before):
            return None
        return [p for p in git("diff", "--name-only", before, after, cwd=mirror).splitlines() if p]

    def head(
        self, clone_url: str, kind: str, name: str, auth: RepositoryConfig | None = None, *, host: str = ""
    ) -> str:
        """The commit a branch or tag (`kind`) names now, the mirror fetched first (a manual run
        builds its branch's current head)."""
        if not name or name.startswith("-") or ".." in name or not _REF_NAME.match(name):
            raise CheckoutFailed(f"{clip(name, 80)!r} is not a {kind} name")
        mirror = self.mirror(clone_url, "", auth, host=host)
        full = f"refs/{'tags' if kind == 'tag' else 'heads'}/{name}"
        try:
            return git("rev-parse", "--verify", "--quiet", f"{full}^{{commit}}", cwd=mirror, env=LOCAL).strip()
        except CheckoutFailed:
            raise CheckoutFailed(f"there is no {kind} {name!r} in {redact(clone_url)}") from None

    def prepare(
        self, clone_url: str, commit: str, name: str, auth: RepositoryConfig | None = None, *, host: str = ""
    ) -> Path:
        """A working tree at `commit` under the workspace folder; the caller removes it."""
        return self._prepare(clone_url, commit, name, auth, host, recall=True)

    def _prepare(
        self, clone_url: str, commit: str, name: str, auth: RepositoryConfig | None, host: str, *, recall: bool
    ) -> Path:
        if not commit:
            raise CheckoutFailed("no commit to check out (the event names none)")
        mirror, remembered = self._mirror(clone_url, commit, auth, host, recall=recall)
        self.workspace_dir.mkdir(parents=True, exist_ok=True)
        path = self.workspace_dir / _UNSAFE.sub("_", name)
        remove_tree(path)
        try:
            git(
                "clone",
                f"--template={self._template}",
                "--no-checkout",
                "--no-hardlinks",
                "--quiet",
                "--",
                str(mirror),
                str(path),
                env=LOCAL,
            )
            git("checkout", "--quiet", "--detach", commit, cwd=path)
        except CheckoutFailed:
            remove_tree(path)
            if not remembered:
                raise
            self._forget(mirror, commit)  # the commit may be gone since: look it up, fetch
            return self._prepare(clone_url, commit, name, auth, host, recall=False)
        except BaseException:
            remove_tree(path)
            raise
        return path

    @functools.cached_property
    def _template(self) -> Path:
        """The template of a workspace's `.git`: empty hooks and info folders, made once."""
        template = self.cache_dir / "template"
        for folder in ("hooks", "info"):
            (template / folder).mkdir(parents=True, exist_ok=True)
        return template

    @contextmanager
    def workspace(
        self, clone_url: str, commit: str, name: str, auth: RepositoryConfig | None = None, *, host: str = ""
    ) -> Iterator[Path]:
        """A working tree at `commit`, removed when the block ends."""
        path = self.prepare(clone_url, commit, name, auth, host=host)
        try:
            yield path
        finally:
            remove_tree(path)

    def clear_workspaces(self) -> int:
        """Remove workspaces left by a process that died (call before taking work)."""
        if not self.workspace_dir.is_dir():
            return 0
        left = list(self.workspace_dir.iterdir())
        for path in left:
            remove_tree(path)
        return len(left)


def tree_bytes(path: Path) -> int:
    """The bytes the files under `path` take (hard links counted once per tree)."""
    seen, total = set(), 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_blocks * 512
    return total


def remove_tree(path: Path) -> None:
    """Remove a workspace, also when a job made parts of it read-only."""

    def writable_then_retry(fn: Callable, failed: str, _exc: object) -> None:
        try:
            os.chmod(os.path.dirname(failed), 0o700)
            fn(failed)
        except OSError:
            pass

    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=writable_then_retry)
        else:
            shutil.rmtree(path, onerror=writable_then_retry)


# --- `tasuki run`: the developer's checkout as it is now ----------------------------------------


def toplevel(directory: Path) -> Path | None:
    """The root of the git checkout that holds `directory`, or None when it is not in one."""
    try:
        return Path(git("rev-parse", "--show-toplevel", cwd=directory, timeout=30).strip())
    except CheckoutFailed:
        return None


def working_copy(root: Path, dest: Path) -> None:
    """Copy the checkout at `root` into `dest` as it is now: its committed, changed and new files
    (not the ignored ones), with a `.git` at HEAD, so `git status` in a job shows the same
    changes as in the checkout. A folder that is not a git checkout is copied whole."""
    root, dest = Path(root), Path(dest)
    if toplevel(root) is None:
        shutil.copytree(root, dest, symlinks=True)
        return
    git(
        "clone",
        "--no-checkout",
        "--no-hardlinks",
        "--quiet",
        "--",
        str(root),
        str(dest),
        timeout=GIT_TIMEOUT,
        env=LOCAL,
    )
    try:
        git("reset", "--quiet", cwd=dest, timeout=GIT_TIMEOUT)  # the index at HEAD, no files
    except CheckoutFailed:
        pass  # a repository without a commit yet: nothing to reset
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=root)
    for name in sorted(set(filter(None, listed.split("\0")))):
        source, target = root / name, dest / name
        if not source.is_symlink() and not source.exists():
            continue  # deleted in the checkout, not yet committed
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        elif source.is_file():
            shutil.copy2(source, target)
        elif source.is_dir():  # a submodule's folder
            shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
