"""A fourth git host is one new module and its line in `HOSTS`: a minimal host written here,
implementing `GitHost` and nothing else, is read, reported to and cloned with by the generic
code (webhooks, the reporter through its handler, the checkout), none of which is edited."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from functions_framework import create_app

from tasuki.local.executor import checkout
from tasuki.shared import hosts, statuses, webhooks
from tasuki.shared.errors import CheckoutFailed, WebhookError
from tasuki.shared.hosts import GitHost
from tasuki.shared.hosts.common import api_headers, bearer, digest, outcome, text, verify_token
from tasuki.shared.hosts.protocol import CommitStatus, Outcome, StatusAnswer, StatusRequest, Unpublished
from tasuki.shared.messages import Event, JobUpdated, Ref, Repository
from tasuki.shared.registry import Registry, RepositoryConfig
from tasuki.shared.store.sqlite import SQLiteStore
from tests.conftest import pushed

SHA = "f" * 40
KEY = "fourth-host-test-key-" + "k" * 32
TOKEN = "forge-token-81c2"


# --- the new module: everything about the host "forge" --------------------------------------------


class Forge:
    """A forge that sends `X-Forge-Event`, carries its secret in `X-Forge-Token`, takes statuses
    at POST {api}/repos/{repo}/statuses/{sha} with a Bearer token, and clones as `forge-bot`."""

    name = "forge"
    title = "Forge"
    event_header = "X-Forge-Event"

    def __init__(self, api_url: str = "https://forge.example/api/v1") -> None:
        self.api_url = api_url

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        return f"forge:{headers.get('X-Forge-Delivery') or digest(headers.get(self.event_header, ''), body)}"

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str) -> None:
        verify_token(headers, "X-Forge-Token", secret)

    def repository_name(self, payload: Mapping[str, Any]) -> str | None:
        return text(payload, "repository") or None

    def parse(self, event_name: str, payload: Mapping[str, Any], delivery: str) -> list[Event] | Unpublished:
        if event_name != "push":
            return Unpublished("ignored", f"Tasuki does not act on Forge {event_name} events")
        name = text(payload, "repository", required="push")
        return [
            Event(
                host=self.name,
                event="push",
                kind="push",
                delivery_id=delivery,
                repository=Repository(full_name=name, clone_url=f"https://forge.example/{name}.git"),
                ref=Ref(kind="branch", name=text(payload, "branch", required="push")),
                after=text(payload, "commit", required="push"),
            )
        ]

    def status_request(self, status: CommitStatus, api_url: str, credentials: RepositoryConfig) -> StatusRequest:
        body = {"state": {"running": "busy"}.get(status.state, status.state), "context": status.name}
        url = f"{api_url}/repos/{status.repository}/statuses/{status.commit}"
        return StatusRequest("POST", url, api_headers(bearer(credentials.token)), body)

    def status_outcome(self, answer: StatusAnswer) -> Outcome:
        return outcome(answer)

    def clone_login(self, credentials: RepositoryConfig) -> tuple[str, str] | None:
        return ("forge-bot", credentials.token) if credentials.token else None


# --- its line in HOSTS (and a server for its status API) ------------------------------------------


@pytest.fixture
def forge_api() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """The forge's status API: takes a POST with the right token, refuses any other (401)."""
    taken: list[tuple[str, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            good = self.headers.get("Authorization") == f"Bearer {TOKEN}"
            if good:
                taken.append((self.path, body))
            data = json.dumps({"ok": True} if good else {"message": "bad token"}).encode()
            self.send_response(201 if good else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()  # a quick shutdown
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1", taken
    server.shutdown()
    server.server_close()


@pytest.fixture
def forge(monkeypatch, forge_api) -> Forge:
    host = Forge(api_url=forge_api[0])
    monkeypatch.setitem(hosts.HOSTS, host.name, host)  # the one line a new host adds to HOSTS
    return host


def test_the_minimal_host_implements_the_protocol_and_nothing_more():
    named = set(GitHost.__annotations__) | {n for n, v in vars(GitHost).items() if callable(v) and n[0] != "_"}
    assert named == {n for n in {*vars(Forge), *vars(Forge())} if n[0] != "_"}
    assert all(isinstance(host, GitHost) for host in [Forge(), *hosts.HOSTS.values()])


def forge_push(repository: str) -> Event:
    """The event a forge push to main of `repository` becomes."""
    [event] = Forge().parse("push", {"repository": repository, "branch": "main", "commit": SHA}, "forge:d")
    return event


def delivery(secret: str = "s3cret", **payload: str) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"repository": "acme/app", "branch": "main", "commit": SHA, **payload}).encode()
    head = {"Content-Type": "application/json", "X-Forge-Event": "push", "X-Forge-Delivery": "d-7"}
    if secret:
        head["X-Forge-Token"] = secret
    return head, body


def test_its_webhooks_are_read_and_checked(forge):
    registry = Registry(repositories={"acme/app": RepositoryConfig(secret="s3cret")})
    head, body = delivery()
    read = webhooks.read(head, body, registry=registry)
    assert (read.host, read.delivery_id, read.repository) == ("forge", "forge:d-7", "acme/app")
    assert [event.routing_key for event in read.events] == ["forge.push"]
    # The secret is checked the forge's way
    with pytest.raises(WebhookError) as refused:
        webhooks.read(*delivery(secret="wrong"), registry=registry)
    assert refused.value.http_status == 401
    # And a delivery of no known host names the forge's header among those expected
    with pytest.raises(WebhookError, match="X-Forge-Event"):
        webhooks.read({"Content-Type": "application/json"}, body, registry=registry)


def test_its_status_request_is_built_by_the_generic_code(forge):
    notice = JobUpdated(run_id="r1", job="build", status="running", event=forge_push("acme/app"))
    status = statuses.status_for(notice, "http://ci")
    assert status is not None
    request = statuses.request_for(status, "", RepositoryConfig(token=TOKEN))
    assert request.url == f"{forge.api_url}/repos/acme/app/statuses/{SHA}"
    assert request.json == {"state": "busy", "context": "tasuki/build"}
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    # A server of its own (settings name one for the three hosts Tasuki ships with) wins
    assert statuses.request_for(status, "https://forge.acme.internal/api/", None).url.startswith(
        "https://forge.acme.internal/api/repos/"
    )


@pytest.fixture
def reporter(tmp_path, tasuki_env, forge):
    registry = {"repositories": {"acme/app": {"token": TOKEN}, "acme/stale": {"token": "expired"}}}
    (tmp_path / "repos.yml").write_text(json.dumps(registry))
    tasuki_env(data_dir=str(tmp_path), push_key=KEY, repositories_file=str(tmp_path / "repos.yml"))
    client = create_app("reporter", "functions/reporter.py").test_client()

    def report(repository: str):
        notice = JobUpdated(run_id="run1", job="build", status="success", event=forge_push(repository), rule_id="r")
        return pushed(client, "reporter", notice, key=KEY, audience="http://127.0.0.1:8083/")

    return report


def test_the_reporter_tells_it_and_reads_its_answer(reporter, forge_api, tmp_path):
    _, taken = forge_api
    answer = reporter("acme/app")
    assert answer.status_code == 200 and answer.get_json()["reported"] is True, answer.get_data(as_text=True)
    assert taken == [(f"/api/v1/repos/acme/app/statuses/{SHA}", {"state": "success", "context": "tasuki/build"})]
    # A refusal for good, as the forge's status_outcome reads it, is noted on the run, not retried
    answer = reporter("acme/stale")
    assert answer.status_code == 200 and answer.get_json()["reported"] is False
    [(_, note)] = SQLiteStore(tmp_path / "tasuki.db").get_notes("run1")
    assert "(401): bad token" in note


def test_the_checkout_clones_with_its_login(forge, monkeypatch, tmp_path):
    # Given git is watched at its boundary (the environment each git command gets)
    seen: list[dict[str, str]] = []

    def git(*args: str, env: dict[str, str] | None = None, **kw: Any) -> str:
        seen.append(env or {})
        raise CheckoutFailed("stopped after the first git command")

    monkeypatch.setattr(checkout, "git", git)
    url = "https://forge.example/acme/app.git"
    registry = Registry(repositories={"acme/app": RepositoryConfig(clone_url=url, token=TOKEN)})
    checkouts = checkout.Checkouts(tmp_path / "cache", tmp_path / "ws")
    # When a job of a forge event is checked out (with the credentials its order carries)
    with pytest.raises(CheckoutFailed):
        with checkouts.workspace(url, SHA, "run1-build", registry.repositories["acme/app"], host="forge"):
            pass
    # Then git logs in as the forge says
    header = seen[0]["GIT_CONFIG_VALUE_0"]
    assert base64.b64decode(header.removeprefix("Authorization: Basic ")).decode() == f"forge-bot:{TOKEN}"
