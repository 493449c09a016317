"""Logs: every job.log chunk an executor publishes goes into the store, once.

Previous hop: local/executor (subscription "logs", not ordered: each chunk names its place,
run:job:attempt:seq, and storing it again changes nothing). A chunk of an attempt that is not
the job's current one (a lost executor's late output) is acknowledged and dropped. The web page
and `tasuki runs show --log` read what this stores, a moment (about a tenth of a second) after the job wrote it.
"""

from __future__ import annotations

import functions_framework

from tasuki.shared import push
from tasuki.shared.answers import answer, translated
from tasuki.shared.messages import JobLog
from tasuki.shared.runtime import runtime

ACCEPTS = {JobLog.TYPE: JobLog}


@functions_framework.http
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
    # 3. Store it once, if its attempt is the job's current one.
    stored = rt.store.append_log(chunk.run_id, chunk.job, chunk.seq, chunk.data.encode(), attempt=chunk.attempt)
    return answer(200, run=chunk.run_id, job=chunk.job, attempt=chunk.attempt, seq=chunk.seq, stored=stored)
