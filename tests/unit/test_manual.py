"""Manual runs with parameters and re-runs of failed jobs (issue 16), without a network: the
flow file's params, rules for event manual, which jobs a re-run keeps, what the dispatcher
records from a manual run's plan, the variables a job sees, and the web page and API."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tasuki.local.executor import convert
from tasuki.shared import flowfile, manual, reruns, scheduler, topics
from tasuki.shared.errors import ActionError, FlowFileError, ParamError
from tasuki.shared.flowfile import Job
from tasuki.shared.flowfile.params import Param, given, resolve
from tasuki.shared.messages import Event, Ref, Repository, RunPlanned, RunRequested
from tasuki.shared.recipes import Rule
from tasuki.shared.runtime import runtime
from tasuki.shared.scheduler import JobState
from tasuki.shared.store import JobRecord, RunRecord
from tasuki.shared.web import actions
from tests.unit.conftest import function_client

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FLOW = """\
params:
  target: {default: staging, choices: [staging, production]}
  dry_run: {type: bool, default: true}
  retries: {type: number, default: 3}
  note: {description: why}
jobs:
  deploy: {image: alpine, run: ci/deploy, when: {event: manual}}
  test: {image: alpine, run: ci/test, when: {event: push}}
"""


# --- the flow file's params --------------------------------------------------------------------


def test_params_are_typed_with_defaults():
    flow = flowfile.parse(FLOW)
    assert {n: (p.type, p.default) for n, p in flow.params.items()} == {
        "target": ("choice", "staging"),
        "dry_run": ("bool", "true"),
        "retries": ("number", "3"),
        "note": ("string", None),
    }
    assert resolve(flow.params, {"target": "production", "dry_run": "false", "note": "hotfix"}) == {
        "target": "production",
        "dry_run": "false",
        "retries": "3",
        "note": "hotfix",
    }


@pytest.mark.parametrize(
    ("declaration", "error"),
    [
        ("  target: {default: prod, choices: [staging, production]}", r":2: params\.target: expected one of staging"),
        ("  dry_run: {type: bool, default: maybe}", r":2: params\.dry_run: expected true or false, found 'maybe'"),
        ("  n: {type: number, default: many}", r":2: params\.n: expected a number"),
        ("  x: {choice: [a]}", r":2: params\.x\.choice: unknown key 'choice'; expected one of: type, default"),
        ("  x: {type: choice}", r":2: params\.x: a choice parameter needs choices"),
        ("  x: {type: bool, choices: [a]}", r":2: params\.x: choices apply to choice parameters; this one is a bool"),
        ("  9lives: {}", r":2: params\.9lives: parameter names are a letter"),
        ("  target: {}\n  TARGET: {}", r":3: params\.TARGET: parameters 'target' and 'TARGET' would be"),
    ],
)
def test_a_wrong_declaration_names_the_file_and_line(declaration, error):
    text = f"params:\n{declaration}\njobs:\n  a: {{image: alpine, run: ci/a}}\n"
    with pytest.raises(FlowFileError, match=r"^\.tasuki\.yml" + error):
        flowfile.parse(text)


def test_the_number_of_params_is_bounded():
    many = "".join(f"  p{i}: {{}}\n" for i in range(21))
    with pytest.raises(FlowFileError, match="at most 20 parameters"):
        flowfile.parse(f"params:\n{many}jobs:\n  a: {{image: alpine, run: ci/a}}\n")


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"target": "prod"}, "parameter 'target': expected one of staging, production, found 'prod'"),
        ({"dry_run": "maybe", "note": "x"}, "parameter 'dry_run': expected true or false"),
        ({"retries": "nan", "note": "x"}, "parameter 'retries': expected a number"),
        ({"color": "red", "note": "x"}, "unknown parameter 'color'; the flow file declares: dry_run, note"),
        ({}, "parameter 'note' is required"),
        ({"note": "x" * 1001}, "parameter 'note': expected at most 1000 characters"),
    ],
)
def test_values_outside_their_type_are_refused_by_name(values, error):
    with pytest.raises(ParamError, match=error):
        resolve(flowfile.parse(FLOW).params, values)


def test_values_a_sender_gives_are_bounded_text():
    assert given({"dry_run": False, "retries": 2, "note": "ok"}) == {"dry_run": "false", "retries": "2", "note": "ok"}
    with pytest.raises(ParamError, match="parameter names are"):
        given({"$(rm -rf)": "x"})
    with pytest.raises(ParamError, match="at most 20 parameters"):
        given({f"p{i}": "x" for i in range(21)})
    with pytest.raises(ParamError, match="'nested': expected text"):
        given({"nested": {"a": 1}})
    with pytest.raises(ParamError, match="no NUL"):
        given({"x": "a\x00b"})


# --- rules for event manual ----------------------------------------------------------------------


def _start(name="main", kind="branch", repository="acme/api") -> Event:
    return manual.event(repository, Ref(kind=kind, name=name), {}, "emma")


def test_a_manual_rule_reads_as_a_sentence():
    assert (
        Rule(event="manual", repository="acme/api", jobs=["deploy"]).sentence()
        == "if manual on acme/api then run .tasuki.yml (jobs deploy)"
    )
    assert Rule(event="manual", repository="acme/*", branch="main").sentence() == (
        "if manual on acme/* on main then run .tasuki.yml"
    )
    with pytest.raises(ValueError, match="not to manual runs"):
        Rule(event="manual", repository="acme/api", cancel_previous=True)
    with pytest.raises(ValueError, match="target applies to rules for event pull_request"):
        Rule(event="manual", repository="acme/api", target="main")


def test_only_rules_decide_what_may_be_started():
    on_main = Rule(event="manual", repository="acme/api", branch="main")
    tags = Rule(event="manual", repository="acme/api", tag="v*")
    push = Rule(event="push", repository="acme/api")
    assert on_main.matches(_start("main")) and not on_main.matches(_start("feature"))
    assert not on_main.matches(_start("v1", "tag"))  # a rule naming only branches starts no tag
    assert tags.matches(_start("v1", "tag")) and not tags.matches(_start("main"))
    assert not push.matches(_start("main"))  # a push rule is not a manual one
    assert not Rule(event="manual", repository="acme/api", enabled=False).matches(_start())
    with pytest.raises(ActionError, match="no rule lets anyone start runs of acme/web") as refused:
        manual.requests([on_main, tags, push], _start(repository="acme/web"))
    assert refused.value.http_status == 403
    [request] = manual.requests([on_main, tags, push], _start())
    assert request.rule_id == on_main.id and request.event.kind == "manual"


@pytest.mark.parametrize("name", ["-x", "a..b", "main.lock", "a b", "", "x" * 201, "feat/", "a@{1}"])
def test_a_ref_to_start_is_a_ref_name(name):
    with pytest.raises(ActionError):
        manual.ref(branch=name)


def test_exactly_one_of_branch_and_tag():
    with pytest.raises(ActionError, match="one of them"):
        manual.ref(branch="main", tag="v1")
    assert manual.ref(tag="v1.2") == Ref(kind="tag", name="v1.2")


# --- re-running failed jobs ---------------------------------------------------------------------


def _diamond(**statuses: str) -> dict[str, JobState]:
    needs = {"build": (), "unit": ("build",), "lint": ("build",), "deploy": ("unit", "lint")}
    return {name: JobState(statuses.get(name, "success"), needs[name]) for name in needs}


def test_a_rerun_of_failed_jobs_on_a_diamond_runs_the_failed_job_and_its_dependants():
    jobs = _diamond(lint="failure", deploy="skipped")
    assert reruns.again(jobs) == ["deploy", "lint"]
    assert reruns.kept(jobs) == ["build", "unit"]
    # cancelled and errored jobs run again too, with everything after them
    assert reruns.again(_diamond(build="cancelled", unit="skipped", lint="skipped", deploy="skipped")) == [
        "build",
        "deploy",
        "lint",
        "unit",
    ]
    assert reruns.kept(_diamond(unit="error", deploy="skipped")) == ["build", "lint"]
    assert reruns.again(_diamond()) == []


def _run(**update) -> RunRecord:
    event = Event(
        host="github",
        event="manual",
        kind="manual",
        delivery_id="manual-1",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="branch", name="main"),
        actor="emma",
        params={"target": "production"},
    )
    return RunRecord(**{"id": "r2", "event": event, "status": "queued", "admitted": True, **update})


def test_the_dispatcher_records_a_manual_plan_and_keeps_what_a_rerun_keeps():
    # Given a re-run of failed jobs that keeps build and unit of a diamond
    run = _run(rerun_of="r1", kept=["build", "unit"])
    jobs = {
        name: Job(name=name, image="alpine", run=f"ci/{name}", needs=list(needs))
        for name, needs in {"build": [], "unit": ["build"], "lint": ["build"], "deploy": ["unit", "lint"]}.items()
    }
    planned = RunPlanned(
        run_id="r2",
        jobs=jobs,
        commit="c" * 40,
        params={"target": "production", "dry_run": "true"},
        declared={"target": Param(choices=["staging", "production"], type="choice", default="staging")},
    )
    # When the plan arrives
    decision = scheduler.decide(run, {}, planned, NOW)
    # Then the run builds the resolved commit with the checked parameters,
    assert decision.run is not None and decision.run.commit == "c" * 40
    assert decision.run.event.params == {"target": "production", "dry_run": "true"}
    assert set(decision.run.declared_params or {}) == {"target"}
    # the kept jobs succeeded without being ordered, and only lint is ordered (deploy waits for it)
    status = {j.name: j.status for j in decision.jobs}
    assert status == {"build": "success", "unit": "success", "lint": "queued", "deploy": "pending"}
    orders = [m for m in decision.publish if m.TYPE == "job.order"]
    assert [o.job.name for o in orders] == ["lint"] and orders[0].event.after == "c" * 40


def test_a_rerun_request_carries_what_it_keeps():
    msg = RunRequested(run_id="r3", rule_id="x", event=_run().event, rerun_of="r1", keep=["build"])
    decision = scheduler.decide(None, {}, msg, NOW)
    assert decision.run is not None and (decision.run.rerun_of, decision.run.kept) == ("r1", ["build"])


# --- what a job sees ----------------------------------------------------------------------------


def test_parameters_reach_jobs_as_variables_a_job_cannot_override():
    job = Job(name="deploy", image="alpine", run="ci/deploy", env={"TASUKI_PARAM_TARGET": "mine"})
    ctx = convert.Context(event="manual", params=(("dry_run", "true"), ("target", "production")))
    env = convert.environment(job, ctx)
    assert env["TASUKI_PARAM_TARGET"] == "production" and env["TASUKI_PARAM_DRY_RUN"] == "true"
    assert env["TASUKI_EVENT"] == "manual"


def test_when_event_manual_selects_jobs():
    run, skipped = flowfile.select(flowfile.parse(FLOW), event="manual", branch="main")
    assert list(run) == ["deploy"] and skipped == ["test"]


# --- the web page and the API -------------------------------------------------------------------

TOKEN = "correct horse battery staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def web(memory_runtime):
    rt = memory_runtime(web_token=TOKEN)
    actions.register_repository(rt, "acme/api", "https://git.example/acme/api.git")
    return function_client("web")


def _requested(rt) -> list[RunRequested]:
    return [m.message() for m in rt.broker.take(topics.subscription("dispatcher").queue)]


def test_the_api_starts_a_manual_run_only_where_a_rule_allows_it(web):
    rt = runtime()
    refused = web.post("/api/runs", json={"repository": "acme/api", "branch": "main"}, headers=AUTH)
    assert refused.status_code == 403 and "no rule lets anyone start runs of acme/api" in refused.get_json()["error"]
    actions.create_rule(rt, {"event": "manual", "repository": "acme/api", "branch": "main"})
    body = {"repository": "acme/api", "branch": "main", "params": {"target": "production", "dry_run": False}}
    answer = web.post("/api/runs", json=body, headers=AUTH)
    assert answer.status_code == 202
    [request] = _requested(rt)
    assert answer.get_json() == {"runs": [request.run_id]}
    assert request.event.kind == "manual" and request.event.ref == Ref(kind="branch", name="main")
    assert request.event.params == {"target": "production", "dry_run": "false"} and request.event.after == ""
    assert request.event.actor == "the API (TASUKI_WEB_TOKEN)"
    # a branch the rule does not name, an unknown repository, a bad body
    assert web.post("/api/runs", json={"repository": "acme/api", "branch": "dev"}, headers=AUTH).status_code == 403
    assert web.post("/api/runs", json={"repository": "acme/nope", "branch": "main"}, headers=AUTH).status_code == 404
    bad = web.post("/api/runs", json={"repository": "acme/api", "branch": "main", "params": [1]}, headers=AUTH)
    assert bad.status_code == 400


def test_a_parameter_the_known_declaration_refuses_is_a_422_naming_it(web):
    rt = runtime()
    actions.create_rule(rt, {"event": "manual", "repository": "acme/api"})
    # Given a planned run of the repository, whose flow file declared its parameters
    declared = flowfile.parse(FLOW).params
    rt.store.create_run(_run(status="success", declared_params=declared).model_copy(update={"id": "r1"}))
    body = {"repository": "acme/api", "branch": "main", "params": {"target": "prod", "note": "x"}}
    answer = web.post("/api/runs", json=body, headers=AUTH)
    assert answer.status_code == 422
    assert answer.get_json()["error"] == "parameter 'target': expected one of staging, production, found 'prod'"
    assert _requested(rt) == []  # nothing was started
    missing = web.post("/api/runs", json={"repository": "acme/api", "branch": "main"}, headers=AUTH)
    assert missing.status_code == 422 and "'note' is required" in missing.get_json()["error"]
    # the Run form offers the declared parameters, typed
    web.post("/login", data={"token": TOKEN})
    page = web.get("/repositories").get_data(as_text=True)
    assert 'href="/repositories/acme/api/run"' in page
    form = web.get("/repositories/acme/api/run").get_data(as_text=True)
    assert 'name="param.target"' in form and '<option value="production" >production</option>' in form
    assert 'name="param.note"' in form and "required" in form


def test_rerun_failed_keeps_what_succeeded(web):
    rt = runtime()
    rt.store.create_run(_run(status="failure").model_copy(update={"id": "r1"}))
    for name, status, needs in [
        ("build", "success", []),
        ("unit", "success", ["build"]),
        ("lint", "failure", ["build"]),
        ("deploy", "skipped", ["unit", "lint"]),
    ]:
        rt.store.put_job(JobRecord(run_id="r1", name=name, status=status, needs=needs))
    web.post("/login", data={"token": TOKEN})
    page = web.get("/runs/r1").get_data(as_text=True)
    assert 'action="/runs/r1/rerun-failed"' in page and "runs deploy, lint" in page
    answer = web.post("/api/runs/r1/rerun?failed=1", headers=AUTH)
    assert answer.status_code == 202 and answer.get_json()["failed_only"] is True
    [request] = _requested(rt)
    assert (request.rerun_of, request.keep, request.event) == ("r1", ["build", "unit"], rt.store.get_run("r1").event)
    assert request.kept_from == {}  # both ran in r1 itself
    # a run whose jobs all succeeded, or one still running, has no failed job to re-run
    rt.store.create_run(_run(status="running").model_copy(update={"id": "r4"}))
    assert web.post("/api/runs/r4/rerun?failed=1", headers=AUTH).status_code == 409


def test_a_rerun_of_a_rerun_takes_a_kept_jobs_artifacts_from_the_run_where_it_ran(web):
    # Given r1 (build passed, lint failed), r2 re-running it (build kept from r1, lint failed again,
    # unit passed this time)
    rt = runtime()
    rt.store.create_run(_run(status="failure").model_copy(update={"id": "r1"}))
    rt.store.create_run(_run(status="failure", rerun_of="r1", kept=["build"]).model_copy(update={"id": "r2"}))
    for name, status, needs in [
        ("build", "success", []),
        ("unit", "success", ["build"]),
        ("lint", "failure", ["build"]),
        ("deploy", "skipped", ["unit", "lint"]),
    ]:
        rt.store.put_job(JobRecord(run_id="r2", name=name, status=status, needs=needs))
    # When r2's failed jobs are re-run
    assert web.post("/api/runs/r2/rerun?failed=1", headers=AUTH).status_code == 202
    [request] = _requested(rt)
    assert (request.rerun_of, request.keep, request.kept_from) == ("r2", ["build", "unit"], {"build": "r1"})
    # Then the new run orders lint and deploy with build's artifacts from r1 and unit's from r2
    run = scheduler.decide(None, {}, request, NOW).run
    assert run is not None and run.kept_from == {"build": "r1"}
    jobs = {
        name: JobRecord(
            run_id=run.id, name=name, attempt=1, spec=Job(name=name, image="alpine", run=f"ci/{name}", needs=needs)
        )
        for name, needs in {"lint": ["build"], "deploy": ["unit", "lint"]}.items()
    }
    assert scheduler.job_order(run, jobs["lint"]).artifact_runs == {"build": "r1"}
    assert scheduler.job_order(run, jobs["deploy"]).artifact_runs == {"unit": "r2"}
    # and however many re-runs back: a re-run of that run still finds build in r1
    again = run.model_copy(update={"id": "r3"})
    assert scheduler.ran_in(again, "build") == "r1" and scheduler.ran_in(again, "unit") == "r2"
