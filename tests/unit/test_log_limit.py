"""The per-job log limit (TASUKI_JOB_LOG_LIMIT): the executor's cut, the logs function's refusal
beyond it whatever an executor sends, and the paged log API."""

from __future__ import annotations

import threading

import pytest

from tasuki.local.executor.loglimit import LogLimit, cut_line
from tasuki.shared import sizes
from tasuki.shared.errors import ConfigError
from tasuki.shared.messages import Event, JobLog, Ref, Repository
from tasuki.shared.settings import Settings
from tasuki.shared.store import JobRecord, RunRecord
from tests.unit.conftest import function_client

TOKEN = "correct horse battery staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# --- sizes and the setting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("32MiB", 32 * 1024**2), ("32m", 32 * 1024**2), ("512k", 512 * 1024), ("1.5g", 1536 * 1024**2), ("65536", 65536)],
)
def test_the_log_limit_reads_sizes_as_operators_write_them(text, size):
    assert Settings.from_env({"TASUKI_JOB_LOG_LIMIT": text}).job_log_limit_bytes == size


def test_the_log_limit_is_32_mib_unless_set():
    assert Settings().job_log_limit_bytes == 32 * 1024**2


@pytest.mark.parametrize(("text", "words"), [("lots", "expected a size like 32MiB"), ("1k", "at least 64 KiB")])
def test_a_bad_log_limit_names_the_setting(text, words):
    with pytest.raises(ConfigError, match=f"TASUKI_JOB_LOG_LIMIT.*{words}"):
        Settings.from_env({"TASUKI_JOB_LOG_LIMIT": text})


def test_sizes_show_as_a_person_reads_them():
    assert [sizes.show(n) for n in (512, 64 * 1024, 32 * 1024**2, 1536 * 1024**2)] == [
        "512 bytes",
        "64 KiB",
        "32 MiB",
        "1.5 GiB",
    ]


# --- the executor's cut -----------------------------------------------------------------------------


def test_output_passes_until_the_limit_then_one_line_says_it_was_cut():
    out: list[bytes] = []
    limit = LogLimit(10, out.append)
    limit.feed(b"1234")
    limit.feed(b"567")
    assert not limit.passed
    limit.feed(b"890abc")  # crosses the limit: the first 3 bytes pass, then the line
    limit.feed(b"more")
    assert limit.passed and (limit.written, limit.dropped) == (10, 7)
    assert b"".join(out) == b"1234567890" + cut_line(10)
    assert b"TASUKI_JOB_LOG_LIMIT" in cut_line(10) and b"10 bytes" in cut_line(10)


def test_output_that_ends_exactly_at_the_limit_is_not_cut():
    out: list[bytes] = []
    limit = LogLimit(4, out.append)
    limit.feed(b"1234")
    assert not limit.passed and b"".join(out) == b"1234"


def test_no_limit_passes_everything():
    out: list[bytes] = []
    limit = LogLimit(None, out.append)
    limit.feed(b"x" * 1000)
    assert not limit.passed and len(b"".join(out)) == 1000


def test_the_cut_holds_with_output_from_several_threads():
    out: list[bytes] = []
    limit = LogLimit(10_000, out.append)
    threads = [threading.Thread(target=lambda: [limit.feed(b"y" * 7) for _ in range(1000)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert b"".join(out).count(b"y") == 10_000 and b"".join(out).count(b"[tasuki]") == 1


# --- the logs function: never more than the limit and a margin, whatever arrives ---------------------------


def _run(rt, run_id: str = "r1") -> None:
    event = Event(
        host="bitbucket",
        event="repo.push",
        kind="push",
        delivery_id="d",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="branch", name="main"),
        after="a" * 40,
    )
    rt.store.create_run(RunRecord(id=run_id, event=event, status="running"))
    rt.store.put_job(JobRecord(run_id=run_id, name="build", status="running", attempt=1))


def test_the_logs_function_stores_no_more_than_the_limit_from_an_executor_that_ignores_it(functions):
    # Given the logs function at a 64 KiB limit and an executor that sends 200 KiB regardless
    rt = functions.rt
    rt.settings = rt.settings.model_copy(update={"job_log_limit": "64k"})
    _run(rt)
    answers = [
        functions.push("logs", JobLog(run_id="r1", job="build", attempt=1, seq=n, data="z" * 10_000)) for n in range(20)
    ]
    # Then what fits is stored, the rest acknowledged but not stored, and the run says so once
    stored = rt.store.log_bytes("r1", "build", 1)
    assert stored <= rt.settings.job_log_store_limit and stored == 60_000
    assert [a["stored"] for a in answers] == [True] * 6 + [False] * 14
    assert rt.store.get_notes("r1") == [
        ("logs", "job build: its log passed TASUKI_JOB_LOG_LIMIT (64k); what came after was not stored")
    ]
    # A chunk sent again changes nothing either
    functions.push("logs", JobLog(run_id="r1", job="build", attempt=1, seq=3, data="z" * 10_000))
    assert rt.store.log_bytes("r1", "build", 1) == stored


# --- the paged log API --------------------------------------------------------------------------------------


@pytest.fixture
def paged(memory_runtime):
    rt = memory_runtime(web_token=TOKEN)
    _run(rt)
    for n in range(10):
        rt.store.append_log("r1", "build", n, f"line {n}\n".encode())
    return rt, function_client("web")


def test_the_log_api_pages_and_says_where_to_go_on(paged):
    _rt, client = paged
    first = client.get("/api/runs/r1/jobs/build/log?limit=4", headers=AUTH).get_json()
    assert [c["seq"] for c in first["chunks"]] == [0, 1, 2, 3]
    assert (first["next_after"], first["more"], first["done"]) == (3, True, False)
    rest = client.get(f"/api/runs/r1/jobs/build/log?after={first['next_after']}&limit=256", headers=AUTH).get_json()
    assert [c["seq"] for c in rest["chunks"]] == list(range(4, 10))
    assert (rest["next_after"], rest["more"]) == (9, False)
    empty = client.get("/api/runs/r1/jobs/build/log?after=9", headers=AUTH).get_json()
    assert (empty["chunks"], empty["next_after"], empty["more"]) == ([], 9, False)


def test_a_log_page_is_bounded_in_bytes_too(paged, monkeypatch):
    from tasuki.shared.web import api

    _rt, client = paged
    monkeypatch.setattr(api, "LOG_PAGE_BYTES", 15)  # two 7-byte chunks a page
    page = client.get("/api/runs/r1/jobs/build/log", headers=AUTH).get_json()
    assert [c["seq"] for c in page["chunks"]] == [0, 1] and page["more"]


@pytest.mark.parametrize("query", ["limit=0", "limit=257", "limit=x", "after=x", "after=-2"])
def test_a_log_page_outside_its_bounds_is_refused(paged, query):
    _, client = paged
    answer = client.get(f"/api/runs/r1/jobs/build/log?{query}", headers=AUTH)
    assert answer.status_code == 400 and "must be" in answer.get_json()["error"]
