"""Shared test fixtures: real RabbitMQ (a fresh vhost per test session), real PostgreSQL (a
throwaway cluster per test session, a database per test), real Docker, local git.

A test that needs RabbitMQ, PostgreSQL or Docker and cannot reach it fails under CI (CI=true)
and is skipped elsewhere with the reason, as dramatiq's conftest does.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tasuki.shared.settings import Settings

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
WEBHOOKS = FIXTURES / "webhooks"
TEST_IMAGE = "tasuki/busybox:latest"
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(config, items) -> None:
    """Each test carries the marker of its tier, the folder it lives in (`-m unit`, ...)."""
    for item in items:
        tier = Path(str(item.fspath)).relative_to(HERE).parts[0]
        if tier in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, tier))


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must have it: `make test` installs and starts it)")
    pytest.skip(reason)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing listens on, below the kernel's ephemeral range: a port the kernel handed
    out (bind to 0) can be taken again at once by any outgoing connection, before the server that
    was to listen on it starts."""
    high = _ephemeral_low() - 1
    for _ in range(200):
        port = random.randint(max(1024, high - 12000), high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def rabbitmqctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["rabbitmqctl", "-q", *args], input=stdin, capture_output=True, text=True, timeout=60)


# --- RabbitMQ ---------------------------------------------------------------------------------


def _reachable() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        unavailable("RabbitMQ is not listening on localhost:5672")


class Vhosts:
    """Fresh vhosts, made and deleted a batch at a time. Each `rabbitmqctl` call boots an Erlang
    VM (about 0.7 s of CPU), and one vhost made, permitted and deleted call by call took three:
    about 2 s for each of some 80 tests. A batch is made by one `import_definitions` and, once
    every vhost in it was given back, deleted by one `eval`; a vhost is never handed out twice."""

    BATCH = 8

    def __init__(self) -> None:
        self.ready: list[str] = []
        self.used: list[str] = []
        self.closed = False
        self.lock = threading.Lock()

    def take(self) -> str:
        with self.lock:
            if not self.ready:
                self.ready = self._make(self.BATCH)
            return self.ready.pop()

    def give_back(self, name: str) -> None:
        with self.lock:
            self.used.append(name)
            if self.closed or len(self.used) >= self.BATCH:  # closed: a session fixture's, after the end
                self._delete(self.used)
                self.used = []

    def close(self) -> None:
        with self.lock:
            self._delete(self.used + self.ready)
            self.used, self.ready, self.closed = [], [], True

    @staticmethod
    def _make(count: int) -> list[str]:
        _reachable()
        names = [f"tasuki-test-{uuid.uuid4().hex[:8]}" for _ in range(count)]
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        definitions = {
            "vhosts": [{"name": name} for name in names],
            "permissions": [{"user": "guest", "vhost": name, **everything} for name in names],
        }
        made = rabbitmqctl("import_definitions", stdin=json.dumps(definitions))
        if made.returncode != 0:
            unavailable(f"cannot create RabbitMQ vhosts: {made.stderr.strip() or made.stdout.strip()}")
        return names

    @staticmethod
    def _delete(names: list[str]) -> None:
        if not names:
            return
        quoted = ", ".join(f'<<"{name}">>' for name in names)
        deleted = rabbitmqctl("eval", f'[rabbit_vhost:delete(V, <<"tests">>) || V <- [{quoted}]].')
        if deleted.returncode != 0:  # one by one, then: a vhost left behind would only cost memory
            for name in names:
                rabbitmqctl("delete_vhost", name)


VHOSTS = Vhosts()


def pytest_sessionfinish(session, exitstatus) -> None:
    VHOSTS.close()


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[str]:
    """The AMQP URL of a vhost for this test session (shared by the tests that need no vhost of their own)."""
    with new_vhost() as url:
        yield url


@contextmanager
def new_vhost() -> Iterator[str]:
    """The AMQP URL of a vhost no one used before, for the block (fixtures of any scope); deleted
    with its batch once the block is over."""
    name = VHOSTS.take()
    try:
        yield f"amqp://guest:guest@localhost:5672/{name}"
    finally:
        VHOSTS.give_back(name)


@pytest.fixture
def vhost() -> Iterator[str]:
    """A fresh vhost for one test, when a test must not see any other test's messages."""
    with new_vhost() as url:
        yield url


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator:
    """A PostgreSQL cluster of this test session's own (tests/postgres.py says why), stopped and
    deleted at the end."""
    from tests.postgres import Cluster, NotStarted, Unavailable

    problem = ""
    for _ in range(3):  # a free port can be taken before the server binds it: then try another
        try:
            cluster = Cluster(free_port())
        except Unavailable as exc:
            problem = str(exc)
            break
        try:
            cluster.start()
        except Unavailable as exc:
            cluster.stop()
            problem = str(exc)
            if isinstance(exc, NotStarted):
                continue
            break
        try:
            yield cluster
        finally:
            cluster.stop()
        return
    unavailable(problem)


@pytest.fixture
def postgres_url(postgres) -> Iterator[str]:
    """The URL of a fresh database for one test (the password in it needs escaping), dropped after."""
    name = f"tasuki_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name)
    yield url
    postgres.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request, tmp_path) -> str:
    """TASUKI_STORE_URL of each backend in turn: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'store' / 'tasuki.db'}"
    return request.getfixturevalue("postgres_url")


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


@pytest.fixture
def executor_id(docker_client) -> Iterator[str]:
    """A unique executor id whose containers are removed after the test (other test runs share
    the Docker engine)."""
    from tests.harness import remove_containers

    ident = f"test-{uuid.uuid4().hex[:10]}"
    yield ident
    remove_containers(ident)


# --- settings and git -------------------------------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**values) -> Settings:
        values.setdefault("data_dir", tmp_path / "data")
        values.setdefault("push_key", "test-push-key-of-at-least-32-bytes")
        return Settings(**values)

    return make


def write_files(root: Path, files: dict[str, str | tuple[str, bool]]) -> Path:
    """Write these files under root (name -> text, executables as (text, True)); root."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        text, executable = content if isinstance(content, tuple) else (content, False)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755 if executable else 0o644)
    return root


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
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
        write_files(work, files)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", "test commit")
        git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
        return bare, git(work, "rev-parse", "HEAD").strip()

    return make


def commit_to(
    bare: Path, files: dict[str, str | tuple[str, bool]], *, branch: str = "master", message: str = "change"
) -> str:
    """Push one more commit with these files to `branch` (made from HEAD if new) of a bare
    repository made by `make_repo`; returns its hash."""
    work = bare.with_name(f"{bare.stem}-{uuid.uuid4().hex[:8]}")
    git(bare.parent, "clone", "-q", str(bare), str(work))
    git(
        work,
        "checkout",
        "-q",
        "-B",
        branch,
        f"origin/{branch}" if git(work, "ls-remote", "--heads", "origin", branch).strip() else "HEAD",
    )
    write_files(work, files)
    git(work, "add", "-A")
    git(work, "commit", "-q", "--allow-empty", "-m", message)
    git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    return git(work, "rev-parse", "HEAD").strip()


def bitbucket_push(
    repository: str, branch: str, commit: str, *, before: str = "", message: str = "change"
) -> tuple[bytes, dict[str, str]]:
    """A Bitbucket repo:push delivery (the captured one, re-aimed) and its headers; each call is
    a new delivery."""
    payload = webhook("bitbucket", "first-push.json")
    payload["repository"]["full_name"] = repository
    change = payload["push"]["changes"][0]
    change["new"]["name"] = branch
    change["new"]["target"].update(hash=commit, message=message)
    change["commits"] = [
        {"type": "commit", "hash": commit, "message": message, "author": {"raw": "Test <t@example.com>"}}
    ]
    change["old"] = {"type": "branch", "name": branch, "target": {"type": "commit", "hash": before}} if before else None
    headers = {
        "Content-Type": "application/json",
        "X-Event-Key": "repo:push",
        "X-Request-UUID": str(uuid.uuid4()),
        "User-Agent": "Bitbucket-Webhooks/2.0",
    }
    return json.dumps(payload).encode(), headers


# Ready plus unacknowledged messages of each queue of a vhost, asked of the queues themselves:
# `rabbitmqctl list_queues messages` reads quorum queues' metrics, which RabbitMQ refreshes only
# every few seconds, so it says 0 for up to 5 s after a message arrived (measured), and a test
# waiting for a queue to drain went on too early.
_COUNT_QUEUES = """
lists:foreach(fun(Q) ->
    {resource, _, queue, Name} = amqqueue:get_name(Q),
    Count = case amqqueue:get_type(Q) of
        rabbit_quorum_queue ->
            {ok, {_, Overview}, _} = ra:local_query(amqqueue:get_pid(Q), fun rabbit_fifo:overview/1),
            maps:get(num_ready_messages, Overview) + maps:get(num_checked_out, Overview);
        _ ->
            [{messages, Messages}] = rabbit_amqqueue:info(Q, [messages]),
            Messages
    end,
    io:format("~s\t~b~n", [Name, Count])
end, rabbit_amqqueue:list(<<"VHOST">>)).
"""


def queued_messages(amqp_url: str) -> dict[str, int]:
    """Messages in each queue of the URL's vhost, ready or unacknowledged, as they are now."""
    vhost = amqp_url.rsplit("/", 1)[1]
    if not re.fullmatch(r"[\w.-]+", vhost):
        raise ValueError(f"not a test vhost: {vhost!r}")
    for _ in range(3):  # a queue that is electing its leader cannot answer for a moment
        listed = rabbitmqctl("eval", _COUNT_QUEUES.replace("VHOST", vhost))
        if listed.returncode == 0:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(f"cannot count the messages of {vhost}: {listed.stderr.strip() or listed.stdout.strip()}")
    return {
        name: int(count) for name, count in (line.split("\t") for line in listed.stdout.splitlines() if "\t" in line)
    }


def webhook(host: str, name: str) -> dict:
    return json.loads((WEBHOOKS / host / name).read_text())


def first_push_headers() -> dict[str, str]:
    """The request head of the captured Bitbucket delivery, as received."""
    lines = (WEBHOOKS / "bitbucket" / "first-push.http-headers.txt").read_text().splitlines()[1:]
    return dict(line.split(": ", 1) for line in lines if ": " in line)


# --- reading tasuki.runs from a real RabbitMQ ------------------------------------------------------


@pytest.fixture
def tasuki_env(monkeypatch) -> Iterator[Callable[..., None]]:
    """`tasuki_env(data_dir=..., push_key=...)`: the process's settings become exactly these
    TASUKI_* variables (every other one removed), and `runtime()` is built afresh from them."""
    from tasuki.shared.runtime import runtime

    def use(**values: str) -> None:
        for key in [k for k in os.environ if k.startswith("TASUKI_")]:
            monkeypatch.delenv(key)
        for name, value in values.items():
            monkeypatch.setenv(f"TASUKI_{name.upper()}", value)
        runtime.cache_clear()

    yield use
    runtime.cache_clear()


def pushed(client, function: str, message, *, key: str, audience: str, attempt: int = 1):
    """POST `message` to a pushed-to function's test client as the bridge does: in Pub/Sub's
    push envelope, with a push token for `audience` signed with `key`; the answer."""
    from tasuki.shared import codec, push, tokens

    body = push.envelope(
        codec.encode(message),
        attributes={**message.attributes(), "type": message.TYPE},
        message_id=uuid.uuid4().hex,
        publish_ms=0,
        subscription=f"projects/tasuki/subscriptions/{function}",
        delivery_attempt=attempt,
        ordering_key=message.ordering_key(),
    )
    return client.post("/", json=body, headers={"Authorization": f"Bearer {tokens.sign(key, audience)}"})


def listen_to_runs(broker, queue: str = "test.runs") -> str:
    """Bind a queue to everything published on tasuki.runs, for a test to read with `take`."""
    with broker.channel() as ch:
        ch.queue_declare(queue)
        ch.queue_bind(queue, "tasuki.runs", routing_key="#")
    return queue


def take(broker, queue: str) -> list:
    """Every message waiting in `queue`, decoded, removing them; each carries its ordering key."""
    from tasuki.shared import codec
    from tasuki.shared.broker import ORDERING_HEADER
    from tasuki.shared.messages import MODELS

    taken = []
    with broker.channel() as ch:
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            message = codec.decode(body, MODELS[props.type])
            assert (props.headers or {}).get(ORDERING_HEADER, "") == message.ordering_key()
            taken.append(message)
