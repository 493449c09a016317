"""Planning a manual run with real git (issue 16): the executor resolves the branch's or tag's
head in its mirror, reads the flow file there and checks the parameters, answering `run.planned`
with the commit and every parameter; what does not fit ends the run in error, saying which."""

from __future__ import annotations

import pytest

from tasuki.local.executor.checkout import Checkouts
from tasuki.local.executor.service import Executor
from tasuki.shared import manual
from tasuki.shared.errors import CheckoutFailed
from tasuki.shared.memory import MemoryBroker
from tasuki.shared.messages import PlanOrder, Ref
from tasuki.shared.settings import Settings
from tests.conftest import commit_to, git

FLOW = """\
params:
  target: {default: staging, choices: [staging, production]}
  dry_run: {type: bool, default: true}
jobs:
  deploy: {image: tasuki/busybox, run: ci/deploy, when: {event: manual}}
  test: {image: tasuki/busybox, run: ci/test}
"""


@pytest.fixture
def repo(make_repo):
    return make_repo({".tasuki.yml": FLOW, "ci/deploy": ("#!/bin/sh\n", True), "ci/test": ("#!/bin/sh\n", True)})


@pytest.fixture
def executor(tmp_path):
    settings = Settings.from_env({"TASUKI_DATA_DIR": str(tmp_path / "data"), "TASUKI_CLONE_SCHEMES": "file"})
    return Executor(settings, broker=MemoryBroker())


def order(bare, kind: str, name: str, params: dict[str, str]) -> PlanOrder:
    started = manual.event("acme/api", Ref(kind=kind, name=name), params, "emma")
    return PlanOrder(run_id="r1", event=started, clone_url=str(bare))


def test_the_head_of_a_branch_or_tag_is_what_it_names_now(tmp_path, repo):
    bare, first = repo
    co = Checkouts(tmp_path / "cache", tmp_path / "ws", schemes=("file",))
    assert co.head(str(bare), "branch", "master") == first
    newer = commit_to(bare, {"NEWS": "x"})
    assert co.head(str(bare), "branch", "master") == newer  # fetched again, not the mirror's old head
    git(bare, "tag", "v1", first)
    assert co.head(str(bare), "tag", "v1") == first
    with pytest.raises(CheckoutFailed, match="there is no branch 'nope'"):
        co.head(str(bare), "branch", "nope")
    with pytest.raises(CheckoutFailed, match="is not a branch name"):
        co.head(str(bare), "branch", "--upload-pack=touch /tmp/x")


def test_a_manual_plan_carries_the_commit_and_every_parameter(executor, repo):
    bare, head = repo
    planned = executor.planned(order(bare, "branch", "master", {"target": "production"}))
    assert planned.error == ""
    assert planned.commit == head
    assert planned.params == {"target": "production", "dry_run": "true"}
    assert set(planned.declared) == {"target", "dry_run"}
    assert list(planned.jobs) == ["deploy", "test"] and planned.skipped == []


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"target": "moon"}, "parameter 'target': expected one of staging, production, found 'moon'"),
        ({"colour": "red"}, "unknown parameter 'colour'"),
    ],
)
def test_a_parameter_that_does_not_fit_ends_the_run_naming_it(executor, repo, params, error):
    bare, _ = repo
    planned = executor.planned(order(bare, "branch", "master", params))
    assert error in planned.error and planned.jobs == {}


def test_a_branch_that_is_not_there_ends_the_run_saying_so(executor, repo):
    bare, _ = repo
    planned = executor.planned(order(bare, "branch", "gone", {}))
    assert "there is no branch 'gone'" in planned.error
