"""The router handler with the in-memory broker and a real store (SQLite): rules come from the
store, the same event twice requests the same run, [skip ci] requests none, run ids are ordering
keys."""

from __future__ import annotations

from tasuki.shared.messages import Commit, Event, Ref, Repository, RunRequested
from tasuki.shared.recipes import Rule

DISPATCHER = "tasuki.dispatcher"


def push(message: str = "change", branch: str = "main") -> Event:
    return Event(
        host="bitbucket",
        event="repo.push",
        kind="push",
        delivery_id="bitbucket:d1",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="branch", name=branch),
        before="c0",
        after="c1",
        commits=[Commit(id="c1", message=message)],
    )


def test_an_event_requests_one_run_per_matching_rule_with_its_options(functions):
    store = functions.rt.store
    main = Rule(repository="acme/api", branch="main", cancel_previous=True, concurrency=2)
    tests_only = Rule(repository="acme/*", jobs=["test"], flow_file="ci/flow.yml")
    store.add_rule(main), store.add_rule(tests_only), store.add_rule(Rule(repository="acme/web"))
    store.add_rule(Rule(repository="acme/api", branch="develop"))

    answer = functions.push("router", push())

    requested = functions.take(DISPATCHER)  # take() checks the ordering key is the run id
    assert sorted(answer["runs"]) == sorted(r.run_id for r in requested) and len(requested) == 2
    by_rule = {r.rule_id: r for r in requested}
    assert (by_rule[main.id].cancel_previous, by_rule[main.id].concurrency, by_rule[main.id].jobs) == (True, 2, [])
    assert (by_rule[tests_only.id].flow_file, by_rule[tests_only.id].jobs) == ("ci/flow.yml", ["test"])
    assert all(isinstance(r, RunRequested) and r.event == push() for r in requested)


def test_the_same_event_twice_requests_the_same_run(functions):
    functions.rt.store.add_rule(Rule(repository="acme/api"))
    first, second = functions.push("router", push()), functions.push("router", push(), attempt=2)
    assert first["runs"] == second["runs"] and len(first["runs"]) == 1
    assert len({m.run_id for m in functions.take(DISPATCHER)}) == 1


def test_skip_ci_requests_nothing_and_a_disabled_rule_nothing_either(functions):
    store = functions.rt.store
    rule = Rule(repository="acme/api")
    store.add_rule(rule)
    assert functions.push("router", push("docs [skip ci]")) == {"runs": [], "skipped_ci": True}
    store.update_rule(rule.model_copy(update={"enabled": False}))
    assert functions.push("router", push()) == {"runs": [], "skipped_ci": False}
    assert functions.take(DISPATCHER) == []
