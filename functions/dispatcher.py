"""Dispatcher: advances each run's DAG, one message at a time per run (ordered by run id).

Receives (subscription "dispatcher"): run.requested (router), run.wake (itself), run.planned,
job.started, job.finished (executor), run.cancel (command line, web page, itself).
Publishes: plan.order and job.order on tasuki.jobs (executors pull them); run.updated /
job.updated on tasuki.runs for every status change; run.cancel for runs a newer push
supersedes and run.wake for runs waiting for a place (rule options, see shared.recipes).
"""

from __future__ import annotations

import logging

import functions_framework

from tasuki.shared import logs, push, scheduler
from tasuki.shared.answers import answer, translated
from tasuki.shared.messages import (
    JobFinished,
    JobStarted,
    RunCancel,
    RunMessage,
    RunPlanned,
    RunRequested,
    RunWake,
    utcnow,
)
from tasuki.shared.runtime import Runtime, runtime
from tasuki.shared.store import RunRecord

log = logging.getLogger("tasuki.dispatcher")

ACCEPTS: dict[str, type[RunMessage]] = {
    m.TYPE: m for m in (RunRequested, RunWake, RunPlanned, RunCancel, JobStarted, JobFinished)
}


@functions_framework.http
@logs.scoped
@translated
def dispatcher(request):
    rt = runtime()
    # 1-2. Authenticate the push, read the envelope, decode the message by its type.
    message = push.receive_message(
        request,
        rt.push_verifier("dispatcher"),
        accepts=ACCEPTS,
        limit=rt.settings.max_push_bytes,
    )
    # 3-4. Hold the run, decide (pure) from its current state, publish, then record: one
    # transaction, so no other writer's update is lost; a crash before the commit redelivers the
    # message, which is decided again.
    with rt.store.locked_run(message.run_id) as held:
        if held.run is not None:
            logs.bind(delivery=held.run.event.delivery_id)  # the push the run came from, on every line
        decision = scheduler.decide(held.run, held.jobs, message, utcnow())
        for outgoing in decision.publish:
            rt.broker.publish(outgoing)
        if decision.run is not None:
            held.save(decision.run)
        for job in decision.jobs:
            held.put_job(job)
        run = held.run
    # 5. The steps that need the other runs of the repository (all idempotent, after recording);
    #    none for a message about a run that was never requested.
    cancelled: list[str] = []
    started = False
    if run is not None:
        cancelled = supersede(rt, run) if decision.supersede else []
        started = admit(rt, run.id) if decision.admit and run.id not in cancelled else False
        if decision.release or started:
            wake(rt, run)
    log.info(
        "%s: run %s; published %s", message.TYPE, run.status if run else "unknown", [m.TYPE for m in decision.publish]
    )
    return answer(
        200, run=message.run_id, published=[m.TYPE for m in decision.publish], started=started, cancelled=cancelled
    )


def supersede(rt: Runtime, run: RunRecord) -> list[str]:
    """Rule option cancel_previous: cancel the older unfinished run(s) of the same branch."""
    cancels = scheduler.superseded(run, rt.store.unfinished_runs(run.repository))
    for cancel in cancels:
        rt.broker.publish(cancel, message_id=f"{cancel.run_id}:superseded")
    return [c.run_id for c in cancels]


def admit(rt: Runtime, run_id: str) -> bool:
    """Rule option concurrency: order the plan once the run has a place in its repository."""
    with rt.store.locked_run(run_id) as held:
        run = held.run
        if run is None:
            return False
        if not held.admit(run.concurrency):
            waiting = scheduler.waiting_message(run)
            if run.status == "queued" and run.message != waiting:
                held.save(run.model_copy(update={"message": waiting}))
            return False
        if run.message:
            held.save(run.model_copy(update={"admitted": True, "message": ""}))
    # Ordered once the place is recorded: a crash in between redelivers the message, and the
    # admitted run's plan is ordered again (executors plan idempotently).
    rt.broker.publish(scheduler.plan_order(run), message_id=f"{run.id}:plan")
    return True


def wake(rt: Runtime, run: RunRecord) -> None:
    """A run finished (a place is free) or started (those behind it may fit too): the runs of the
    repository waiting for a place try again, each in its own order."""
    for wakeup in scheduler.waiting(rt.store.unfinished_runs(run.repository), besides=run.id):
        rt.broker.publish(wakeup)
