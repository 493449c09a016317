"""Checkouts: the mirror cache, workspaces, clone credentials (over a real git HTTP server that
demands them), and the working copy `tasuki run` makes of a developer's checkout."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasuki.local.executor.checkout import Checkouts, tree_bytes, working_copy
from tasuki.shared.errors import CheckoutFailed
from tasuki.shared.registry import Registry, RepositoryConfig
from tests.conftest import git


def checkouts(tmp_path: Path, **kw) -> Checkouts:
    """Checkouts that may clone the test repositories: folders, and a git server over plain HTTP."""
    kw.setdefault("schemes", ("http", "file"))
    return Checkouts(tmp_path / "cache", tmp_path / "workspaces", **kw)


def test_a_workspace_is_the_commit_and_is_removed_after(tmp_path, make_repo):
    repo, commit = make_repo({"README": "hello\n", "ci/test": ("#!/bin/sh\n", True)})
    with checkouts(tmp_path).workspace(str(repo), commit, "run-1-test") as ws:
        assert (ws / "README").read_text() == "hello\n"
        assert os.access(ws / "ci/test", os.X_OK)
        assert git(ws, "rev-parse", "HEAD").strip() == commit
    assert not ws.exists()


def test_a_workspaces_git_folder_has_hooks_and_info_folders_and_no_sample_hooks(tmp_path, make_repo):
    repo, commit = make_repo({"README": "hello\n"})
    with checkouts(tmp_path).workspace(str(repo), commit, "run-1-test") as ws:
        assert (ws / ".git" / "hooks").is_dir() and (ws / ".git" / "info").is_dir()
        assert not list((ws / ".git" / "hooks").iterdir())
        git(ws, "status", "--short")  # a working repository all the same


def test_a_second_job_uses_the_mirror_and_fetches_only_new_commits(tmp_path, make_repo):
    repo, first = make_repo({"README": "one\n"})
    co = checkouts(tmp_path)
    with co.workspace(str(repo), first, "a"):
        pass
    # Given the source is gone, the same commit still checks out from the mirror
    hidden = repo.with_name("hidden.git")
    repo.rename(hidden)
    with co.workspace(str(repo), first, "b") as ws:
        assert (ws / "README").read_text() == "one\n"
    # And a new commit in the source is fetched into the mirror
    hidden.rename(repo)
    work = tmp_path / "more"
    git(tmp_path, "clone", "-q", str(repo), str(work))
    (work / "README").write_text("two\n")
    git(work, "commit", "-qam", "two")
    git(work, "push", "-q", "origin", "HEAD")
    second = git(work, "rev-parse", "HEAD").strip()
    with co.workspace(str(repo), second, "c") as ws:
        assert (ws / "README").read_text() == "two\n"


def test_the_mirror_cache_keeps_within_its_size_removing_the_least_recently_used_first(tmp_path, make_repo):
    big = {f"blob{n}": os.urandom(200_000).hex() for n in range(3)}  # ~1.2 MB each repository, uncompressible
    (a, ca), (b, cb), (c, cc) = make_repo(big), make_repo(big | {"b": "b"}), make_repo(big | {"c": "c"})
    sizes = []
    co = checkouts(tmp_path)
    for repo, commit in ((a, ca), (b, cb)):
        co.mirror(str(repo), commit)
        sizes.append(tree_bytes(co.mirror_path(str(repo))))
    # Given a cache that holds two of these mirrors, where a was used after b
    co.max_bytes = sum(sizes) + sizes[0] // 2
    co.mirror(str(a), ca)
    # When a third repository is cloned
    co.mirror(str(c), cc)
    # Then the least recently used mirror (b) is gone, the others stay, and the cache fits
    assert [co.mirror_path(str(r)).exists() for r in (a, b, c)] == [True, False, True]
    assert sum(tree_bytes(p) for p in (tmp_path / "cache").glob("*.git")) <= co.max_bytes
    # and b comes back when a job needs it again
    with co.workspace(str(b), cb, "w") as ws:
        assert (ws / "b").read_text() == "b"


def test_checkout_failures_say_what_failed(tmp_path, make_repo):
    repo, _ = make_repo({"README": "x\n"})
    with pytest.raises(CheckoutFailed, match="is not in .* force-pushed"):
        with checkouts(tmp_path).workspace(str(repo), "0123456789abcdef0123456789abcdef01234567", "x"):
            pass
    with pytest.raises(CheckoutFailed, match="cannot fetch .*nowhere"):
        with checkouts(tmp_path).workspace(str(tmp_path / "nowhere.git"), "abc1234", "y"):
            pass
    with pytest.raises(CheckoutFailed, match="no clone URL"):
        checkouts(tmp_path).mirror("")
    # an event's commit reaches git only as a commit id, never as an option
    for commit in ("--output=/tmp/x", "../../../../user/repos", "HEAD", "main"):
        with pytest.raises(CheckoutFailed, match="is not a commit id"):
            with checkouts(tmp_path).workspace(str(repo), commit, "z"):
                pass
    assert checkouts(tmp_path).changed_paths(str(repo), "--output=/tmp/x", "a" * 40) is None


def test_a_job_that_rewrites_its_git_objects_changes_nothing_for_the_next_job(tmp_path, make_repo):
    # Given a workspace of a commit, made from the mirror cache
    repo, commit = make_repo({"ci/build": ("#!/bin/sh\necho TRUE CONTENT\n", True)})
    co = checkouts(tmp_path)
    with co.workspace(str(repo), commit, "run-1-build") as ws:
        objects = [p for p in (ws / ".git" / "objects").rglob("*") if p.is_file()]
        assert objects and all(p.stat().st_nlink == 1 for p in objects)  # copies, no hard links
        assert not (ws / ".git" / "objects" / "info" / "alternates").exists()
        # When the job overwrites every object file in its .git (read-only or not)
        for path in objects:
            path.chmod(0o644)
            path.write_bytes(b"POISONED")
    # Then the mirror is intact and the next job of the same commit checks out the true content
    git(co.mirror_path(str(repo)), "fsck", "--full")
    with co.workspace(str(repo), commit, "run-2-build") as ws:
        assert (ws / "ci/build").read_text() == "#!/bin/sh\necho TRUE CONTENT\n"


def test_a_remembered_commit_that_is_gone_from_the_mirror_is_looked_up_and_fetched_again(tmp_path, make_repo):
    repo, commit = make_repo({"README": "one\n", ".tasuki.yml": "jobs: {}\n"})
    other, _ = make_repo({"README": "other\n"})
    co = checkouts(tmp_path)
    mirror = co.mirror_path(str(repo))

    def cloned_again_without_the_commit() -> None:
        # as another executor's cache trim, then a clone after a force-push, would leave it
        shutil.rmtree(mirror)
        git(tmp_path, "clone", "-q", "--mirror", str(other), str(mirror))
        git(mirror, "remote", "set-url", "origin", str(repo))

    # Given a commit this process found in the mirror (remembered, not looked up for the next job)
    with co.workspace(str(repo), commit, "a"):
        pass
    # When the mirror lost it, the next job still checks the commit out (fetched again)
    cloned_again_without_the_commit()
    with co.workspace(str(repo), commit, "b") as ws:
        assert (ws / "README").read_text() == "one\n"
    # and the next plan still reads its flow file
    cloned_again_without_the_commit()
    assert co.read_file(str(repo), commit, ".tasuki.yml") == b"jobs: {}\n"
    assert co.read_file(str(repo), commit, "missing.yml") is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ext::sh -c touch% {tmp}/pwned", "never allowed"),
        ("fd::17", "never allowed"),
        ("--upload-pack=touch {tmp}/pwned", "cannot start with '-'"),
        ("ssh://-oProxyCommand=touch%20{tmp}/pwned/x", "cannot start with '-'"),
        ("http://169.254.169.254/latest/meta-data", "http clone URLs are not allowed"),
        ("ssh://internal/acme/api.git", "ssh clone URLs are not allowed"),
        ("{tmp}/local.git", "file clone URLs are not allowed"),
    ],
)
def test_a_clone_url_of_a_scheme_not_allowed_is_refused_before_git_runs(tmp_path, url, says):
    url = url.format(tmp=tmp_path)
    co = checkouts(tmp_path, schemes=("https",))
    with pytest.raises(CheckoutFailed, match=says):
        with co.workspace(url, "a" * 40, "run-1-build"):
            pass
    with pytest.raises(CheckoutFailed, match=says):
        co.read_file(url, "a" * 40, ".tasuki.yml")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "cache").exists()


def test_git_itself_is_told_the_allowed_schemes(tmp_path, make_repo):
    # A mirror whose origin points elsewhere (here: a folder, while only http is allowed): git's
    # own GIT_ALLOW_PROTOCOL refuses to fetch it, whatever reached its config
    repo, _ = make_repo({"README": "x\n"})
    co = checkouts(tmp_path, schemes=("http",))
    url = "http://127.0.0.1:9/acme/api.git"
    mirror = co.mirror_path(url)
    git(tmp_path, "clone", "-q", "--mirror", str(repo), str(mirror))
    git(mirror, "remote", "set-url", "origin", str(repo))
    with pytest.raises(CheckoutFailed, match="transport 'file' not allowed"):
        co.mirror(url, "f" * 40)


# --- credentials ---------------------------------------------------------------------------------


class GitServer:
    """A git smart-HTTP server (git http-backend) that demands Basic credentials, as a git host does."""

    def __init__(self, root: Path, user: str, password: str) -> None:
        self.root = root
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.refused = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.serve()

            def do_POST(self) -> None:
                self.serve()

            def serve(self) -> None:
                if self.headers.get("Authorization") != server.expected:
                    server.refused += 1
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                env = {
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "REQUEST_METHOD": self.command,
                    "REMOTE_USER": "ci",
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                    "PATH": os.environ["PATH"],
                }
                done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=True)
                head, _, payload = done.stdout.partition(b"\r\n\r\n")
                headers = [line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line]
                status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
                self.send_response(status)
                for key, value in headers:
                    if key.lower() != "status":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def private_repo(tmp_path, make_repo):
    repo, commit = make_repo({"README": "private\n"})
    server = GitServer(repo.parent, "x-token-auth", "tok-3f9a-secret")
    yield server, server.url(repo.name), commit
    server.close()


def test_a_private_repository_is_cloned_with_its_registry_token_that_stays_secret(tmp_path, private_repo):
    _server, url, commit = private_repo
    registry = Registry(repositories={"acme/private": RepositoryConfig(clone_url=url, token="tok-3f9a-secret")})
    co = checkouts(tmp_path)
    with co.workspace(url, commit, "run-1-build", registry.repositories["acme/private"], host="bitbucket") as ws:
        assert (ws / "README").read_text() == "private\n"
    # The password is in no file of the mirror (its config names the URL only) and no repr
    mirror = co.mirror_path(url)
    assert all(b"tok-3f9a-secret" not in p.read_bytes() for p in mirror.rglob("*") if p.is_file())
    assert "tok-3f9a-secret" not in repr(registry)


def test_wrong_or_missing_credentials_fail_clearly_without_showing_the_password(tmp_path, private_repo):
    server, url, commit = private_repo
    wrong = RepositoryConfig(clone_url=url, token="not-the-token-77")
    with pytest.raises(CheckoutFailed) as failed:
        with checkouts(tmp_path).workspace(url, commit, "w", wrong, host="bitbucket"):
            pass
    assert "cannot fetch" in str(failed.value) and "not-the-token-77" not in str(failed.value)
    with pytest.raises(CheckoutFailed, match="cannot fetch"):
        with checkouts(tmp_path / "other").workspace(url, commit, "w", host="bitbucket"):
            pass
    assert server.refused >= 2


# --- tasuki run's working copy ----------------------------------------------------------------------


def test_the_working_copy_has_the_checkout_as_it_is_now(tmp_path):
    root = tmp_path / "checkout"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text("build/\n")
    (root / "kept").write_text("committed\n")
    (root / "gone").write_text("committed, then deleted\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "one")
    (root / "kept").write_text("changed, not committed\n")
    (root / "gone").unlink()
    (root / "new").write_text("not yet added\n")
    (root / "build").mkdir()
    (root / "build" / "out").write_text("ignored\n")
    os.symlink("kept", root / "link")

    dest = tmp_path / "copy"
    working_copy(root, dest)
    assert (dest / "kept").read_text() == "changed, not committed\n"
    assert (dest / "new").read_text() == "not yet added\n"
    assert os.readlink(dest / "link") == "kept"
    assert not (dest / "gone").exists() and not (dest / "build").exists()
    status = git(dest, "status", "--porcelain")
    assert " M kept" in status and " D gone" in status and "?? new" in status


def test_a_folder_that_is_not_a_checkout_is_copied_whole(tmp_path):
    root = tmp_path / "plain"
    (root / "ci").mkdir(parents=True)
    (root / "ci" / "test").write_text("#!/bin/sh\n")
    working_copy(root, tmp_path / "copy")
    assert (tmp_path / "copy" / "ci" / "test").exists()
    shutil.rmtree(tmp_path / "copy")
