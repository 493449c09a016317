"""The Docker Engine API over its unix socket, lean, for the calls every job container makes.

docker-py's low-level client sends each request through requests and urllib3 (a session's
settings merged, an adapter and a connection pool looked up, headers in case-insensitive
dictionaries, the answer's headers parsed by the email package): several times the CPU of the
request itself, five times per job. `SocketEngine` makes the same calls (create, attach, start,
wait, inspect, kill, remove) with the standard library's `http.client` on a connection of its own
to the engine's socket each (a unix socket connects in microseconds, and no pooled connection can
go stale), at the API version docker-py negotiated, and answers as docker-py does: the same values, and on a refusal docker-py's own errors, classified
by docker-py from the engine's status and message. So `containers.Docker` handles both alike.
An engine over TCP, TLS or SSH keeps docker-py's client.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
from typing import Any
from urllib.parse import quote, urlencode

import docker.errors
import requests
from docker.transport import UnixHTTPAdapter

# The most an attach's answer head may take (the engine's is about 120 bytes).
MAX_HEAD = 16 * 1024
CLIENT = -1.0  # a request's timeout: the client's own


class _Connection(http.client.HTTPConnection):
    """http.client's connection, to the engine's unix socket."""

    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = _connect(self._path, self.timeout)


def _connect(path: str, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


class SocketEngine:
    """The calls `containers.Docker` makes for every container, as docker-py's APIClient names them."""

    def __init__(self, socket_path: str, version: str, *, timeout: float = 120) -> None:
        self.socket_path = socket_path
        self.prefix = f"/v{version}"
        self.timeout = timeout

    @classmethod
    def beside(cls, api: Any) -> SocketEngine | None:
        """The lean path to the engine docker-py's client `api` reaches, if it is a unix socket
        (None otherwise: keep using `api`)."""
        adapter = getattr(api, "_custom_adapter", None)
        version = getattr(api, "api_version", None)
        if not isinstance(adapter, UnixHTTPAdapter) or not isinstance(version, str) or not version:
            return None
        return cls(adapter.socket_path, version, timeout=api.timeout)

    # -- the calls ----------------------------------------------------------------------------------

    def create_container_from_config(self, config: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({k: v for k, v in config.items() if v is not None})  # as docker-py sends it
        return json.loads(self._request("POST", "/containers/create", body=body))

    def start(self, container: str) -> None:
        self._request("POST", f"/containers/{_id(container)}/start")

    def wait(self, container: str) -> dict[str, Any]:
        return json.loads(self._request("POST", f"/containers/{_id(container)}/wait", timeout=None))

    def inspect_container(self, container: str) -> dict[str, Any]:
        return json.loads(self._request("GET", f"/containers/{_id(container)}/json"))

    def kill(self, container: str) -> None:
        self._request("POST", f"/containers/{_id(container)}/kill")

    def remove_container(self, container: str, *, force: bool = False, v: bool = False) -> None:
        self._request("DELETE", f"/containers/{_id(container)}", {"v": int(v), "force": int(force)})

    def attach_socket(self, container: str, params: dict[str, Any]) -> socket.socket:
        """The container's output stream: the socket, upgraded, with nothing of the stream read
        (the answer's head is read up to its end and not a byte further)."""
        url = self._url(f"/containers/{_id(container)}/attach", params)
        sock = _connect(self.socket_path, self.timeout)
        try:
            sock.sendall(
                f"POST {url} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                f"Content-Length: 0\r\n\r\n".encode()
            )
            status, reason, headers = _head(_read_head(sock))
            if status >= 400:
                length = int(headers.get("Content-Length") or 0)
                _refused(status, reason, url, _read_exactly(sock, min(length, MAX_HEAD)))
            if not 100 <= status < 300:
                raise http.client.HTTPException(f"the engine answered an attach with {status} {reason}")
        except BaseException:
            sock.close()
            raise
        return sock

    # -- one request --------------------------------------------------------------------------------

    def _url(self, path: str, params: dict[str, Any] | None = None) -> str:
        return self.prefix + path + (f"?{urlencode(params)}" if params else "")

    def _request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        body: str | None = None,
        timeout: float | None = CLIENT,
    ) -> bytes:
        """The answer's body; docker-py's error for a refusal. `timeout` None: none."""
        url = self._url(path, params)
        connection = _Connection(self.socket_path, self.timeout if timeout == CLIENT else timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, url, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
        finally:
            connection.close()
        if answer.status >= 400:
            _refused(answer.status, answer.reason, url, data)
        return data


def _id(container: str) -> str:
    return quote(container, safe="")


def _refused(status: int, reason: str, url: str, body: bytes) -> None:
    """Raise docker-py's error for this answer (APIError, NotFound, ImageNotFound), as it would."""
    response = requests.Response()
    response.status_code, response.reason, response.url = status, reason, f"http+docker://localhost{url}"
    response._content = body
    response.encoding = "utf-8"
    docker.errors.create_api_error_from_http_exception(requests.HTTPError(response=response))


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise http.client.IncompleteRead(bytes(data), n - len(data))
        data += chunk
    return bytes(data)


def _read_head(sock: socket.socket) -> bytes:
    """An HTTP answer's head, read up to its blank line and not a byte further: what follows is
    the container's stream. Peeks at what arrived, then takes only what belongs to the head."""
    head = b""
    while True:
        seen = sock.recv(4096, socket.MSG_PEEK)
        if not seen:
            raise http.client.RemoteDisconnected("the engine closed the connection without an answer")
        start = max(0, len(head) - 3)
        end = (head + seen).find(b"\r\n\r\n", start)
        if end >= 0:
            return head + _read_exactly(sock, end + 4 - len(head))
        head += _read_exactly(sock, len(seen))
        if len(head) > MAX_HEAD:
            raise http.client.HTTPException(f"the engine's answer head is over {MAX_HEAD} bytes")


def _head(head: bytes) -> tuple[int, str, http.client.HTTPMessage]:
    """(status, reason, headers) of an answer's head; the headers parsed by `http.client`."""
    status_line, _, fields = head.partition(b"\r\n")
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise http.client.BadStatusLine(status_line.decode("latin-1"))
    return int(parts[1]), parts[2] if len(parts) > 2 else "", http.client.parse_headers(io.BytesIO(fields))
