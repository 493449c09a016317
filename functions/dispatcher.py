"""Dispatcher: advances each run's DAG, one message at a time per run (ordered by run id).

Receives (subscription "dispatcher"): run.requested (router), run.planned, job.started,
job.finished (executor), run.cancel (command line, web page).
Publishes: plan.order and job.order on tasuki.jobs (executors pull them), and run.updated /
job.updated on tasuki.runs for every status change.
"""

from __future__ import annotations

import functions_framework

from shared import codec, push, scheduler
from shared.answers import answer, translated
from shared.errors import DecodeError
from shared.messages import MODELS, RunMessage, utcnow
from shared.runtime import runtime

ACCEPTS = ("run.requested", "run.planned", "run.cancel", "job.started", "job.finished")


@functions_framework.http
@translated
def dispatcher(request):
    rt = runtime()
    # 1. Authenticate the push and read the envelope.
    pushed = push.receive(
        request.get_data(), request.headers.get("Authorization"),
        key=rt.signing_key, audience=rt.settings.endpoint("dispatcher"),
    )
    # 2. Decode the message by its type attribute.
    if pushed.type not in ACCEPTS:
        raise DecodeError(f"expected a message of type {', '.join(ACCEPTS)}, found {pushed.type!r}")
    message: RunMessage = codec.decode(pushed.data, MODELS[pushed.type])
    # 3. Decide (pure) from the run's current state.
    run = rt.store.get_run(message.run_id)
    jobs = {j.name: j for j in rt.store.get_jobs(message.run_id)}
    decision = scheduler.decide(run, jobs, message, utcnow())
    # 4. Publish first, then record: a crash in between redelivers the message and re-decides.
    for outgoing in decision.publish:
        rt.broker.publish(outgoing)
    if decision.run is not None:
        if run is None:
            rt.store.create_run(decision.run)
        else:
            rt.store.update_run(decision.run)
    for job in decision.jobs:
        rt.store.put_job(job)
    return answer(200, run=message.run_id, published=[m.TYPE for m in decision.publish])
