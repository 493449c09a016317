"""Commit statuses: what Tasuki tells the git host about a run and each of its jobs.

`status_for()` is pure: a run.updated / job.updated notice -> one `CommitStatus` (state, a key
stable per rule and job, a name, the run page's URL, a description). `request_for()` asks the
event's host (`shared/hosts/`, `GitHost.status_request`) for its HTTP request: its URL, its
state names, its authentication. `send()` makes the request, and the host says what its answer
means (`GitHost.status_outcome`):

    done     2xx, or an answer the host says changes nothing         -> the HTTP status
    retry    5xx, 429, the host's rate limit, timeouts, no connection -> `HostUnavailable`, with
             Retry-After: the reporter nacks; the bridge retries with backoff, finally dead-letters
    refused  any other 4xx (bad token, unknown commit, invalid field) -> `HostRefused`, with the
             host's own message: the reporter acks and notes it on the run (retrying cannot help)

Credentials come from the repository registry and never appear in messages or logs.
"""

from __future__ import annotations

import hashlib

import requests

from tasuki.shared.errors import HostRefused, HostUnavailable
from tasuki.shared.hosts import HOSTS, CommitStatus, StatusAnswer, StatusRequest
from tasuki.shared.hosts.common import said
from tasuki.shared.messages import JobUpdated, RunUpdated
from tasuki.shared.registry import RepositoryConfig

TIMEOUT = 10  # seconds; the bridge's ack deadline is at least 10 s
CONTEXT = "tasuki"

DESCRIPTIONS = {
    "pending": "waiting",
    "queued": "queued",
    "running": "running",
    "success": "passed",
    "skipped": "skipped",
    "failure": "failed",
    "error": "could not run",
    "timeout": "timed out",
    "cancelled": "cancelled",
}


def status_key(rule_id: str, job: str = "") -> str:
    """Stable per rule and job, at most 40 characters (Bitbucket's limit for keys)."""
    base = f"tasuki-{rule_id or 'run'}"
    if not job:
        return base[:40]
    key = f"{base}-{job}"
    if len(key) <= 40:
        return key
    return f"{base[:26]}-{hashlib.sha256(job.encode()).hexdigest()[:13]}"


def status_for(notice: RunUpdated | JobUpdated, web_url: str) -> CommitStatus | None:
    """The commit status for a notice; None when there is no commit to put it on."""
    event = notice.event
    if not event.after or event.host not in HOSTS:
        return None
    job = notice.job if isinstance(notice, JobUpdated) else ""
    detail = DESCRIPTIONS.get(notice.status, notice.status)
    if isinstance(notice, JobUpdated) and notice.exit_code not in (None, 0):
        detail += f" (exit code {notice.exit_code})"
    if notice.message and notice.status not in ("success", "queued", "pending", "running"):
        detail += f": {notice.message}"
    name = f"{CONTEXT}/{job}" if job else CONTEXT
    ref = event.pull_request.source_branch if event.pull_request else (event.ref.name if event.ref else "")
    return CommitStatus(
        host=event.host,
        repository=event.repository.full_name,
        commit=event.after,
        key=status_key(notice.rule_id, job),
        name=name,
        state=notice.status,
        url=f"{web_url.rstrip('/')}/runs/{notice.run_id}" + (f"#job-{job}" if job else ""),
        description=_clip(f"{'Job ' + job if job else 'Run'} {detail}", 140),
        refname=ref,
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the host's request and answer -----------------------------------------------------------------


def request_for(status: CommitStatus, api_url: str, credentials: RepositoryConfig | None) -> StatusRequest:
    """The host's request for `status`, to its API at `api_url` (or its public API when "")."""
    host = HOSTS[status.host]
    return host.status_request(status, (api_url or host.api_url).rstrip("/"), credentials or RepositoryConfig())


def send(request: StatusRequest, host: str, session: requests.Session | None = None) -> int:
    """Make the request to `host`; the HTTP status when the host took it, else `HostUnavailable`
    (it may pass) or `HostRefused` (for good), with the host's own words."""
    http = session or requests
    where = request.url.split("?")[0]
    try:
        response = http.request(
            request.method, request.url, headers=request.headers, json=request.json, timeout=TIMEOUT
        )
    except requests.Timeout:
        raise HostUnavailable(f"{where} did not answer within {TIMEOUT}s") from None
    except requests.RequestException as exc:
        raise HostUnavailable(f"cannot reach {where}: {type(exc).__name__}") from None
    answer = StatusAnswer(response.status_code, response.headers, response.text)
    outcome = HOSTS[host].status_outcome(answer)
    if outcome == "done":
        return answer.code
    words = said(answer) or response.reason
    if outcome == "retry":
        raise HostUnavailable(f"{where} answered {answer.code}: {words}", retry_after=_retry_after(answer))
    raise HostRefused(f"{where} refused the status ({answer.code}): {words}")


def _retry_after(answer: StatusAnswer) -> float | None:
    value = answer.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
