"""The store: runs, jobs, logs and delivery keys behind one small interface.

Handlers keep no state between requests; whatever must outlive a request lives here.
`open_store(settings)` gives the embedded default, a SQLite file under the data directory,
durable and shared by every process on the machine. Records are plain pydantic models.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Protocol

from pydantic import BaseModel, Field

from shared.flowfile import Job
from shared.messages import Event, JobStatus, RunStatus, utcnow
from shared.settings import Settings


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


class Store(Protocol):
    # deliveries (ingress dedupe)
    def remember_delivery(self, key: str) -> bool:
        """Record a delivery key; True if it was new, False if seen before."""
        ...

    def forget_delivery(self, key: str) -> None: ...

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

    # logs (executor writes, web reads)
    def append_log(self, run_id: str, job: str, seq: int, data: bytes) -> None: ...

    def read_log(self, run_id: str, job: str, after: int = -1) -> list[tuple[int, bytes]]: ...

    def clear_log(self, run_id: str, job: str) -> None: ...

    # executor-side record of a finished job, so that a redelivered order does not run it twice
    def put_result(self, run_id: str, job: str, result: bytes) -> None: ...

    def get_result(self, run_id: str, job: str) -> bytes | None: ...


@cache
def open_store(settings: Settings) -> Store:
    from shared.store.sqlite import SQLiteStore

    return SQLiteStore(settings.store_path)
