"""The store contract: every `Store` method, on each backend (a SQLite file, a PostgreSQL
database of its own), through TASUKI_STORE_URL as a process would open it.

tests/unit/test_store_sqlite.py runs this module again on SQLite alone, in the fast tier. A new
store method gets its test here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from tasuki.local.cli import main as cli
from tasuki.shared import recipes, sealing
from tasuki.shared.errors import SealError, StoreError
from tasuki.shared.messages import Event, Ref, Repository, utcnow
from tasuki.shared.recipes import Rule
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.settings import Settings
from tasuki.shared.store import LATEST, AttemptRecord, JobRecord, OutboxEntry, RunRecord, Store, new_store, sealed
from tasuki.shared.store.records import stamp
from tasuki.shared.store.sql import NOTE_CHARS
from tasuki.shared.store.sqlite import SQLiteStore
from tests.postgres import PASSWORD

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(run_id: str, minute: int = 0, repository: str = "acme/api", concurrency: int | None = 1, **fields) -> RunRecord:
    event = Event(
        host="bitbucket",
        event="repo.push",
        kind="push",
        delivery_id=run_id,
        repository=Repository(full_name=repository),
        ref=Ref(kind="branch", name="main"),
        after="c",
    )
    return RunRecord(
        id=run_id, event=event, created_at=T0 + timedelta(minutes=minute), concurrency=concurrency, **fields
    )


def finished(run_id: str, at: datetime, status: str = "success", **fields) -> RunRecord:
    return run(run_id, status=status, started_at=at - timedelta(minutes=1), finished_at=at, **fields)


@pytest.fixture
def make_store(backend_url, tmp_path) -> Iterator[Callable[..., Store]]:
    """Stores at this test's backend (`schema`: migrate first use only that far), closed after."""
    made: list[Store] = []

    def make(schema: int = LATEST) -> Store:
        store = new_store(Settings(store_url=backend_url, data_dir=tmp_path / "data"), schema=schema)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store) -> Store:
    return make_store()


# --- deliveries ---------------------------------------------------------------------------------


def test_a_delivery_key_is_new_once(store):
    assert not store.seen_delivery("github:1")
    assert store.remember_delivery("github:1")
    assert not store.remember_delivery("github:1")
    assert store.seen_delivery("github:1") and not store.seen_delivery("github:2")


def test_a_delivery_s_story_is_told_in_steps_listed_newest_first_and_pruned(store):
    # Given two deliveries told in steps (a step told again replaces its record)
    store.tell("github:1", "ingress", {"kind": "ingress", "status": "accepted"}, at=T0)
    store.tell("github:1", "router:a", {"kind": "router", "rules": [], "note": "ü"}, at=T0 + timedelta(seconds=1))
    store.tell("github:1", "router:a", {"kind": "router", "rules": [], "note": "again"}, at=T0 + timedelta(seconds=2))
    store.tell("github:2", "ingress", {"kind": "ingress", "status": "refused"}, at=T0 + timedelta(minutes=1))
    steps = store.story("github:1")
    assert [(name, record.get("note")) for name, _, record in steps] == [("ingress", None), ("router:a", "again")]
    assert steps[0][1] == T0
    assert [(d, len(s)) for d, s in store.stories()] == [("github:2", 1), ("github:1", 2)]
    assert [d for d, _ in store.stories(limit=1)] == ["github:2"]
    assert [d for d, _ in store.stories(before=(T0 + timedelta(minutes=1), "github:2"))] == ["github:1"]
    assert store.story("missing") == []
    # When retention prunes the deliveries seen before the second
    store.prune(runs_before=None, deliveries_before=T0 + timedelta(seconds=30))
    assert store.story("github:1") == [] and len(store.story("github:2")) == 1


def test_each_minute_of_the_schedule_clock_is_claimed_once(make_store):
    first, second = make_store(), make_store()
    assert first.claim_minutes("schedules", T0 + timedelta(seconds=5)) == (T0 - timedelta(minutes=1), T0)
    assert second.claim_minutes("schedules", T0 + timedelta(seconds=6)) is None
    later = T0 + timedelta(hours=3, seconds=1)
    assert second.claim_minutes("schedules", later) == (T0, T0 + timedelta(hours=3))
    first.unclaim_minutes("schedules", (T0, T0 + timedelta(hours=3)))
    assert first.claim_minutes("schedules", later) == (T0, T0 + timedelta(hours=3))
    assert first.claim_minutes("other", later) == (
        later.replace(second=0) - timedelta(minutes=1),
        later.replace(second=0),
    )


# --- runs and jobs ------------------------------------------------------------------------------


def test_deliveries_told_at_the_same_moment_are_paged_through_each_once(store):
    for n in range(5):
        store.tell(f"github:{n}", "ingress", {"kind": "ingress", "status": "accepted"}, at=T0)
    store.tell("github:9", "ingress", {"kind": "ingress", "status": "accepted"}, at=T0 + timedelta(seconds=1))
    seen, before = [], None
    while page := store.stories(limit=2, before=before):
        seen += [d for d, _ in page]
        before = (page[-1][1][0][1], page[-1][0])
    assert seen == ["github:9", "github:4", "github:3", "github:2", "github:1", "github:0"]


def test_a_run_reads_back_as_it_was_written_and_is_created_once(store):
    record = run("r1", requested_jobs=["build"], cancel_previous=True, message="hello ✓")
    assert store.create_run(record)
    assert store.get_run("r1") == record
    assert not store.create_run(record.model_copy(update={"message": "second"}))
    assert store.get_run("r1").message == "hello ✓"
    assert store.get_run("missing") is None


def test_runs_list_newest_first_filtered_by_repository_and_status(store):
    store.create_run(run("a", 0))
    store.create_run(run("b", 1, repository="acme/web"))
    store.create_run(run("c", 2, status="success"))
    assert [r.id for r in store.list_runs()] == ["c", "b", "a"]
    assert [r.id for r in store.list_runs(limit=2)] == ["c", "b"]
    assert [r.id for r in store.list_runs(repository="acme/api")] == ["c", "a"]
    assert [r.id for r in store.list_runs(status="success")] == ["c"]
    assert store.list_runs(repository="acme/api", status="failure") == []
    assert [r.id for r in store.list_runs(before=(run("b", 1).created_at, "b"))] == ["a"]
    assert [r.id for r in store.list_runs(repository="acme/api", before=(run("c", 2).created_at, "c"))] == ["a"]


def test_runs_created_at_the_same_moment_are_paged_through_each_once(store):
    for name in "edcba":
        store.create_run(run(name, 0))
    store.create_run(run("z", -1))
    seen, before = [], None
    while page := store.list_runs(limit=2, before=before):
        seen += [r.id for r in page]
        before = (page[-1].created_at, page[-1].id)
    assert seen == ["e", "d", "c", "b", "a", "z"]
    # a place whose run is gone still says where the next page starts
    assert [r.id for r in store.list_runs(before=(run("x", 0).created_at, "bb"))] == ["b", "a", "z"]


def test_an_updated_run_is_what_every_query_sees(store):
    store.create_run(run("a", 0))
    done = store.get_run("a").model_copy(update={"status": "failure", "message": "build: failure", "finished_at": T0})
    store.update_run(done)
    assert store.get_run("a") == done
    assert [r.status for r in store.list_runs(status="failure")] == ["failure"]
    assert store.unfinished_runs("acme/api") == []


def test_unfinished_runs_are_the_repository_s_runs_not_over_oldest_first(store):
    for record in (run("b", 1), run("a", 0), run("c", 2, status="cancelled"), run("w", 0, repository="acme/web")):
        store.create_run(record)
    assert [r.id for r in store.unfinished_runs("acme/api")] == ["a", "b"]


def test_jobs_are_put_replaced_and_listed_by_name(store):
    store.create_run(run("r"))
    store.put_job(JobRecord(run_id="r", name="test", needs=["build"]))
    store.put_job(JobRecord(run_id="r", name="build"))
    store.put_job(JobRecord(run_id="r", name="build", status="success", exit_code=0, finished_at=T0))
    assert [(j.name, j.status, j.exit_code) for j in store.get_jobs("r")] == [
        ("build", "success", 0),
        ("test", "pending", None),
    ]
    assert store.get_jobs("r")[1].needs == ["build"]
    assert store.get_jobs("other") == []


# --- a held run: read, decide, write ------------------------------------------------------------


def test_a_held_run_creates_updates_and_records_jobs_in_one_step(store):
    with store.locked_run("r") as held:
        assert (held.run, held.jobs) == (None, {})
        held.save(run("r"))
        held.put_job(JobRecord(run_id="r", name="build"))
    with store.locked_run("r") as held:
        assert held.run == run("r") and list(held.jobs) == ["build"]
        held.save(held.run.model_copy(update={"status": "running"}))
        held.put_job(held.jobs["build"].model_copy(update={"status": "running"}))
    assert store.get_run("r").status == "running"
    assert [j.status for j in store.get_jobs("r")] == ["running"]


def test_a_held_run_writes_nothing_when_the_step_fails(store):
    store.create_run(run("r"))
    with pytest.raises(RuntimeError), store.locked_run("r") as held:
        held.save(held.run.model_copy(update={"status": "running"}))
        held.put_job(JobRecord(run_id="r", name="build"))
        raise RuntimeError("the broker refused the publish")
    assert store.get_run("r").status == "queued" and store.get_jobs("r") == []


def test_a_held_run_refuses_records_of_another_run(store):
    with store.locked_run("r") as held:
        with pytest.raises(ValueError):
            held.save(run("other"))
        with pytest.raises(ValueError):
            held.put_job(JobRecord(run_id="other", name="build"))


def test_concurrent_steps_on_one_run_lose_no_update(store):
    # Given one run, and writers that each read it, decide and write it back many times at once
    store.create_run(run("r"))
    writers, steps = 6, 12

    def write(writer: int) -> None:
        for step in range(steps):
            with store.locked_run("r") as held:
                current = held.run
                time.sleep(0.001)  # widen the window between the read and the write
                held.save(current.model_copy(update={"requested_jobs": [*current.requested_jobs, f"{writer}.{step}"]}))
                held.put_job(JobRecord(run_id="r", name=f"w{writer}", message=str(step)))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every writer's every update is there
    assert sorted(store.get_run("r").requested_jobs) == sorted(f"{w}.{s}" for w in range(writers) for s in range(steps))
    assert {j.name: j.message for j in store.get_jobs("r")} == {f"w{w}": str(steps - 1) for w in range(writers)}


# --- places among a repository's runs (admission) ------------------------------------------------


def test_a_run_gets_a_place_only_while_its_repository_has_one(store):
    for record in (run("a", 0), run("b", 1), run("c", 2), run("other", 3, repository="acme/web")):
        store.create_run(record)
    assert store.admit_run("a", 1) and store.admit_run("a", 1)  # admitted, and stays so
    assert not store.admit_run("b", 1)  # a is unfinished
    assert store.admit_run("other", 1)  # another repository has its own places
    assert not store.admit_run("c", 2)  # room for two, but b came first and waits: first come, first served
    assert store.admit_run("b", 2) and store.admit_run("c", 3)
    assert [r.id for r in store.unfinished_runs("acme/api")] == ["a", "b", "c"]
    assert all(r.admitted for r in store.unfinished_runs("acme/api"))


def test_a_finished_run_frees_its_place_and_an_over_run_never_gets_one(store):
    store.create_run(run("a", 0))
    store.create_run(run("b", 1))
    assert store.admit_run("a", 1) and not store.admit_run("b", 1)
    store.update_run(store.get_run("a").model_copy(update={"status": "success"}))
    assert store.admit_run("b", 1)
    assert [r.id for r in store.unfinished_runs("acme/api")] == ["b"]
    assert not store.admit_run("a", 1) and not store.admit_run("missing", None)


def test_without_a_limit_every_run_gets_a_place(store):
    for index in range(3):
        store.create_run(run(f"r{index}", index, concurrency=None))
    assert all(store.admit_run(f"r{index}", None) for index in range(3))


ADMIT_ONE = """
import sys
from tasuki.shared.settings import Settings
from tasuki.shared.store import new_store
print(int(new_store(Settings(store_url=sys.argv[1])).admit_run(sys.argv[2], 2)))
"""


def admit_in_processes(url: str, run_ids: list[str], make_store) -> set[str]:
    # (Each child opens the store at `url` and nothing else: the SQLite file in the unit tier.)
    procs = [
        subprocess.Popen([sys.executable, "-c", ADMIT_ONE, url, run_id], stdout=subprocess.PIPE, text=True)
        for run_id in run_ids
    ]
    return {run_id for run_id, p in zip(run_ids, procs, strict=True) if int(p.communicate(timeout=120)[0])}


def admit_in_threads(url: str, run_ids: list[str], make_store) -> set[str]:
    stores = [make_store() for _ in run_ids]
    for store in stores:
        store.get_run("warm-up")  # connected and migrated before the start line
    start, admitted = threading.Barrier(len(run_ids)), set()

    def admit(store, run_id: str) -> None:
        start.wait()
        if store.admit_run(run_id, 2):
            admitted.add(run_id)

    threads = [threading.Thread(target=admit, args=pair) for pair in zip(stores, run_ids, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return admitted


@pytest.mark.parametrize("everyone", [admit_in_threads, admit_in_processes], ids=["threads", "processes"])
def test_places_are_taken_atomically_and_in_order_by_many_at_once(store, make_store, backend_url, everyone):
    run_ids = [f"r{index}" for index in range(8)]
    for index, run_id in enumerate(run_ids):
        store.create_run(run(run_id, index))
    # Whatever order the eight run in, the oldest run gets a place, never a newer one ahead of an
    # older one, and never more than two.
    assert everyone(backend_url, run_ids, make_store) in ({"r0"}, {"r0", "r1"})
    # Trying again (as wake-ups do) fills the places, in order, and no more.
    assert everyone(backend_url, run_ids, make_store) == {"r0", "r1"}
    assert [r.id for r in store.unfinished_runs("acme/api") if r.admitted] == ["r0", "r1"]


# --- trigger rules ------------------------------------------------------------------------------


def test_rules_are_added_once_changed_deleted_and_listed_in_the_order_they_came(store):
    first, second, third = Rule(repository="acme/web"), Rule(repository="acme/api"), Rule(repository="acme/cli")
    for rule in (first, second, third):
        assert store.add_rule(rule)
    assert not store.add_rule(second)
    assert [r.id for r in store.list_rules()] == [first.id, second.id, third.id]
    assert store.get_rule(second.id) == second and store.get_rule("missing") is None
    assert store.update_rule(second.model_copy(update={"enabled": False}))
    assert store.get_rule(second.id).enabled is False
    assert not store.update_rule(Rule(repository="never/added"))
    assert store.delete_rule(first.id) and not store.delete_rule(first.id)
    assert store.add_rule(first)  # again: now the newest
    assert [r.id for r in store.list_rules()] == [second.id, third.id, first.id]


RULES = """\
rules:
  - {event: push, repository: acme/api, branch: main, cancel_previous: true}
  - {event: tag, repository: "acme/*", tag: "v*", jobs: [release]}
"""


def test_loading_the_rules_file_again_makes_no_duplicates_and_keeps_what_a_person_chose(store, tmp_path):
    (tmp_path / "rules.yml").write_text(RULES)
    rules = recipes.load_rules(tmp_path / "rules.yml")
    mine = Rule(repository="acme/web")
    assert store.add_rule(mine) and not store.add_rule(mine)

    first = store.sync_rules(rules)
    assert (len(first.added), first.updated, first.removed) == (2, [], [])
    assert store.sync_rules(rules) == ([], [], [])  # the same file again: nothing changes
    assert len(store.list_rules()) == 3

    # A person disables a rule; the next start keeps it disabled, and follows the file's edits.
    api = store.get_rule(rules[0].id)
    store.update_rule(api.model_copy(update={"enabled": False}))
    (tmp_path / "rules.yml").write_text(
        RULES.replace("cancel_previous: true", "concurrency: 2").split("  - {event: tag")[0]
    )
    again = store.sync_rules(recipes.load_rules(tmp_path / "rules.yml"))
    assert (again.added, again.updated, again.removed) == ([], [api.id], [rules[1].id])
    api = store.get_rule(api.id)
    assert (api.enabled, api.concurrency, api.cancel_previous) == (False, 2, False)
    # The rule made on the command line is not the file's to remove.
    assert [r.id for r in store.list_rules()] == [mine.id, api.id]


# --- logs, the outbox, leases, notes, repositories -----------------------------------------------


def test_log_chunks_are_bytes_kept_once_in_order_by_attempt_and_only_for_the_current_one(store):
    store.put_job(JobRecord(run_id="r", name="build", attempt=1))
    store.put_job(JobRecord(run_id="r", name="test", attempt=1))
    chunks = [b"line 1\n", b"\x00\xff not utf-8 \xfe\n", "ünïcode ✓\n".encode()]
    for seq in (2, 0, 1):
        assert store.append_log("r", "build", seq, chunks[seq], attempt=1)
    store.append_log("r", "test", 0, b"other job\n", attempt=1)
    assert store.read_log("r", "build") == list(enumerate(chunks))
    assert store.read_log("r", "build", after=0) == [(1, chunks[1]), (2, chunks[2])]
    assert store.append_log("r", "build", 1, b"again\n", attempt=1)  # a redelivered chunk: stored once
    assert store.read_log("r", "build", after=0)[0] == (1, chunks[1])
    # A chunk of another attempt than the job's current one, or of a job not known, is not stored
    assert not store.append_log("r", "build", 3, b"late", attempt=2)
    assert not store.append_log("r", "nosuch", 0, b"x", attempt=1)
    # When the job is ordered again (attempt 2), its log starts over; attempt 1's stays readable
    store.put_job(JobRecord(run_id="r", name="build", attempt=2))
    assert not store.append_log("r", "build", 3, b"late of 1", attempt=1)
    assert store.append_log("r", "build", 0, b"attempt 2\n", attempt=2)
    assert store.read_log("r", "build") == [(0, b"attempt 2\n")]
    assert store.read_log("r", "build", attempt=1) == list(enumerate(chunks))
    assert store.read_log("r", "test") == [(0, b"other job\n")]
    # A retried attempt (it ran to its end) may still send its last chunks once the next is ordered.
    store.put_job(JobRecord(run_id="r", name="test", attempt=2, attempts=[AttemptRecord(attempt=1, status="failure")]))
    assert store.append_log("r", "test", 1, b"late of a retried attempt\n", attempt=1)
    assert store.read_log("r", "test", attempt=1) == [(0, b"other job\n"), (1, b"late of a retried attempt\n")]


def test_a_log_is_read_a_page_at_a_time_and_never_stored_past_its_limit(store):
    store.put_job(JobRecord(run_id="r", name="build", attempt=1))
    for seq in range(4):
        assert store.append_log("r", "build", seq, b"12345", attempt=1, limit=22)
    # (4 chunks make 20 bytes; a fifth would make 25, past 22: refused, nothing stored)
    assert not store.append_log("r", "build", 4, b"12345", attempt=1, limit=22)
    assert store.log_bytes("r", "build", 1) == 20 and store.log_bytes("r", "build", 2) == 0
    assert store.read_log("r", "build", limit=2) == [(0, b"12345"), (1, b"12345")]
    assert store.read_log("r", "build", after=1, limit=2) == [(2, b"12345"), (3, b"12345")]
    assert store.read_log("r", "build", after=3, limit=2) == []
    assert store.append_log("r", "build", 9, b"12", attempt=1, limit=22)  # what still fits is stored
    assert not store.append_log("r", "build", 10, b"1", attempt=1, limit=22)
    assert store.log_bytes("r", "build", 1) == 22


def test_concurrent_chunks_cannot_pass_the_log_limit_together(make_store):
    stores = [make_store() for _ in range(4)]
    stores[0].put_job(JobRecord(run_id="r", name="build", attempt=1))
    threads = [
        threading.Thread(
            target=lambda n=n: [
                stores[n].append_log("r", "build", n * 100 + k, b"x" * 10, attempt=1, limit=95) for k in range(10)
            ]
        )
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stores[0].log_bytes("r", "build", 1) == 90


def test_the_outbox_keeps_the_order_a_held_run_sent_in_until_cleared(store):
    entries = [OutboxEntry(f"m{n}", "r", "run.updated", bytes([n])) for n in (3, 1, 2)]
    with store.locked_run("r") as held:
        held.save(run("r"))
        held.send(entries[:2])
    with store.locked_run("r") as held:
        held.send([entries[2], entries[0]])  # the same message again is kept once
    with store.locked_run("other") as held:
        held.save(run("other"))
        held.send([OutboxEntry("o1", "other", "run.updated", b"o")])
    assert [e.message_id for e in store.outbox(run_id="r")] == ["m3", "m1", "m2"]
    assert store.outbox(run_id="r")[0] == entries[0]
    assert store.outbox(before=datetime.now(UTC) - timedelta(minutes=1)) == []
    assert len(store.outbox(before=datetime.now(UTC) + timedelta(minutes=1))) == 4
    store.clear_outbox(["m3", "m2", "o1"])
    assert [e.message_id for e in store.outbox()] == ["m1"]


def test_a_held_run_that_fails_sends_nothing(store):
    with pytest.raises(RuntimeError), store.locked_run("r") as held:
        held.save(run("r"))
        held.send([OutboxEntry("m", "r", "run.updated", b"x")])
        raise RuntimeError("the dispatcher died mid-step")
    assert store.outbox() == [] and store.get_run("r") is None


def test_run_out_leases_are_found_oldest_first(store):
    store.put_job(JobRecord(run_id="a", name="build", status="running", attempt=2, lease_expires=T0))
    store.put_job(JobRecord(run_id="b", name="test", status="running", attempt=1, lease_expires=T0 - timedelta(1)))
    store.put_job(JobRecord(run_id="c", name="lint", status="running", attempt=1, lease_expires=T0 + timedelta(1)))
    store.put_job(JobRecord(run_id="d", name="done", status="success", attempt=1))
    assert store.expired_leases(T0 + timedelta(seconds=1)) == [("b", "test", 1), ("a", "build", 2)]
    store.put_job(JobRecord(run_id="a", name="build", status="queued", attempt=3))  # ordered again
    assert store.expired_leases(T0 + timedelta(seconds=1)) == [("b", "test", 1)]


def test_a_chore_is_due_once_per_interval_whoever_asks(store):
    hour = timedelta(hours=1)
    assert store.due("prune", T0, every=hour)
    assert not store.due("prune", T0 + timedelta(minutes=59), every=hour)
    assert store.due("other", T0, every=hour)
    assert store.due("prune", T0 + timedelta(minutes=61), every=hour)
    assert not store.due("prune", T0 + timedelta(minutes=62), every=hour)


def test_notes_are_kept_once_each_oldest_first_and_bounded(store):
    store.add_note("r", "reporter", "GitHub refused the status: 422")
    store.add_note("r", "reporter", "second")
    store.add_note("r", "reporter", "GitHub refused the status: 422")
    store.add_note("other", "reporter", "elsewhere")
    assert store.get_notes("r") == [("reporter", "GitHub refused the status: 422"), ("reporter", "second")]
    # A host's message is the host's to choose: a long one is cut, on either backend
    store.add_note("r", "reporter", "ü" * 10_000)
    [(_, long)] = store.get_notes("r")[2:]
    assert len(long) == NOTE_CHARS and long.endswith("…")


def test_repositories_are_put_replaced_listed_by_name_and_deleted(store):
    store.put_repository("acme/web", RepositoryConfig(clone_url="https://example.com/web.git"))
    store.put_repository("acme/api", RepositoryConfig(clone_url="https://example.com/api.git", secret="s1"))
    store.put_repository("acme/api", RepositoryConfig(clone_url="https://example.com/api.git", secret="s2"))
    assert store.get_repository("acme/api").secret == "s2" and store.get_repository("none/such") is None
    assert list(store.list_repositories()) == ["acme/api", "acme/web"]
    assert store.delete_repository("acme/api") and not store.delete_repository("acme/api")
    assert list(store.list_repositories()) == ["acme/web"]


def test_a_repository_is_found_by_its_name_compared_normalised(store):
    api = RepositoryConfig(clone_url="https://example.com/api.git", secret="s1")
    store.put_repository("Acme/Api", api)
    store.put_repository("acme/web", RepositoryConfig(clone_url="https://example.com/web.git"))
    for spelling in ("Acme/Api", "acme/api", " ACME/API/ ", "/acme/api"):
        assert store.find_repository(spelling) == ("Acme/Api", api)
    assert store.find_repository("acme/ap") is None and store.find_repository("acme") is None
    assert store.find_repository("acme/api/x") is None and store.find_repository("") is None
    assert store.delete_repository("Acme/Api") and store.find_repository("acme/api") is None


def test_secrets_are_set_replaced_listed_by_name_read_by_scope_and_deleted(store):
    store.put_secret("acme/api", "TOKEN", "cipher-1")
    store.put_secret("acme/api", "TOKEN", "cipher-2")  # replaced
    store.put_secret("acme/api", "A_KEY", "cipher-3")
    store.put_secret("*", "TOKEN", "cipher-global")
    assert store.secret_names("acme/api") == ["A_KEY", "TOKEN"] and store.secret_names("acme/web") == []
    assert store.sealed_secrets("acme/api", ["TOKEN", "MISSING"]) == {"TOKEN": "cipher-2"}
    assert store.sealed_secrets("*", ["TOKEN"]) == {"TOKEN": "cipher-global"}
    assert store.sealed_secrets("acme/api", []) == {}
    assert store.delete_secret("acme/api", "TOKEN") and not store.delete_secret("acme/api", "TOKEN")
    assert store.secret_names("acme/api") == ["A_KEY"] and store.secret_names("*") == ["TOKEN"]


def test_a_repository_s_secrets_are_kept_sealed_with_the_store_key(store, backend_url, tmp_path):
    config = RepositoryConfig(
        clone_url="https://example.com/api.git", secret="hook-secret-42", token="api-token-42", app_password="pw-42"
    )
    store.put_repository("acme/api", config)
    assert store.get_repository("acme/api") == config and store.list_repositories() == {"acme/api": config}
    # What the database holds is ciphertext (empty fields stay empty: nothing to hide)
    store.put_repository("acme/web", RepositoryConfig(clone_url="https://example.com/web.git"))
    records = dict(store._query("SELECT full_name, record FROM repositories"))
    assert not any(word in records["acme/api"] for word in ("hook-secret-42", "api-token-42", "pw-42"))
    assert records["acme/api"].count("sealed:") == 3 and "sealed:" not in records["acme/web"]
    # and a process with another store key cannot read it: it says which setting to check
    other = new_store(Settings(store_url=backend_url, data_dir=tmp_path / "other", store_key=sealing.new_key()))
    try:
        with pytest.raises(SealError, match="TASUKI_STORE_KEY"):
            other.get_repository("acme/api")
        assert other.get_repository("acme/web").clone_url == "https://example.com/web.git"
    finally:
        other.close()


def test_a_session_ended_by_signing_out_is_remembered_until_it_would_have_expired(store):
    later, past = utcnow() + timedelta(hours=12), utcnow() - timedelta(hours=1)
    assert not store.session_ended("s1")
    store.end_session("s1", later)
    store.end_session("s1", later)  # twice: once
    store.end_session("old", past)
    assert store.session_ended("s1") and store.session_ended("old")
    store.end_session("s2", later)  # ending one forgets those past their expiry
    assert store.session_ended("s1") and store.session_ended("s2") and not store.session_ended("old")


# --- retention ----------------------------------------------------------------------------------


def test_prune_deletes_runs_finished_before_the_cutoff_with_everything_of_theirs(store):
    # Given runs that finished long ago and lately, one still running, each with jobs, logs,
    # notes and a message left in the outbox
    old = [finished(f"old{n}", T0 + timedelta(minutes=n)) for n in range(5)]
    recent = finished("recent", T0 + timedelta(days=30))
    going = run("going", status="running", started_at=T0)
    for record in (*old, recent, going):
        store.create_run(record)
        store.put_job(JobRecord(run_id=record.id, name="build", attempt=1))
        store.append_log(record.id, "build", 0, b"log", attempt=1)
        store.add_note(record.id, "reporter", "note")
        with store.locked_run(record.id) as held:
            held.send([OutboxEntry(f"{record.id}:m", record.id, "run.updated", b"x")])
    # When runs finished before day 10 are pruned, two at a time
    pruned = store.prune(runs_before=T0 + timedelta(days=10), deliveries_before=None, batch=2)
    # Then the old runs are gone with their jobs, logs, notes and outbox; the others stay
    assert pruned.runs == 5 and pruned.deliveries == 0
    assert {r.id for r in store.list_runs()} == {"recent", "going"}
    for gone in old:
        assert store.get_jobs(gone.id) == [] and store.read_log(gone.id, "build") == []
        assert store.get_notes(gone.id) == [] and store.outbox(run_id=gone.id) == []
    assert store.get_jobs("recent") and store.read_log("going", "build") == [(0, b"log")]
    # A run that is not over is never pruned, however old
    assert store.prune(runs_before=T0 + timedelta(days=1000), deliveries_before=None).runs == 1
    assert [r.id for r in store.list_runs()] == ["going"]


def test_prune_deletes_delivery_keys_seen_before_the_cutoff_in_batches(store):
    for n in range(5):
        store.remember_delivery(f"github:{n}")
    now = datetime.now(UTC)
    assert store.prune(runs_before=None, deliveries_before=now - timedelta(days=7)).deliveries == 0
    pruned = store.prune(runs_before=now + timedelta(days=1), deliveries_before=now + timedelta(seconds=5), batch=2)
    assert pruned == (0, 5)
    assert not store.seen_delivery("github:0") and store.remember_delivery("github:0")


# --- schema migrations --------------------------------------------------------------------------


def test_a_new_store_is_migrated_on_first_use_and_migrating_again_changes_nothing(make_store):
    store = make_store()
    assert store.schema_version() == 0  # nothing migrated yet: it is lazy
    assert store.list_runs() == []
    assert store.schema_version() == LATEST
    assert store.migrate() == (LATEST, LATEST)


def test_concurrent_starters_migrate_once(make_store):
    stores = [make_store() for _ in range(4)]
    results: list = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.migrate())) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [(0, LATEST)] + [(LATEST, LATEST)] * 3
    assert stores[0].remember_delivery("k") and not stores[1].remember_delivery("k")


# Records written with the SQL of each older schema version (the columns it had).
SESSION_EXPIRES = datetime.now(UTC) + timedelta(days=1)
OLD_RUN = run("old", concurrency=None, status="running", started_at=T0)
OLD_DONE = finished("done", T0 + timedelta(minutes=5), concurrency=None)


def write_at_version(store, version: int) -> None:
    legacy = {"admitted", "cancel_previous", "concurrency", "requested_jobs"}  # fields version 1 did not know
    with store._tx() as tx:
        for record in (OLD_RUN, OLD_DONE):
            tx.execute(
                "INSERT INTO runs (id, repository, status, created_at, record) VALUES (?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.repository,
                    record.status,
                    record.created_at.isoformat(),
                    record.model_dump_json(exclude=legacy if version == 1 else set()),
                ),
            )
            if version >= 5 and record.finished_at:  # the column a run's retention is found by
                tx.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (stamp(record.finished_at), record.id))
        tx.execute("INSERT INTO jobs (run_id, name, record) VALUES (?, ?, ?)", ("old", "build", _job_json()))
        if version >= 7:  # logs by attempt (0: a job the store had before attempts), no results
            tx.execute(
                "INSERT INTO logs (run_id, job, attempt, seq, data) VALUES (?, ?, ?, ?, ?)",
                ("old", "build", 0, 0, b"hi\n"),
            )
        else:
            tx.execute("INSERT INTO logs (run_id, job, seq, data) VALUES (?, ?, ?, ?)", ("old", "build", 0, b"hi\n"))
            tx.execute("INSERT INTO results (run_id, job, result) VALUES (?, ?, ?)", ("done", "build", b"r"))
        tx.execute("INSERT INTO deliveries (key) VALUES (?)", ("github:old",))
        if version >= 2:
            for rule in (Rule(repository="z/first"), Rule(repository="a/second")):
                tx.execute(
                    "INSERT INTO rules (id, source, record) VALUES (?, ?, ?)", (rule.id, "cli", rule.model_dump_json())
                )
        if version >= 3:
            for n, message in enumerate(("z first", "a second")):
                if version >= 5:  # notes rebuilt with an ordering `seq` and a stamped `at`, no default
                    at = stamp(T0 + timedelta(seconds=n))
                    tx.execute(
                        "INSERT INTO notes (run_id, source, message, at) VALUES (?, ?, ?, ?)",
                        ("old", "reporter", message, at),
                    )
                else:
                    tx.execute(
                        "INSERT INTO notes (run_id, source, message) VALUES (?, ?, ?)", ("old", "reporter", message)
                    )
        if 4 <= version < 9:  # from 9 on, written sealed, as the store writes it (below)
            tx.execute(
                "INSERT INTO repositories (full_name, record) VALUES (?, ?)",
                (
                    "acme/api",
                    RepositoryConfig(
                        clone_url="https://example.com/api.git", secret=OLD_SECRET, token=OLD_TOKEN
                    ).model_dump_json(),
                ),
            )
        if version >= 6:
            tx.execute("INSERT INTO ended_sessions (id, expires) VALUES (?, ?)", ("signed-out", stamp(SESSION_EXPIRES)))
    if version >= 9:  # sealed, as that Tasuki wrote it (without the lookup key of migration 11)
        config = RepositoryConfig(clone_url="https://example.com/api.git", secret=OLD_SECRET, token=OLD_TOKEN)
        store._write(
            "INSERT INTO repositories (full_name, record) VALUES (?, ?)",
            ("acme/api", sealed.seal_json(store._key, config.model_dump())),
        )


OLD_SECRET, OLD_TOKEN = "plain-webhook-secret-1", "plain-api-token-1"


def _job_json() -> str:
    return JobRecord(run_id="old", name="build", status="running").model_dump_json()


@pytest.mark.parametrize("version", range(1, LATEST))
def test_this_tasuki_opens_a_store_made_by_an_older_one_and_reads_its_records(make_store, version):
    # Given a store an older Tasuki made (only the first `version` migrations), with its records
    old = make_store(schema=version)
    write_at_version(old, version)
    assert old.schema_version() == version
    old.close()
    # When this Tasuki opens it
    store = make_store()
    # Then the schema is brought up to date and every record reads back
    assert store.get_run("old") == OLD_RUN.model_copy(update={"admitted": version == 1 or OLD_RUN.admitted})
    assert store.schema_version() == LATEST
    assert [j.status for j in store.get_jobs("old")] == ["running"]
    # (an older log is the job's attempt 0; results the executors kept are gone, unread)
    assert store.read_log("old", "build") == [(0, b"hi\n")]
    assert store.seen_delivery("github:old")
    if version >= 2:
        assert [r.repository for r in store.list_rules()] == ["z/first", "a/second"]
    if version >= 3:
        assert [m for _, m in store.get_notes("old")] == ["z first", "a second"]
    if version >= 4:  # (an older Tasuki kept secrets in plain text: now they are sealed)
        assert list(store.list_repositories()) == ["acme/api"]
        config = store.get_repository("acme/api")
        assert (config.secret, config.token) == (OLD_SECRET, OLD_TOKEN)
        [(record,)] = store._query("SELECT record FROM repositories")
        assert OLD_SECRET not in record and OLD_TOKEN not in record and "sealed:" in record
        # (and it is found by its name as lookups compare it, whatever the spelling)
        assert store.find_repository(" ACME/Api/") == ("acme/api", config)
    assert store.session_ended("signed-out") == (version >= 6)
    # and what the old records lacked works on them: places, retention (by finish time, by when
    # a delivery was seen)
    store.create_run(run("new", 1))
    assert not store.admit_run("new", 1)  # the older unfinished run holds (or waits for) the place
    now = datetime.now(UTC)
    assert store.prune(runs_before=T0 + timedelta(days=1), deliveries_before=now - timedelta(days=1)) == (1, 0)
    assert store.get_run("done") is None and store.get_run("old") is not None
    assert store.prune(runs_before=None, deliveries_before=now + timedelta(days=1)) == (0, 1)


def test_a_store_newer_than_this_tasuki_is_refused_with_what_to_do(make_store):
    store = make_store()
    store.migrate()
    with store._tx() as tx:
        if isinstance(store, SQLiteStore):
            tx.execute(f"PRAGMA user_version = {LATEST + 1}")
        else:
            tx.execute(
                "INSERT INTO tasuki_schema (version, summary, applied_at) VALUES (?, ?, ?)", (LATEST + 1, "x", "x")
            )
    with pytest.raises(StoreError, match=f"schema version {LATEST + 1}, newer than this Tasuki knows.*upgrade"):
        make_store().get_run("r")


# --- the command line ---------------------------------------------------------------------------


def test_tasuki_store_migrate_prints_the_version_before_and_after(backend_url, tmp_path, monkeypatch, capsys):
    for key in [k for k in os.environ if k.startswith("TASUKI_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("TASUKI_STORE_URL", backend_url)
    monkeypatch.setenv("TASUKI_DATA_DIR", str(tmp_path / "data"))
    assert cli(["store"]) == 0
    assert f"schema version 0 (`tasuki store migrate` brings it to {LATEST})" in capsys.readouterr().out
    assert cli(["store", "migrate"]) == 0
    out = capsys.readouterr().out
    assert f"schema version 0 -> {LATEST} (migrated)" in out
    assert PASSWORD not in out and quote(PASSWORD, safe="") not in out
    assert cli(["store", "migrate"]) == 0
    assert f"schema version {LATEST} -> {LATEST} (up to date)" in capsys.readouterr().out
    assert cli(["store"]) == 0
    assert f"schema version {LATEST} (up to date)" in capsys.readouterr().out
    # prune: what the retention settings say, here runs kept for ever
    monkeypatch.setenv("TASUKI_RETENTION_RUNS_DAYS", "0")
    assert cli(["store", "prune"]) == 0
    out = capsys.readouterr().out
    assert "every run kept (TASUKI_RETENTION_RUNS_DAYS=0); deleted 0 delivery ids seen before" in out
