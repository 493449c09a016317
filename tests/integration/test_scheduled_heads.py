"""A scheduled run's commit: the executor resolves the branch's head (a real git repository, as
for a manual run), plans that commit and answers it; a branch that is not there is the run's
error."""

from __future__ import annotations

from datetime import UTC, datetime

from tasuki.local.executor.service import Executor
from tasuki.shared import recipes
from tasuki.shared.memory import MemoryBroker
from tasuki.shared.messages import PlanOrder
from tests.conftest import commit_to

FLOW = "jobs:\n  nightly: {image: tasuki/busybox, run: ci/nightly, when: {event: schedule}}\n"
FLOW += "  pushed: {image: tasuki/busybox, run: ci/pushed, when: {event: push}}\n"


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
    assert "there is no branch 'gone'" in failed.error
