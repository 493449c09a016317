"""Logs: every job.log chunk an executor publishes goes into the store, once.

Previous hop: local/executor (subscription "logs", not ordered: each chunk names its place,
run:job:attempt:seq, and storing it again changes nothing). A chunk of an attempt that is not
the job's current one (a lost executor's late output), or that would take the job's stored log
past TASUKI_JOB_LOG_LIMIT (and a small margin), is acknowledged and dropped. The web page
and `tasuki runs show --log` read what this stores, a moment (about a tenth of a second) after the job wrote it.
"""

from __future__ import annotations

import functions_framework

from tasuki.shared import logs as logs_context
from tasuki.shared import push
from tasuki.shared.answers import answer, translated
from tasuki.shared.messages import JobLog
from tasuki.shared.runtime import runtime

ACCEPTS = {JobLog.TYPE: JobLog}


def over_limit(job: str, limit: str) -> str:
    return f"job {job}: its log passed TASUKI_JOB_LOG_LIMIT ({limit}); what came after was not stored"


@functions_framework.http
@logs_context.scoped
@translated
def logs(request):
    rt = runtime()
    # 1-2. Authenticate the push, read the envelope, decode the chunk.
    chunk = push.receive_message(
        request,
        rt.push_verifier("logs"),
        accepts=ACCEPTS,
        limit=rt.settings.max_push_bytes,
    )
    # 3. Store it once, if its attempt is the job's current one and the log stays within its
    #    limit (an executor cuts it there; whatever one sends beyond, the store never holds).
    data, limit = chunk.data.encode(), rt.settings.job_log_store_limit
    stored = rt.store.append_log(chunk.run_id, chunk.job, chunk.seq, data, attempt=chunk.attempt, limit=limit)
    if not stored and rt.store.log_bytes(chunk.run_id, chunk.job, chunk.attempt) + len(data) > limit:
        # 4. Acknowledged (sending it again changes nothing), and said once on the run.
        rt.store.add_note(chunk.run_id, "logs", over_limit(chunk.job, rt.settings.job_log_limit))
    return answer(200, run=chunk.run_id, job=chunk.job, attempt=chunk.attempt, seq=chunk.seq, stored=stored)
