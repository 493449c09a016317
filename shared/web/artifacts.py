"""A run's artifacts on the page and in the API: the list (names and sizes, from the store) and
each file's download, streamed from object storage. Only a file the job's record lists can be
downloaded: the path in the URL is a sender's, the record is Tasuki's."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from tasuki.shared import objects
from tasuki.shared.errors import ActionError
from tasuki.shared.runtime import Runtime
from tasuki.shared.store import JobRecord
from tasuki.shared.text import size_text
from tasuki.shared.web import actions


def url(run_id: str, job: str, path: str) -> str:
    return f"/api/runs/{quote(run_id, safe='')}/artifacts/{quote(job, safe='')}/{quote(path)}"


def of_jobs(jobs: list[JobRecord]) -> list[dict[str, Any]]:
    """Every artifact of the run's jobs, in job order: job, path, size, size_text, url."""
    return [
        {
            "job": job.name,
            "path": a.path,
            "size": a.size,
            "size_text": size_text(a.size),
            "url": url(job.run_id, job.name, a.path),
        }
        for job in jobs
        for a in job.artifacts
    ]


def listing(rt: Runtime, request: Request, run_id: str) -> Response:
    from tasuki.shared.web.api import reply

    actions.get_run(rt, run_id)
    return reply({"artifacts": of_jobs(rt.store.get_jobs(run_id))})


def download(rt: Runtime, request: Request, run_id: str, job: str, path: str) -> Response:
    actions.get_run(rt, run_id)
    record = next((j for j in rt.store.get_jobs(run_id) if j.name == job), None)
    if record is None:
        raise ActionError(404, f"run {run_id} has no job {job!r}")
    artifact = next((a for a in record.artifacts if a.path == path), None)
    if artifact is None:
        raise ActionError(404, f"job {job} of run {run_id} kept no artifact {path!r}")
    chunks = objects.open_objects(rt.settings).chunks(objects.artifact_key(run_id, job, path))
    name = path.rpartition("/")[2]
    return Response(
        chunks,
        mimetype="application/octet-stream",
        headers={
            "Content-Length": str(artifact.size),
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
            "X-Content-Type-Options": "nosniff",
        },
        direct_passthrough=True,
    )
