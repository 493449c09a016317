"""Manual runs with parameters and re-runs of failed jobs (issue 16) through the real `tasuki
local` process tree (RabbitMQ, Docker, bridge, executor, every function) and, for the page, a
real headless Chromium."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.conftest import commit_to
from tests.e2e.test_web import browser, push  # noqa: F401  (browser is a fixture)
from tests.harness import configured

DEPLOY_FLOW = """\
params:
  target: {default: staging, choices: [staging, production]}
  dry_run: {type: bool, default: true}
jobs:
  deploy: {image: tasuki/busybox, run: ci/deploy, when: {event: manual}}
  test: {image: tasuki/busybox, run: ci/test, when: {event: push}}
"""
DEPLOY = '#!/bin/sh\necho "deploying to $TASUKI_PARAM_TARGET dry_run=$TASUKI_PARAM_DRY_RUN event=$TASUKI_EVENT"\n'


def diamond_flow(lint_image: str) -> str:
    return f"""\
jobs:
  build:  {{image: tasuki/busybox, run: ci/say, args: [build]}}
  unit:   {{image: tasuki/busybox, run: ci/say, args: [unit], needs: [build]}}
  lint:   {{image: {lint_image}, run: ci/say, args: [lint], needs: [build]}}
  deploy: {{image: tasuki/busybox, run: ci/say, args: [deploy], needs: [unit, lint]}}
"""


@pytest.fixture
def lint_image(docker_client):
    """An image name the engine lacks (and cannot pull) until the test tags busybox with it."""
    name = f"tasuki/test-lint-{uuid.uuid4().hex[:10]}"
    yield name
    if docker_client.images.list(name=name):
        docker_client.images.remove(f"{name}:latest", noprune=True)


@pytest.fixture
def tasuki(tmp_path, rabbitmq, docker_client, make_repo, lint_image):
    repos = {
        "acme/deploy": make_repo(
            {".tasuki.yml": DEPLOY_FLOW, "ci/deploy": (DEPLOY, True), "ci/test": ("#!/bin/sh\necho test\n", True)},
            branch="main",
        ),
        "acme/diamond": make_repo(
            {".tasuki.yml": diamond_flow(lint_image), "ci/say": ('#!/bin/sh\necho "ran $1"\n', True)},
            branch="main",
        ),
    }
    registry = {name: {"clone_url": str(bare)} for name, (bare, _) in repos.items()}
    with configured(tmp_path, rabbitmq, registry, "rules: []\n") as running:
        running.bare = {name: bare for name, (bare, _) in repos.items()}
        running.commits = {name: commit for name, (_, commit) in repos.items()}
        running.web = f"http://127.0.0.1:{running.settings.web_port}"
        running.api = f"{running.web}/api"
        yield running


@pytest.fixture
def page(browser, tasuki):  # noqa: F811
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(90_000)
    yield page
    context.close()


def rule(tasuki, **fields) -> None:
    made = requests.post(f"{tasuki.api}/rules", json=fields, timeout=10)
    assert made.status_code == 201, made.text


def test_start_a_manual_run_with_parameters_from_the_page(page, tasuki):
    # Given a rule that lets people start runs of acme/deploy's main by hand
    page.goto(f"{tasuki.web}/repositories")
    assert page.locator("#run-acme-deploy").count() == 0  # no rule, no button
    rule(tasuki, event="manual", repository="acme/deploy", branch="main")
    page.goto(f"{tasuki.web}/repositories")
    page.click("#run-acme-deploy")
    # When nothing was planned yet, the form takes name=value lines (checked when planned)
    page.fill("input[name=ref]", "main")
    page.fill("textarea[name=params_text]", "target=production")
    page.click("#start-form button:has-text('Run')")
    # Then the run builds main's head, with the parameters in the job's environment
    page.wait_for_selector("#run-status:has-text('success')")
    assert "started by the web page" in page.inner_text("#run-actor")
    assert "target=production" in page.inner_text("#run-params")
    page.click("a[data-job=deploy]")
    page.wait_for_function(
        "document.getElementById('log').textContent.includes('deploying to production dry_run=true event=manual')"
    )
    first = tasuki.wait_for_run(repository="acme/deploy")
    assert first.commit == tasuki.commits["acme/deploy"] and first.event.params["dry_run"] == "true"
    assert {j.name: j.status for j in tasuki.store.get_jobs(first.id)} == {"deploy": "success", "test": "skipped"}

    # Given a newer commit on main, when a person starts it again: the form now offers the
    # parameters the flow file declares, typed, and the run builds the branch's new head
    newer = commit_to(tasuki.bare["acme/deploy"], {"NEWS": "a change"}, branch="main")
    page.goto(f"{tasuki.web}/repositories/acme/deploy/run")
    page.fill("input[name=ref]", "main")
    page.select_option("#param-target", "staging")
    page.select_option("#param-dry_run", "false")
    page.click("#start-form button:has-text('Run')")
    page.wait_for_selector("#run-status:has-text('success')")
    page.click("a[data-job=deploy]")
    page.wait_for_function(
        "document.getElementById('log').textContent.includes('deploying to staging dry_run=false event=manual')"
    )
    second = tasuki.wait_for_run(lambda r: r.id != first.id and r.status == "success", repository="acme/deploy")
    assert second.commit == newer != first.commit


def test_the_api_and_the_command_line_start_runs_and_refuse_bad_parameters(tasuki):
    refused = requests.post(f"{tasuki.api}/runs", json={"repository": "acme/deploy", "branch": "main"}, timeout=10)
    assert refused.status_code == 403 and "no rule lets anyone start runs" in refused.json()["error"]
    rule(tasuki, event="manual", repository="acme/deploy")
    # the command line: tasuki runs start REPO --branch main -p target=production
    started = tasuki.cli("runs", "start", "acme/deploy", "--branch", "main", "-p", "target=production")
    assert started.returncode == 0, started.stderr
    run = tasuki.wait_for_run(repository="acme/deploy")
    assert run.status == "success" and run.event.actor.endswith("(command line)")
    assert "deploying to production dry_run=true" in tasuki.log_of(run.id, "deploy")
    shown = tasuki.cli("runs", "show", run.id)
    assert "parameters: dry_run=true target=production" in shown.stdout
    # the API: a value outside its choices, once the declaration is known, is a 422 naming it
    body = {"repository": "acme/deploy", "branch": "main", "params": {"target": "moon"}}
    bad = requests.post(f"{tasuki.api}/runs", json=body, timeout=10)
    assert bad.status_code == 422 and bad.json()["error"].startswith("parameter 'target': expected one of")
    body["params"] = {"target": "staging", "dry_run": False}
    good = requests.post(f"{tasuki.api}/runs", json=body, timeout=10)
    assert good.status_code == 202
    [run_id] = good.json()["runs"]
    done = tasuki.wait_for_run(lambda r: r.id == run_id and r.status == "success")
    assert "deploying to staging dry_run=false" in tasuki.log_of(done.id, "deploy")
    assert requests.get(f"{tasuki.api}/runs/{run_id}", timeout=10).json()["run"]["params"] == {
        "target": "staging",
        "dry_run": "false",
    }
    # a branch that does not exist ends the run in error, saying so
    body = {"repository": "acme/deploy", "branch": "nope", "params": {}}
    [missing] = requests.post(f"{tasuki.api}/runs", json=body, timeout=10).json()["runs"]
    failed = tasuki.wait_for_run(lambda r: r.id == missing and r.status == "error")
    assert "there is no branch 'nope'" in failed.message


def test_rerun_failed_on_a_diamond_runs_exactly_the_failed_job_and_its_dependants(
    page, tasuki, docker_client, lint_image
):
    # Given a diamond build -> (unit, lint) -> deploy whose lint failed (its image was missing)
    rule(tasuki, repository="acme/diamond", branch="main")
    push(tasuki, "acme/diamond")
    failed = tasuki.wait_for_run(repository="acme/diamond")
    statuses = {j.name: j.status for j in tasuki.store.get_jobs(failed.id)}
    assert statuses == {"build": "success", "unit": "success", "lint": "error", "deploy": "skipped"}
    # When the image exists and a person presses Re-run failed
    docker_client.images.get("tasuki/busybox:latest").tag(lint_image, "latest")
    page.goto(f"{tasuki.web}/runs/{failed.id}")
    page.click("button:has-text('Re-run failed')")
    # Then a new run at the same commit keeps build and unit, and runs lint and deploy
    page.wait_for_selector("#run-status:has-text('success')")
    assert f"Re-run of run {failed.id}, keeping build, unit" in page.inner_text("#run-rerun-of")
    again = tasuki.wait_for_run(lambda r: r.rerun_of == failed.id and r.status == "success")
    assert again.commit == failed.commit
    jobs = {j.name: j for j in tasuki.store.get_jobs(again.id)}
    assert {n: j.status for n, j in jobs.items()} == dict.fromkeys(("build", "unit", "lint", "deploy"), "success")
    assert jobs["build"].message.startswith("kept") and jobs["unit"].message.startswith("kept")
    assert jobs["build"].attempt == jobs["unit"].attempt == 0  # never ordered
    assert tasuki.store.read_log(again.id, "build") == [] and tasuki.store.read_log(again.id, "unit") == []
    assert "ran lint" in tasuki.log_of(again.id, "lint") and "ran deploy" in tasuki.log_of(again.id, "deploy")
    # and the command line does the same for a run with nothing failed: refused, saying why
    refused = tasuki.cli("runs", "rerun", again.id, "--failed")
    assert refused.returncode == 2 and "there is no failed job to re-run" in refused.stderr
