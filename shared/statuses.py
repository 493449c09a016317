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

Credentials come from the repository registry and never appear in messages or logs, and go to
the host's own API only: `request_for()` refuses (`StatusNotSent`) a commit that is not 7 to 64
hexadecimal characters and a request whose URL leaves the API's origin or path, and `send()`
never follows a redirect (the host's answer 3xx is a refusal, noted on the run).
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote, urljoin, urlsplit

import requests

from tasuki.shared.errors import HostRefused, HostUnavailable, StatusNotSent
from tasuki.shared.hosts import HOSTS, CommitStatus, StatusAnswer, StatusRequest
from tasuki.shared.hosts.common import is_commit_id, said
from tasuki.shared.messages import JobUpdated, RunUpdated
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.text import clip

TIMEOUT = 10  # seconds; the bridge's ack deadline is at least 10 s
CONTEXT = "tasuki"

DESCRIPTIONS = {
    "approval": "waiting for approval",
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
    if notice.message and notice.status not in ("success", "queued", "pending", "running", "approval"):
        detail += f": {notice.message}"
    name = f"{CONTEXT}/{job}" if job else CONTEXT
    ref = event.pull_request.source_branch if event.pull_request else (event.ref.name if event.ref else "")
    return CommitStatus(
        host=event.host,
        repository=event.repository.full_name,
        commit=event.after,
        key=status_key(notice.rule_id, job),
        name=name,
        state="pending" if notice.status == "approval" else notice.status,  # every host knows pending
        url=f"{web_url.rstrip('/')}/runs/{notice.run_id}" + (f"#job-{job}" if job else ""),
        description=clip(f"{'Job ' + job if job else 'Run'} {detail}", 140),
        refname=ref,
    )


# --- the host's request and answer -----------------------------------------------------------------


def request_for(status: CommitStatus, api_url: str, credentials: RepositoryConfig | None) -> StatusRequest:
    """The host's request for `status`, to its API at `api_url` (or its public API when ""):
    `StatusNotSent` for a commit id that is not one, or a request that would leave that API."""
    if not is_commit_id(status.commit):
        raise StatusNotSent(
            f"commit status not sent: the commit id {clip(status.commit, 80)!r} is not 7 to 64 hexadecimal characters"
        )
    host = HOSTS[status.host]
    base = (api_url or host.api_url).rstrip("/")
    request = host.status_request(status, base, credentials or RepositoryConfig())
    if not within(request.url, base):
        raise StatusNotSent(
            f"commit status not sent: {request.url.split('?')[0][:200]} is not under {base}, where "
            f"{status.repository}'s credential may go"
        )
    return request


def within(url: str, base: str) -> bool:
    """True when `url` has the origin of `base` and a path under it, with no `.` or `..` segment
    that a server could resolve to somewhere else."""
    target, root = urlsplit(url), urlsplit(base)
    if (target.scheme.lower(), target.netloc.lower()) != (root.scheme.lower(), root.netloc.lower()):
        return False
    segments = unquote(target.path).split("/")
    if any(part in (".", "..") for part in segments) or "\\" in unquote(target.path):
        return False
    return target.path.startswith(root.path.rstrip("/") + "/")


def send(request: StatusRequest, host: str, session: requests.Session | None = None) -> int:
    """Make the request to `host`; the HTTP status when the host took it, else `HostUnavailable`
    (it may pass) or `HostRefused` (for good), with the host's own words."""
    http = session or requests
    where = request.url.split("?")[0]
    try:
        response = http.request(
            request.method,
            request.url,
            headers=request.headers,
            json=request.json,
            timeout=TIMEOUT,
            allow_redirects=False,  # the credential goes to the host's API, nowhere it points to
        )
    except requests.Timeout:
        raise HostUnavailable(f"{where} did not answer within {TIMEOUT}s") from None
    except requests.RequestException as exc:
        raise HostUnavailable(f"cannot reach {where}: {type(exc).__name__}") from None
    answer = StatusAnswer(response.status_code, response.headers, response.text)
    if 300 <= answer.code < 400:
        elsewhere = urlsplit(urljoin(request.url, answer.headers.get("Location", "")))
        raise HostRefused(
            f"{where} answered {answer.code}, a redirect to {elsewhere.scheme}://{elsewhere.netloc}{elsewhere.path[:100]}: "
            f"not followed (the repository's credential goes to the host's API only; set TASUKI_<HOST>_API_URL "
            f"to where the API is)"
        )
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
