"""Shared test fixtures: real RabbitMQ (a fresh vhost per test session), real Docker, local git.

A test that needs RabbitMQ or Docker and cannot reach it fails under CI (CI=true) and is
skipped elsewhere with the reason, as dramatiq's conftest does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared.settings import Settings

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
WEBHOOKS = FIXTURES / "webhooks"
TEST_IMAGE = "tasuki/busybox:latest"
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must have it: `make test` installs and starts it)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)


# --- RabbitMQ ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[str]:
    """The AMQP URL of a vhost made for this test session, deleted afterwards."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        unavailable("RabbitMQ is not listening on localhost:5672")
    vhost = f"tasuki-test-{uuid.uuid4().hex[:8]}"
    created = rabbitmqctl("add_vhost", vhost)
    if created.returncode != 0:
        unavailable(f"cannot create a RabbitMQ vhost: {created.stderr.strip()}")
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@localhost:5672/{vhost}"
    rabbitmqctl("delete_vhost", vhost)


@contextmanager
def new_vhost() -> Iterator[str]:
    """The AMQP URL of a vhost made for the block, deleted afterwards (for fixtures of any scope)."""
    name = f"tasuki-test-{uuid.uuid4().hex[:8]}"
    if rabbitmqctl("add_vhost", name).returncode != 0:
        unavailable("cannot create a RabbitMQ vhost")
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@localhost:5672/{name}"
    finally:
        rabbitmqctl("delete_vhost", name)


@pytest.fixture
def vhost() -> Iterator[str]:
    """A fresh vhost for one test, when a test must not see any other test's messages."""
    with new_vhost() as url:
        yield url


# --- Docker -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        client = docker.from_env(version="auto")
        client.ping()
    except Exception as exc:  # any failure here means: no engine
        unavailable(f"the Docker engine is not reachable: {exc}")
    try:
        client.images.get(TEST_IMAGE)
    except Exception:
        unavailable(f"the test image {TEST_IMAGE} is missing: run `local/setup.sh image`")
    return client


# --- settings and git -------------------------------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**values) -> Settings:
        values.setdefault("data_dir", tmp_path / "data")
        values.setdefault("push_key", "test-push-key")
        return Settings(**values)

    return make


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., tuple[Path, str]]:
    """A bare repository with the given files (name -> text, executables as (text, True))."""
    counter = iter(range(1000))

    def make(files: dict[str, str | tuple[str, bool]], branch: str = "master") -> tuple[Path, str]:
        n = next(counter)
        work = tmp_path / f"work{n}"
        bare = tmp_path / f"repo{n}.git"
        work.mkdir()
        git(work, "init", "-q", "-b", branch)
        for name, content in files.items():
            text, executable = content if isinstance(content, tuple) else (content, False)
            path = work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            if executable:
                path.chmod(0o755)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", "test commit")
        git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
        return bare, git(work, "rev-parse", "HEAD").strip()

    return make


def webhook(host: str, name: str) -> dict:
    return json.loads((WEBHOOKS / host / name).read_text())


def first_push_headers() -> dict[str, str]:
    """The request head of the captured Bitbucket delivery, as received."""
    lines = (WEBHOOKS / "bitbucket" / "first-push.http-headers.txt").read_text().splitlines()[1:]
    return dict(line.split(": ", 1) for line in lines if ": " in line)
