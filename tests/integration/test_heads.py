"""A scheduled run's commit: the executor resolves the branch's head with `git ls-remote` (a real
git repository), plans that commit and answers it; a branch that is not there, or is not a
branch name, is the run's error, never a git option."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tasuki.local.executor import heads
from tasuki.local.executor.checkout import Checkouts
from tasuki.local.executor.service import Executor
from tasuki.shared import recipes
from tasuki.shared.errors import CheckoutFailed
from tasuki.shared.memory import MemoryBroker
from tasuki.shared.messages import PlanOrder
from tests.conftest import commit_to

FLOW = "jobs:\n  nightly: {image: tasuki/busybox, run: ci/nightly, when: {event: schedule}}\n"
FLOW += "  pushed: {image: tasuki/busybox, run: ci/pushed, when: {event: push}}\n"


def test_the_head_of_a_branch_is_resolved_with_ls_remote(make_repo, tmp_path):
    bare, first = make_repo({"README": "hi\n"}, branch="main")
    checkouts = Checkouts(tmp_path / "cache", tmp_path / "work", schemes=("file",))
    assert heads.resolve(checkouts, str(bare), "main", None, "") == first
    second = commit_to(bare, {"README": "more\n"}, branch="main")
    assert heads.resolve(checkouts, str(bare), "main", None, "") == second != first
    with pytest.raises(CheckoutFailed, match="branch gone is not in the repository"):
        heads.resolve(checkouts, str(bare), "gone", None, "")
    for hostile in ("--upload-pack=touch /tmp/x", "-x", "a..b", "a b", ""):
        with pytest.raises(CheckoutFailed, match="is not a branch name"):
            heads.resolve(checkouts, str(bare), hostile, None, "")
    with pytest.raises(CheckoutFailed, match="not asked"):
        heads.resolve(Checkouts(tmp_path / "c2", tmp_path / "w2"), str(bare), "main", None, "")  # https only


def test_a_scheduled_run_is_planned_at_the_head_of_its_branch(make_repo, make_settings):
    bare, _ = make_repo({".tasuki.yml": FLOW}, branch="main")
    head = commit_to(bare, {"ci/changed": "x\n"}, branch="main")
    executor = Executor(make_settings(clone_schemes="file"), broker=MemoryBroker())
    rule = recipes.Rule(event="schedule", schedule="hourly", repository="acme/api", branch="main")
    event = recipes.scheduled_event(rule, datetime(2026, 12, 1, 2, 0, tzinfo=UTC))
    planned = executor.planned(PlanOrder(run_id="s1", event=event, clone_url=str(bare)))
    assert (planned.error, planned.commit) == ("", head)
    assert list(planned.jobs) == ["nightly"] and planned.skipped == ["pushed"]
    gone = event.model_copy(update={"ref": event.ref.model_copy(update={"name": "gone"})})
    failed = executor.planned(PlanOrder(run_id="s2", event=gone, clone_url=str(bare)))
    assert "branch gone is not in the repository" in failed.error
