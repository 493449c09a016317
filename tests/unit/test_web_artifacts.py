"""A run's artifacts on the page and in the API: listed from the job records, downloaded from
object storage, and only the files a job's record lists."""

from __future__ import annotations

import io

import pytest

from tasuki.shared import objects
from tasuki.shared.messages import Artifact, Event, Ref, Repository
from tasuki.shared.store import JobRecord, RunRecord
from tests.unit.conftest import function_client

TOKEN = "correct horse battery staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(memory_runtime):
    rt = memory_runtime(web_token=TOKEN)
    event = Event(
        host="github",
        event="push",
        kind="push",
        delivery_id="d",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="branch", name="main"),
        after="a" * 40,
    )
    rt.store.create_run(RunRecord(id="r1", event=event, status="success"))
    kept = [Artifact(path="dist/app 1.whl", size=5), Artifact(path="reports/junit.xml", size=12_300_000)]
    rt.store.put_job(JobRecord(run_id="r1", name="build", status="success", attempt=1, artifacts=kept))
    store = objects.open_objects(rt.settings)
    store.put(objects.artifact_key("r1", "build", "dist/app 1.whl"), io.BytesIO(b"wheel"))
    store.put(objects.artifact_key("r1", "build", "secret.txt"), io.BytesIO(b"not listed"))
    return function_client("web")


def test_the_api_lists_the_artifacts_with_sizes_and_links(client):
    answer = client.get("/api/runs/r1/artifacts", headers=AUTH)
    assert answer.status_code == 200
    listed = answer.get_json()["artifacts"]
    assert [(a["job"], a["path"], a["size"]) for a in listed] == [
        ("build", "dist/app 1.whl", 5),
        ("build", "reports/junit.xml", 12_300_000),
    ]
    assert listed[0]["url"] == "/api/runs/r1/artifacts/build/dist/app%201.whl"
    assert client.get("/api/runs/nope/artifacts", headers=AUTH).status_code == 404


def test_an_artifact_downloads_as_its_bytes(client):
    answer = client.get("/api/runs/r1/artifacts/build/dist/app%201.whl", headers=AUTH)
    assert answer.status_code == 200 and answer.get_data() == b"wheel"
    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert (
        "attachment" in answer.headers["Content-Disposition"] and "app%201.whl" in answer.headers["Content-Disposition"]
    )
    assert client.get("/api/runs/r1/artifacts/build/dist/app%201.whl").status_code == 401  # signed in only


@pytest.mark.parametrize(
    "path",
    ["build/secret.txt", "build/../../../etc/passwd", "nojob/dist/app%201.whl", "build/%2E%2E/x"],
)
def test_only_what_the_record_lists_can_be_downloaded(client, path):
    assert client.get(f"/api/runs/r1/artifacts/{path}", headers=AUTH).status_code == 404


def test_a_listed_artifact_missing_from_storage_is_a_404(client):
    assert client.get("/api/runs/r1/artifacts/build/reports/junit.xml", headers=AUTH).status_code == 404


def test_the_run_page_lists_them_with_download_links(client):
    client.post("/login", data={"token": TOKEN, "next": "/runs/r1"})
    page = client.get("/runs/r1").get_data(as_text=True)
    assert 'href="/api/runs/r1/artifacts/build/dist/app%201.whl"' in page
    assert "12.3 MB" in page and "5 B" in page
