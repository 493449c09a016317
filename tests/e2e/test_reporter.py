"""The reporter: run and job statuses reach each git host's API, through the real processes.

The hosts' APIs are behavioural fakes (tests/fake_hosts.py); RabbitMQ, Docker, the bridge and
every function are real.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import WEBHOOKS, first_push_headers
from tests.fake_hosts import FakeHosts
from tests.harness import configured

CAPTURED = "8fb0eefc6a340d57598ca553a07fade1a10f2c30"
FLOW = "jobs:\n  build: {image: tasuki/busybox, run: ci/build}\n  test: {image: tasuki/busybox, run: ci/test, needs: [build]}\n"


@pytest.fixture
def hosts():
    with FakeHosts() as fake:
        yield fake


@pytest.fixture
def tasuki(tmp_path, rabbitmq, docker_client, make_repo, hosts):
    repo, commit = make_repo(
        {
            ".tasuki.yml": FLOW,
            "ci/build": ("#!/bin/sh\necho building\n", True),
            "ci/test": ("#!/bin/sh\necho testing\n", True),
        }
    )
    hosts.commits.add(commit)
    repositories = {
        "takitake/mysidia": {"clone_url": str(repo), "token": hosts.tokens["bitbucket"]},
        "takitake/badtoken": {"clone_url": str(repo), "token": "not-the-token"},
    }
    rules = 'rules:\n  - {id: main, event: push, repository: "takitake/*"}\n'
    settings = {"bitbucket_api_url": hosts.bitbucket_url, "public_url": "http://ci.example"}
    with configured(tmp_path, rabbitmq, repositories, rules, **settings) as running:
        running.commit = commit
        yield running


def push(tasuki, repository: str = "takitake/mysidia"):
    body = (WEBHOOKS / "bitbucket" / "first-push.json").read_text()
    body = body.replace(CAPTURED, tasuki.commit).replace("takitake/mysidia", repository)
    headers = {k: v for k, v in first_push_headers().items() if k not in ("Content-Length", "Host")}
    answer = tasuki.post_webhook(body.encode(), headers)
    assert answer.status_code == 202, answer.text
    return tasuki.wait_for_run(repository=repository)


def wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_a_run_of_two_jobs_reports_each_job_and_the_run_in_order(tasuki, hosts):
    run = push(tasuki)
    assert run.status == "success"
    wait_for(lambda: hosts.sequence("tasuki-main")[-1:] == ["SUCCESSFUL"])
    assert hosts.sequence("tasuki-main-build") == ["INPROGRESS", "INPROGRESS", "SUCCESSFUL"]
    assert hosts.sequence("tasuki-main-test") == ["INPROGRESS", "INPROGRESS", "SUCCESSFUL"]
    assert hosts.sequence("tasuki-main") == ["INPROGRESS", "INPROGRESS", "SUCCESSFUL"]
    final = [s for s in hosts.statuses() if s.name == "tasuki-main"][-1]
    assert final.repository == "takitake/mysidia" and final.commit == tasuki.commit
    assert final.body["url"] == f"http://ci.example/runs/{run.id}"
    assert final.body["refname"] == "master" and final.body["name"] == "tasuki"
    assert hosts.refused == []


def test_a_host_failure_is_retried_until_it_passes(tasuki, hosts):
    # Given the host answers 500 to the first status request
    hosts.fail_next(500, body={"type": "error", "error": {"message": "Something went wrong"}})
    run = push(tasuki)
    # Then the bridge retries it and every status still arrives, in order
    wait_for(lambda: hosts.sequence("tasuki-main")[-1:] == ["SUCCESSFUL"], timeout=90)
    assert hosts.sequence("tasuki-main-build") == ["INPROGRESS", "INPROGRESS", "SUCCESSFUL"]
    assert tasuki.store.get_notes(run.id) == []


def test_a_bad_token_is_noted_on_the_run_and_not_retried(tasuki, hosts):
    run = push(tasuki, "takitake/badtoken")
    # every notice is tried once: queued, running, success for each job and for the run
    wait_for(lambda: len(hosts.refused) == 9)
    time.sleep(3)  # and not again
    assert len(hosts.refused) == 9, hosts.refused
    notes = tasuki.store.get_notes(run.id)
    assert len(notes) == 1
    source, message = notes[0]
    assert source == "reporter" and "refused the status (401): Access token expired." in message
    assert hosts.statuses() == []
