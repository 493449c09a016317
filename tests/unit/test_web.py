"""The web function without a browser: layout, access, forms and API through the test client,
with the in-memory broker (cancel and re-run are messages to the dispatcher) and SQLite."""

from __future__ import annotations

import pytest

from tasuki.shared import topics
from tasuki.shared.messages import Event, Ref, Repository, RunCancel, RunRequested
from tasuki.shared.runtime import runtime
from tasuki.shared.settings import Settings
from tasuki.shared.store import JobRecord, RunRecord
from tasuki.shared.web import access, graph
from tests.unit.conftest import function_client

TOKEN = "correct horse battery staple"


def test_the_graph_puts_each_job_after_its_deepest_need():
    layout = graph.layout(
        {
            "build": ("success", []),
            "test": ("running", ["build"]),
            "lint": ("success", ["build"]),
            "deploy": ("pending", ["test", "lint"]),
            "docs": ("success", []),
        }
    )
    x = {n.name: n.x for n in layout.nodes}
    assert x["build"] == x["docs"] < x["lint"] == x["test"] < x["deploy"]
    assert len(layout.edges) == 4
    assert layout.width > x["deploy"] and layout.height > max(n.y for n in layout.nodes)


def test_a_token_is_required_beyond_localhost():
    with pytest.raises(Exception, match="TASUKI_WEB_TOKEN"):
        access.check_configuration(Settings(host="0.0.0.0"))
    access.check_configuration(Settings(host="0.0.0.0", web_token=TOKEN))
    access.check_configuration(Settings(host="127.0.0.1"))


@pytest.fixture
def client(memory_runtime):
    rt = memory_runtime(web_token=TOKEN)
    event = Event(
        host="bitbucket",
        event="repo.push",
        kind="push",
        delivery_id="d",
        actor="emma",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="branch", name="main"),
        after="a" * 40,
    )
    store = rt.store
    store.create_run(RunRecord(id="r1", event=event, status="failure", message="build: failure (exit code 3)"))
    store.put_job(
        JobRecord(run_id="r1", name="build", status="failure", exit_code=3, message="exited with code 3", attempt=1)
    )
    store.append_log("r1", "build", 0, b"<script>alert(1)</script> it broke\n")
    return function_client("web")


def test_the_api_wants_the_token(client):
    assert client.get("/api/runs").status_code == 401
    answer = client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.get_json()["runs"][0]["status"] == "failure"
    assert client.get("/api/runs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/openapi.json").status_code == 200  # the description is public


def test_the_page_asks_to_sign_in_once(client):
    answer = client.get("/runs/r1")
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/login?next=/runs/r1")
    assert client.post("/login", data={"token": "wrong", "next": "/runs/r1"}).status_code == 401
    answer = client.post("/login", data={"token": TOKEN, "next": "/runs/r1"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/runs/r1"
    page = client.get("/runs/r1").get_data(as_text=True)
    assert "acme/api" in page and "exit code 3" in page and "emma" in page


def test_logs_are_text_never_markup(client):
    client.post("/login", data={"token": TOKEN})
    log = client.get("/api/runs/r1/jobs/build/log").get_json()
    assert log["chunks"][0]["text"].startswith("<script>")  # JSON data; the page inserts it as text
    page = client.get("/runs/r1").get_data(as_text=True)
    assert "<script>alert(1)" not in page


def test_forms_need_the_csrf_token(client):
    client.post("/login", data={"token": TOKEN})
    refused = client.post("/repositories", data={"full_name": "acme/web"})
    assert refused.status_code == 403
    page = client.get("/repositories").get_data(as_text=True)
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    done = client.post(
        "/repositories", data={"full_name": "acme/web", "clone_url": "https://git.example/acme/web.git", "csrf": csrf}
    )
    assert done.status_code == 303
    listed = client.get("/api/repositories").get_json()
    assert [r["full_name"] for r in listed["repositories"]] == ["acme/web"]


def test_a_repository_name_is_bounded(client):
    client.post("/login", data={"token": TOKEN})
    refused = client.post("/api/repositories", json={"full_name": "acme/" + "a" * 5000})
    assert refused.status_code == 400
    error = refused.get_json()["error"]
    assert "at most 200 characters" in error and len(error) < 300
    assert client.post("/api/repositories", json={"full_name": "acme/" + "a" * 195}).status_code == 201


def test_clear_errors(client):
    client.post("/login", data={"token": TOKEN})
    assert client.get("/api/runs/nope").get_json() == {"error": "there is no run nope"}
    assert client.get("/nowhere").status_code == 404
    bad = client.post("/api/rules", data="not json", content_type="application/json")
    assert bad.status_code == 400 and "expected a JSON object" in bad.get_json()["error"]
    made = client.post("/api/rules", json={"repository": "acme/api", "event": "tag", "tag": "v*"})
    assert (
        made.status_code == 201 and made.get_json()["sentence"] == "if tag on acme/api matching v* then run .tasuki.yml"
    )
    assert client.post("/api/rules", json={"repository": "acme/api", "event": "tag", "tag": "v*"}).status_code == 409
    # cancelling needs RabbitMQ: when it is away, a clear 503, not a crash
    runtime().store.create_run(RunRecord(id="r2", event=runtime().store.get_run("r1").event, status="running"))
    runtime().broker.down()
    away = client.post("/api/runs/r2/cancel", json={})
    assert away.status_code == 503 and "RabbitMQ" in away.get_json()["error"]


def test_cancel_and_rerun_are_messages_to_the_dispatcher(client):
    client.post("/login", data={"token": TOKEN})
    store, broker = runtime().store, runtime().broker
    store.create_run(RunRecord(id="r2", event=store.get_run("r1").event, status="running"))
    # Cancelling a running run asks the dispatcher to cancel it, in the run's own order
    answer = client.post("/api/runs/r2/cancel", json={})
    assert (answer.status_code, answer.get_json()) == (202, {"run_id": "r2", "status": "cancelling"})
    [cancel] = broker.take(topics.subscription("dispatcher").queue)
    assert cancel.message() == RunCancel(run_id="r2", reason="cancelled from the web page")
    assert cancel.ordering_key == "r2"
    # A finished run has nothing to cancel, and nothing is sent
    assert client.post("/api/runs/r1/cancel", json={}).status_code == 409
    # A re-run requests a new run of the same event and rule
    answer = client.post("/api/runs/r1/rerun", json={})
    assert answer.status_code == 202 and answer.get_json()["rerun_of"] == "r1"
    new_id = answer.get_json()["run_id"]
    [rerun] = broker.take(topics.subscription("dispatcher").queue)
    requested = rerun.message()
    assert isinstance(requested, RunRequested) and requested.run_id == new_id != "r1"
    assert (requested.event, rerun.properties.message_id) == (store.get_run("r1").event, f"{new_id}:requested")
    assert client.post("/api/runs/nope/rerun", json={}).status_code == 404


# --- a site of its own: Host, Origin, JSON, next=, sessions ---------------------------------------


def signed_in(client) -> str:
    """Sign in through the form; the CSRF token of the page."""
    assert client.post("/login", data={"token": TOKEN}).status_code == 303
    return client.get("/repositories").get_data(as_text=True).split('name="csrf" value="')[1].split('"')[0]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io", "[::2]:80"])
def test_a_host_header_that_is_not_this_tasukis_is_refused(client, host):
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example
    answer = client.get("/api/openapi.json", headers={"Host": host})
    assert answer.status_code == 400 and "TASUKI_ALLOWED_HOSTS" in answer.get_json()["error"]
    assert client.post("/login", data={"token": TOKEN}, headers={"Host": host}).status_code == 400


def test_the_configured_names_and_localhost_are_answered(client, memory_runtime):
    memory_runtime(web_token=TOKEN, public_url="https://ci.example.com", allowed_hosts="tasuki.internal, 10.0.0.5")
    for host in ("localhost", "127.0.0.1:8000", "[::1]:8000", "ci.example.com", "TASUKI.internal:8000", "10.0.0.5"):
        assert client.get("/api/openapi.json", headers={"Host": host}).status_code == 200, host


def test_without_a_token_a_cross_site_text_plain_post_is_refused(client, memory_runtime):
    # Given no token: the page and the API are open on localhost
    memory_runtime()
    attack = '{"full_name": "acme/api", "clone_url": "https://evil.example/api.git"}'
    # When another site's page posts text/plain (a "simple" request a browser sends without asking)
    forged = client.post(
        "/api/repositories", data=attack, content_type="text/plain", headers={"Origin": "https://evil.example"}
    )
    assert forged.status_code == 403 and "another site" in forged.get_json()["error"]
    # or a form, or fetch(no-cors) with no Origin but the browser's Sec-Fetch-Site
    assert client.post("/api/repositories", data=attack, content_type="text/plain").status_code == 415
    cross = client.post(
        "/api/repositories", data=attack, content_type="application/json", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403
    assert client.post("/api/runs/r1/cancel", headers={"Origin": "null"}).status_code == 403
    # Then nothing was registered; the site's own JSON call (or curl's) is taken
    assert client.get("/api/repositories").get_json()["repositories"] == []
    own = client.post(
        "/api/repositories", data=attack, content_type="application/json", headers={"Origin": "http://localhost"}
    )
    assert own.status_code == 201


def test_the_bearer_token_needs_no_json_or_origin(client):
    answer = client.post(
        "/api/rules",
        data='{"repository": "acme/api"}',
        content_type="text/plain",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert answer.status_code == 201


def test_a_form_from_another_site_is_refused_even_with_the_csrf_token(client):
    csrf = signed_in(client)
    answer = client.post(
        "/repositories",
        data={"full_name": "acme/web", "clone_url": "https://h/w.git", "csrf": csrf},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    same = client.post(
        "/repositories",
        data={"full_name": "acme/web", "clone_url": "https://h/w.git", "csrf": csrf},
        headers={"Origin": "http://localhost"},
    )
    assert same.status_code == 303


@pytest.mark.parametrize(
    "target",
    [
        "/%09/evil.example",
        "//evil.example",
        "/\\evil.example",
        "/%5Cevil.example",
        "https://evil.example",
        "%2F%2Fevil.example",
        "/%2F/evil.example".replace("%2F", "/"),
        "javascript:alert(1)",
        "/%0d%0aSet-Cookie:x=1",
        " /runs",
    ],
)
def test_next_never_leads_off_the_site(client, target):
    answer = client.post(f"/login?next={target}", data={"token": TOKEN})
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    page = client.get(f"/login?next={target}").get_data(as_text=True)
    assert 'name="next" value="/"' in page


def test_next_keeps_a_page_of_the_site(client):
    answer = client.post("/login?next=/runs/r1%3Fx%3D1", data={"token": TOKEN})
    assert answer.headers["Location"] == "/runs/r1?x=1"


def test_a_session_expires_and_is_secure_over_https(client, memory_runtime):
    answer = client.post("/login", data={"token": TOKEN})
    cookie = answer.headers["Set-Cookie"]
    assert "Max-Age=43200" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # served over http on this machine
    settings = runtime().settings
    value = access.new_session(settings, now=0)
    assert access.session(settings, value, now=12 * 3600 - 1) is not None
    assert access.session(settings, value, now=12 * 3600) is None  # expired, whatever the browser keeps
    assert access.session(settings, value.replace("v1.0.", "v1.1."), now=10) is None  # signed
    memory_runtime(web_token=TOKEN, public_url="https://ci.example.com")
    assert "Secure" in client.post("/login", data={"token": TOKEN}).headers["Set-Cookie"]


def test_behind_a_trusted_proxy_its_https_makes_the_cookie_secure(client, memory_runtime):
    https = {"X-Forwarded-Proto": "https"}
    assert "Secure" not in client.post("/login", data={"token": TOKEN}, headers=https).headers["Set-Cookie"]
    memory_runtime(web_token=TOKEN, trust_proxy=True)
    assert "Secure" in client.post("/login", data={"token": TOKEN}, headers=https).headers["Set-Cookie"]


def test_signing_out_ends_the_session_for_good(client):
    csrf = signed_in(client)
    page = client.get("/runs").get_data(as_text=True)
    assert 'action="/logout"' in page and "Sign out" in page
    cookie = client.get_cookie(access.COOKIE).value
    answer = client.post("/logout", data={"csrf": csrf})
    assert answer.status_code == 303 and answer.headers["Location"] == "/login"
    assert client.get_cookie(access.COOKIE) is None
    # The old cookie, kept by someone, no longer signs in: the session ended server-side
    client.set_cookie(access.COOKIE, cookie)
    assert client.get("/runs").status_code == 303
    assert client.get("/api/runs").status_code == 401


def test_matrix_jobs_are_grouped_and_a_flaky_job_shows_its_mark_and_every_attempts_log(client):
    # Given a run whose matrix job passed on its second attempt (the first failed with code 1)
    from tasuki.shared.store import AttemptRecord

    store = runtime().store
    store.put_job(JobRecord(run_id="r1", name="test (py=3.11)", status="success", exit_code=0, attempt=1))
    store.put_job(JobRecord(run_id="r1", name="test (py=3.12)", status="running", attempt=1))
    store.append_log("r1", "test (py=3.12)", 0, b"first try failed\n", attempt=1)
    store.put_job(
        JobRecord(
            run_id="r1",
            name="test (py=3.12)",
            status="success",
            exit_code=0,
            attempt=2,
            flaky=True,
            log_chunks=1,
            attempts=[
                AttemptRecord(attempt=1, status="failure", exit_code=1, log_chunks=1),
                AttemptRecord(attempt=2, status="success", exit_code=0, log_chunks=1),
            ],
        )
    )
    store.append_log("r1", "test (py=3.12)", 0, b"second try passed\n", attempt=2)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # When the API and the page are read
    jobs = {j["name"]: j for j in client.get("/api/runs/r1", headers=auth).get_json()["jobs"]}
    # Then the API says flaky, the group and every attempt; each attempt's log is there to read
    flaky = jobs["test (py=3.12)"]
    assert (flaky["flaky"], flaky["group"], flaky["attempt"]) == (True, "test", 2)
    assert [(a["attempt"], a["status"], a["exit_code"]) for a in flaky["attempts"]] == [
        (1, "failure", 1),
        (2, "success", 0),
    ]
    assert jobs["test (py=3.11)"]["flaky"] is False and jobs["build"]["group"] == "build"
    url = "/api/runs/r1/jobs/test%20(py=3.12)/log"
    first = client.get(url + "?attempt=1", headers=auth).get_json()
    assert (first["attempt"], first["done"], first["chunks"][0]["text"]) == (1, True, "first try failed\n")
    assert client.get(url, headers=auth).get_json()["chunks"][0]["text"] == "second try passed\n"
    assert client.get(url + "?attempt=7", headers=auth).status_code == 404
    assert client.get(url + "?attempt=x", headers=auth).status_code == 400
    client.post("/login", data={"token": TOKEN})
    page = client.get("/runs/r1").get_data(as_text=True)
    assert page.count('data-group="test"') == 1 and "matrix of 2" in page
    assert 'data-flaky="test (py=3.12)"' in page and 'data-flaky="test (py=3.11)"' not in page
    assert 'data-attempt="1">#1 failure (1)</a>' in page
