"""Why a rule did not match (pure, as data), and the story of a delivery: its steps, its one line
of outcome, its bounds; the router and the ingress telling their parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tasuki.shared import recipes, stories
from tasuki.shared.messages import Commit, PullRequest
from tasuki.shared.recipes import Rule
from tests.unit.test_recipes import pull_request, push

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rule", "event", "check", "reason"),
    [
        (Rule(repository="acme/api", enabled=False), push(), "disabled", "the rule is disabled"),
        (Rule(repository="acme/api", host="github"), push(), "host", "host bitbucket is not github"),
        (Rule(repository="acme/api", event="tag"), push(), "event", "a push is not a tag"),
        (Rule(repository="acme/web"), push(), "repository", "repository acme/api does not match acme/web"),
        (Rule(repository="acme/api", branch="main"), push("feature/x"), "ref", "branch feature/x does not match main"),
        (Rule(repository="acme/api", event="tag", tag="v*"), push("nightly", kind="tag"), "ref", "tag nightly"),
        (Rule(repository="acme/api"), push(after=""), "deleted", "the push was deleted"),
        (Rule(repository="acme/api"), push(message="docs [skip ci]"), "skip_ci", "[skip ci]"),
        (
            Rule(repository="acme/api", event="pull_request", target="main"),
            pull_request(target="develop"),
            "ref",
            "target develop does not match main",
        ),
        (
            Rule(repository="acme/api", event="pull_request"),
            pull_request(state="MERGED"),
            "closed",
            "the pull request is MERGED",
        ),
    ],
)
def test_a_rule_says_the_first_reason_it_does_not_match(rule, event, check, reason):
    why = recipes.mismatch(rule, event)
    assert why is not None and why.check == check and reason in why.reason
    assert not rule.matches(event)


def test_a_matching_rule_has_no_reason_and_the_closest_of_the_others_is_the_furthest_along():
    rules = [
        Rule(repository="acme/web"),
        Rule(repository="acme/api", branch="main"),
        Rule(repository="acme/api", enabled=False),
    ]
    weighed = recipes.weigh(rules, push("feature/x"))
    assert [why.check for _, why in weighed if why] == ["repository", "ref", "disabled"]
    assert recipes.closest(weighed)[0] is rules[1]
    assert recipes.mismatch(Rule(repository="ACME/*"), push()) is None
    assert recipes.closest(recipes.weigh([*rules[:1], Rule(repository="acme/api")], push())) == (
        rules[0],
        recipes.mismatch(rules[0], push()),
    )


def story(*steps):
    return [(name, T0 + timedelta(seconds=n), record) for n, (name, record) in enumerate(steps)]


def test_the_outcome_of_a_push_that_matched_no_rule_names_the_closest_rule_and_why():
    event = push("feature/x")
    weighed = recipes.weigh([Rule(repository="acme/web"), Rule(repository="acme/api", branch="main")], event)
    steps = story(
        ("ingress", stories.accepted("bitbucket", "repo:push", "acme/api", [event])),
        ("router:x", stories.weighed(event, weighed, {})),
    )
    assert stories.outcome(steps) == (
        "no rule matched: closest was “if push to acme/api on main then run .tasuki.yml” "
        "(branch feature/x does not match main)"
    )
    assert stories.summary("d1", steps)["replayable"]
    no_rules = story(("router:x", stories.weighed(event, [], {})))
    assert stories.outcome(no_rules) == "no rule matched: there are no rules"


def test_the_outcome_names_the_run_started_and_how_it_ended():
    event = push()
    rule = Rule(repository="acme/api")
    steps = story(
        ("router:x", stories.weighed(event, recipes.weigh([rule], event), {rule.id: "3f2a9c0d11112222"})),
        (
            "run:3f2a",
            stories.run_ended("3f2a9c0d11112222", "cancelled", "superseded by run 77aa, a newer push to main", []),
        ),
    )
    assert stories.outcome(steps) == (
        "started run 3f2a9c0d…; run 3f2a9c0d… cancelled: superseded by run 77aa, a newer push to main"
    )
    assert stories.run_ended("r", "success", "", ["skipped", "skipped"])["reason"] == (
        "the flow file's `when` skipped every job"
    )
    assert stories.run_ended("r", "failure", "build failed", ["failure"]) is None
    assert stories.run_ended("r", "running", "", ["running"]) is None


def test_refused_ignored_and_skip_ci_deliveries_say_so():
    refused = story(("ingress", stories.refused(401, "bad signature", {"X-Event-Key": "repo:push"}, "abc")))
    assert stories.outcome(refused) == "refused (401): bad signature"
    ignored = story(("ingress", stories.answered("ignored", "github", "issues", "acme/api", "not acted on")))
    assert stories.outcome(ignored) == "ignored: not acted on"
    event = push(message="wip [skip ci]")
    skipped = story(("router:x", stories.weighed(event, recipes.weigh([Rule(repository="acme/api")], event), {})))
    assert stories.outcome(skipped) == "no run: the head commit says [skip ci]"


def test_the_same_refusal_within_a_minute_is_one_story():
    first = stories.refused_id(401, "bad signature", T0)
    assert stories.refused_id(401, "bad signature", T0 + timedelta(seconds=59)) == first
    assert stories.refused_id(401, "bad signature", T0 + timedelta(minutes=1)) != first
    assert stories.refused_id(404, "bad signature", T0) != first != stories.refused_id(401, "other", T0)
    assert first.startswith("refused-")


def test_a_story_step_is_bounded_whatever_the_sender_sent():
    # Given a delivery of many events, each carrying a large payload and a long message
    events = [
        push(f"b{n}", message="m" * 10_000, commits=[Commit(id="c", message="x" * 5000)]).model_copy(
            update={"payload": {"blob": "p" * 20_000}}
        )
        for n in range(100)
    ]
    record = stories.accepted("bitbucket", "repo:push", "acme/api", events)
    assert len(str(record)) <= stories.STEP_BYTES * 1.1
    assert record.get("payload_dropped") and record["replay"]
    refused = stories.refused(400, "r" * 100_000, {"X-GitHub-Event": "e" * 10_000}, "i" * 10_000)
    assert len(refused["reason"]) <= stories.REASON_CHARS and len(refused["claimed_id"]) <= 200
    many = [Rule(repository=f"acme/r{n}") for n in range(1000)]
    told = stories.weighed(push(), recipes.weigh(many, push()), {})
    assert told["rules_weighed"] == 1000 and len(told["rules"]) <= stories.MAX_RULES + 1


def test_the_router_tells_every_rule_weighed_and_the_runs_it_requested(functions):
    store = functions.rt.store
    store.add_rule(Rule(repository="acme/api", branch="main"))
    store.add_rule(Rule(repository="acme/web"))
    answer = functions.push("router", push("feature/x", delivery="bitbucket:d9"))
    assert answer["runs"] == []
    steps = store.story("bitbucket:d9")
    assert stories.outcome(steps).startswith("no rule matched: closest was “if push to acme/api on main")
    functions.push("router", push("main", delivery="bitbucket:d10"))
    (run_id,) = stories.runs_of(store.story("bitbucket:d10"))
    assert [m.run_id for m in functions.take("tasuki.dispatcher")] == [run_id]


def test_a_pull_request_story_names_its_number():
    event = pull_request().model_copy(update={"pull_request": PullRequest(number=7, state="open")})
    assert stories.event_summary(event)["pull_request"] == 7
