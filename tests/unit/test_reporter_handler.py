"""The reporter function through functions-framework's test client, against the fake host APIs:
how each kind of host answer becomes an ack or a nack."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from functions_framework import create_app

from tasuki.shared import push
from tasuki.shared.messages import Event, JobUpdated, Ref, Repository, RunUpdated
from tasuki.shared.runtime import runtime
from tasuki.shared.store.sqlite import SQLiteStore
from tests.conftest import pushed
from tests.fake_hosts import FakeHosts

SHA = "c" * 40
KEY = "reporter-test-key-" + "k" * 32
AUDIENCE = "http://127.0.0.1:8083/"


@pytest.fixture
def hosts():
    with FakeHosts() as fake:
        fake.commits.add(SHA)
        yield fake


@pytest.fixture
def client(tmp_path, monkeypatch, hosts):
    registry = {
        "repositories": {
            "acme/bb": {"token": hosts.tokens["bitbucket"]},
            "acme/gh": {"token": hosts.tokens["github"]},
            "group/gl": {"token": hosts.tokens["gitlab"]},
            "acme/bad": {"token": "wrong"},
        }
    }
    (tmp_path / "repos.yml").write_text(json.dumps(registry))
    for key in list(__import__("os").environ):
        if key.startswith("TASUKI_"):
            monkeypatch.delenv(key)
    for key, value in {
        "TASUKI_DATA_DIR": str(tmp_path),
        "TASUKI_PUSH_KEY": KEY,
        "TASUKI_REPOSITORIES_FILE": str(tmp_path / "repos.yml"),
        "TASUKI_BITBUCKET_API_URL": hosts.bitbucket_url,
        "TASUKI_GITHUB_API_URL": hosts.github_url,
        "TASUKI_GITLAB_API_URL": hosts.gitlab_url,
    }.items():
        monkeypatch.setenv(key, value)
    runtime.cache_clear()
    yield create_app("reporter", "functions/reporter.py").test_client()
    runtime.cache_clear()


def notice(host: str, repo: str, status: str = "running", job: str = "build"):
    ev = Event(
        host=host,
        event="push",
        kind="push",
        delivery_id="d",
        repository=Repository(full_name=repo),
        ref=Ref(kind="branch", name="main"),
        after=SHA,
    )
    if job:
        return JobUpdated(run_id="run1", job=job, status=status, event=ev, rule_id="r")
    return RunUpdated(run_id="run1", status=status, event=ev, rule_id="r")


def post(client, message):
    return pushed(client, "reporter", message, key=KEY, audience=AUDIENCE)


@pytest.mark.parametrize(
    "host,repo,expected",
    [("bitbucket", "acme/bb", "INPROGRESS"), ("github", "acme/gh", "pending"), ("gitlab", "group/gl", "running")],
)
def test_each_host_gets_its_status(client, hosts, host, repo, expected):
    answer = post(client, notice(host, repo))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    [accepted] = hosts.statuses(host)
    assert (accepted.repository, accepted.commit, accepted.state) == (repo, SHA, expected)


def test_a_push_without_a_token_is_refused(client, hosts):
    body = push.envelope(b"", attributes={}, message_id="m", publish_ms=0, subscription="s", delivery_attempt=1)
    assert client.post("/", json=body).status_code == 401
    assert hosts.statuses() == []


@pytest.mark.parametrize(
    "status,headers",
    [(500, {}), (502, {}), (429, {"Retry-After": "30"}), (403, {"X-RateLimit-Remaining": "0", "Retry-After": "60"})],
)
def test_a_passing_failure_is_a_nack(client, hosts, status, headers):
    hosts.fail_next(status, headers=headers)
    answer = post(client, notice("github", "acme/gh"))
    assert answer.status_code == 503
    if "Retry-After" in headers:
        assert answer.headers["Retry-After"] == headers["Retry-After"]
    assert post(client, notice("github", "acme/gh")).status_code == 200  # the retry passes


def test_a_refusal_for_good_is_acked_and_noted_on_the_run(client, hosts, tmp_path):
    answer = post(client, notice("bitbucket", "acme/bad"))
    assert answer.status_code == 200 and answer.get_json()["reported"] is False
    notes = SQLiteStore(tmp_path / "tasuki.db").get_notes("run1")
    assert notes == [("reporter", notes[0][1])] and "(401): Access token expired." in notes[0][1]


def test_an_unknown_commit_is_noted(client, hosts, tmp_path):
    other = notice("gitlab", "group/gl").model_copy(
        update={"event": notice("gitlab", "group/gl").event.model_copy(update={"after": "d" * 40})}
    )
    assert post(client, other).status_code == 200
    [(_, message)] = SQLiteStore(tmp_path / "tasuki.db").get_notes("run1")
    assert "404 Commit Not Found" in message


def test_gitlab_refusing_a_repeated_state_is_not_an_error(client, hosts):
    assert post(client, notice("gitlab", "group/gl", "running")).status_code == 200
    assert post(client, notice("gitlab", "group/gl", "running")).status_code == 200  # redelivered
    assert [a.state for a in hosts.statuses("gitlab")] == ["running"]


def test_a_repository_without_credentials_is_noted_not_retried(client, hosts, tmp_path):
    assert post(client, notice("github", "someone/else", job="")).status_code == 200
    [(_, message)] = SQLiteStore(tmp_path / "tasuki.db").get_notes("run1")
    assert "no github API credentials for someone/else" in message
    assert hosts.statuses() == []


@pytest.mark.parametrize(("host", "repo"), [("bitbucket", "acme/bb"), ("github", "acme/gh"), ("gitlab", "group/gl")])
@pytest.mark.parametrize("after", ["../../../../user/repos", "c" * 40 + "/../../x", "abc", "g" * 40, "c" * 65])
def test_a_commit_that_is_not_a_commit_id_is_never_put_in_a_url(client, hosts, tmp_path, host, repo, after):
    # Given an event whose `after` tries to walk the status URL to another API path
    hostile = notice(host, repo).model_copy(
        update={"event": notice(host, repo).event.model_copy(update={"after": after})}
    )
    # When it is reported: acked, noted on the run, and nothing at all reaches the host
    answer = post(client, hostile)
    assert answer.status_code == 200 and answer.get_json()["reported"] is False
    [(_, message)] = SQLiteStore(tmp_path / "tasuki.db").get_notes("run1")
    assert "not 7 to 64 hexadecimal characters" in message
    assert hosts.paths == []


class Elsewhere:
    """Another server, which records what reaches it (a credential must not)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                seen.append(dict(self.headers.items()))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()  # a quick shutdown
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/steal"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("host", "repo"), [("bitbucket", "acme/bb"), ("github", "acme/gh"), ("gitlab", "group/gl")])
@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirect_elsewhere_is_not_followed_with_the_credential(client, hosts, tmp_path, host, repo, code):
    elsewhere = Elsewhere()
    try:
        hosts.fail_next(code, headers={"Location": elsewhere.url})
        answer = post(client, notice(host, repo))
        assert answer.status_code == 200 and answer.get_json()["reported"] is False
        assert elsewhere.seen == []
        [(_, message)] = SQLiteStore(tmp_path / "tasuki.db").get_notes("run1")
        assert f"answered {code}, a redirect to http://127.0.0.1:" in message and "not followed" in message
    finally:
        elsewhere.close()
