"""Deliveries through the functions: the ingress tells what it accepted or why it refused, the
API and page list and show the story, a delivery is replayed, badges answer as allowed."""

from __future__ import annotations

from tasuki.shared import stories, topics
from tasuki.shared.codec import decode
from tasuki.shared.messages import Event, Ref, Repository
from tasuki.shared.recipes import Rule
from tasuki.shared.store import RunRecord
from tests.unit.conftest import function_client
from tests.unit.test_ingress import SIGNED_REPOSITORY, first_push, start

TOKEN = "correct horse battery staple"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_the_ingress_tells_accepted_and_refused_deliveries_and_a_replay_makes_new_runs(memory_runtime, tmp_path):
    ingress = start(memory_runtime, tmp_path, web_token=TOKEN)
    from tasuki.shared.runtime import runtime

    rt = runtime()
    body, head = first_push(delivery="req-7")
    assert ingress.post(body, head).status_code == 202
    assert ingress.post(body, head).status_code == 200  # a duplicate
    assert ingress.post(body, first_push(secret="wrong", delivery="req-8")[1]).status_code == 401
    assert ingress.post(body, first_push(secret="wrong", delivery="req-9")[1]).status_code == 401
    assert ingress.post(b"x" * (1024 * 1024 + 1), head).status_code == 413
    web = function_client("web")
    listed = web.get("/api/deliveries", headers=BEARER).get_json()["deliveries"]
    refusals = sorted(d["outcome"][:13] for d in listed if d["id"].startswith("refused-"))
    assert refusals[0] == "refused (401)" and refusals[-1] == "refused (413)"
    accepted = next(d for d in listed if d["id"] == "bitbucket:req-7")
    assert accepted["outcome"] == "accepted 1 event; not routed yet" and accepted["replayable"]
    assert accepted["repository"] == SIGNED_REPOSITORY
    story = web.get("/api/deliveries/bitbucket:req-7", headers=BEARER).get_json()
    assert [s["step"] for s in story["steps"]] == ["ingress", "duplicate"]
    assert "replay" not in story["steps"][0]  # the events kept for replay are not shown whole
    ingress.published()  # (the first publish, taken)
    # When it is replayed: the same events under a new delivery id
    answer = web.post("/api/deliveries/bitbucket:req-7/replay", headers=BEARER)
    assert answer.status_code == 202
    new_id = answer.get_json()["delivery"]
    (replayed,) = [decode(p.body, Event) for p in ingress.broker.take(topics.subscription("router").queue)]
    assert replayed.delivery_id == new_id != "bitbucket:req-7" and replayed.after
    assert rt.store.story(new_id)[0][2]["replay_of"] == "bitbucket:req-7"
    # a refused delivery made no events: nothing to replay
    refused_id = next(d["id"] for d in listed if d["outcome"].startswith("refused (401)"))
    assert web.post(f"/api/deliveries/{refused_id}/replay", headers=BEARER).status_code == 409
    assert web.get("/api/deliveries/nope", headers=BEARER).status_code == 404
    page = web.get(f"/deliveries/{refused_id}", headers=BEARER).get_data(as_text=True)
    assert "refused (401)" in page


def run_of(branch: str, status: str, run_id: str) -> RunRecord:
    event = Event(
        host="github",
        event="push",
        kind="push",
        delivery_id=f"d-{run_id}",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="branch", name=branch),
        after="c" * 40,
    )
    return RunRecord(id=run_id, event=event, status=status)


def test_a_badge_is_the_latest_run_of_the_branch_and_public_only_when_allowed(memory_runtime):
    from tasuki.shared.registry import RepositoryConfig

    rt = memory_runtime(web_token=TOKEN)
    rt.store.put_repository("acme/api", RepositoryConfig(clone_url="https://git.example/acme/api.git"))
    rt.store.create_run(run_of("main", "failure", "r1"))
    rt.store.create_run(run_of("develop", "success", "r2"))
    web = function_client("web")
    assert web.get("/badge/acme/api.svg?branch=main").status_code == 303  # sign in first
    badge = web.get("/badge/acme/api.svg?branch=main", headers=BEARER)
    assert badge.mimetype == "image/svg+xml" and ">failure<" in badge.get_data(as_text=True)
    assert ">success<" in web.get("/badge/acme/api.svg?branch=develop", headers=BEARER).get_data(as_text=True)
    assert ">unknown<" in web.get("/badge/acme/nothing.svg", headers=BEARER).get_data(as_text=True)
    assert ">unknown<" in web.get("/badge/acme/api.svg?branch=<script>", headers=BEARER).get_data(as_text=True)


def test_public_badges_answer_without_signing_in_and_nothing_else_does(memory_runtime):
    memory_runtime(web_token=TOKEN, public_badges=True)
    web = function_client("web")
    assert web.get("/badge/acme/api.svg").status_code == 200
    assert web.get("/api/deliveries").status_code == 401 and web.get("/deliveries").status_code == 303


def test_a_schedule_rule_is_made_through_the_api_and_reads_as_a_sentence(memory_runtime):
    memory_runtime(web_token=TOKEN)
    web = function_client("web")
    made = web.post(
        "/api/rules",
        json={"event": "schedule", "schedule": "daily at 02:00", "repository": "acme/api", "branch": "main"},
        headers=BEARER,
    )
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["sentence"] == "every day at 02:00 UTC on acme/api main, run .tasuki.yml"
    wrong = web.post(
        "/api/rules", json={"event": "schedule", "schedule": "sometimes", "repository": "acme/api"}, headers=BEARER
    )
    assert wrong.status_code == 400 and "not a schedule" in wrong.get_json()["error"]


def test_the_dispatcher_tells_a_run_cancelled_by_a_newer_push_in_its_delivery(functions):
    store = functions.rt.store
    store.add_rule(Rule(repository="acme/api", branch="main"))
    from tasuki.shared.messages import RunCancel, RunRequested

    event = run_of("main", "queued", "x").event
    functions.push("dispatcher", RunRequested(run_id="old", rule_id="r", event=event))
    functions.push("dispatcher", RunCancel(run_id="old", reason="superseded by run new1, a newer push to main"))
    assert stories.outcome(store.story(event.delivery_id)) == (
        "run old… cancelled: superseded by run new1, a newer push to main"
    )
