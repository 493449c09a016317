"""Message models: what travels between Tasuki's processes, one pydantic model per message kind.

Each model names its exchange and routing key; `shared.codec` turns it into msgpack and back, and
`shared.broker` publishes it with its `type` (the `TYPE` below) as both the AMQP type and an
attribute, so that a push handler that only sees attributes knows what it received.
See `shared.topics` for who publishes and who receives each one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tasuki.shared import registry
from tasuki.shared.flowfile import Job
from tasuki.shared.flowfile.params import Param
from tasuki.shared.sealing import Sealed
from tasuki.shared.topics import EVENTS, EXECUTORS, JOBS, RUNS, executor_key

# "approval": a fork's pull request waits for a person to approve it (shared/approval.py).
RunStatus = Literal["approval", "queued", "running", "success", "failure", "cancelled", "error"]
JobStatus = Literal["pending", "queued", "running", "success", "failure", "error", "timeout", "cancelled", "skipped"]
# A job is over once it reaches one of these; only "success" lets its dependants start.
JOB_FINAL = frozenset({"success", "failure", "error", "timeout", "cancelled", "skipped"})
RUN_FINAL = frozenset({"success", "failure", "cancelled", "error"})
# An executor id as it may appear in a routing key (no wildcards) and a container label.
EXECUTOR_ID = r"^[A-Za-z0-9_.\-]{1,200}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    TYPE: ClassVar[str]
    EXCHANGE: ClassVar[str]
    KEY: ClassVar[str] = ""
    # Work and requests must reach a queue (publishing fails otherwise); status notices may have
    # no listener yet.
    MANDATORY: ClassVar[bool] = True

    @property
    def routing_key(self) -> str:
        return self.KEY

    def attributes(self) -> dict[str, str]:
        """String attributes (AMQP headers) a subscription can filter on."""
        return {}

    def ordering_key(self) -> str:
        return ""


# --- git events (ingress -> router) -----------------------------------------------------------


class Repository(BaseModel):
    full_name: str
    clone_url: str = ""
    web_url: str = ""
    default_branch: str = ""  # when the host says (caches fall back to it)


class Ref(BaseModel):
    kind: Literal["branch", "tag"]
    name: str


class Commit(BaseModel):
    id: str
    message: str = ""
    author: str = ""


class PullRequest(BaseModel):
    number: int
    title: str = ""
    state: str = ""  # every host: "open", "merged" or "closed"
    source_branch: str = ""
    source_commit: str = ""
    target_branch: str = ""
    target_commit: str = ""
    # What happened, the same words for every host: "opened", "updated" (new commits or, on
    # Bitbucket, any edit), "reopened", "closed" (without merging) or "merged".
    action: str = ""
    url: str = ""  # the pull request's web page
    source_repository: str = ""  # full name of the repository the source branch is in (a fork?)


class Event(Message):
    """One git event, the same shape for every host: one pushed ref, or one pull-request change.

    `after` is always the commit to build: the pushed commit (a tag's commit, not the tag object),
    or a pull request's source commit; it is empty when the ref was deleted. A pull request's
    `ref` is its source branch. `shared.hosts` makes these from each host's deliveries.
    """

    TYPE = "event"
    EXCHANGE = EVENTS

    host: str
    # The host's own event name made dot-safe: "repo.push", "pull_request.opened".
    event: str
    # What trigger rules match on. "manual": a person started the run (web page, API, command
    # line); its `ref` names the branch or tag, `after` is empty until the plan resolves its head.
    # "schedule": made by the clock (shared.recipes); `after` is empty until the plan resolves it.
    kind: Literal["push", "tag", "pull_request", "manual", "schedule"]
    delivery_id: str
    repository: Repository
    ref: Ref | None = None
    before: str = ""  # empty when the ref was created
    after: str = ""  # empty when the ref was deleted
    actor: str = ""
    commits: list[Commit] = Field(default_factory=list)
    pull_request: PullRequest | None = None
    forced: bool = False
    truncated: bool = False
    # The delivery as the host sent it, for plugins.
    payload: dict[str, Any] = Field(default_factory=dict)
    # A manual run's parameters: as given until planned, then every declared one, checked.
    params: dict[str, str] = Field(default_factory=dict)

    @property
    def routing_key(self) -> str:
        return f"{self.host}.{self.event}"

    @property
    def deleted(self) -> bool:
        return self.kind in ("push", "tag") and not self.after

    @property
    def from_fork(self) -> bool:
        """A pull request whose source branch is in another repository (or in one the host no
        longer knows, such as a deleted fork): its code is not the repository's people's."""
        if self.pull_request is None:
            return False
        source = registry.normalise(self.pull_request.source_repository)
        return source != registry.normalise(self.repository.full_name)

    @property
    def head_message(self) -> str:
        if self.commits:
            return self.commits[-1].message
        return ""

    def attributes(self) -> dict[str, str]:
        return {
            "host": self.host,
            "event": self.event,
            "repo": self.repository.full_name,
            "ref": self.ref.name if self.ref else "",
            "delivery": self.delivery_id,
        }


# --- runs (router, dispatcher, executor) ------------------------------------------------------


def run_attributes(run_id: str, job: object, event: Event | None) -> dict[str, str]:
    """A run's messages carry the run, and where they have them the job and the git host's
    delivery the run came from (every log line about the message carries them: shared.logs)."""
    attributes = {"run": run_id}
    name = job if isinstance(job, str) else getattr(job, "name", "")
    if name:
        attributes["job"] = name
    if event is not None:
        attributes["delivery"] = event.delivery_id
    return attributes


class RunMessage(Message):
    """Every message about one run carries its id, which is also its ordering key."""

    EXCHANGE = RUNS
    run_id: str

    def attributes(self) -> dict[str, str]:
        return run_attributes(self.run_id, getattr(self, "job", None), getattr(self, "event", None))

    def ordering_key(self) -> str:
        return self.run_id


class RunRequested(RunMessage):
    TYPE = KEY = "run.requested"

    rule_id: str
    event: Event
    flow_file: str = ".tasuki.yml"
    jobs: list[str] = Field(default_factory=list)  # empty: every job
    # The rule's options (see shared.recipes.Rule), carried so the run keeps them.
    cancel_previous: bool = False
    concurrency: int | None = None
    # Re-run failed: the run this one re-runs, and the jobs that succeeded there and are kept;
    # for a kept job that run had kept in turn, the run where it ran (its artifacts are there).
    rerun_of: str = ""
    keep: list[str] = Field(default_factory=list)
    kept_from: dict[str, str] = Field(default_factory=dict)
    # A fork's pull request: the run waits in status "approval" until a run.approve.
    approval: bool = False


class RunApprove(RunMessage):
    """A person approved a run that waits for approval (a fork's pull request): it may start."""

    TYPE = KEY = "run.approve"

    by: str = Field("", max_length=200)


class RunWake(RunMessage):
    """A run of the repository finished or started: a run waiting for a place tries again."""

    TYPE = KEY = "run.wake"


class RunPlanned(RunMessage):
    TYPE = KEY = "run.planned"

    jobs: dict[str, Job] = Field(default_factory=dict)
    # Jobs the flow file has but whose `when` does not match this event.
    skipped: list[str] = Field(default_factory=list)
    error: str = ""  # the flow file is invalid: the run fails with this message
    # A manual run: the commit its branch or tag resolved to, its parameters checked against the
    # flow file (every declared one), and the flow file's declaration (what the Run form offers).
    commit: str = ""
    params: dict[str, str] = Field(default_factory=dict)
    declared: dict[str, Param] = Field(default_factory=dict)


class RunCancel(RunMessage):
    TYPE = KEY = "run.cancel"

    reason: str = "cancelled"


class JobStarted(RunMessage):
    """The claim: executor `executor` is about to run attempt `attempt` of the job. The dispatcher
    grants it (the job is running, held by that executor under a lease) or refuses it, with a
    `LeaseAnswer` addressed to the executor; no container starts before the grant."""

    TYPE = KEY = "job.started"

    job: str
    attempt: int = Field(1, ge=1)
    executor: str = Field("", pattern=r"^[A-Za-z0-9_.\-]{0,200}$")
    at: datetime = Field(default_factory=utcnow)


class JobHeartbeat(RunMessage):
    """A running attempt is alive (sent from the job's own run loop): the dispatcher renews its
    lease. With `release`, the executor gives the job up (it is stopping): ordered again at once.
    `sent` is the executor's own clock, echoed in the answer."""

    TYPE = KEY = "job.heartbeat"

    job: str
    attempt: int = Field(ge=1)
    executor: str = Field(pattern=EXECUTOR_ID)
    sent: float = 0.0
    release: bool = False


class JobExpired(RunMessage):
    """The tick found the lease of this attempt run out; the dispatcher checks again, in the
    run's order, and orders the job again."""

    TYPE = KEY = "job.expired"

    job: str
    attempt: int = Field(ge=1)


# At most this many files an attempt keeps as artifacts (their names travel in job.finished).
MAX_ARTIFACTS = 1000


class Artifact(BaseModel):
    """A file a job kept (issue 15): its path under the workspace, its size in bytes. The bytes
    are in object storage under `artifact_key(run, job, path)`."""

    path: str = Field(min_length=1, max_length=1000)
    size: int = Field(ge=0)


class JobFinished(RunMessage):
    TYPE = KEY = "job.finished"

    job: str
    attempt: int = Field(1, ge=1)
    status: Literal["success", "failure", "error", "timeout", "cancelled"]
    exit_code: int | None = None
    reason: str = ""  # machine-readable cause when status is not success/failure
    message: str = ""  # what a person reads on the run
    log_chunks: int | None = Field(None, ge=0)  # how many job.log chunks the attempt wrote
    at: datetime = Field(default_factory=utcnow)
    artifacts: list[Artifact] = Field(default_factory=list, max_length=MAX_ARTIFACTS)  # what it kept


class JobLog(RunMessage):
    """A chunk of a job's log as it is written (executor -> functions/logs, which stores it).

    None is lost: published confirmed, stored once by (run, job, attempt, seq); chunks of an
    attempt that is no longer the job's current one are ignored. `data` is the masked chunk,
    decoded as UTF-8.
    """

    TYPE = KEY = "job.log"

    job: str
    attempt: int = Field(1, ge=1)
    seq: int = Field(ge=0, le=10_000_000)
    data: str = Field(max_length=1024 * 1024)


class Tick(Message):
    """The clock (published by the bridge every `Settings.tick_interval` seconds): the dispatcher
    looks for run-out leases and for what its outbox still holds."""

    TYPE = KEY = "tick"
    EXCHANGE = RUNS

    at: datetime = Field(default_factory=utcnow)


class RunUpdated(RunMessage):
    """A run changed status (dispatcher -> anyone who reports it)."""

    TYPE = KEY = "run.updated"
    MANDATORY = False

    status: RunStatus
    event: Event
    message: str = ""
    rule_id: str = ""


class JobUpdated(RunMessage):
    """A job changed status (dispatcher -> anyone who reports it)."""

    TYPE = KEY = "job.updated"
    MANDATORY = False

    job: str
    status: JobStatus
    event: Event
    exit_code: int | None = None
    message: str = ""
    rule_id: str = ""


# --- to one executor (dispatcher -> executor) ------------------------------------------------


class LeaseAnswer(Message):
    """The dispatcher's answer to a claim or a heartbeat, addressed to the executor that sent it.
    Refused (`granted` false, `reason` cancelled, finished, superseded, held): the executor
    starts nothing, or stops the attempt's container. Also sent unasked when a run is cancelled."""

    TYPE = "job.lease"
    EXCHANGE = EXECUTORS
    MANDATORY = False  # the executor may be gone; its job's lease then runs out

    run_id: str
    job: str
    attempt: int = Field(ge=1)
    executor: str = Field(pattern=EXECUTOR_ID)
    granted: bool
    reason: str = ""
    sent: float = 0.0  # the heartbeat's `sent`, echoed

    @property
    def routing_key(self) -> str:
        return executor_key(self.executor)

    def attributes(self) -> dict[str, str]:
        return {"run": self.run_id}


# --- work for executors (dispatcher -> executor) ----------------------------------------------


class WorkOrder(Message):
    EXCHANGE = JOBS

    run_id: str
    event: Event
    pool: str = "default"
    # Where to clone from, resolved by the dispatcher from the registry, and the registry's clone
    # credentials sealed with the order key: the executor reads no registry and no store.
    clone_url: str = ""
    credentials: Sealed | None = None

    @property
    def routing_key(self) -> str:
        return f"job.{self.pool}"

    def attributes(self) -> dict[str, str]:
        return run_attributes(self.run_id, getattr(self, "job", None), self.event)


class PlanOrder(WorkOrder):
    """Check out the pushed commit, read the flow file, answer with `run.planned`."""

    TYPE = "plan.order"

    flow_file: str = ".tasuki.yml"
    jobs: list[str] = Field(default_factory=list)


class JobOrder(WorkOrder):
    """Run attempt `attempt` of one job of a planned run: claim it (`job.started`), run it once
    granted with heartbeats, answer `job.finished`. Its message id is run:job:attempt."""

    TYPE = "job.order"

    job: Job
    attempt: int = Field(1, ge=1)
    why: str = ""  # why this attempt after an earlier one (a retry, a lost executor): its log says so
    # The run whose artifacts a need left, when not this one (a job a re-run of failed jobs kept).
    artifact_runs: dict[str, str] = Field(default_factory=dict)
    # -- secrets (issue 14): the secrets the job lists, name -> value, sealed with the order key
    #    by the dispatcher (shared/vault.py); or why it gets none (a fork's pull request, a name
    #    not set): then the executor fails the job with that message before its container starts.
    secrets: Sealed | None = None
    secrets_refused: str = Field("", max_length=2000)

    @property
    def message_id(self) -> str:
        return f"{self.run_id}:{self.job.name}:{self.attempt}"


MODELS: dict[str, type[Message]] = {
    m.TYPE: m
    for m in (
        Event,
        RunRequested,
        RunApprove,
        RunWake,
        RunPlanned,
        RunCancel,
        JobStarted,
        JobHeartbeat,
        JobExpired,
        JobFinished,
        JobLog,
        Tick,
        RunUpdated,
        JobUpdated,
        LeaseAnswer,
        PlanOrder,
        JobOrder,
    )
}
