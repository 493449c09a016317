"""The schedule clock: ticks at controlled times start exactly the due runs, once, also with two
clock processes ticking at once and after a clock outage; a scheduled run builds the head its
planner resolved. The dispatcher's tick with the in-memory broker and SQLite, a fake clock (the
`now` each tick is given)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from tasuki.functions import dispatcher
from tasuki.shared import stories
from tasuki.shared.flowfile import Job
from tasuki.shared.messages import JobOrder, PlanOrder, RunPlanned, RunRequested
from tasuki.shared.recipes import Rule
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.runtime import Runtime
from tasuki.shared.store import new_store

DISPATCHER, EXECUTOR = "tasuki.dispatcher", "tasuki.executor.default"
NIGHTLY = Rule(event="schedule", schedule="daily at 02:00", repository="acme/api", branch="main", jobs=["nightly"])
HALF_PAST = Rule(event="schedule", schedule="hourly at :30", repository="acme/api", branch="develop")
OFF = Rule(event="schedule", schedule="hourly", repository="acme/api", branch="main", enabled=False)
PUSHES = Rule(repository="acme/api")


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 12, 1, hour, minute, second, tzinfo=UTC)


def requested(functions) -> list[RunRequested]:
    return [m for m in functions.take(DISPATCHER) if isinstance(m, RunRequested)]


def with_rules(functions) -> None:
    functions.rt.store.put_repository("acme/api", RepositoryConfig(clone_url="https://git.example/acme/api.git"))
    for rule in (NIGHTLY, HALF_PAST, OFF, PUSHES):
        functions.rt.store.add_rule(rule)


def test_ticks_at_controlled_times_start_exactly_the_due_runs_once(functions):
    with_rules(functions)
    rt = functions.rt
    # Given a clock ticking every few seconds around 02:00
    for now in (at(1, 59, 1), at(1, 59, 30), at(1, 59, 59)):
        assert dispatcher.tick(rt, now)["scheduled"] == []
    started = [dispatcher.tick(rt, now)["scheduled"] for now in (at(2, 0, 2), at(2, 0, 20), at(2, 0, 59))]
    # Then the nightly rule fired once, at 02:00, and nothing else did
    assert [len(s) for s in started] == [1, 0, 0]
    (run,) = requested(functions)
    assert (run.rule_id, run.event.kind, run.event.ref.name, run.event.after, run.jobs) == (
        NIGHTLY.id,
        "schedule",
        "main",
        "",
        ["nightly"],
    )
    # and the firing is a delivery with its story
    steps = rt.store.story(run.event.delivery_id)
    assert stories.runs_of(steps) == [run.run_id] and stories.outcome(steps).startswith("started run")
    # When 02:30 comes: the half-past rule, once
    assert len(dispatcher.tick(rt, at(2, 30, 1))["scheduled"]) == 1
    assert [r.rule_id for r in requested(functions)] == [HALF_PAST.id]


def test_two_clock_processes_ticking_at_once_start_each_run_once(functions):
    with_rules(functions)
    first = functions.rt
    dispatcher.tick(first, at(3, 0, 1))
    functions.take(DISPATCHER)
    # Given a second clock process: its own store connection, the same store and broker
    second = Runtime(first.settings, broker=first.broker)
    second.__dict__["store"] = new_store(first.settings)
    try:
        results: list[list[str]] = []
        barrier = threading.Barrier(2)

        def tick(rt: Runtime, second: int) -> None:
            barrier.wait()
            results.append(dispatcher.tick(rt, at(3, 30, second))["scheduled"])

        threads = [threading.Thread(target=tick, args=(rt, n)) for n, rt in enumerate((first, second))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Then exactly one of them started the half-past run
        assert sorted(len(r) for r in results) == [0, 1]
        assert [r.rule_id for r in requested(functions)] == [HALF_PAST.id]
    finally:
        second.store.close()


def test_a_clock_outage_is_caught_up_once_not_once_per_missed_firing(functions):
    with_rules(functions)
    rt = functions.rt
    dispatcher.tick(rt, at(1, 0, 1))
    functions.take(DISPATCHER)
    # Given the clock down from 01:00 to 06:45 (02:00 nightly, 02:30 ... 06:30 half past missed)
    started = dispatcher.tick(rt, at(6, 45, 3))["scheduled"]
    # Then each due rule starts one run, for its latest firing
    runs = requested(functions)
    assert len(started) == 2 and sorted(r.rule_id for r in runs) == sorted([NIGHTLY.id, HALF_PAST.id])
    by_rule = {r.rule_id: r for r in runs}
    assert by_rule[HALF_PAST.id].event.delivery_id.endswith("20261201T0630Z")
    assert by_rule[NIGHTLY.id].event.delivery_id.endswith("20261201T0200Z")
    # and the next ticks start nothing more
    assert dispatcher.tick(rt, at(6, 45, 30))["scheduled"] == []
    assert dispatcher.tick(rt, at(6, 46, 0))["scheduled"] == []


def test_a_scheduled_run_builds_the_head_its_planner_resolved(functions):
    with_rules(functions)
    rt = functions.rt
    dispatcher.tick(rt, at(2, 0, 1))
    (request,) = requested(functions)
    # When the dispatcher takes the request: the plan order names the branch and no commit
    functions.push("dispatcher", request)
    (plan,) = [m for m in functions.take(EXECUTOR) if isinstance(m, PlanOrder)]
    assert (plan.event.ref.name, plan.event.after) == ("main", "")
    # and the executor answers with the head it resolved (git ls-remote) and the plan
    head = "ab" * 20
    functions.push(
        "dispatcher",
        RunPlanned(
            run_id=request.run_id, jobs={"nightly": Job(name="nightly", image="alpine", run="ci/n")}, commit=head
        ),
    )
    # Then the run builds that commit, and so does every job it orders
    assert rt.store.get_run(request.run_id).commit == head
    (order,) = [m for m in functions.take(EXECUTOR) if isinstance(m, JobOrder)]
    assert order.event.after == head
