"""Commit statuses: what Tasuki tells the git host about a run and each of its jobs.

`status_for()` is pure: a run.updated / job.updated notice -> one `CommitStatus` (state, a key
stable per rule and job, a name, the run page's URL, a description). `request_for()` turns it
into the host's HTTP request, and `send()` makes the request and sorts the answer:

    2xx                               -> done
    5xx, 429, timeouts, no connection -> `HostUnavailable` (the reporter nacks; the bridge retries
                                         with backoff and finally dead-letters), with Retry-After
    other 4xx (bad token, unknown     -> `HostRefused` with the host's own message (the reporter
    commit, invalid field)               acks and notes it on the run: retrying cannot help)

    Bitbucket  POST {api}/repositories/{workspace}/{slug}/commit/{sha}/statuses/build
               {key, state: INPROGRESS|SUCCESSFUL|FAILED|STOPPED, name, url, description, refname}
    GitHub     POST {api}/repos/{owner}/{repo}/statuses/{sha}
               {state: pending|success|failure|error, context, target_url, description}
    GitLab     POST {api}/projects/{url-encoded path}/statuses/{sha}
               {state: pending|running|success|failed|canceled|skipped, name, target_url,
                description, ref}

Credentials come from the repository registry and never appear in messages or logs.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from tasuki.shared.errors import HostRefused, HostUnavailable
from tasuki.shared.messages import JobUpdated, RunUpdated
from tasuki.shared.registry import RepositoryConfig

TIMEOUT = 10  # seconds; the bridge's ack deadline is at least 10 s
CONTEXT = "tasuki"


@dataclass(frozen=True)
class CommitStatus:
    host: str
    repository: str  # full name, e.g. acme/api or group/sub/project
    commit: str
    key: str  # stable per rule and job: a later status with the same key replaces the earlier
    name: str
    state: str  # Tasuki's status: queued, running, success, failure, error, timeout, cancelled, skipped
    url: str
    description: str
    refname: str = ""


BITBUCKET_STATES = {
    "pending": "INPROGRESS",
    "queued": "INPROGRESS",
    "running": "INPROGRESS",
    "success": "SUCCESSFUL",
    "skipped": "SUCCESSFUL",
    "failure": "FAILED",
    "error": "FAILED",
    "timeout": "FAILED",
    "cancelled": "STOPPED",
}
GITHUB_STATES = {
    "pending": "pending",
    "queued": "pending",
    "running": "pending",
    "success": "success",
    "skipped": "success",
    "failure": "failure",
    "timeout": "failure",
    "error": "error",
    "cancelled": "error",
}
GITLAB_STATES = {
    "pending": "pending",
    "queued": "pending",
    "running": "running",
    "success": "success",
    "skipped": "skipped",
    "failure": "failed",
    "error": "failed",
    "timeout": "failed",
    "cancelled": "canceled",
}
STATES = {"bitbucket": BITBUCKET_STATES, "github": GITHUB_STATES, "gitlab": GITLAB_STATES}

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
    if not event.after or event.host not in STATES:
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


# --- the host's request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    json: dict[str, Any]


def request_for(status: CommitStatus, api_url: str, credentials: RepositoryConfig | None) -> Request:
    api = api_url.rstrip("/")
    headers = {"Accept": "application/json", "User-Agent": "Tasuki"}
    state = STATES[status.host][status.state]
    if status.host == "bitbucket":
        url = f"{api}/repositories/{status.repository}/commit/{status.commit}/statuses/build"
        body = {
            "key": status.key,
            "state": state,
            "name": status.name,
            "url": status.url,
            "description": status.description,
        }
        if status.refname:
            body["refname"] = status.refname
    elif status.host == "github":
        url = f"{api}/repos/{status.repository}/statuses/{status.commit}"
        headers["Accept"] = "application/vnd.github+json"
        body = {"state": state, "context": status.name, "target_url": status.url, "description": status.description}
    else:
        url = f"{api}/projects/{quote(status.repository, safe='')}/statuses/{status.commit}"
        body = {"state": state, "name": status.name, "target_url": status.url, "description": status.description}
        if status.refname:
            body["ref"] = status.refname
    headers.update(_auth(status.host, credentials))
    return Request("POST", url, headers, body)


def _auth(host: str, credentials: RepositoryConfig | None) -> dict[str, str]:
    if credentials is None:
        return {}
    if host == "bitbucket" and credentials.username and credentials.app_password:
        basic = base64.b64encode(f"{credentials.username}:{credentials.app_password}".encode()).decode()
        return {"Authorization": f"Basic {basic}"}
    if not credentials.token:
        return {}
    if host == "gitlab":
        return {"PRIVATE-TOKEN": credentials.token}
    return {"Authorization": f"Bearer {credentials.token}"}


def send(request: Request, session: requests.Session | None = None) -> int:
    """Make the request; the HTTP status on success, else `HostUnavailable` or `HostRefused`."""
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
    if response.status_code < 300:
        return response.status_code
    said = _host_message(response)
    if response.status_code == 429 or response.status_code >= 500 or _rate_limited(response):
        raise HostUnavailable(f"{where} answered {response.status_code}: {said}", retry_after=_retry_after(response))
    if response.status_code == 400 and "cannot transition status" in said.lower():
        return response.status_code  # GitLab: the commit already has this state; nothing to do
    raise HostRefused(f"{where} refused the status ({response.status_code}): {said}")


def _rate_limited(response: requests.Response) -> bool:
    # GitHub answers 403 with X-RateLimit-Remaining: 0 when the rate limit is used up.
    return response.status_code == 403 and response.headers.get("X-RateLimit-Remaining") == "0"


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _host_message(response: requests.Response) -> str:
    try:
        doc = response.json()
    except ValueError:
        return response.text[:300] or response.reason
    if isinstance(doc, dict):
        error = doc.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)[:300]
        return str(doc.get("message") or error or doc)[:300]
    return str(doc)[:300]
