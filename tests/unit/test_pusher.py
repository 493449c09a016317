"""One HTTP push (`local/bridge/pusher.py`) against a loopback endpoint that
answers with scripted bytes: the request on the wire, kept-alive connections, every way an
answer can frame its body, and endpoints that answer too much, too late or not HTTP at all."""

from __future__ import annotations

import http.client
import ipaddress
import json
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tasuki.local.bridge.pusher import KEEP, Pusher
from tasuki.local.bridge.server import Bridge
from tasuki.shared import push, tokens
from tasuki.shared.errors import ConfigError

KEY = "pusher-test-key-of-at-least-32-bytes"
CLOSE = b""  # an answer: close the connection without a word
REQUEST = push.envelope(
    b"payload",
    attributes={"type": "probe"},
    message_id="m-1",
    publish_ms=1_700_000_000_000,
    subscription="projects/tasuki/subscriptions/probe",
    delivery_attempt=1,
)


def answer(status: str, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Scripted:
    """A loopback endpoint: answers each request with the next of `answers` (raw bytes; CLOSE
    closes the connection instead, `(bytes, CLOSE)` after answering; None answers nothing) and
    records (connection, head, body)."""

    def __init__(self, *answers: bytes | tuple[bytes, bytes] | None) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[int, bytes, bytes]] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.open: list[socket.socket] = []
        self.wrap: Callable[[socket.socket], socket.socket] = lambda conn: conn  # TLS, say
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self.open.append(conn)
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buffer = b""
        try:
            conn = self.wrap(conn)
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                self.requests.append((number, head, buffer[:length]))
                buffer = buffer[length:]
                reply = self.answers.pop(0)
                if reply is None:
                    continue
                if isinstance(reply, tuple):
                    conn.sendall(reply[0])
                    reply = CLOSE
                if reply == CLOSE:
                    conn.close()
                    return
                conn.sendall(reply)
        except OSError:
            return

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.listener.close()
        for conn in self.open:
            conn.close()


@pytest.fixture
def endpoint() -> Iterator[Callable[..., Scripted]]:
    made: list[Scripted] = []

    def make(*answers: bytes | tuple[bytes, bytes] | None) -> Scripted:
        made.append(Scripted(*answers))
        return made[-1]

    yield make
    for e in made:
        e.close()


def pusher(e: Scripted, url: str = "") -> Pusher:
    return Pusher(url or e.url, KEY, connections=2)


def test_a_push_is_pubsubs_request_and_its_connection_is_kept_for_the_next(endpoint):
    e = endpoint(answer("204 No Content"), answer("200 OK", b"ok"))
    p = pusher(e)
    assert p.push(REQUEST, 5).acked and p.push(REQUEST, 5).acked
    assert [number for number, _, _ in e.requests] == [1, 1]  # one connection, kept alive
    _, head, body = e.requests[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST / HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Host"] == e.url.split("/")[2]
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept-Encoding"] == "identity"
    assert int(headers["Content-Length"]) == len(body)
    assert tokens.verify(KEY, headers["Authorization"], e.url)["sub"] == "bridge"
    assert json.loads(body) == REQUEST
    p.close()


def test_the_request_line_keeps_the_urls_path_and_query(endpoint):
    e = endpoint(answer("204 No Content"))
    assert pusher(e, e.url + "fn/router?x=1").push(REQUEST, 5).acked
    assert e.requests[0][1].split(b"\r\n")[0] == b"POST /fn/router?x=1 HTTP/1.1"


@pytest.mark.parametrize("status", ["200 OK", "201 Created", "202 Accepted", "204 No Content"])
def test_the_statuses_that_ack(endpoint, status):
    assert pusher(e := endpoint(answer(status, b"fine"))).push(REQUEST, 5).acked, e


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (answer("500 Internal Server Error", b"boom\n"), "HTTP 500: boom"),
        (
            answer(
                "503 Service Unavailable",
                b"5\r\nthe s\r\nf\r\ntore was locked\r\n0\r\n\r\n",
                "Transfer-Encoding: chunked",
            ),
            "HTTP 503: the store was locked",
        ),
        (answer("302 Found", b"", "Location: http://elsewhere/"), "HTTP 302: "),  # never followed
        (answer("429 Too Many Requests", b"slow down", "Content-Length: 9", "X-Other: 1"), "HTTP 429: slow down"),
    ],
)
def test_other_statuses_nack_with_the_start_of_the_body_and_keep_the_connection(endpoint, reply, error):
    e = endpoint(reply, answer("204 No Content"))
    p = pusher(e)
    outcome = p.push(REQUEST, 5)
    assert (outcome.acked, outcome.error) == (False, error)
    assert p.push(REQUEST, 5).acked
    assert e.connections == 1


def test_a_body_that_ends_with_the_connection_is_read_and_the_connection_not_kept(endpoint):
    e = endpoint((b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nall of it", CLOSE), answer("204 No Content"))
    p = pusher(e)
    assert p.push(REQUEST, 5).error == "HTTP 500: all of it"
    assert p.push(REQUEST, 5).acked
    assert e.connections == 2


def test_100_continue_is_skipped_and_102_acks_without_its_late_answer_being_read_later(endpoint):
    e = endpoint(
        b"HTTP/1.1 100 Continue\r\n\r\n" + answer("204 No Content"),
        b"HTTP/1.1 102 Processing\r\n\r\n" + answer("500 Internal Server Error", b"late"),
        answer("204 No Content"),
    )
    p = pusher(e)
    assert p.push(REQUEST, 5).acked
    assert p.push(REQUEST, 5).acked  # 102 acks, as in Pub/Sub
    assert p.push(REQUEST, 5).acked  # not the late 500: a new connection
    assert [number for number, _, _ in e.requests] == [1, 1, 2]


def test_a_kept_connection_the_endpoint_closed_meanwhile_is_replaced(endpoint):
    e = endpoint(answer("204 No Content"), answer("204 No Content"))
    p = pusher(e)
    assert p.push(REQUEST, 5).acked
    e.open[0].shutdown(socket.SHUT_RDWR)  # the endpoint's keep-alive timeout
    select.select([p._idle[0].sock], [], [], 5)  # until the close has reached this side
    assert p.push(REQUEST, 5).acked
    assert [number for number, _, _ in e.requests] == [1, 2]


def test_a_refused_connection_and_a_dropped_one_nack(endpoint):
    e = endpoint(CLOSE)
    outcome = pusher(e).push(REQUEST, 5)
    assert not outcome.acked and outcome.error.startswith(f"cannot reach {e.url}: RemoteDisconnected: ")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # a port where nothing listens
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/"
        outcome = Pusher(url, KEY, connections=1).push(REQUEST, 5)
    assert outcome.error.startswith(f"cannot reach {url}: ConnectionRefusedError: ")


def test_no_answer_within_the_deadline_nacks(endpoint):
    e = endpoint(None, answer("204 No Content"))
    p = pusher(e)
    assert p.push(REQUEST, 0.3).error == "no answer within the ack deadline (0.3s)"
    assert p.push(REQUEST, 5).acked  # on a new connection: the timed-out one may still answer
    assert e.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000,  # a header line that never ends
    ],
)
def test_an_answer_that_is_not_http_nacks_and_the_connection_is_dropped(endpoint, reply):
    e = endpoint(reply, answer("204 No Content"))
    p = pusher(e)
    outcome = p.push(REQUEST, 5)
    assert not outcome.acked and outcome.error.startswith(f"cannot reach {e.url}: "), outcome
    assert p.push(REQUEST, 5).acked
    assert e.connections == 2


def test_a_huge_body_is_not_read_to_its_end(endpoint):
    huge = b"x" * (10 * 1024 * 1024)
    e = endpoint(
        answer("500 Internal Server Error", huge),
        answer("204 No Content"),
    )
    p = pusher(e)
    outcome = p.push(REQUEST, 5)
    assert outcome.error == "HTTP 500: " + "x" * KEEP
    assert p.push(REQUEST, 5).acked
    assert e.connections == 2  # the rest of the body was left unread, with its connection


def test_a_huge_chunked_body_is_not_read_to_its_end(endpoint):
    chunks = (b"%x\r\n" % 4096 + b"y" * 4096 + b"\r\n") * 64
    e = endpoint(answer("500 Internal Server Error", chunks, "Transfer-Encoding: chunked"), answer("204 No Content"))
    p = pusher(e)
    assert p.push(REQUEST, 5).error == "HTTP 500: " + "y" * KEEP
    assert p.push(REQUEST, 5).acked
    assert e.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunking
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",  # the body would end with the connection
    ],
)
def test_an_acknowledging_answer_with_a_bad_body_acks_and_its_connection_is_not_used_again(endpoint, reply):
    e = endpoint(reply, answer("204 No Content"))
    p = pusher(e)
    assert p.push(REQUEST, 5).acked  # the endpoint said 200: what follows does not change that
    assert p.push(REQUEST, 5).acked
    assert e.connections == 2


def test_kept_connections_are_bounded(endpoint):
    e = endpoint(*[answer("204 No Content")] * 3)
    p = Pusher(e.url, KEY, connections=1)
    first, second = p._connection(5), p._connection(5)
    first.connect()
    second.connect()
    p._keep(first)
    p._keep(second)  # one too many: closed
    assert p._idle == [first] and second.sock is None
    p.close()
    assert p._idle == [] and first.sock is None


@pytest.mark.parametrize("url", ["ftp://host/", "http:///path", "http://host:99999/", "http://host/a b", "router"])
def test_an_endpoint_that_is_not_an_http_url_is_refused(url):
    with pytest.raises(ConfigError):
        Pusher(url, KEY, connections=1)


def test_https_endpoints_verify_the_certificate_and_name():
    p = Pusher("https://example.com/push?x=1", KEY, connections=1)
    assert p.path == "/push?x=1"
    connection = p._connection(5)
    assert isinstance(connection, http.client.HTTPSConnection)
    assert (connection.host, connection.port) == ("example.com", 443)
    assert connection._context.check_hostname and connection._context.verify_mode == ssl.CERT_REQUIRED


def test_the_bridge_refuses_an_endpoint_setting_that_is_not_an_http_url(make_settings):
    with pytest.raises(ConfigError, match=r"^TASUKI_REPORTER_URL: a push endpoint must be an http:// or https:// URL"):
        Bridge(make_settings(reporter_url="ftp://example/"))


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A certificate for `name` (an IP address) signed by its own key, and the key: (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(name))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_pushes_check_the_certificate(endpoint, tmp_path, monkeypatch):
    cert, key = _self_signed(tmp_path, "127.0.0.1")
    e = endpoint(answer("204 No Content"), answer("204 No Content"), answer("204 No Content"))
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    e.wrap = lambda conn: server_side.wrap_socket(conn, server_side=True)
    url = e.url.replace("http://", "https://")
    # Given a certificate no CA of the system's signed: refused
    outcome = Pusher(url, KEY, connections=1).push(REQUEST, 5)
    assert outcome.error.startswith(f"cannot reach {url}: SSLCertVerificationError: ")
    # Given the same certificate trusted (SSL_CERT_FILE, read where the system's CAs are)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    p = Pusher(url, KEY, connections=1)
    assert p.push(REQUEST, 5).acked and p.push(REQUEST, 5).acked
    assert [number for number, _, _ in e.requests] == [2, 2]  # kept alive over TLS too
