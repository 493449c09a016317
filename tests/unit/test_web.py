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
    store.put_job(JobRecord(run_id="r1", name="build", status="failure", exit_code=3, message="exited with code 3"))
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
    done = client.post("/repositories", data={"full_name": "acme/web", "clone_url": "/srv/web.git", "csrf": csrf})
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
    bad = client.post("/api/rules", data="not json")
    assert bad.status_code == 400 and "expected a JSON object" in bad.get_json()["error"]
    made = client.post("/api/rules", json={"repository": "acme/api", "event": "tag", "tag": "v*"})
    assert (
        made.status_code == 201 and made.get_json()["sentence"] == "if tag on acme/api matching v* then run .tasuki.yml"
    )
    assert client.post("/api/rules", json={"repository": "acme/api", "event": "tag", "tag": "v*"}).status_code == 409
    # cancelling needs RabbitMQ: when it is away, a clear 503, not a crash
    runtime().store.create_run(RunRecord(id="r2", event=runtime().store.get_run("r1").event, status="running"))
    runtime().broker.down()
    away = client.post("/api/runs/r2/cancel")
    assert away.status_code == 503 and "RabbitMQ" in away.get_json()["error"]


def test_cancel_and_rerun_are_messages_to_the_dispatcher(client):
    client.post("/login", data={"token": TOKEN})
    store, broker = runtime().store, runtime().broker
    store.create_run(RunRecord(id="r2", event=store.get_run("r1").event, status="running"))
    # Cancelling a running run asks the dispatcher to cancel it, in the run's own order
    answer = client.post("/api/runs/r2/cancel")
    assert (answer.status_code, answer.get_json()) == (202, {"run_id": "r2", "status": "cancelling"})
    [cancel] = broker.take(topics.subscription("dispatcher").queue)
    assert cancel.message() == RunCancel(run_id="r2", reason="cancelled from the web page")
    assert cancel.ordering_key == "r2"
    # A finished run has nothing to cancel, and nothing is sent
    assert client.post("/api/runs/r1/cancel").status_code == 409
    # A re-run requests a new run of the same event and rule
    answer = client.post("/api/runs/r1/rerun")
    assert answer.status_code == 202 and answer.get_json()["rerun_of"] == "r1"
    new_id = answer.get_json()["run_id"]
    [rerun] = broker.take(topics.subscription("dispatcher").queue)
    requested = rerun.message()
    assert isinstance(requested, RunRequested) and requested.run_id == new_id != "r1"
    assert (requested.event, rerun.properties.message_id) == (store.get_run("r1").event, f"{new_id}:requested")
    assert client.post("/api/runs/nope/rerun").status_code == 404
