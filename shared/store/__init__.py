"""The store: runs, jobs, logs, trigger rules and delivery keys behind one small interface.

Handlers keep no state between requests; whatever must outlive a request lives here. One
setting, TASUKI_STORE_URL (`location.py`), picks the backend:

    sqlite.py       the embedded default, a SQLite file under the data dir: one machine
    postgresql.py   PostgreSQL, shared by functions on many hosts

Both are `sql.SQLStore`: every method's SQL is written once there; the backends differ only in
connections, locks and where the schema version lives. The schema (`schema.py`) is versioned
and migrated on first use, or by `tasuki store migrate`. Records are plain pydantic models
(`records.py`). tests/integration/test_store_contract.py holds both backends to this interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Protocol

from tasuki.shared.recipes import Rule
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.settings import Settings
from tasuki.shared.store import location
from tasuki.shared.store.records import (
    AttemptRecord,
    JobRecord,
    OutboxEntry,
    Position,
    Pruned,
    RulesSync,
    RunRecord,
    Step,
)
from tasuki.shared.store.schema import LATEST

__all__ = [
    "LATEST",
    "AttemptRecord",
    "JobRecord",
    "LockedRun",
    "OutboxEntry",
    "Position",
    "Pruned",
    "RulesSync",
    "RunRecord",
    "Step",
    "Store",
    "new_store",
    "open_store",
]


class LockedRun(Protocol):
    """A run held for one read-decide-write step: `run` (None if there is no such run yet) and
    `jobs` as they are now; what is saved through it is written when the step ends, atomically,
    and no other writer changes the run in between."""

    run_id: str
    run: RunRecord | None
    jobs: dict[str, JobRecord]

    def save(self, run: RunRecord) -> None:
        """Record the run (inserted if it did not exist)."""
        ...

    def put_job(self, job: JobRecord) -> None: ...

    def send(self, entries: list[OutboxEntry]) -> None:
        """Add messages to the outbox with what is saved (published after the commit)."""
        ...

    def admit(self, limit: int | None) -> bool:
        """See `Store.admit_run`."""
        ...


class Store(Protocol):
    # deliveries (ingress dedupe)
    def remember_delivery(self, key: str) -> bool:
        """Record a delivery key; True if it was new, False if seen before."""
        ...

    def seen_delivery(self, key: str) -> bool:
        """True if the delivery key was recorded (the ingress checks, publishes, then records)."""
        ...

    # the story of each delivery (ingress, router, dispatcher and the clock each tell a step)
    def tell(self, delivery_id: str, step: str, record: dict[str, Any], at: datetime | None = None) -> None:
        """Record one step of a delivery's story (told again: the record is replaced)."""
        ...

    def story(self, delivery_id: str) -> list[Step]:
        """The delivery's steps, as told (empty: no such delivery, or pruned)."""
        ...

    def stories(self, *, limit: int = 50, before: Position | None = None) -> list[tuple[str, list[Step]]]:
        """Deliveries newest first (by their first step's time, then id), each with its steps;
        `before`: only those after that (time, delivery id) in this order (the next page)."""
        ...

    # the schedule clock
    def claim_minutes(self, clock: str, now: datetime) -> tuple[datetime, datetime] | None:
        """Claim the whole minutes since the clock's last claim, up to `now`'s minute: the window
        (start, end], at most `schedules.CATCH_UP` long, or None when another caller claimed it
        already. Of several clocks asking at once, exactly one gets each minute."""
        ...

    def unclaim_minutes(self, clock: str, claimed: tuple[datetime, datetime]) -> None:
        """Give back a claim whose work could not be done (unless a later claim followed it)."""
        ...

    # runs and jobs (dispatcher)
    def create_run(self, run: RunRecord) -> bool:
        """Insert a run; False (and nothing changed) if a run with that id exists."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def list_runs(
        self,
        *,
        repository: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: Position | None = None,
    ) -> list[RunRecord]:
        """Runs newest first (by creation time, then id); `before`: only those after that
        (created_at, run id) in this order (the next page)."""
        ...

    def update_run(self, run: RunRecord) -> None:
        """Write the whole record (a blind write: a step that reads, decides and writes uses
        `locked_run`)."""
        ...

    def locked_run(self, run_id: str) -> AbstractContextManager[LockedRun]:
        """`with store.locked_run(run_id) as held:` read `held.run` and `held.jobs`, decide, then
        `held.save(run)`, `held.put_job(job)`: one transaction, the run locked against every
        other writer (on PostgreSQL a row and advisory lock, on SQLite the writer lock) until
        the block ends. An exception in the block writes nothing. Inside the block, write the run
        and its jobs through `held` only: on PostgreSQL another store call runs on another
        connection and would wait for the very lock the block holds."""
        ...

    def put_job(self, job: JobRecord) -> None:
        """Insert or replace one job of a run."""
        ...

    def get_jobs(self, run_id: str) -> list[JobRecord]: ...

    # runs waiting for a place (the dispatcher, for a rule's concurrency and cancel_previous)
    def unfinished_runs(self, repository: str) -> list[RunRecord]:
        """The repository's runs that are not over yet, oldest first."""
        ...

    def admit_run(self, run_id: str, limit: int | None) -> bool:
        """Atomically give the run a place among its repository's unfinished runs: True if it has
        one (now or before), False while `limit` admitted runs are unfinished or an older run of
        the repository waits for a place (first come, first served)."""
        ...

    # trigger rules (router reads, command line and rules file write)
    def list_rules(self) -> list[Rule]:
        """Every rule, in the order they were added."""
        ...

    def get_rule(self, rule_id: str) -> Rule | None: ...

    def add_rule(self, rule: Rule) -> bool:
        """Insert a rule made by a person; False (nothing changed) if one with its id exists."""
        ...

    def update_rule(self, rule: Rule) -> bool:
        """Replace a rule (enable, disable); False if there is none with its id."""
        ...

    def delete_rule(self, rule_id: str) -> bool: ...

    def sync_rules(self, rules: list[Rule]) -> RulesSync:
        """Make the store hold the rules file's rules, in one transaction: add new ones, update
        changed ones (keeping whether a person enabled or disabled them), remove rules that came
        from the file and left it. Rules made on the command line are left alone. Idempotent."""
        ...

    # logs (functions/logs writes, web reads)
    def append_log(
        self, run_id: str, job: str, seq: int, data: bytes, *, attempt: int = 1, limit: int | None = None
    ) -> bool:
        """Store chunk `seq` of the job's attempt once (again: nothing changes). False, and
        nothing stored, unless `attempt` is the job's current attempt or an earlier one that ran
        to its end and was retried (a late chunk of a lost attempt, or of a job the store does
        not know), or when the attempt's log would pass `limit` bytes with it (checked
        atomically: concurrent chunks cannot pass it together)."""
        ...

    def read_log(
        self, run_id: str, job: str, after: int = -1, *, attempt: int | None = None, limit: int | None = None
    ) -> list[tuple[int, bytes]]:
        """Chunks after `after` of one attempt (default: the job's current attempt), in order;
        at most `limit` of them (None: all)."""
        ...

    def log_bytes(self, run_id: str, job: str, attempt: int) -> int:
        """How many bytes of the attempt's log are stored."""
        ...

    # the outbox (the dispatcher publishes it after each commit; the tick what is left), leases
    def outbox(
        self, *, run_id: str | None = None, before: datetime | None = None, limit: int = 500
    ) -> list[OutboxEntry]:
        """Messages not yet confirmed, oldest first: of one run, or recorded before `before`."""
        ...

    def clear_outbox(self, message_ids: list[str]) -> None: ...

    def expired_leases(self, now: datetime, limit: int = 500) -> list[tuple[str, str, int]]:
        """(run id, job, attempt) of the running jobs whose lease ran out before `now`."""
        ...

    def due(self, chore: str, now: datetime, *, every: timedelta) -> bool:
        """True, and the chore marked done at `now`, if it was not done within `every` (one of
        several asking at once is told so)."""
        ...

    # notes on a run from other processes, shown with it (each distinct note once)
    def add_note(self, run_id: str, source: str, message: str) -> None: ...

    def get_notes(self, run_id: str) -> list[tuple[str, str]]:
        """(source, message) pairs, oldest first."""
        ...

    # repositories registered at run time (the registry file is read-only configuration)
    def put_repository(self, full_name: str, config: RepositoryConfig) -> None: ...

    def get_repository(self, full_name: str) -> RepositoryConfig | None: ...

    def find_repository(self, full_name: str) -> tuple[str, RepositoryConfig] | None:
        """The registered name and entry of the repository whose name normalises as `full_name`
        does (`shared.registry.normalise`): one row read by its key, whatever the number registered."""
        ...

    def list_repositories(self) -> dict[str, RepositoryConfig]: ...

    def delete_repository(self, full_name: str) -> bool: ...

    # job secrets: ciphertext by (scope, name), scope a repository's name or "*" (global);
    # shared/vault.py seals and opens the values with TASUKI_STORE_KEY
    def put_secret(self, scope: str, name: str, sealed: str) -> None:
        """Set (or replace) one secret's ciphertext."""
        ...

    def delete_secret(self, scope: str, name: str) -> bool: ...

    def secret_names(self, scope: str) -> list[str]:
        """The names of the scope's secrets, sorted (never their values)."""
        ...

    def sealed_secrets(self, scope: str, names: Sequence[str]) -> dict[str, str]:
        """name -> ciphertext of those of `names` the scope has."""
        ...

    # web sessions ended by signing out, remembered until they would have expired anyway
    def end_session(self, session_id: str, expires: datetime) -> None: ...

    def session_ended(self, session_id: str) -> bool: ...

    # retention
    def prune(self, *, runs_before: datetime | None, deliveries_before: datetime | None, batch: int = 500) -> Pruned:
        """Delete the runs that finished before `runs_before` with their jobs, logs, notes and
        outbox leftovers, and the delivery keys and stories seen before `deliveries_before` (None: keep them), in
        batches of `batch`, each batch its own transaction."""
        ...

    # schema
    def schema_version(self) -> int:
        """The schema version the database is at (0: empty); migrates nothing."""
        ...

    def migrate(self, target: int = LATEST) -> tuple[int, int]:
        """Apply the migrations up to `target` (default: all), in one transaction, safe with
        concurrent starters: (version before, version after)."""
        ...

    def close(self) -> None: ...


@cache
def open_store(settings: Settings) -> Store:
    """The process's store, built once per settings (lazily: nothing connects until first use)."""
    return new_store(settings)


def new_store(settings: Settings, *, schema: int = LATEST) -> Store:
    """A store of its own at TASUKI_STORE_URL (`schema`: migrate first use only that far, for
    tests of older databases). An unknown or malformed URL is a ConfigError naming the setting.
    Secrets it keeps are sealed with TASUKI_STORE_KEY (read, or generated, on first need)."""
    where = location.parse(settings.store_url, settings.data_dir)
    if where.backend == "postgresql":
        from tasuki.shared.store.postgresql import PostgresStore

        return PostgresStore(where, schema=schema, key=settings.store_key_value)
    from tasuki.shared.store.sqlite import SQLiteStore

    assert where.path is not None
    return SQLiteStore(where.path, schema=schema, key=settings.store_key_value)
