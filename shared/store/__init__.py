"""The store: runs, jobs, logs, trigger rules and delivery keys behind one small interface.

Handlers keep no state between requests; whatever must outlive a request lives here.
`open_store(settings)` gives the embedded default, a SQLite file under the data directory,
durable and shared by every process on the machine. Records are plain pydantic models.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import NamedTuple, Protocol

from pydantic import BaseModel, Field

from tasuki.shared.flowfile import Job
from tasuki.shared.messages import Event, JobStatus, RunStatus, utcnow
from tasuki.shared.recipes import Rule
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.settings import Settings


class RunRecord(BaseModel):
    id: str
    rule_id: str = ""
    event: Event
    status: RunStatus = "queued"
    message: str = ""
    flow_file: str = ".tasuki.yml"
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # From the rule that requested the run: the jobs it names (empty: all) and its options.
    requested_jobs: list[str] = Field(default_factory=list)
    cancel_previous: bool = False
    concurrency: int | None = None
    # Given a place among its repository's runs (see `Store.admit_run`); its plan was ordered.
    admitted: bool = False

    @property
    def repository(self) -> str:
        return self.event.repository.full_name

    @property
    def commit(self) -> str:
        return self.event.after

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return ((self.finished_at or utcnow()) - self.started_at).total_seconds()


class JobRecord(BaseModel):
    run_id: str
    name: str
    status: JobStatus = "pending"
    spec: Job | None = None  # None for a job skipped before it was planned in full
    needs: list[str] = Field(default_factory=list)
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RulesSync(NamedTuple):
    """What loading the rules file changed, by rule id."""

    added: list[str]
    updated: list[str]
    removed: list[str]


class Store(Protocol):
    # deliveries (ingress dedupe)
    def remember_delivery(self, key: str) -> bool:
        """Record a delivery key; True if it was new, False if seen before."""
        ...

    def seen_delivery(self, key: str) -> bool:
        """True if the delivery key was recorded (the ingress checks, publishes, then records)."""
        ...

    # runs and jobs (dispatcher)
    def create_run(self, run: RunRecord) -> bool:
        """Insert a run; False (and nothing changed) if a run with that id exists."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def list_runs(
        self, *, repository: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[RunRecord]: ...

    def update_run(self, run: RunRecord) -> None: ...

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

    # logs (executor writes, web reads)
    def append_log(self, run_id: str, job: str, seq: int, data: bytes) -> None: ...

    def read_log(self, run_id: str, job: str, after: int = -1) -> list[tuple[int, bytes]]: ...

    def clear_log(self, run_id: str, job: str) -> None: ...

    # notes on a run from other processes, shown with it (each distinct note once)
    def add_note(self, run_id: str, source: str, message: str) -> None: ...

    def get_notes(self, run_id: str) -> list[tuple[str, str]]:
        """(source, message) pairs, oldest first."""
        ...

    # repositories registered at run time (the registry file is read-only configuration)
    def put_repository(self, full_name: str, config: RepositoryConfig) -> None: ...

    def get_repository(self, full_name: str) -> RepositoryConfig | None: ...

    def list_repositories(self) -> dict[str, RepositoryConfig]: ...

    def delete_repository(self, full_name: str) -> bool: ...

    # executor-side record of a finished job, so that a redelivered order does not run it twice
    def put_result(self, run_id: str, job: str, result: bytes) -> None: ...

    def get_result(self, run_id: str, job: str) -> bytes | None: ...


@cache
def open_store(settings: Settings) -> Store:
    from tasuki.shared.store.sqlite import SQLiteStore

    return SQLiteStore(settings.store_path)
