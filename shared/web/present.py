"""Presenting records to people: durations, refs, first lines. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tasuki.shared.messages import RUN_FINAL
from tasuki.shared.store import JobRecord, RunRecord


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def ref(run: RunRecord) -> str:
    event = run.event
    if event.pull_request:
        pr = event.pull_request
        return f"PR #{pr.number} {pr.source_branch} → {pr.target_branch}"
    if event.ref:
        return event.ref.name if event.ref.kind == "branch" else f"tag {event.ref.name}"
    return ""


def run_view(run: RunRecord) -> dict[str, Any]:
    event = run.event
    message = event.head_message.strip().splitlines()[0] if event.head_message.strip() else ""
    if event.pull_request and event.pull_request.title:
        message = event.pull_request.title
    return {
        "id": run.id,
        "repository": run.repository,
        "ref": ref(run),
        "commit": run.commit,
        "message": message,
        "actor": event.actor,
        "status": run.status,
        "summary": run.message,
        "final": run.status in RUN_FINAL,
        "duration": duration(run.duration),
        "created": when(run.created_at),
        "delivery": event.delivery_id,
        "manual": event.kind == "manual",
        "params": dict(event.params),
        "rerun_of": run.rerun_of,
        "kept": run.kept,
    }


def job_view(job: JobRecord) -> dict[str, Any]:
    seconds = None
    if job.started_at and job.finished_at:
        seconds = (job.finished_at - job.started_at).total_seconds()
    return {
        "name": job.name,
        "status": job.status,
        "exit_code": job.exit_code,
        "message": job.message,
        "duration": duration(seconds),
        "needs": job.needs,
    }
