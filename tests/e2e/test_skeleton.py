"""End to end: the captured Bitbucket push becomes a container run, through every real process.

RabbitMQ and Docker are real; the repository is a local bare repository registered under the
fixture's name. The commit hash in the delivery is replaced by the local repository's commit
(no other change), since a commit cannot be made to have the captured hash.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import WEBHOOKS, first_push_headers
from tests.harness import LocalTasuki

CAPTURED_COMMIT = "8fb0eefc6a340d57598ca553a07fade1a10f2c30"
FLOW = "jobs:\n  build: {image: tasuki/busybox, run: ci/build}\n"


def delivery(commit: str, repository: str | None = None) -> bytes:
    text = (WEBHOOKS / "bitbucket" / "first-push.json").read_text().replace(CAPTURED_COMMIT, commit)
    if repository:
        text = text.replace("takitake/mysidia", repository)
    return text.encode()


@pytest.fixture
def tasuki(tmp_path, rabbitmq, docker_client, make_repo):
    ok_repo, ok_commit = make_repo(
        {
            ".tasuki.yml": FLOW,
            "ci/build": ('#!/bin/sh\necho "tasuki skeleton: built $TASUKI_REPO at $TASUKI_COMMIT"\n', True),
        }
    )
    bad_repo, bad_commit = make_repo(
        {
            ".tasuki.yml": FLOW,
            "ci/build": ("#!/bin/sh\necho about to fail\nexit 3\n", True),
        }
    )
    (tmp_path / "repos.yml").write_text(
        json.dumps(
            {
                "repositories": {
                    "takitake/mysidia": {"clone_url": str(ok_repo)},
                    "takitake/failing": {"clone_url": str(bad_repo)},
                }
            }
        )
    )
    (tmp_path / "rules.yml").write_text('rules:\n  - {event: push, repository: "takitake/*"}\n')
    env = {
        "TASUKI_AMQP_URL": rabbitmq,
        "TASUKI_DATA_DIR": str(tmp_path / "data"),
        "TASUKI_REPOSITORIES_FILE": str(tmp_path / "repos.yml"),
        "TASUKI_RULES_FILE": str(tmp_path / "rules.yml"),
    }
    with LocalTasuki(env) as running:
        running.commits = {"ok": ok_commit, "bad": bad_commit}
        yield running


def test_a_push_becomes_a_green_run_and_a_failing_one_red(tasuki):
    headers = first_push_headers()
    headers.pop("Content-Length")
    headers.pop("Host")

    # When the captured delivery (its own headers) arrives for a repository whose ci/build passes
    answer = tasuki.post_webhook(delivery(tasuki.commits["ok"]), headers)
    assert answer.status_code == 202, answer.text
    # Then the run reaches success with the job's line in its log
    run = tasuki.wait_for_run(repository="takitake/mysidia")
    assert run.status == "success", (run.message, tasuki.log())
    assert run.commit == tasuki.commits["ok"]
    assert f"tasuki skeleton: built takitake/mysidia at {tasuki.commits['ok']}" in tasuki.log_of(run.id, "build")

    # When a second repository's executable exits 3
    answer = tasuki.post_webhook(delivery(tasuki.commits["bad"], "takitake/failing"), headers)
    assert answer.status_code == 202, answer.text
    # Then its run fails with exit code 3 recorded on the job
    run = tasuki.wait_for_run(repository="takitake/failing")
    assert run.status == "failure"
    [job] = tasuki.store.get_jobs(run.id)
    assert (job.status, job.exit_code) == ("failure", 3)
    assert "about to fail" in tasuki.log_of(run.id, "build")
    assert "exit code 3" in run.message


def test_the_same_delivery_twice_makes_one_run(tasuki):
    headers = {k: v for k, v in first_push_headers().items() if k not in ("Content-Length", "Host")}
    body = delivery(tasuki.commits["ok"])
    first = tasuki.post_webhook(body, headers)
    second = tasuki.post_webhook(body, headers)
    assert first.status_code == 202 and second.status_code == 200
    assert second.json()["status"] == "duplicate"
    tasuki.wait_for_run(repository="takitake/mysidia")
    assert len(tasuki.store.list_runs()) == 1
