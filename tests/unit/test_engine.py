"""The lean Engine API path (`local.executor.engine`), against a fake engine on a unix socket in
a temporary folder: docker-py's answers and errors, whole and chunked answers, an attach that
leaves the container's stream unread, and an engine that answers badly or not at all."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from pathlib import Path

import docker.errors
import pytest

from tasuki.local.executor.engine import MAX_HEAD, SocketEngine


class FakeEngine:
    """Answers each connection with the next canned bytes, and keeps what it was sent."""

    def __init__(self, path: Path, answers: list[bytes]) -> None:
        self.path = path
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            connection, _ = self.server.accept()
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(4096)
                head, _, body = request.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                while len(body) < length:
                    body += connection.recv(4096)
                self.requests.append(head + b"\r\n\r\n" + body)
                connection.sendall(self.answers.pop(0))

    def close(self) -> None:
        self.server.close()


def answer(status: str, body: bytes = b"", headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body


def chunked(status: str, *chunks: bytes) -> bytes:
    body = b"".join(f"{len(c):x};ext=1\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
    return f"HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + body


@pytest.fixture
def engine(tmp_path):
    made = []

    def make(*answers: bytes) -> tuple[SocketEngine, FakeEngine]:
        fake = FakeEngine(tmp_path / f"engine{len(made)}.sock", list(answers))
        made.append(fake)
        return SocketEngine(str(fake.path), "1.44", timeout=5), fake

    yield make
    for fake in made:
        fake.close()


def test_calls_go_to_the_negotiated_version_and_answer_as_docker_py_does(engine):
    api, fake = engine(
        answer("201 Created", b'{"Id": "abc123", "Warnings": []}'),
        answer("204 No Content"),
        chunked("200 OK", b'{"StatusCode": 3,', b' "Error": null}'),
        answer("204 No Content"),
    )
    assert api.create_container_from_config({"Image": "busybox", "Cmd": ["true"], "Hostname": None})["Id"] == "abc123"
    assert api.start("abc123") is None
    assert api.wait("abc123") == {"StatusCode": 3, "Error": None}
    api.remove_container("abc123", force=True, v=True)
    create, start, wait, remove = fake.requests
    assert create.startswith(b"POST /v1.44/containers/create HTTP/1.1\r\n")
    assert json.loads(create.split(b"\r\n\r\n", 1)[1]) == {"Image": "busybox", "Cmd": ["true"]}  # None left out
    assert start.startswith(b"POST /v1.44/containers/abc123/start ")
    assert wait.startswith(b"POST /v1.44/containers/abc123/wait ")
    assert remove.startswith(b"DELETE /v1.44/containers/abc123?v=1&force=1 ")


def test_a_container_name_cannot_reach_another_path(engine):
    api, fake = engine(answer("204 No Content"))
    api.kill("../../images/x?force=1")
    assert fake.requests[0].startswith(b"POST /v1.44/containers/..%2F..%2Fimages%2Fx%3Fforce%3D1/kill ")


@pytest.mark.parametrize(
    ("reply", "error", "words"),
    [
        (
            answer("404 Not Found", b'{"message":"No such image: nope:latest"}'),
            docker.errors.ImageNotFound,
            "No such image: nope:latest",
        ),
        (
            answer("404 Not Found", b'{"message":"No such container: c1"}'),
            docker.errors.NotFound,
            "No such container: c1",
        ),
        (answer("409 Conflict", b'{"message":"name in use"}'), docker.errors.APIError, "name in use"),
        (answer("500 Internal Server Error", b"plain words"), docker.errors.APIError, "plain words"),
    ],
)
def test_a_refusal_is_docker_pys_own_error_with_the_engines_words(engine, reply, error, words):
    api, _ = engine(reply)
    with pytest.raises(error) as raised:
        api.inspect_container("c1")
    assert type(raised.value) is error
    assert raised.value.status_code == int(reply.split()[1]) and raised.value.explanation == words


def test_attach_reads_the_answer_head_and_not_a_byte_of_the_stream(engine):
    stream = b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    api, fake = engine(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n" + stream)
    sock = api.attach_socket("c1", {"stdout": 1, "stderr": 1, "stream": 1})
    try:
        received = b""
        while len(received) < len(stream):
            received += sock.recv(100)
        assert received == stream
    finally:
        sock.close()
    assert fake.requests[0].startswith(b"POST /v1.44/containers/c1/attach?stdout=1&stderr=1&stream=1 HTTP/1.1\r\n")
    assert b"Upgrade: tcp\r\n" in fake.requests[0]


def test_attach_refused_or_answered_badly(engine):
    api, _ = engine(
        answer("404 Not Found", b'{"message":"No such container: c1"}'),
        b"HTTP/1.1 200 OK\r\nX: " + b"y" * (MAX_HEAD + 10),
        b"",
        b"SSH-2.0-nonsense\r\n\r\n",
    )
    with pytest.raises(docker.errors.NotFound):
        api.attach_socket("c1", {})
    with pytest.raises(http.client.HTTPException, match="head is over"):
        api.attach_socket("c1", {})
    with pytest.raises(http.client.RemoteDisconnected):
        api.attach_socket("c1", {})
    with pytest.raises(http.client.BadStatusLine):
        api.attach_socket("c1", {})


def test_an_engine_that_closes_early_or_sends_a_broken_answer_is_a_transport_error(engine):
    api, _ = engine(
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    )
    with pytest.raises(http.client.RemoteDisconnected):
        api.inspect_container("c1")
    with pytest.raises(http.client.IncompleteRead):
        api.inspect_container("c1")
    with pytest.raises(http.client.IncompleteRead):
        api.inspect_container("c1")


def test_no_engine_at_the_socket_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        SocketEngine(str(tmp_path / "none.sock"), "1.44").inspect_container("c1")


def test_whole_and_chunked_answers_decode(engine):
    with_trailer = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{"a": 3}\r\n0\r\nTrailer: x\r\n\r\n'
    api, _ = engine(answer("200 OK", b'{"a": 1}'), chunked("200 OK", b'{"a"', b": 2}"), with_trailer)
    assert [api.inspect_container("c1")["a"] for _ in range(3)] == [1, 2, 3]
