"""Fork pull requests: the run waits in `approval` until a person approves it (unless forks are
trusted), nothing is ordered before, and a fork's orders never carry the repository's credentials.
The pure decisions (shared/approval.py, scheduler) and the handlers (router, dispatcher, web)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tasuki.functions.dispatcher import addressed
from tasuki.local.cli.commands import cmd_runs, parser
from tasuki.shared import approval, flowfile, scheduler, sealing, statuses
from tasuki.shared.messages import (
    Event,
    JobOrder,
    PlanOrder,
    PullRequest,
    Ref,
    Repository,
    RunApprove,
    RunCancel,
    RunPlanned,
    RunRequested,
    RunUpdated,
    RunWake,
)
from tasuki.shared.recipes import Rule
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.store import RunRecord
from tests.unit.conftest import function_client

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EXECUTOR, DISPATCHER, RUNS = "tasuki.executor.default", "tasuki.dispatcher", "test.runs"
FLOW = flowfile.parse("jobs:\n  build: {image: tasuki/busybox, run: ci/build}\n")
TOKEN = "correct horse battery staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def pull_request(source: str = "mallory/api", target: str = "acme/api") -> Event:
    return Event(
        host="github",
        event="pull_request.opened",
        kind="pull_request",
        delivery_id=f"d-{source}",
        repository=Repository(full_name=target),
        ref=Ref(kind="branch", name="feature"),
        after="b" * 40,
        pull_request=PullRequest(
            number=7, state="open", source_branch="feature", target_branch="main", source_repository=source
        ),
    )


# --- the pure decisions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "rule_trusts", "repository", "needed"),
    [
        ("mallory/api", False, None, True),
        ("mallory/api", False, RepositoryConfig(), True),
        ("", False, RepositoryConfig(), True),  # a deleted fork: nobody can say whose code it is
        ("mallory/api", True, RepositoryConfig(), False),  # the rule trusts forks
        ("mallory/api", False, RepositoryConfig(trust_forks=True), False),  # the repository does
        ("acme/api", False, RepositoryConfig(), False),  # a branch of the repository itself
        ("ACME/api/", False, None, False),  # spelled otherwise, the same repository
    ],
)
def test_only_an_untrusted_fork_s_pull_request_needs_approval(source, rule_trusts, repository, needed):
    event = pull_request(source)
    assert approval.needed(event, rule_trusts_forks=rule_trusts, repository=repository) is needed


def test_a_fork_s_orders_carry_no_credentials_even_trusted_or_approved():
    credentials = {"token": "t0ken"}
    assert approval.credentials_for(pull_request("mallory/api"), credentials) == {}
    assert approval.credentials_for(pull_request("acme/api"), credentials) == credentials


def decide(run, message, jobs=None):
    return scheduler.decide(run, jobs or {}, message, NOW)


def test_a_run_needing_approval_waits_orders_nothing_until_approved_then_is_an_ordinary_run():
    # Given a requested run that needs approval
    requested = RunRequested(run_id="r1", rule_id="rule", event=pull_request(), approval=True)
    first = decide(None, requested)
    run = first.run
    assert run.status == "approval" and "waiting for approval" in run.message and "mallory/api" in run.message
    assert not first.admit and not any(isinstance(m, PlanOrder | JobOrder) for m in first.publish)
    assert [(m.status) for m in first.publish if isinstance(m, RunUpdated)] == ["approval"]
    # When it is requested again, woken, or planned by a stray message: still nothing is ordered
    for message in (requested, RunWake(run_id="r1"), RunPlanned(run_id="r1", jobs=dict(FLOW.jobs))):
        later = decide(run, message)
        if later.run is not None:
            run = later.run
        assert not later.admit and not any(isinstance(m, JobOrder | PlanOrder) for m in later.publish)
    assert run.status == "approval"
    # When a person approves it, it is queued and asks for its place (then its plan is ordered)
    approved = decide(run, RunApprove(run_id="r1", by="the command line"))
    assert (approved.run.status, approved.run.message, approved.run.approved_by) == ("queued", "", "the command line")
    assert approved.admit and [m.status for m in approved.publish] == ["queued"]
    # and approving again (or approving a run that never waited) changes nothing
    assert decide(approved.run, RunApprove(run_id="r1")) == scheduler.Decision()


def test_a_run_waiting_for_approval_can_be_cancelled():
    run = decide(None, RunRequested(run_id="r1", rule_id="rule", event=pull_request(), approval=True)).run
    cancelled = decide(run, RunCancel(run_id="r1", reason="cancelled from the web page")).run
    assert cancelled.status == "cancelled"
    assert decide(cancelled, RunApprove(run_id="r1")).run is None  # too late to approve


def test_the_commit_status_of_a_waiting_run_is_pending_waiting_for_approval():
    run = decide(None, RunRequested(run_id="r1", rule_id="rule", event=pull_request(), approval=True)).run
    notice = RunUpdated(run_id="r1", status=run.status, event=run.event, message=run.message, rule_id="rule")
    status = statuses.status_for(notice, "https://ci.example.com")
    assert (status.state, status.description) == ("pending", "Run waiting for approval")


# --- the handlers ------------------------------------------------------------------------------------------


def test_the_router_asks_approval_for_a_fork_unless_the_rule_trusts_forks(functions):
    rt = functions.rt
    rt.store.put_repository("acme/api", RepositoryConfig(clone_url="https://github.com/acme/api.git"))
    rt.store.add_rule(Rule(event="pull_request", repository="acme/api"))
    rt.store.add_rule(Rule(event="pull_request", repository="acme/api", flow_file="trusted.yml", trust_forks=True))
    functions.push("router", pull_request("mallory/api"))
    functions.push("router", pull_request("acme/api"))
    requested = [(m.event.pull_request.source_repository, m.flow_file, m.approval) for m in functions.take(RUNS)]
    assert sorted(requested) == [
        ("acme/api", ".tasuki.yml", False),
        ("acme/api", "trusted.yml", False),
        ("mallory/api", ".tasuki.yml", True),
        ("mallory/api", "trusted.yml", False),
    ]


def test_the_router_trusts_forks_of_a_repository_that_says_so(functions):
    rt = functions.rt
    rt.store.put_repository("acme/api", RepositoryConfig(clone_url="https://x.example/api.git", trust_forks=True))
    rt.store.add_rule(Rule(event="pull_request", repository="acme/api"))
    functions.push("router", pull_request("mallory/api"))
    assert [m.approval for m in functions.take(RUNS)] == [False]


def test_the_dispatcher_orders_nothing_for_a_fork_until_approved_and_then_no_credentials(functions):
    rt = functions.rt
    rt.store.put_repository(
        "acme/api", RepositoryConfig(clone_url="https://github.com/acme/api.git", token="the-repo-token")
    )
    # Given a fork's run waiting for approval
    functions.push("dispatcher", RunRequested(run_id="r1", rule_id="rule", event=pull_request(), approval=True))
    assert rt.store.get_run("r1").status == "approval" and functions.take(EXECUTOR) == []
    # When it is approved (in the run's order, as the bridge pushes it)
    functions.push("dispatcher", RunApprove(run_id="r1", by="the API"))
    # Then its plan is ordered, without the repository's credentials
    [plan] = functions.take(EXECUTOR)
    assert isinstance(plan, PlanOrder) and plan.clone_url == "https://github.com/acme/api.git"
    assert plan.credentials is None
    # while a run of the repository's own branch gets them, sealed
    own = addressed(rt, PlanOrder(run_id="r2", event=pull_request("acme/api")))
    assert sealing.unseal_json(rt.order_key, own.credentials) == {"token": "the-repo-token"}


def test_a_fork_waiting_for_approval_holds_no_place_from_later_runs(functions):
    rt = functions.rt
    rt.store.put_repository("acme/api", RepositoryConfig(clone_url="https://github.com/acme/api.git"))
    functions.push(
        "dispatcher", RunRequested(run_id="fork", rule_id="r", event=pull_request(), approval=True, concurrency=1)
    )
    functions.push("dispatcher", RunRequested(run_id="own", rule_id="r", event=pull_request("acme/api"), concurrency=1))
    assert [m.run_id for m in functions.take(EXECUTOR)] == ["own"]


@pytest.fixture
def web(memory_runtime):
    rt = memory_runtime(web_token=TOKEN)
    rt.store.create_run(RunRecord(id="r1", event=pull_request(), status="approval", message="waiting for approval"))
    rt.store.create_run(RunRecord(id="r2", event=pull_request(), status="running"))
    rt.broker.queue_declare("test.runs")
    rt.broker.queue_bind("test.runs", "tasuki.runs", routing_key="run.approve")
    return rt, function_client("web")


def test_the_api_approves_a_waiting_run_and_refuses_any_other(web):
    rt, client = web
    assert client.post("/api/runs/r1/approve").status_code == 401  # as every state-changing call
    answer = client.post("/api/runs/r1/approve", headers=AUTH)
    assert answer.status_code == 202 and answer.get_json() == {"run_id": "r1", "status": "approved"}
    assert [p.message() for p in rt.broker.take("test.runs")] == [RunApprove(run_id="r1", by="the API")]
    answer = client.post("/api/runs/r2/approve", headers=AUTH)
    assert answer.status_code == 409 and "not waiting for approval" in answer.get_json()["error"]
    assert client.post("/api/runs/none/approve", headers=AUTH).status_code == 404
    assert rt.broker.take("test.runs") == []


def test_the_run_page_shows_approve_only_while_the_run_waits(web):
    _, client = web
    client.post("/login", data={"token": TOKEN, "next": "/runs/r1"})
    assert 'action="/runs/r1/approve"' in client.get("/runs/r1").get_data(as_text=True)
    assert 'action="/runs/r2/approve"' not in client.get("/runs/r2").get_data(as_text=True)


def test_tasuki_runs_approve(functions, capsys):
    rt = functions.rt
    rt.store.create_run(RunRecord(id="r1", event=pull_request(), status="approval"))
    rt.store.create_run(RunRecord(id="r2", event=pull_request(), status="queued"))
    assert cmd_runs(rt, parser().parse_args(["runs", "approve", "r1"])) == 0
    assert "approved run r1" in capsys.readouterr().out
    assert functions.take(RUNS) == [RunApprove(run_id="r1", by="the command line")]
    assert cmd_runs(rt, parser().parse_args(["runs", "approve", "r2"])) == 1
    assert "not waiting for approval" in capsys.readouterr().err and functions.take(RUNS) == []


def test_trust_forks_is_a_pull_request_rule_s_option_said_in_its_sentence():
    rule = Rule(event="pull_request", repository="acme/api", trust_forks=True)
    assert rule.sentence().endswith("trusting pull requests from forks")
    with pytest.raises(ValueError, match="trust_forks applies to pull_request rules"):
        Rule(event="push", repository="acme/api", trust_forks=True)
