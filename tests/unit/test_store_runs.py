"""The SQLite store's part in scheduling: places among a repository's runs (admission), taken
atomically even by many processes at once, and the migration that added them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from tasuki.shared.messages import Event, Ref, Repository
from tasuki.shared.store import RunRecord
from tasuki.shared.store.sqlite import MIGRATIONS, SQLiteStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(run_id: str, minute: int = 0, repository: str = "acme/api", concurrency: int | None = 1) -> RunRecord:
    event = Event(
        host="bitbucket",
        event="repo.push",
        kind="push",
        delivery_id=run_id,
        repository=Repository(full_name=repository),
        ref=Ref(kind="branch", name="main"),
        after="c",
    )
    return RunRecord(id=run_id, event=event, created_at=T0 + timedelta(minutes=minute), concurrency=concurrency)


def test_a_run_gets_a_place_only_while_its_repository_has_one(tmp_path):
    store = SQLiteStore(tmp_path / "t.db")
    for record in (run("a", 0), run("b", 1), run("c", 2), run("other", 3, repository="acme/web")):
        store.create_run(record)
    assert store.admit_run("a", 1) and store.admit_run("a", 1)  # admitted, and stays so
    assert not store.admit_run("b", 1)  # a is unfinished
    assert store.admit_run("other", 1)  # another repository has its own places
    assert not store.admit_run("c", 2)  # room for two, but b came first and waits: first come, first served
    assert store.admit_run("b", 2) and store.admit_run("c", 3)
    assert [r.id for r in store.unfinished_runs("acme/api")] == ["a", "b", "c"]
    assert all(r.admitted for r in store.unfinished_runs("acme/api"))
    store.close()


def test_a_finished_run_frees_its_place_and_an_over_run_never_gets_one(tmp_path):
    store = SQLiteStore(tmp_path / "t.db")
    store.create_run(run("a", 0))
    store.create_run(run("b", 1))
    assert store.admit_run("a", 1) and not store.admit_run("b", 1)
    store.update_run(store.get_run("a").model_copy(update={"status": "success"}))
    assert store.admit_run("b", 1)
    assert [r.id for r in store.unfinished_runs("acme/api")] == ["b"]
    assert not store.admit_run("a", 1) and not store.admit_run("missing", None)
    store.close()


ADMIT_ONE = """
import sys
from tasuki.shared.store.sqlite import SQLiteStore
print(int(SQLiteStore(sys.argv[1]).admit_run(sys.argv[2], 2)))
"""


def test_places_are_taken_atomically_and_in_order_by_many_processes_at_once(tmp_path):
    store = SQLiteStore(tmp_path / "t.db")
    for index in range(8):
        store.create_run(run(f"r{index}", index))

    def everyone_tries() -> set[str]:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", ADMIT_ONE, str(tmp_path / "t.db"), f"r{index}"],
                stdout=subprocess.PIPE,
                text=True,
            )
            for index in range(8)
        ]
        return {f"r{index}" for index, p in enumerate(procs) if int(p.communicate(timeout=60)[0])}

    # Whatever order the eight processes run in, the oldest run gets a place, never a newer one
    # ahead of an older one, and never more than two.
    assert everyone_tries() in ({"r0"}, {"r0", "r1"})
    # Trying again (as wake-ups do) fills the places, in order, and no more.
    assert everyone_tries() == {"r0", "r1"}
    assert [r.id for r in store.unfinished_runs("acme/api") if r.admitted] == ["r0", "r1"]
    store.close()


def test_a_store_made_before_rules_and_places_migrates_keeping_its_runs(tmp_path):
    # Given a store at schema version 1 with a running run
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    old = run("old", concurrency=None).model_copy(update={"status": "running"})
    conn.execute(
        "INSERT INTO runs (id, repository, status, created_at, record) VALUES (?, ?, ?, ?, ?)",
        (
            old.id,
            old.repository,
            old.status,
            old.created_at.isoformat(),
            old.model_dump_json(exclude={"admitted", "cancel_previous", "concurrency", "requested_jobs"}),
        ),
    )
    conn.commit()
    conn.close()
    # When the store opens it
    store = SQLiteStore(path)
    # Then the run is still there and holds its place; rules can be kept
    assert store.get_run("old").admitted
    store.create_run(run("new", 1))
    assert not store.admit_run("new", 1)
    assert store.list_rules() == []
    assert store._query("PRAGMA user_version")[0][0] == len(MIGRATIONS)
    store.close()
