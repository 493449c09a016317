"""The unit tier's guard (tests/unit/conftest.py): what reaches for RabbitMQ, Docker or the
network is refused and fails the test; loopback fakes are allowed."""

from __future__ import annotations

import socket
import subprocess
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest
import requests

from tasuki.shared.broker import Broker
from tasuki.shared.errors import BrokerUnavailable
from tasuki.shared.messages import RunWake
from tests.unit.conftest import ServiceReached


@pytest.fixture
def guard(no_services):
    """The guard of this test, emptied at the end: these tests reach on purpose."""
    yield no_services
    no_services.reached.clear()


@pytest.mark.parametrize(
    ("address", "says"),
    [
        (("127.0.0.1", 5672), "RabbitMQ at 127.0.0.1:5672"),
        (("localhost", 5672), "RabbitMQ at localhost:5672"),
        (("127.0.0.1", 15672), "RabbitMQ's management API"),
        (("127.0.0.1", 2375), "a Docker engine"),
        (("192.0.2.1", 80), "192.0.2.1:80, beyond loopback"),
        (("10.0.0.1", 8080), "beyond loopback"),
    ],
)
def test_a_connection_to_a_service_or_beyond_loopback_is_refused(guard, address, says):
    with socket.socket() as s, pytest.raises(ServiceReached, match=says):
        s.connect(address)
    assert says in guard.reached[0]


def test_ipv6_beyond_loopback_and_the_docker_socket_are_refused(guard):
    with socket.socket(socket.AF_INET6) as s, pytest.raises(ServiceReached, match="beyond loopback"):
        s.connect(("2001:db8::1", 443, 0, 0))
    with socket.socket(socket.AF_UNIX) as s, pytest.raises(ServiceReached, match="Docker engine's socket"):
        s.connect("/var/run/docker.sock")
    assert len(guard.reached) == 2


def test_a_dns_lookup_and_the_service_programs_are_refused(guard):
    with pytest.raises(ServiceReached, match="DNS lookup"):
        socket.getaddrinfo("example.com", 443)
    with pytest.raises(requests.ConnectionError, match="DNS lookup"):
        requests.get("https://api.bitbucket.org/2.0", timeout=1)
    with pytest.raises(ServiceReached, match="the program rabbitmqctl"):
        subprocess.run(["rabbitmqctl", "status"], check=False)
    with pytest.raises(ServiceReached, match="the program docker"):
        subprocess.run("/usr/bin/docker ps", shell=True, check=False)
    assert len(guard.reached) == 4


def test_a_refusal_the_code_catches_is_still_seen(guard):
    # pika's error becomes BrokerUnavailable, as a handler would see it (and answer 503)...
    with pytest.raises(BrokerUnavailable):
        Broker("amqp://guest:guest@localhost:5672/").publish(RunWake(run_id="r"))
    # ...and the guard has it, to fail the test at its end
    assert guard.reached and "RabbitMQ at" in guard.reached[0]


def test_loopback_fakes_and_local_lookups_are_allowed(no_services):
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        answer = requests.get(f"http://localhost:{server.server_address[1]}/", timeout=10)
        assert answer.status_code == 204
    finally:
        server.shutdown()
        server.server_close()
    assert subprocess.run(["true"], check=False).returncode == 0
    assert no_services.reached == []


def test_a_test_that_reaches_for_rabbitmq_fails_with_a_clear_message(pytester):
    # A unit test that swallows the error (as a handler turning it into a 503 would) still fails
    pytester.makeconftest("from tests.unit.conftest import no_services  # noqa: F401\n")
    pytester.makepyfile(
        """
        import socket

        def test_reaches():
            try:
                socket.create_connection(("127.0.0.1", 5672), timeout=1)
            except OSError:
                pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*the unit tier reaches for no service*RabbitMQ at 127.0.0.1:5672*"])
