"""The store's records: plain pydantic models, stored as JSON beside the columns queries need."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, Field

from tasuki.shared.flowfile import Job
from tasuki.shared.flowfile.params import Param
from tasuki.shared.messages import Artifact, Event, JobStatus, RunStatus, utcnow


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
    # Who approved the run of a fork's pull request (empty: it needed no approval, or waits).
    approved_by: str = ""
    # Re-run failed (issue 16): the run this one re-runs and the jobs it keeps from there.
    rerun_of: str = ""
    kept: list[str] = Field(default_factory=list)
    # A kept job -> the run where it ran, when not `rerun_of` (a re-run of a re-run: its artifacts
    # are there).
    kept_from: dict[str, str] = Field(default_factory=dict)
    # The parameters the flow file declared when this run was planned (what the Run form offers);
    # None until it is planned.
    declared_params: dict[str, Param] | None = None

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


class AttemptRecord(BaseModel):
    """One attempt of a job that is over: how it ended (a job.finished status, or `lost` when its
    executor stopped answering) and how many log chunks it wrote (its log is kept by attempt)."""

    attempt: int
    status: str
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    log_chunks: int | None = None


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
    # Leases: the job's current attempt (0 until it is first ordered), the executor whose claim
    # was granted and until when its lease holds unless renewed by a heartbeat.
    attempt: int = 0
    executor: str = ""
    lease_expires: datetime | None = None
    # How many log chunks the attempt that finished the job wrote (from its job.finished).
    log_chunks: int | None = None
    # Issue 14 (i14-jobs): every attempt that is over, oldest first (retries and lost leases);
    # flaky: the job passed only after a retry.
    attempts: list[AttemptRecord] = Field(default_factory=list)
    flaky: bool = False

    def ran(self, attempt: int) -> bool:
        """Whether `attempt` is over and ran to its end (not lost): its log is kept."""
        return any(a.attempt == attempt and a.status != "lost" for a in self.attempts)

    @property
    def tries(self) -> int:
        """Attempts that ran to an end (those whose executor was lost do not count as tries)."""
        return sum(a.status != "lost" for a in self.attempts)

    # The files the attempt that finished the job kept (issue 15; the bytes are in object storage).
    artifacts: list[Artifact] = Field(default_factory=list)


@dataclass(frozen=True)
class OutboxEntry:
    """A message in the dispatcher's outbox: recorded with the state change that made it,
    published after the commit, removed once RabbitMQ confirmed it."""

    message_id: str
    run_id: str
    type: str
    body: bytes


class RulesSync(NamedTuple):
    """What loading the rules file changed, by rule id."""

    added: list[str]
    updated: list[str]
    removed: list[str]


class Pruned(NamedTuple):
    """What `Store.prune` deleted: runs (with their jobs, logs, notes and outbox leftovers) and delivery keys."""

    runs: int
    deliveries: int


# One step of a delivery's story: (step name, when it was told, its record). See shared/stories.py.
Step = tuple[str, datetime, dict[str, Any]]
# A place in a newest-first listing (runs, deliveries): an item's (time, id). A page asked for
# `before` one starts with the item right after it, so items sharing a time are neither lost nor
# shown twice, and the item named need not exist any more.
Position = tuple[datetime, str]


def stamp(moment: datetime) -> str:
    """A moment as the text the store keeps in its time columns: ISO 8601 in UTC, whose text
    order is the time order (both backends compare these columns as plain bytes)."""
    return moment.astimezone(UTC).isoformat()
