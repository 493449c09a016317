"""The web page in a real headless Chromium (Playwright with Debian's chromium), against the
real `tasuki local` process tree: RabbitMQ, Docker, bridge, executor and every function real.

Set SCREENSHOTS_DIR to keep screenshots of the rules page and a run page (the README's).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tasuki.local.cli.demo import push_payload
from tests.harness import LocalTasuki

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
FLOW = """jobs:
  build: {image: tasuki/busybox, run: ci/build}
  test:  {image: tasuki/busybox, run: ci/test, needs: [build]}
  lint:  {image: tasuki/busybox, run: ci/lint, needs: [build]}
"""


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def tasuki(tmp_path, rabbitmq, docker_client, make_repo):
    repos = {
        "acme/green": make_repo(
            {
                ".tasuki.yml": FLOW,
                "ci/build": ("#!/bin/sh\necho compiling\nsleep 1\necho built the green thing\n", True),
                "ci/test": ("#!/bin/sh\necho 12 tests passed\n", True),
                "ci/lint": ("#!/bin/sh\necho style ok\n", True),
            }
        ),
        "acme/red": make_repo(
            {
                ".tasuki.yml": "jobs:\n  build: {image: tasuki/busybox, run: ci/build}\n",
                "ci/build": ("#!/bin/sh\necho this will not work\nexit 3\n", True),
            }
        ),
        "acme/files": make_repo(
            {
                ".tasuki.yml": "jobs:\n  build: {image: tasuki/busybox, run: ci/build, artifacts: [dist/]}\n",
                "ci/build": ("#!/bin/sh\nmkdir -p dist && echo 'the built thing' > dist/app.txt\n", True),
            }
        ),
        "acme/slow": make_repo(
            {
                ".tasuki.yml": "jobs:\n  build: {image: tasuki/busybox, run: ci/build}\n",
                "ci/build": ("#!/bin/sh\necho started the long job\nsleep 300\n", True),
            }
        ),
    }
    (tmp_path / "repos.yml").write_text(
        json.dumps({"repositories": {name: {"clone_url": str(bare)} for name, (bare, _) in repos.items()}})
    )
    env = {
        "TASUKI_AMQP_URL": rabbitmq,
        "TASUKI_DATA_DIR": str(tmp_path / "data"),
        "TASUKI_REPOSITORIES_FILE": str(tmp_path / "repos.yml"),
    }
    with LocalTasuki(env) as running:
        running.commits = {name: commit for name, (_, commit) in repos.items()}
        running.web = f"http://127.0.0.1:{running.settings.web_port}"
        yield running


@pytest.fixture
def page(browser, tasuki):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(90_000)
    yield page
    context.close()


def push(tasuki, repository: str) -> None:
    body = json.dumps(push_payload(tasuki.commits[repository], "", repository, "main")).encode()
    answer = tasuki.post_webhook(
        body,
        {
            "Content-Type": "application/json",
            "X-Event-Key": "repo:push",
            "X-Request-UUID": f"{repository}-{os.urandom(4).hex()}",
        },
    )
    assert answer.status_code == 202, answer.text


def create_rule_in_page(page, tasuki, repository: str) -> None:
    page.goto(f"{tasuki.web}/rules")
    page.select_option("select[name=event]", "push")
    page.fill("input[name=repository]", repository)
    page.fill("input[name=branch]", "main")
    page.click("text=Create rule")
    page.wait_for_selector(f"text=If push to {repository} on main then run .tasuki.yml")


def shot(page, name: str) -> None:
    folder = os.environ.get("SCREENSHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_create_a_rule_push_and_watch_the_run_turn_green(page, tasuki):
    # Given a rule made in the page
    create_rule_in_page(page, tasuki, "acme/green")
    assert "Created: if push to acme/green on main" in page.inner_text("[role=status]")
    shot(page, "rules.png")
    # When a push arrives while the runs page is open
    page.goto(f"{tasuki.web}/runs")
    push(tasuki, "acme/green")
    # Then the run appears and turns green without reloading the page
    row = page.locator("tr[data-run]", has_text="acme/green")
    row.locator(".status.success").wait_for()
    # And its page shows the flow graph and each job's log
    row.locator("a").first.click()
    page.wait_for_selector("svg .node.success >> text=build")
    assert page.locator("svg g.node").count() == 3
    page.click("a[data-job=build]")
    page.wait_for_function("document.getElementById('log').textContent.includes('built the green thing')")
    assert "compiling" in page.inner_text("#log")
    shot(page, "run.png")


def test_a_failing_job_shows_red_with_its_exit_code(page, tasuki):
    create_rule_in_page(page, tasuki, "acme/red")
    push(tasuki, "acme/red")
    run = tasuki.wait_for_run(repository="acme/red")
    page.goto(f"{tasuki.web}/runs/{run.id}")
    assert page.inner_text("#run-status") == "failure"
    assert page.inner_text("[data-status=build]") == "failure"
    assert page.inner_text("[data-exit=build]") == "3"
    assert "exit code 3" in page.inner_text("#run-summary")
    page.wait_for_function("document.getElementById('log').textContent.includes('this will not work')")


def test_an_artifact_is_listed_on_the_run_page_and_downloads_in_the_browser(page, tasuki):
    create_rule_in_page(page, tasuki, "acme/files")
    push(tasuki, "acme/files")
    run = tasuki.wait_for_run(repository="acme/files")
    assert run.status == "success"
    page.goto(f"{tasuki.web}/runs/{run.id}")
    link = page.locator("#artifacts a[data-artifact='build/dist/app.txt']")
    assert link.inner_text() == "dist/app.txt"
    assert "16 B" in page.inner_text("#artifacts")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "app.txt"
    assert Path(download.value.path()).read_bytes() == b"the built thing\n"


def test_cancel_a_long_job(page, tasuki, docker_client):
    create_rule_in_page(page, tasuki, "acme/slow")
    push(tasuki, "acme/slow")
    run = tasuki.wait_for_run(lambda r: r.status == "running", repository="acme/slow")
    page.goto(f"{tasuki.web}/runs/{run.id}")
    page.wait_for_function("document.getElementById('log').textContent.includes('started the long job')")
    page.click("button:has-text('Cancel')")
    page.wait_for_selector("#run-status:has-text('cancelled')")
    assert page.inner_text("[data-status=build]") == "cancelled"
    tasuki.wait_for_run(lambda r: r.status == "cancelled", repository="acme/slow")
    # the container is stopped and removed
    deadline = __import__("time").monotonic() + 30
    while docker_client.containers.list(all=True, sparse=True, filters={"label": f"tasuki.run={run.id}"}):
        assert __import__("time").monotonic() < deadline, "the cancelled job's container is still there"
        __import__("time").sleep(0.5)


def test_the_api_does_what_the_page_does(tasuki):
    import requests

    api = f"{tasuki.web}/api"
    made = requests.post(f"{api}/rules", json={"repository": "acme/green", "branch": "main"}, timeout=10)
    assert made.status_code == 201 and made.json()["sentence"] == "if push to acme/green on main then run .tasuki.yml"
    bad = requests.post(f"{api}/rules", json={"repository": "acme/green", "tag": "v*"}, timeout=10)
    assert bad.status_code == 400 and "tag applies to rules for event tag" in bad.json()["error"]
    push(tasuki, "acme/green")
    run = tasuki.wait_for_run(repository="acme/green")
    detail = requests.get(f"{api}/runs/{run.id}", timeout=10).json()
    assert detail["run"]["status"] == "success" and {j["name"] for j in detail["jobs"]} == {"build", "test", "lint"}
    log = requests.get(f"{api}/runs/{run.id}/jobs/build/log", timeout=10).json()
    assert "built the green thing" in "".join(c["text"] for c in log["chunks"]) and log["done"]
    again = requests.post(f"{api}/runs/{run.id}/rerun", json={}, timeout=10)
    assert again.status_code == 202
    rerun = tasuki.wait_for_run(lambda r: r.id == again.json()["run_id"] and r.status == "success")
    assert rerun.commit == run.commit
    spec = requests.get(f"{api}/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.") and "/api/rules" in spec["paths"]
    assert re.fullmatch(r"[0-9a-f]{16}", rerun.id)


def test_dead_letters_are_listed_inspected_and_replayed_from_the_page(page, tasuki):
    from tasuki.shared import codec, topics
    from tasuki.shared.broker import Broker
    from tasuki.shared.messages import Event, Ref, Repository, RunRequested

    # Given a run request the dispatcher refused five times, dead-lettered as the bridge does it
    event = Event(
        host="bitbucket",
        event="repo.push",
        kind="push",
        delivery_id="dl-test",
        repository=Repository(full_name="acme/green"),
        ref=Ref(kind="branch", name="main"),
        after=tasuki.commits["acme/green"],
    )
    request = RunRequested(run_id="deadbeef00000001", rule_id="manual", event=event)
    broker = Broker(tasuki.settings.amqp_url)
    broker.publish_raw(
        topics.DEADLETTER,
        "run.requested",
        codec.encode(request),
        message_id="m-dead-1",
        message_type="run.requested",
        headers={
            "run": request.run_id,
            "type": "run.requested",
            "x-ordering-key": request.run_id,
            "CloudPubSubDeadLetterSourceSubscription": "dispatcher",
            "CloudPubSubDeadLetterSourceDeliveryCount": "5",
            "x-deadletter-id": "dl-1",
            "x-source-queue": "tasuki.dispatcher",
            "x-original-exchange": topics.RUNS,
            "x-original-routing-key": "run.requested",
            "x-last-error": "HTTP 503: the store was locked",
            "x-dead-lettered-ms": 1767225600000,
        },
    )
    broker.close()
    # When a person opens the dead letters, inspects this one and replays it
    page.goto(f"{tasuki.web}/deadletters")
    row = page.locator("tr[data-letter=dl-1]")
    assert "HTTP 503: the store was locked" in row.inner_text() and "dispatcher" in row.inner_text()
    row.locator("text=Inspect").click()
    assert "deadbeef00000001" in page.inner_text("pre.log") and "acme/green" in page.inner_text("pre.log")
    page.click("button:has-text('Replay')")
    page.wait_for_selector("text=Replayed 1 dead letter.")
    assert page.locator("tr[data-letter]").count() == 0
    # Then the dispatcher gets it again and the run happens
    run = tasuki.wait_for_run(lambda r: r.id == "deadbeef00000001" and r.status == "success")
    assert run.commit == tasuki.commits["acme/green"]
