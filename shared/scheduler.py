"""Scheduling runs: pure decisions, no I/O (the dispatcher does the I/O).

Given every job's status and needs, `advance()` says which pending jobs become `skipped`
(a need ended other than in success) and which are ready to queue (every need succeeded).
`run_status()` derives the run's status from its jobs. `decide()` turns a run's state and one
message into a `Decision`: what to record and publish, and which store-backed steps follow
(take a place among the repository's runs, cancel the runs a newer push supersedes, wake the
runs waiting for a place). `superseded()` is the pure half of the rule option `cancel_previous`.
A run requested with `approval` (a fork's pull request) waits in status `approval`, ordering
nothing, until `run.approve` makes it an ordinary queued run (`shared.approval`).

Leases: each order of a job is an attempt (1, 2, ...). An executor's claim (`job.started`) of
the current attempt of a queued job is granted (the job is running, held by that executor until
`lease` seconds after the last heartbeat); any other claim or heartbeat is refused, so at most
one executor holds an attempt, and anything a lost attempt still says (heartbeat, finish) is
ignored. A lease that ran out (`job.expired`) or was given back orders attempt + 1.

Retries (a job's `retry:`): an attempt that ends in a status its `retry.on` names orders attempt
+ 1 too, while the job has tries left; the job stays queued (no failure is told to the git host
before its last try). Every attempt that is over is kept on the job (`JobRecord.attempts`: how
it ended, its exit code, its log's length; a lost lease is recorded as `lost` and is not a try),
and a job that passed only after a retry is `flaky`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tasuki.shared import approval
from tasuki.shared.messages import (
    JOB_FINAL,
    RUN_FINAL,
    JobExpired,
    JobFinished,
    JobHeartbeat,
    JobOrder,
    JobStarted,
    JobUpdated,
    LeaseAnswer,
    Message,
    PlanOrder,
    RunApprove,
    RunCancel,
    RunPlanned,
    RunRequested,
    RunStatus,
    RunUpdated,
    RunWake,
)
from tasuki.shared.store import AttemptRecord, JobRecord, RunRecord

FAILED = frozenset({"failure", "timeout"})
# A job whose executor is lost this many times ends in error rather than being ordered again.
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class JobState:
    status: str
    needs: tuple[str, ...] = ()


@dataclass
class Advance:
    ready: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def advance(jobs: Mapping[str, JobState]) -> Advance:
    """Pending jobs to queue now, and pending jobs that can never run (skipped, transitively)."""
    status = {name: job.status for name, job in jobs.items()}
    result = Advance()
    changed = True
    while changed:
        changed = False
        for name in sorted(jobs):
            if status[name] != "pending":
                continue
            needs = [status.get(n, "skipped") for n in jobs[name].needs]
            if any(s in JOB_FINAL and s != "success" for s in needs):
                status[name] = "skipped"
                result.skipped.append(name)
                changed = True
    for name in sorted(jobs):
        if status[name] == "pending" and all(status.get(n) == "success" for n in jobs[name].needs):
            result.ready.append(name)
    return result


def run_status(statuses: list[str], *, cancelled: bool = False) -> RunStatus:
    """The run's status from its jobs' statuses."""
    if cancelled:
        return "cancelled"
    if not all(s in JOB_FINAL for s in statuses):
        started = any(s == "running" or (s in JOB_FINAL and s != "skipped") for s in statuses)
        return "running" if started else "queued"
    if any(s in FAILED for s in statuses):
        return "failure"
    if "error" in statuses:
        return "error"
    if "cancelled" in statuses:
        return "cancelled"
    return "success"


# --- the dispatcher's decisions -----------------------------------------------------------------


@dataclass
class Decision:
    """What the dispatcher must do for one message, in this order: publish `publish`, record
    `run` and `jobs`; then, with the store, `supersede` (cancel the older runs this one replaces),
    `admit` (take a place for the run, and order its plan once it has one) and `release` (wake the
    runs of the repository that wait for a place: this run is over)."""

    run: RunRecord | None = None
    jobs: list[JobRecord] = field(default_factory=list)
    publish: list[Message] = field(default_factory=list)
    supersede: bool = False
    admit: bool = False
    release: bool = False


def decide(
    run: RunRecord | None, jobs: Mapping[str, JobRecord], message: Message, now: datetime, *, lease: float = 60.0
) -> Decision:
    """The pure core of the dispatcher: current state + one message -> effects. Idempotent: a
    message that was already applied decides nothing new, except what a crash between recording
    and the store-backed steps may have left undone (those steps are idempotent too). `lease` is
    how long a granted claim or a heartbeat holds the job (seconds)."""
    if isinstance(message, RunRequested):
        return _requested(run, jobs, message, now)
    if run is None or run.status in RUN_FINAL:
        # An executor asking about a job of a run that is over (or unknown) gets its answer.
        refusal = _refusal(run, jobs, message)
        if run is None:
            return Decision(publish=refusal)
        # A late or duplicate message. If it is the one that finished the run, redelivered after
        # a crash, the runs waiting for a place may not have been woken: wake them (again).
        return Decision(publish=refusal, release=True)
    if isinstance(message, RunApprove):
        return _approved(run, message)
    if run.status == approval.STATUS and not isinstance(message, RunCancel):
        # Nothing of a run waiting for approval runs: a plan or a claim (stray, or forged by
        # whoever can publish) is refused, a wake-up waits for the approval.
        return Decision(publish=_refusal(run, jobs, message))
    if isinstance(message, RunWake):
        return Decision(admit=True) if _unplanned(run, jobs) else Decision()
    if isinstance(message, RunPlanned):
        return _planned(run, jobs, message, now)
    if isinstance(message, JobStarted):
        return _claimed(run, jobs, message, now, timedelta(seconds=lease))
    if isinstance(message, JobHeartbeat):
        return _heartbeat(run, jobs, message, now, timedelta(seconds=lease))
    if isinstance(message, JobExpired):
        return _expired(run, jobs, message, now)
    if isinstance(message, JobFinished):
        return _finished(run, jobs, message, now)
    if isinstance(message, RunCancel):
        return _cancel(run, jobs, message, now)
    return Decision()


# --- leases -------------------------------------------------------------------------------------


def _answer(msg: JobStarted | JobHeartbeat, granted: bool, reason: str = "") -> list[Message]:
    """The answer to the executor that sent `msg` (none to a sender that gave no id)."""
    if not msg.executor:
        return []
    answer = LeaseAnswer(
        run_id=msg.run_id,
        job=msg.job,
        attempt=msg.attempt,
        executor=msg.executor,
        granted=granted,
        reason=reason,
        sent=msg.sent if isinstance(msg, JobHeartbeat) else 0.0,
    )
    return [answer]


def refused_because(job: JobRecord | None, msg: JobStarted | JobHeartbeat, run: RunRecord | None) -> str:
    """Why this claim or heartbeat is refused, or "" when it holds."""
    if run is None or job is None:
        return "unknown: the store has no such job"
    if job.status == "cancelled" or run.status == "cancelled":
        return "cancelled"
    if job.status in JOB_FINAL or run.status in RUN_FINAL:
        return "finished"
    if msg.attempt != job.attempt:
        return f"superseded: attempt {job.attempt} is the current one"
    if job.status == "running" and job.executor != msg.executor:
        return f"held by executor {job.executor}"
    if isinstance(msg, JobHeartbeat) and job.status != "running":
        return "not running: the lease was given up"
    return ""


def _refusal(run: RunRecord | None, jobs: Mapping[str, JobRecord], msg: Message) -> list[Message]:
    if isinstance(msg, JobStarted | JobHeartbeat) and not getattr(msg, "release", False):
        return _answer(msg, False, refused_because(jobs.get(msg.job), msg, run))
    return []


def _claimed(
    run: RunRecord, jobs: Mapping[str, JobRecord], msg: JobStarted, now: datetime, lease: timedelta
) -> Decision:
    job = jobs.get(msg.job)
    reason = refused_because(job, msg, run)
    if reason or job is None:
        return Decision(publish=_refusal(run, jobs, msg))
    if job.status == "running":  # the same executor claims again (its grant was lost)
        return Decision(publish=_answer(msg, True))
    held = job.model_copy(
        update={
            "status": "running",
            "executor": msg.executor,
            "lease_expires": now + lease,
            "started_at": msg.at,
            "message": "",
        }
    )
    decision = _advance(run, {**jobs, job.name: held}, now, changed=[held])
    decision.publish[:0] = _answer(msg, True)
    return decision


def _heartbeat(
    run: RunRecord, jobs: Mapping[str, JobRecord], msg: JobHeartbeat, now: datetime, lease: timedelta
) -> Decision:
    job = jobs.get(msg.job)
    reason = refused_because(job, msg, run)
    if reason or job is None:
        return Decision(publish=[] if msg.release else _answer(msg, False, reason))
    if msg.release:
        why = f"executor {msg.executor} stopped (attempt {job.attempt}); ordered again"
        return _again(run, _lost(job, now), now, why)
    return Decision(jobs=[job.model_copy(update={"lease_expires": now + lease})], publish=_answer(msg, True))


def _expired(run: RunRecord, jobs: Mapping[str, JobRecord], msg: JobExpired, now: datetime) -> Decision:
    job = jobs.get(msg.job)
    if job is None or job.status != "running" or job.attempt != msg.attempt:
        return Decision()
    if job.lease_expires is None or job.lease_expires > now:
        return Decision()  # renewed since the tick looked
    why = f"executor {job.executor} stopped answering (attempt {job.attempt}); ordered again"
    job = _lost(job, now)
    if sum(a.status == "lost" for a in job.attempts) >= MAX_ATTEMPTS:
        lost = job.model_copy(
            update={
                "status": "error",
                "reason": "executor-lost",
                "message": f"its executor stopped answering {job.attempt} times; not ordered again",
                "finished_at": now,
                "lease_expires": None,
            }
        )
        return _advance(run, {**jobs, job.name: lost}, now, changed=[lost])
    return _again(run, job, now, why)


def _lost(job: JobRecord, now: datetime) -> JobRecord:
    """The job with its current attempt recorded as lost (its executor stopped or is gone)."""
    lost = AttemptRecord(attempt=job.attempt, status="lost", started_at=job.started_at, finished_at=now)
    return job.model_copy(update={"attempts": [*job.attempts, lost]})


def _again(run: RunRecord, job: JobRecord, now: datetime, why: str) -> Decision:
    """Order the next attempt of a job whose executor is gone, or whose `retry:` runs it again
    (the run's status stays)."""
    again = job.model_copy(
        update={
            "status": "queued",
            "attempt": job.attempt + 1,
            "executor": "",
            "lease_expires": None,
            "started_at": None,
            "exit_code": None,
            "message": why,
        }
    )
    return Decision(jobs=[again], publish=[job_order(run, again), _job_updated(run, again)])


def job_order(run: RunRecord, job: JobRecord) -> JobOrder:
    assert job.spec is not None, "a job is ordered only once planned in full"
    why = job.message if job.attempt > 1 else ""
    # A re-run of failed jobs keeps jobs that succeeded earlier: their artifacts are where they ran.
    elsewhere = {need: ran_in(run, need) for need in job.spec.needs if need in run.kept and run.rerun_of}
    return JobOrder(run_id=run.id, event=run.event, job=job.spec, attempt=job.attempt, why=why, artifact_runs=elsewhere)


def ran_in(run: RunRecord, kept: str) -> str:
    """The run where a job `run` kept ran (its artifacts are there): the run it re-runs, or the
    one that run had kept it from, however many re-runs back."""
    return run.kept_from.get(kept) or run.rerun_of


def not_ordered(
    run: RunRecord | None, jobs: Mapping[str, JobRecord], decision: Decision, why: str, now: datetime
) -> Decision:
    """`decision`, but the jobs it orders are not ordered: each ends in error with `why` (the run's
    repository cannot be cloned), as a failed checkout would end it, so its dependants are
    skipped and the run ends (error)."""
    run = decision.run or run
    orders = [m for m in decision.publish if isinstance(m, JobOrder)]
    if run is None or not orders:
        return decision
    current = {**jobs, **{j.name: j for j in decision.jobs}}
    failed = [
        current[order.job.name].model_copy(
            update={
                "status": "error",
                "reason": "checkout-failed",
                "message": why,
                "finished_at": now,
                "lease_expires": None,
            }
        )
        for order in orders
    ]
    then = _advance(run, {**current, **{j.name: j for j in failed}}, now, changed=failed)
    return Decision(
        run=then.run or decision.run,
        jobs=list({j.name: j for j in (*decision.jobs, *then.jobs)}.values()),
        publish=[*(m for m in decision.publish if not isinstance(m, JobOrder)), *then.publish],
        supersede=decision.supersede,
        admit=decision.admit,
        release=decision.release or then.release,
    )


def _unplanned(run: RunRecord, jobs: Mapping[str, JobRecord]) -> bool:
    return run.status == "queued" and not jobs


def _requested(run: RunRecord | None, jobs: Mapping[str, JobRecord], msg: RunRequested, now: datetime) -> Decision:
    if run is not None:
        if run.status in RUN_FINAL:
            return Decision(release=True)
        # Seen before (a redelivery): redo what may have been lost if it is not planned yet.
        return Decision(supersede=True, admit=True) if _unplanned(run, jobs) else Decision()
    run = RunRecord(
        id=msg.run_id,
        rule_id=msg.rule_id,
        event=msg.event,
        flow_file=msg.flow_file,
        created_at=now,
        requested_jobs=list(msg.jobs),
        cancel_previous=msg.cancel_previous,
        concurrency=msg.concurrency,
        rerun_of=msg.rerun_of,
        kept=list(msg.keep),
        kept_from={name: origin for name, origin in msg.kept_from.items() if name in msg.keep},
    )
    if msg.approval:  # a fork's pull request: nothing is ordered (not even its plan) until approved
        run = run.model_copy(update={"status": approval.STATUS, "message": approval.waiting_message(msg.event)})
        return Decision(run=run, publish=[_run_updated(run)], supersede=True)
    return Decision(run=run, publish=[_run_updated(run)], supersede=True, admit=True)


def _approved(run: RunRecord, msg: RunApprove) -> Decision:
    """A run waiting for approval becomes an ordinary queued run (then takes its place and is
    planned); any other run is left as it is (approving twice, or a cancelled run, changes nothing)."""
    if run.status != approval.STATUS:
        return Decision()
    run = run.model_copy(update={"status": "queued", "message": "", "approved_by": msg.by or "someone"})
    return Decision(run=run, publish=[_run_updated(run)], admit=True)


def plan_order(run: RunRecord) -> PlanOrder:
    """The order to read the run's flow file, sent once the run has a place."""
    return PlanOrder(run_id=run.id, event=run.event, flow_file=run.flow_file, jobs=run.requested_jobs)


def waiting_message(run: RunRecord) -> str:
    return (
        f"waiting for a place: at most {run.concurrency} unfinished run{'s' if run.concurrency != 1 else ''} "
        f"of {run.repository} at a time"
    )


def waiting(runs: Iterable[RunRecord], *, besides: str = "") -> list[RunWake]:
    """Wake-ups for the runs that wait for a place (oldest first)."""
    return [RunWake(run_id=r.id) for r in runs if not r.admitted and r.concurrency and r.id != besides]


def superseded(run: RunRecord, others: Iterable[RunRecord]) -> list[RunCancel]:
    """`cancel_previous`: of two unfinished runs of one rule for the same branch (or pull
    request), the older is cancelled when the newer one's rule says so. Either run may be `run`:
    whichever of two concurrent requests sees both cancels the older."""
    key = _branch_key(run)
    cancels = []
    for other in others:
        if other.id == run.id or key is None or _branch_key(other) != key or other.status in RUN_FINAL:
            continue
        older, newer = sorted((run, other), key=lambda r: (r.created_at, r.id))
        if newer.cancel_previous:
            cancels.append(RunCancel(run_id=older.id, reason=f"superseded by run {newer.id}, a newer {_what(newer)}"))
    return cancels


def _branch_key(run: RunRecord) -> tuple[str, ...] | None:
    event = run.event
    if event.kind == "pull_request" and event.pull_request is not None:
        return (run.rule_id, run.repository, "pull request", str(event.pull_request.number))
    if event.kind == "push" and event.ref is not None:
        return (run.rule_id, run.repository, "branch", event.ref.name)
    return None  # tags are not superseded


def _what(run: RunRecord) -> str:
    event = run.event
    if event.kind == "pull_request" and event.pull_request is not None:
        return f"change to pull request #{event.pull_request.number}"
    return f"push to {event.ref.name if event.ref else 'the branch'}"


def _planned(run: RunRecord, jobs: Mapping[str, JobRecord], msg: RunPlanned, now: datetime) -> Decision:
    if jobs:
        return Decision()  # planned already
    if msg.error:
        run = run.model_copy(update={"status": "error", "message": msg.error, "finished_at": now})
        return Decision(run=run, publish=[_run_updated(run)], release=True)
    resolved = with_plan(run, msg)
    planned = {
        name: JobRecord(run_id=run.id, name=name, spec=job, needs=list(job.needs)) for name, job in msg.jobs.items()
    }
    for name in msg.skipped:
        planned[name] = JobRecord(
            run_id=run.id,
            name=name,
            status="skipped",
            message="skipped: its 'when' does not match this event",
        )
    planned.update(kept_jobs(resolved, planned, now))
    decision = _advance(resolved, planned, now, changed=list(planned.values()))
    if decision.run is None and resolved != run:
        decision.run = resolved
    return decision


def with_plan(run: RunRecord, msg: RunPlanned) -> RunRecord:
    """What the plan tells about the run: a manual run's commit (its branch's head) and its
    parameters, checked; the flow file's declared parameters."""
    update: dict = {"declared_params": dict(msg.declared)}
    if msg.commit and not run.event.after:
        update["event"] = run.event.model_copy(update={"after": msg.commit, "params": dict(msg.params)})
    return run.model_copy(update=update)


def kept_jobs(run: RunRecord, planned: Mapping[str, JobRecord], now: datetime) -> dict[str, JobRecord]:
    """A re-run of failed jobs: the jobs it keeps (they succeeded in the run it re-runs) are
    recorded as succeeded, not ordered (`shared.reruns`)."""
    return {
        name: planned[name].model_copy(
            update={
                "status": "success",
                "message": f"kept: it succeeded in run {ran_in(run, name)}",
                "finished_at": now,
            }
        )
        for name in run.kept
        if name in planned and planned[name].status == "pending"
    }


def _finished(run: RunRecord, jobs: Mapping[str, JobRecord], msg: JobFinished, now: datetime) -> Decision:
    job = jobs.get(msg.job)
    if job is None or job.status in JOB_FINAL or job.attempt != msg.attempt:
        return Decision()  # over already, or a late answer of a lost attempt
    ended = AttemptRecord(
        attempt=msg.attempt,
        status=msg.status,
        exit_code=msg.exit_code,
        reason=msg.reason,
        message=msg.message,
        started_at=job.started_at or msg.at,
        finished_at=msg.at,
        log_chunks=msg.log_chunks,
    )
    job = job.model_copy(update={"attempts": [*job.attempts, ended]})
    retry = job.spec.retry if job.spec else None
    if retry is not None and retry.again(msg.status, job.tries):
        # The job stays unfinished (queued): commit statuses say it is still going until its last try.
        return _again(run, job, now, retry.why(job.tries, ended.attempt, ended.status, ended.exit_code, ended.message))
    job = job.model_copy(
        update={
            "status": msg.status,
            "lease_expires": None,
            "log_chunks": msg.log_chunks,
            "artifacts": msg.artifacts,
            "exit_code": msg.exit_code,
            "reason": msg.reason,
            "message": msg.message,
            "started_at": job.started_at or msg.at,
            "finished_at": msg.at,
            "flaky": msg.status == "success" and job.tries > 1,
        }
    )
    return _advance(run, {**jobs, job.name: job}, now, changed=[job])


def _cancel(run: RunRecord, jobs: Mapping[str, JobRecord], msg: RunCancel, now: datetime) -> Decision:
    changed = [
        j.model_copy(update={"status": "cancelled", "message": msg.reason, "finished_at": now, "lease_expires": None})
        for j in jobs.values()
        if j.status not in JOB_FINAL
    ]
    # The executors holding running jobs are told at once: their leases are refused.
    stops = [
        LeaseAnswer(
            run_id=run.id, job=j.name, attempt=j.attempt, executor=j.executor, granted=False, reason="cancelled"
        )
        for j in jobs.values()
        if j.status == "running" and j.executor
    ]
    run = run.model_copy(update={"status": "cancelled", "message": msg.reason, "finished_at": now})
    return Decision(
        run=run,
        jobs=changed,
        publish=[*stops, *(_job_updated(run, j) for j in changed), _run_updated(run)],
        release=True,
    )


def _advance(run: RunRecord, jobs: Mapping[str, JobRecord], now: datetime, changed: list[JobRecord]) -> Decision:
    """Apply `changed`, skip what can never run, queue what is ready, derive the run's status."""
    decision = Decision()
    current = dict(jobs)
    step = advance({n: JobState(j.status, tuple(j.needs)) for n, j in current.items()})
    changed_by_name = {j.name: j for j in changed}
    for name in step.skipped:
        job = current[name].model_copy(
            update={"status": "skipped", "message": "skipped: a job it needs did not succeed", "finished_at": now}
        )
        current[name] = changed_by_name[name] = job
    for name in step.ready:
        job = current[name].model_copy(update={"status": "queued", "attempt": current[name].attempt + 1})
        current[name] = changed_by_name[name] = job
        decision.publish.append(job_order(run, job))
    decision.jobs = list(changed_by_name.values())
    decision.publish.extend(_job_updated(run, j) for j in decision.jobs if j.status != "pending")

    status = run_status([j.status for j in current.values()])
    if status != run.status:
        update: dict = {"status": status}
        if status != "queued" and run.started_at is None:
            update["started_at"] = now
        if status in RUN_FINAL:
            update["finished_at"] = now
            update["message"] = _summary(current)
            decision.release = True
        run = run.model_copy(update=update)
        decision.run = run
        decision.publish.append(_run_updated(run))
    return decision


def _summary(jobs: Mapping[str, JobRecord]) -> str:
    """One line for the run: what went wrong, or how many jobs passed."""
    skipped = sorted(j.name for j in jobs.values() if j.status == "skipped")
    bad = [j for j in jobs.values() if j.status in ("failure", "timeout", "error", "cancelled")]
    if not bad:
        passed = sum(j.status == "success" for j in jobs.values())
        if not passed:
            return "no job ran: every job's 'when' skips this event"
        text = f"{passed} job{'s' if passed != 1 else ''} passed"
        return text + (f"; skipped: {', '.join(skipped)}" if skipped else "")
    text = "; ".join(
        f"{j.name}: {j.status}"
        + (f" (exit code {j.exit_code})" if j.exit_code not in (None, 0) else "")
        + (f": {j.message}" if j.message else "")
        for j in sorted(bad, key=lambda j: j.name)
    )
    return text + (f"; skipped: {', '.join(skipped)}" if skipped else "")


def _run_updated(run: RunRecord) -> RunUpdated:
    return RunUpdated(run_id=run.id, status=run.status, event=run.event, message=run.message, rule_id=run.rule_id)


def _job_updated(run: RunRecord, job: JobRecord) -> JobUpdated:
    return JobUpdated(
        run_id=run.id,
        job=job.name,
        status=job.status,
        event=run.event,
        exit_code=job.exit_code,
        message=job.message,
        rule_id=run.rule_id,
    )
