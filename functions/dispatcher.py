"""Dispatcher: advances each run's DAG, one message at a time per run (ordered by run id).

Receives (subscription "dispatcher"): run.requested (router), run.approve (command line, web
page: a fork's pull request waiting in status approval may start), run.wake (itself), run.planned,
job.started (a claim), job.heartbeat, job.finished (executors), job.expired (itself, from the
tick), run.cancel (command line, web page, itself), tick (the bridge's clock).
Publishes: plan.order and job.order on tasuki.jobs (executors pull them; each carries the clone
URL from the registry and the clone credentials sealed, and a job order the secrets its job lists,
sealed too (shared/vault.py); a run of a repository Tasuki may not clone ends in error instead, saying why); lease answers on tasuki.executors;
run.updated / job.updated on tasuki.runs for every status change; run.cancel for runs a newer
push supersedes and run.wake for runs waiting for a place (rule options, see shared.recipes).

The tick is also the schedule clock: once per minute whichever dispatcher claims the minute in
the store (`Store.claim_minutes`) requests the runs of the schedule rules that fired
(`scheduled`). A run that ends cancelled, or with every job skipped, is told in its delivery's
story (shared/stories.py).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import functions_framework

from tasuki.shared import approval, logs, objects, outbox, push, recipes, scheduler, sealing, stories, topics, vault
from tasuki.shared.answers import answer, translated
from tasuki.shared.errors import BrokerError, CheckoutFailed
from tasuki.shared.messages import (
    MODELS,
    RUN_FINAL,
    JobExpired,
    JobOrder,
    Message,
    RunMessage,
    RunPlanned,
    Tick,
    WorkOrder,
    utcnow,
)
from tasuki.shared.runtime import Runtime, runtime
from tasuki.shared.store import JobRecord, RunRecord

log = logging.getLogger("tasuki.dispatcher")

# What its subscription routes to it (each routing key is its message's type), and nothing else.
ACCEPTS: dict[str, type[Message]] = {key: MODELS[key] for key in topics.subscription("dispatcher").keys}
# What the outbox still holds this long after it was recorded is published by the tick.
OUTBOX_GRACE = timedelta(seconds=10)
# Retention (TASUKI_RETENTION_*) runs from the tick at most this often.
PRUNE_EVERY = timedelta(hours=1)


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
    if isinstance(message, Tick):
        return answer(200, **tick(rt, utcnow()))
    assert isinstance(message, RunMessage)
    # 3-4. Hold the run, decide (pure) from its current state, and record the new state with what
    #    it publishes (the outbox): one transaction, so no other writer's update is lost. Then
    #    publish what the run's outbox holds (also what a crash left there) and clear it.
    with rt.store.locked_run(message.run_id) as held:
        before = held.run.status if held.run is not None else None
        if held.run is not None:
            logs.bind(delivery=held.run.event.delivery_id)  # the push the run came from, on every line
        now = utcnow()
        decision = scheduler.decide(held.run, held.jobs, message, now, lease=rt.settings.job_lease_timeout)
        try:
            outgoing = [addressed(rt, m) for m in decision.publish]
        except CheckoutFailed as exc:  # its repository cannot be cloned: the jobs it orders end in error
            decision = scheduler.not_ordered(held.run, held.jobs, decision, str(exc), now)
            outgoing = decision.publish
        if decision.run is not None:
            held.save(decision.run)
        for job in decision.jobs:
            held.put_job(job)
        entries = [outbox.entry(message.run_id, m) for m in outgoing]
        held.send(entries)
        run = held.run
        jobs = dict(held.jobs)
    tell_ending(rt, before, run, jobs)
    made = {e.message_id: m for e, m in zip(entries, outgoing, strict=True)}
    outbox.publish(rt.store, rt.publisher, rt.store.outbox(run_id=message.run_id), made)
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


def addressed(rt: Runtime, message: Message) -> Message:
    """A work order completed with where to clone from (the registry's clone URL, never one an
    event names: `Repositories.checkout`) and the registry's clone credentials, sealed for the
    executor alone (none for a fork's pull request: `approval.credentials_for`). `CheckoutFailed` says why a repository cannot be cloned (not registered, a
    clone URL scheme not allowed)."""
    if not isinstance(message, WorkOrder):
        return message
    name = message.event.repository.full_name
    config = rt.registry.checkout(name)
    credentials = approval.credentials_for(
        message.event, config.model_dump(include={"token", "username", "app_password"}, exclude_defaults=True)
    )
    update = {
        "clone_url": config.clone_url,
        "credentials": sealing.seal_json(rt.order_key, credentials) if credentials else None,
    }
    if isinstance(message, JobOrder):
        update.update(job_secrets(rt, message))
    return message.model_copy(update=update)


def job_secrets(rt: Runtime, order: JobOrder) -> dict:
    """The secrets the order's job lists, sealed for the executor alone; or why it gets none (it
    then fails before its container starts, with that message)."""
    if not order.job.secret_names():  # (the store key is not even read: nothing to open)
        return {"secrets": None, "secrets_refused": ""}
    try:
        values = vault.for_job(rt.store, rt.settings.store_key_value(), order.event, order.job)
    except vault.SecretsRefused as exc:
        return {"secrets": None, "secrets_refused": str(exc)}
    return {"secrets": sealing.seal_json(rt.order_key, values) if values else None, "secrets_refused": ""}


def tick(rt: Runtime, now: datetime) -> dict:
    """The clock: each run-out lease becomes a job.expired in its run's order (the dispatcher
    decides there, as for any message of the run), what the outbox still holds goes out, and
    once an hour (whichever dispatcher instance gets there first) retention prunes the store."""
    expired = [
        (JobExpired(run_id=run_id, job=job, attempt=attempt), f"{run_id}:{job}:{attempt}:expired", None)
        for run_id, job, attempt in rt.store.expired_leases(now)
    ]
    if expired:
        rt.publisher.publish_all(expired)
    left = outbox.publish(rt.store, rt.publisher, rt.store.outbox(before=now - OUTBOX_GRACE))
    pruned = None
    if rt.store.due("prune", now, every=PRUNE_EVERY):
        runs_before, deliveries_before = rt.settings.retention_cutoffs(now)
        pruned = rt.store.prune(runs_before=runs_before, deliveries_before=deliveries_before)._asdict()
        if runs_before is not None:  # the artifacts of the runs it deleted go with them
            pruned["artifacts"] = prune_artifacts(rt, runs_before)
    return {"expired": len(expired), "republished": left, "pruned": pruned, "scheduled": scheduled(rt, now)}


CLOCK = "schedules"


def scheduled(rt: Runtime, now: datetime) -> list[str]:
    """The schedule clock: claim the minutes since the last claim (one dispatcher of several
    gets each minute), and request a run of every schedule rule that fired in them, once for
    its latest firing however many an outage missed. Run ids come from the rule and the minute,
    so a request made twice is one run. A request that cannot be published gives the minutes
    back: the next tick tries them again."""
    claimed = rt.store.claim_minutes(CLOCK, now)
    if claimed is None:
        return []
    started = []
    try:
        for rule, fired in recipes.scheduled(rt.store.list_rules(), *claimed):
            event = recipes.scheduled_event(rule, fired)
            requested = recipes.request(event, rule)
            rt.publisher.publish(requested, message_id=f"{requested.run_id}:requested")
            rt.store.tell(event.delivery_id, "clock", stories.fired(rule, fired, requested.run_id), at=now)
            started.append(requested.run_id)
    except BrokerError:
        rt.store.unclaim_minutes(CLOCK, claimed)
        raise
    return started


def tell_ending(rt: Runtime, before: str | None, run: RunRecord | None, jobs: dict[str, JobRecord]) -> None:
    """A run that just ended cancelled, or with every job skipped, is part of its delivery's story."""
    if run is None or before in RUN_FINAL or run.status not in RUN_FINAL:
        return
    record = stories.run_ended(run.id, run.status, run.message, [j.status for j in jobs.values()])
    if record is not None:
        rt.store.tell(run.event.delivery_id, f"run:{run.id}", record)


def prune_artifacts(rt: Runtime, runs_before: datetime) -> int:
    """Retention of object storage: the artifacts of runs the store no longer has."""
    return objects.prune_runs(
        objects.open_objects(rt.settings), runs_before, lambda run_id: rt.store.get_run(run_id) is not None
    )


def supersede(rt: Runtime, run: RunRecord) -> list[str]:
    """Rule option cancel_previous: cancel the older unfinished run(s) of the same branch."""
    cancels = scheduler.superseded(run, rt.store.unfinished_runs(run.repository))
    for cancel in cancels:
        rt.publisher.publish(cancel, message_id=f"{cancel.run_id}:superseded")
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
    try:
        order = addressed(rt, scheduler.plan_order(run))
    except CheckoutFailed as exc:
        # Nothing to clone from: the run's plan is this error, decided in the run's order as an
        # executor's would be (the run ends, its place is freed).
        log.info("run %s not planned: %s", run.id, exc)
        rt.publisher.publish(RunPlanned(run_id=run.id, error=str(exc)), message_id=f"{run.id}:planned")
        return False
    rt.publisher.publish(order, message_id=f"{run.id}:plan")
    return True


def wake(rt: Runtime, run: RunRecord) -> None:
    """A run finished (a place is free) or started (those behind it may fit too): the runs of the
    repository waiting for a place try again, each in its own order."""
    for wakeup in scheduler.waiting(rt.store.unfinished_runs(run.repository), besides=run.id):
        rt.publisher.publish(wakeup)
