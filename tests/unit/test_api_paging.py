"""The API's listings a page at a time: `next` leads through every run and delivery once, in
order, however many share a moment; a `before` that is not a `next` is a clear 400."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest

from tasuki.shared.errors import ActionError
from tasuki.shared.messages import Event, Ref, Repository
from tasuki.shared.store import RunRecord
from tests.unit.conftest import function_client

TOKEN = "correct horse battery staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def run(run_id: str, seconds: int, repository: str = "acme/api") -> RunRecord:
    event = Event(
        host="bitbucket",
        event="repo.push",
        kind="push",
        delivery_id=f"d-{run_id}",
        repository=Repository(full_name=repository),
        ref=Ref(kind="branch", name="main"),
        after="a" * 40,
    )
    return RunRecord(id=run_id, event=event, created_at=T0 + timedelta(seconds=seconds))


@pytest.fixture
def web(memory_runtime):
    rt = memory_runtime(web_token=TOKEN)
    # 7 runs, 4 of them created at the same moment, one of another repository
    for n, seconds in enumerate([0, 5, 5, 5, 5, 9, 12]):
        rt.store.create_run(run(f"run-{n}", seconds, "acme/web" if n == 3 else "acme/api"))
    for n in range(5):
        rt.store.tell(
            f"github:{n}", "ingress", {"kind": "ingress", "status": "accepted"}, at=T0 + timedelta(seconds=n // 2)
        )
    return function_client("web")


def walk(web, url: str, key: str) -> tuple[list[str], int]:
    """Every id through `next`, and how many pages it took."""
    ids: list[str] = []
    pages = 0
    while url:
        answer = web.get(url, headers=AUTH)
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        ids += [item["id"] for item in body[key]]
        pages += 1
        assert pages < 20, "next never ends"
        url = f"{url.split('&before=')[0]}&before={body['next']}" if body["next"] else ""
    return ids, pages


def test_runs_are_paged_newest_first_each_once(web):
    everything = web.get("/api/runs", headers=AUTH).get_json()
    assert everything["next"] is None and len(everything["runs"]) == 7
    ids, pages = walk(web, "/api/runs?limit=2", "runs")
    assert ids == [r["id"] for r in everything["runs"]] and pages == 4
    assert ids[:2] == ["run-6", "run-5"] and ids[-1] == "run-0"
    # the filters hold on every page
    ids, _ = walk(web, "/api/runs?limit=1&repo=acme/api", "runs")
    assert ids == [r["id"] for r in everything["runs"] if r["id"] != "run-3"]


def test_a_full_last_page_says_there_is_no_next(web):
    first = web.get("/api/runs?limit=7", headers=AUTH).get_json()
    assert len(first["runs"]) == 7 and first["next"] is None
    six = web.get("/api/runs?limit=6", headers=AUTH).get_json()
    rest = web.get(f"/api/runs?limit=6&before={six['next']}", headers=AUTH).get_json()
    assert [r["id"] for r in rest["runs"]] == ["run-0"] and rest["next"] is None


def test_deliveries_are_paged_newest_first_each_once(web):
    everything = web.get("/api/deliveries", headers=AUTH).get_json()
    assert everything["next"] is None
    ids, pages = walk(web, "/api/deliveries?limit=2", "deliveries")
    assert (
        ids
        == [d["id"] for d in everything["deliveries"]]
        == ["github:4", "github:3", "github:2", "github:1", "github:0"]
    )
    assert pages == 3


@pytest.mark.parametrize(
    "before",
    [
        "not-a-cursor!",
        base64.urlsafe_b64encode(b"yesterday run-1").decode(),
        base64.urlsafe_b64encode(b"2026-11-30T12:00:00 run-1").decode(),  # no time zone
        base64.urlsafe_b64encode(b"2026-11-30T12:00:00+00:00 ").decode(),  # no id
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * 5000,
    ],
)
def test_a_before_that_is_not_a_next_is_refused_saying_where_one_comes_from(web, before):
    for listing in ("runs", "deliveries"):
        answer = web.get(f"/api/{listing}", headers=AUTH, query_string={"before": before})
        assert answer.status_code == 400
        assert "`next` of an earlier page" in answer.get_json()["error"]


def test_a_limit_out_of_range_is_bounded_and_one_not_a_number_refused(web):
    assert len(web.get("/api/runs?limit=0", headers=AUTH).get_json()["runs"]) == 1
    assert len(web.get("/api/runs?limit=100000", headers=AUTH).get_json()["runs"]) == 7
    answer = web.get("/api/runs?limit=lots", headers=AUTH)
    assert answer.status_code == 400 and "limit must be a number from 1 to 500" in answer.get_json()["error"]


def test_the_command_line_pages_with_the_cursor_it_prints(memory_runtime, capsys):
    from tasuki.local.cli.commands import cmd_deliveries, cmd_runs, parser

    rt = memory_runtime()
    for n, seconds in enumerate([0, 5, 5]):
        rt.store.create_run(run(f"run-{n}", seconds))
    rt.store.tell("github:1", "ingress", {"kind": "ingress", "status": "accepted"}, at=T0)

    def lines(command, *argv: str) -> list[str]:
        assert command(rt, parser().parse_args(list(argv))) == 0
        return capsys.readouterr().out.splitlines()

    first = lines(cmd_runs, "runs", "--repo", "acme/api", "--limit", "2")
    assert [line.split()[0] for line in first[:2]] == ["run-2", "run-1"]
    assert first[2].startswith("older: tasuki runs --repo acme/api --limit 2 --before ")
    rest = lines(cmd_runs, *first[2].split()[2:])  # the command it printed
    assert [line.split()[0] for line in rest] == ["run-0"]
    assert lines(cmd_deliveries, "deliveries", "--limit", "1")[0].startswith("github:1")
    with pytest.raises(ActionError, match="`next` of an earlier page"):
        cmd_runs(rt, parser().parse_args(["runs", "--before", "junk!"]))


def test_the_pages_lead_to_older_runs_and_deliveries_and_back(memory_runtime):
    rt = memory_runtime(web_token=TOKEN)
    for n in range(103):
        rt.store.create_run(run(f"run-{n:03}", n % 7, "acme/web" if n == 50 else "acme/api"))
        rt.store.tell(f"github:{n:03}", "ingress", {"kind": "ingress", "status": "accepted"}, at=T0)
    web = function_client("web")

    def shown(path: str) -> tuple[str, list[str]]:
        page = web.get(path, headers=AUTH)
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        return html, re.findall(r'data-(?:run|delivery)="([^"]+)"', html)

    html, first = shown("/runs?repo=acme/api")
    assert len(first) == 100 and "Newest runs" not in html
    older = re.search(r'href="(/runs\?[^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    assert "repo=acme%2Fapi" in older
    html, rest = shown(older)
    assert len(rest) == 2 and not set(rest) & set(first) and "Older runs" not in html and "Newest runs" in html
    html, first = shown("/deliveries")
    older = re.search(r'href="(/deliveries\?[^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    assert len(first) == 100 and len(set(first + shown(older)[1])) == 103
