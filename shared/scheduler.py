"""Scheduling a run's DAG: pure decisions, no I/O (the dispatcher does the I/O).

Given every job's status and needs, `advance()` says which pending jobs become `skipped`
(a need ended other than in success) and which are ready to queue (every need succeeded).
`run_status()` derives the run's status from its jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared.messages import (
    JOB_FINAL,
    RUN_FINAL,
    JobFinished,
    JobOrder,
    JobStarted,
    JobUpdated,
    Message,
    PlanOrder,
    RunCancel,
    RunPlanned,
    RunRequested,
    RunStatus,
    RunUpdated,
)
from shared.store import JobRecord, RunRecord

FAILED = frozenset({"failure", "timeout"})


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
        started = any(s not in ("pending", "queued") for s in statuses)
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
    """What the dispatcher must do for one message: publish these, then write these records."""

    run: RunRecord | None = None
    jobs: list[JobRecord] = field(default_factory=list)
    publish: list[Message] = field(default_factory=list)


def decide(run: RunRecord | None, jobs: Mapping[str, JobRecord], message: Message, now: datetime) -> Decision:
    """The pure core of the dispatcher: current state + one message -> effects. Idempotent: a
    message that was already applied decides nothing new."""
    if isinstance(message, RunRequested):
        return _requested(run, jobs, message, now)
    if run is None or run.status in RUN_FINAL:
        return Decision()  # unknown or finished run: a late or duplicate message
    if isinstance(message, RunPlanned):
        return _planned(run, jobs, message, now)
    if isinstance(message, JobStarted):
        return _started(run, jobs, message, now)
    if isinstance(message, JobFinished):
        return _finished(run, jobs, message, now)
    if isinstance(message, RunCancel):
        return _cancel(run, jobs, message, now)
    return Decision()


def _requested(run: RunRecord | None, jobs: Mapping[str, JobRecord], msg: RunRequested, now: datetime) -> Decision:
    order = PlanOrder(run_id=msg.run_id, event=msg.event, flow_file=msg.flow_file, jobs=msg.jobs)
    if run is not None:
        # Seen before. Only re-send the plan order if it may have been lost (nothing planned yet).
        return Decision(publish=[order]) if run.status == "queued" and not jobs else Decision()
    run = RunRecord(
        id=msg.run_id, rule_id=msg.rule_id, event=msg.event, flow_file=msg.flow_file, jobs=msg.jobs, created_at=now
    )
    return Decision(run=run, publish=[order, _run_updated(run)])


def _planned(run: RunRecord, jobs: Mapping[str, JobRecord], msg: RunPlanned, now: datetime) -> Decision:
    if jobs:
        return Decision()  # planned already
    if msg.error:
        run = run.model_copy(update={"status": "error", "message": msg.error, "finished_at": now})
        return Decision(run=run, publish=[_run_updated(run)])
    planned = {
        name: JobRecord(run_id=run.id, name=name, spec=job, needs=list(job.needs))
        for name, job in msg.jobs.items()
    }
    for name in msg.skipped:
        planned[name] = JobRecord(
            run_id=run.id, name=name, status="skipped", message="skipped: its 'when' does not match this event",
        )
    return _advance(run, planned, now, changed=list(planned.values()))


def _started(run: RunRecord, jobs: Mapping[str, JobRecord], msg: JobStarted, now: datetime) -> Decision:
    job = jobs.get(msg.job)
    if job is None or job.status in JOB_FINAL or job.status == "running":
        return Decision()
    job = job.model_copy(update={"status": "running", "started_at": msg.at})
    return _advance(run, {**jobs, job.name: job}, now, changed=[job])


def _finished(run: RunRecord, jobs: Mapping[str, JobRecord], msg: JobFinished, now: datetime) -> Decision:
    job = jobs.get(msg.job)
    if job is None or job.status in JOB_FINAL:
        return Decision()
    job = job.model_copy(
        update={
            "status": msg.status,
            "exit_code": msg.exit_code,
            "reason": msg.reason,
            "message": msg.message,
            "started_at": job.started_at or msg.at,
            "finished_at": msg.at,
        }
    )
    return _advance(run, {**jobs, job.name: job}, now, changed=[job])


def _cancel(run: RunRecord, jobs: Mapping[str, JobRecord], msg: RunCancel, now: datetime) -> Decision:
    changed = [
        j.model_copy(update={"status": "cancelled", "message": msg.reason, "finished_at": now})
        for j in jobs.values()
        if j.status not in JOB_FINAL
    ]
    run = run.model_copy(update={"status": "cancelled", "message": msg.reason, "finished_at": now})
    return Decision(run=run, jobs=changed, publish=[*(_job_updated(run, j) for j in changed), _run_updated(run)])


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
        job = current[name].model_copy(update={"status": "queued"})
        current[name] = changed_by_name[name] = job
        decision.publish.append(JobOrder(run_id=run.id, event=run.event, job=job.spec))
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
        run = run.model_copy(update=update)
        decision.run = run
        decision.publish.append(_run_updated(run))
    return decision


def _summary(jobs: Mapping[str, JobRecord]) -> str:
    bad = [j for j in jobs.values() if j.status in ("failure", "timeout", "error")]
    if not bad:
        return f"{len(jobs)} job{'s' if len(jobs) != 1 else ''} passed" if jobs else "no job to run"
    return "; ".join(
        f"{j.name}: {j.status}" + (f" (exit code {j.exit_code})" if j.exit_code not in (None, 0) else "")
        + (f": {j.message}" if j.message else "")
        for j in bad
    )


def _run_updated(run: RunRecord) -> RunUpdated:
    return RunUpdated(run_id=run.id, status=run.status, event=run.event, message=run.message, rule_id=run.rule_id)


def _job_updated(run: RunRecord, job: JobRecord) -> JobUpdated:
    return JobUpdated(
        run_id=run.id, job=job.name, status=job.status, event=run.event, exit_code=job.exit_code,
        message=job.message, rule_id=run.rule_id,
    )
