"""The unit tier: no network, no Docker, no RabbitMQ, and a guard that proves it.

Every test here runs with `no_services` on: a socket that reaches for RabbitMQ (AMQP and its
management and Erlang ports), a Docker engine (its socket, or its TCP ports), or any address
beyond loopback fails the test, naming what it reached for. A DNS lookup of a name other than
localhost is refused the same way, and so is starting `rabbitmqctl` or `docker`. Loopback fakes
at a true boundary (the fake git-host APIs in tests/fake_hosts.py) stay allowed. Child Python
processes are not watched: the tests that start some (test_imports, test_store_sqlite) say why
theirs reach for nothing.

The handlers run through functions-framework's test client with a runtime of their own:
`MemoryBroker` (tasuki.shared.memory) for RabbitMQ and SQLite in tmp_path for the store.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app

from tasuki import functions as tasuki_functions
from tasuki.shared.memory import MemoryBroker
from tasuki.shared.messages import Message
from tasuki.shared.runtime import Runtime, set_runtime
from tasuki.shared.settings import Settings
from tests.conftest import pushed

# RabbitMQ (AMQP, AMQPS, management, Erlang distribution and epmd) and Docker's TCP ports.
SERVICE_PORTS = {
    5672: "RabbitMQ",
    5671: "RabbitMQ",
    15672: "RabbitMQ's management API",
    25672: "RabbitMQ's Erlang node",
    4369: "epmd (RabbitMQ's Erlang port mapper)",
    2375: "a Docker engine",
    2376: "a Docker engine",
}
SERVICE_PROGRAMS = {"rabbitmqctl", "rabbitmq-diagnostics", "rabbitmq-plugins", "docker", "dockerd"}
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class ServiceReached(ConnectionRefusedError):
    """Raised where the code under test reached for a service; the test fails on it too."""


def _loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _docker_socket(path: str) -> bool:
    docker_host = os.environ.get("DOCKER_HOST", "")
    return Path(path).name == "docker.sock" or (
        docker_host.startswith("unix://") and path == docker_host.removeprefix("unix://")
    )


def refusal(family: int, address: Any) -> str | None:
    """Why a unit test may not connect to `address`, or None when it may."""
    if family == socket.AF_UNIX:
        path = address.decode() if isinstance(address, bytes) else str(address)
        return f"the Docker engine's socket {path}" if _docker_socket(path) else None
    if family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host, port = str(address[0]), int(address[1])
        if not _loopback(host):
            return f"{host}:{port}, beyond loopback"
        if port in SERVICE_PORTS:
            return f"{SERVICE_PORTS[port]} at {host}:{port}"
        return None
    return f"an address of family {family}: {address!r}"


def lookup(host: Any) -> str | None:
    """Why a unit test may not look `host` up, or None: names other than localhost go to DNS
    (addresses written out need no lookup; connecting to them is checked by `refusal`)."""
    name = os.fsdecode(host) if isinstance(host, bytes) else str(host or "")
    if not name or name.lower() in LOOPBACK_NAMES:
        return None
    try:
        ipaddress.ip_address(name.split("%")[0])
        return None
    except ValueError:
        return f"the address of {name!r} (a DNS lookup)"


class Guard:
    def __init__(self) -> None:
        self.reached: list[str] = []

    def check(self, what: str | None) -> None:
        if what is not None:
            self.reached.append(what)
            raise ServiceReached(f"the unit tier reaches for no service, and this test reached for {what}")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        guard = self
        real_connect, real_connect_ex, real_sendto = (
            socket.socket.connect,
            socket.socket.connect_ex,
            socket.socket.sendto,
        )
        real_getaddrinfo, real_gethostbyname = socket.getaddrinfo, socket.gethostbyname
        real_popen_init = subprocess.Popen.__init__

        def connect(self: socket.socket, address: Any) -> None:
            guard.check(refusal(self.family, address))
            return real_connect(self, address)

        def connect_ex(self: socket.socket, address: Any) -> int:
            guard.check(refusal(self.family, address))
            return real_connect_ex(self, address)

        def sendto(self: socket.socket, data: Any, *args: Any) -> int:
            guard.check(refusal(self.family, args[-1]))
            return real_sendto(self, data, *args)

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            guard.check(lookup(host))
            return real_getaddrinfo(host, port, *args, **kwargs)

        def gethostbyname(host: str) -> str:
            guard.check(lookup(host))
            return real_gethostbyname(host)

        def popen_init(self: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
            argv = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)
            program = Path(os.fsdecode(argv[0]).split()[0]).name if argv else ""
            if program in SERVICE_PROGRAMS:
                guard.check(f"the program {program}")
            real_popen_init(self, args, *rest, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
        monkeypatch.setattr(socket.socket, "sendto", sendto)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket, "gethostbyname", gethostbyname)
        monkeypatch.setattr(subprocess.Popen, "__init__", popen_init)


@pytest.fixture(autouse=True)
def no_services(monkeypatch: pytest.MonkeyPatch) -> Iterator[Guard]:
    guard = Guard()
    guard.install(monkeypatch)
    yield guard
    if guard.reached:
        # Also when the code under test caught the refusal (a handler answering 503, say).
        pytest.fail(
            "the unit tier reaches for no service (RabbitMQ, Docker, the network), and this test reached for "
            + "; ".join(dict.fromkeys(guard.reached))
            + ". Use MemoryBroker and the fakes, or move the test to tests/integration.",
            pytrace=False,
        )


# --- the functions with the in-memory broker ---------------------------------------------------------


@pytest.fixture
def memory_runtime(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Runtime]]:
    """Makes the runtime of the functions in this process: these settings (data dir in tmp_path),
    the in-memory broker with Tasuki's topology declared, SQLite in the data dir."""
    made: list[Runtime] = []

    def make(**values: Any) -> Runtime:
        rt = Runtime(make_settings(**values), broker=MemoryBroker())
        rt.broker.declare()
        set_runtime(rt)
        made.append(rt)
        return rt

    yield make
    set_runtime(None)
    for rt in made:
        if "store" in rt.__dict__:  # opened
            rt.store.close()


def function_client(function: str) -> Any:
    """Function `function` served by functions-framework, as its test client."""
    return create_app(target=function, source=str(tasuki_functions.source(function))).test_client()


class Functions:
    """The pushed-to handlers: push a message to one as the bridge would, and read what it
    published from the in-memory queues (`test.runs` has everything on tasuki.runs)."""

    RUNS = "test.runs"

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.broker = rt.broker
        self.clients: dict[str, Any] = {}
        self.broker.queue_declare(self.RUNS)
        self.broker.queue_bind(self.RUNS, "tasuki.runs", routing_key="#")

    def push(self, function: str, message: Message, attempt: int = 1) -> dict:
        if function not in self.clients:
            self.clients[function] = function_client(function)
        audience = self.rt.settings.endpoint(function)
        answer = pushed(
            self.clients[function], function, message, key=self.rt.signing_key, audience=audience, attempt=attempt
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer.get_json()

    def take(self, queue: str) -> list[Message]:
        """Every message waiting in `queue`, decoded, removing them; each carries its ordering key."""
        taken = []
        for published in self.broker.take(queue):
            message = published.message()
            assert published.ordering_key == message.ordering_key()
            taken.append(message)
        return taken


@pytest.fixture
def functions(memory_runtime: Callable[..., Runtime]) -> Functions:
    return Functions(memory_runtime())
