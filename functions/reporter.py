"""Reporter: every run.updated / job.updated becomes a commit status on the git host.

Previous hop: functions/dispatcher.py (subscription "reporter", ordered by run id, so the
statuses of one run reach the host in the order they happened). Tasuki never subscribes to the
hosts' own commit-status events, so its statuses cannot trigger anything.

The host failing for a while (5xx, rate limit, timeout) is a nack (503): the bridge retries with
backoff and finally dead-letters. The host refusing for good (bad token, unknown commit) is
acked, logged with the host's message and noted on the run: retrying cannot help.
"""

from __future__ import annotations

import logging

import functions_framework

from tasuki.shared import logs, push, statuses
from tasuki.shared.answers import answer, translated
from tasuki.shared.errors import HostRefused, HostUnavailable
from tasuki.shared.messages import JobUpdated, RunUpdated
from tasuki.shared.runtime import runtime

log = logging.getLogger("tasuki.reporter")
ACCEPTS: dict[str, type[RunUpdated | JobUpdated]] = {m.TYPE: m for m in (RunUpdated, JobUpdated)}


@functions_framework.http
@logs.scoped
@translated
def reporter(request):
    rt = runtime()
    # 1-2. Authenticate the push, read the envelope, decode the notice.
    notice = push.receive_message(
        request,
        rt.push_verifier("reporter"),
        accepts=ACCEPTS,
        limit=rt.settings.max_push_bytes,
    )
    # 3. What to tell the host (pure).
    status = statuses.status_for(notice, rt.settings.web_url)
    if status is None:
        return answer(200, reported=False, reason="no commit or host to report to")
    credentials = rt.registry.get(status.repository)
    if credentials is None or not (credentials.token or credentials.app_password):
        note = f"commit statuses not reported: no {status.host} API credentials for {status.repository} in the repository registry"
        if ("reporter", note) not in rt.store.get_notes(notice.run_id):  # once a run, not once a notice
            rt.store.add_note(notice.run_id, "reporter", note)
        return answer(200, reported=False, reason=note)
    # 4. Tell the host, at its own API only (a commit that is not one, or a URL elsewhere, is noted).
    api_url = rt.settings.api_url(status.host)
    try:
        code = statuses.send(statuses.request_for(status, api_url, credentials), status.host)
    except HostUnavailable as exc:
        log.warning("run %s: %s; the bridge will retry", notice.run_id, exc)
        body, failed, headers = answer(exc.http_status, error=str(exc), retry=True)
        if exc.retry_after is not None:
            headers["Retry-After"] = str(int(exc.retry_after))
        return body, failed, headers
    except HostRefused as exc:
        log.error("run %s: %s", notice.run_id, exc)
        rt.store.add_note(notice.run_id, "reporter", str(exc))
        return answer(200, reported=False, error=str(exc))
    log.info("reported %s %s to %s (%s)", status.key, status.state, status.host, code)
    return answer(200, reported=True, host=status.host, state=status.state, key=status.key, answer=code)
