"""Behavioural fakes of the git hosts' commit-status APIs, on a local HTTP server.

Each fake checks a request the way the real API does for these endpoints (method, path,
authentication, JSON fields and values against the documented schema), answers as the host
would (status code and error body), records what it accepted, and can be told to fail.

    Bitbucket Cloud  POST /2.0/repositories/{workspace}/{slug}/commit/{sha}/statuses/build
    GitHub           POST /repos/{owner}/{repo}/statuses/{sha}
    GitLab           POST /api/v4/projects/{url-encoded path}/statuses/{sha}
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class Accepted:
    host: str
    repository: str
    commit: str
    body: dict[str, Any]

    @property
    def name(self) -> str:  # the status's identity on each host
        return self.body.get("key") or self.body.get("context") or self.body.get("name") or ""

    @property
    def state(self) -> str:
        return self.body["state"]


@dataclass
class Failure:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class FakeHosts:
    """One server for all three hosts: base URLs `bitbucket_url`, `github_url`, `gitlab_url`."""

    def __init__(self) -> None:
        self.commits: set[str] = set()  # commits the hosts know
        self.tokens = {"bitbucket": "bb-token", "github": "gh-token", "gitlab": "gl-token"}
        self.app_password = ("ci-bot", "app-pass")  # Bitbucket username + app password
        self.accepted: list[Accepted] = []
        self.refused: list[tuple[str, int, dict]] = []
        self.paths: list[str] = []  # every request's path, whatever it was answered
        self._failures: deque[Failure] = deque()
        self._gitlab_state: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # shutdown() waits for the loop's next look at its flag: every 50 ms, not the default 500
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    bitbucket_url = property(lambda self: self.base + "/2.0")
    github_url = property(lambda self: self.base)
    gitlab_url = property(lambda self: self.base + "/api/v4")

    def __enter__(self) -> FakeHosts:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, status: int, times: int = 1, body: dict | None = None, headers: dict | None = None) -> None:
        """The next `times` requests (valid or not) get this answer instead."""
        for _ in range(times):
            self._failures.append(Failure(status, body or {"message": f"injected {status}"}, headers or {}))

    def statuses(self, host: str | None = None) -> list[Accepted]:
        with self._lock:
            return [a for a in self.accepted if host in (None, a.host)]

    def sequence(self, name: str) -> list[str]:
        """The states accepted for one status identity (key / context / name), in order."""
        return [a.state for a in self.statuses() if a.name == name]

    # -- the server ---------------------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(405, {"message": "Method Not Allowed"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                fake.paths.append(self.path)
                if fake._failures:
                    failure = fake._failures.popleft()
                    self._answer(failure.status, failure.body, failure.headers)
                    return
                status, body = fake._route(self.path, dict(self.headers.items()), raw)
                self._answer(status, body)

            def _answer(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _route(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict]:
        headers = {k.lower(): v for k, v in headers.items()}
        if m := re.fullmatch(r"/2\.0/repositories/([^/]+)/([^/]+)/commit/([^/]+)/statuses/build/?", path):
            return self._bitbucket(f"{m[1]}/{m[2]}", m[3], headers, raw)
        if m := re.fullmatch(r"/repos/([^/]+)/([^/]+)/statuses/([^/]+)", path):
            return self._github(f"{m[1]}/{m[2]}", m[3], headers, raw)
        if m := re.fullmatch(r"/api/v4/projects/([^/]+)/statuses/([^/]+)", path):
            return self._gitlab(unquote(m[1]), m[2], headers, raw)
        return 404, {"message": "Not Found"}

    def _json(self, headers: dict[str, str], raw: bytes) -> dict | None:
        if not headers.get("content-type", "").startswith("application/json"):
            return None
        try:
            body = json.loads(raw)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _refuse(self, host: str, status: int, body: dict) -> tuple[int, dict]:
        with self._lock:
            self.refused.append((host, status, body))
        return status, body

    def _accept(self, host: str, repository: str, commit: str, body: dict) -> None:
        with self._lock:
            self.accepted.append(Accepted(host, repository, commit, body))

    # Bitbucket Cloud: errors are {"type": "error", "error": {"message": ...}}
    def _bitbucket(self, repo: str, sha: str, headers: dict, raw: bytes) -> tuple[int, dict]:
        def error(status: int, message: str) -> tuple[int, dict]:
            return self._refuse("bitbucket", status, {"type": "error", "error": {"message": message}})

        auth = headers.get("authorization", "")
        basic = "Basic " + base64.b64encode(":".join(self.app_password).encode()).decode()
        if auth not in (f"Bearer {self.tokens['bitbucket']}", basic):
            return error(401, "Access token expired." if auth.startswith("Bearer") else "Unauthorized")
        body = self._json(headers, raw)
        if body is None:
            return error(400, "Bad request: expected a JSON object")
        allowed = {"key", "state", "url", "name", "description", "refname"}
        if extra := set(body) - allowed:
            return error(400, f"Unexpected fields: {sorted(extra)}")
        for required in ("key", "state", "url"):
            if not isinstance(body.get(required), str) or not body[required]:
                return error(400, f"{required}: This field is required.")
        if body["state"] not in ("INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"):
            return error(400, f"state: {body['state']!r} is not a valid choice.")
        if len(body["key"]) > 40:
            return error(400, "key: Ensure this value has at most 40 characters.")
        if not all(isinstance(body.get(k, ""), str) for k in ("name", "description", "refname")):
            return error(400, "name, description and refname must be strings")
        if not SHA.match(sha) or sha not in self.commits:
            return error(404, f"Commit not found: {sha}")
        self._accept("bitbucket", repo, sha, body)
        return 201, {"type": "build", **body, "uuid": "{fake}"}

    # GitHub: errors are {"message": ..., "documentation_url": ...}
    def _github(self, repo: str, sha: str, headers: dict, raw: bytes) -> tuple[int, dict]:
        def error(status: int, message: str) -> tuple[int, dict]:
            return self._refuse(
                "github", status, {"message": message, "documentation_url": "https://docs.github.com/rest"}
            )

        if headers.get("authorization") not in (f"Bearer {self.tokens['github']}", f"token {self.tokens['github']}"):
            return error(401, "Bad credentials")
        body = self._json(headers, raw)
        if body is None:
            return error(400, "Problems parsing JSON")
        if body.get("state") not in ("error", "failure", "pending", "success"):
            return error(422, f"Validation Failed: state {body.get('state')!r}")
        for optional in ("target_url", "description", "context"):
            if optional in body and not isinstance(body[optional], str):
                return error(422, f"Validation Failed: {optional} must be a string")
        if len(body.get("description", "")) > 140:
            return error(422, "Validation Failed: description is too long (maximum is 140 characters)")
        if not SHA.match(sha) or sha not in self.commits:
            return error(422, f"No commit found for SHA: {sha}")
        body = {"context": "default", **body}
        self._accept("github", repo, sha, body)
        return 201, {"id": len(self.accepted), **body}

    # GitLab: errors are {"message": ...}; a status cannot "transition" to the state it is in
    def _gitlab(self, project: str, sha: str, headers: dict, raw: bytes) -> tuple[int, dict]:
        def error(status: int, message: str) -> tuple[int, dict]:
            return self._refuse("gitlab", status, {"message": message})

        if (
            headers.get("private-token") != self.tokens["gitlab"]
            and headers.get("authorization") != f"Bearer {self.tokens['gitlab']}"
        ):
            return error(401, "401 Unauthorized")
        body = self._json(headers, raw)
        if body is None:
            return error(400, "400 Bad request - body is not JSON")
        states = ("pending", "running", "success", "failed", "canceled", "skipped")
        if body.get("state") not in states:
            return error(400, "state does not have a valid value")
        if not SHA.match(sha) or sha not in self.commits:
            return error(404, "404 Commit Not Found")
        name = body.get("name") or body.get("context") or "default"
        with self._lock:
            current = self._gitlab_state.get((sha, name))
            if current == body["state"] and current in ("pending", "running"):
                verb = {"pending": "enqueue", "running": "run"}[current]
                return 400, {"message": f"Cannot transition status via :{verb} from :{current}"}
            self._gitlab_state[(sha, name)] = body["state"]
        self._accept("gitlab", project, sha, {"name": name, **body})
        return 201, {"id": len(self.accepted), "status": body["state"], "name": name, "sha": sha}
