"""Topics and subscriptions: the whole message flow of Tasuki, declared once as data.

One push, top to bottom::

    git host --POST--> functions/ingress          verify, normalise, dedupe
        publish  tasuki.events   <host>.<event>   (Event)              e.g. bitbucket.repo.push
    subscription "router"     (bridge pushes)  --> functions/router    match trigger rules
        publish  tasuki.runs     run.requested    (RunRequested)
    subscription "dispatcher" (bridge pushes, ordered by run id) --> functions/dispatcher
        publish  tasuki.jobs     job.<pool>       (PlanOrder)          read the flow file
    queue tasuki.executor.<pool> (executors pull) --> local/executor   check out, read .tasuki.yml
        publish  tasuki.runs     run.planned      (RunPlanned)         -> dispatcher
        dispatcher publishes     job.<pool>       (JobOrder)           one per ready job
    executor runs the container, streams the log to the store
        publish  tasuki.runs     job.started, job.finished             -> dispatcher
                                 job.log (chunks of the log, best effort; the store has it all)
    dispatcher advances the DAG, and on every status change publishes
        tasuki.runs  run.updated, job.updated                          -> reporter (commit statuses)

A push that fails too often goes to `tasuki.deadletter` and waits in the queue
`tasuki.deadletters` to be inspected and replayed (`tasuki deadletters`).

Exchanges are durable topic exchanges. Subscriptions are what the push bridge serves
(`local/bridge.py`); `infra/rabbitmq/definitions.json` is generated from this module
(`tasuki topology export`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

EVENTS = "tasuki.events"
RUNS = "tasuki.runs"
JOBS = "tasuki.jobs"
DEADLETTER = "tasuki.deadletter"
EXCHANGES = (EVENTS, RUNS, JOBS, DEADLETTER)

DEADLETTER_QUEUE = "tasuki.deadletters"


def executor_queue(pool: str = "default") -> str:
    return f"tasuki.executor.{pool}"


class RetryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    minimum_backoff: float = Field(10.0, ge=0, le=600)
    maximum_backoff: float = Field(600.0, ge=0, le=600)


class Subscription(BaseModel):
    """A Pub/Sub-style push subscription served by the bridge from one RabbitMQ queue."""

    model_config = ConfigDict(frozen=True)

    name: str
    topic: str
    keys: tuple[str, ...]
    # The function that receives the pushes; its URL comes from settings (`Settings.endpoint`).
    endpoint: str
    ack_deadline: float = Field(10.0, ge=10, le=600)
    retry: RetryPolicy = RetryPolicy()
    dead_letter_topic: str = DEADLETTER
    max_delivery_attempts: int = Field(5, ge=5, le=100)
    ordering: bool = False
    filter: str = ""
    max_outstanding: int = Field(16, ge=1, le=1000)

    @property
    def queue(self) -> str:
        return f"tasuki.{self.name}"


SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription(name="router", topic=EVENTS, keys=("#",), endpoint="router"),
    Subscription(
        name="dispatcher",
        topic=RUNS,
        keys=("run.requested", "run.planned", "run.cancel", "job.started", "job.finished"),
        endpoint="dispatcher",
        ordering=True,
    ),
)


def subscription(name: str) -> Subscription:
    for sub in SUBSCRIPTIONS:
        if sub.name == name:
            return sub
    raise KeyError(f"no subscription named {name!r}; known: {', '.join(s.name for s in SUBSCRIPTIONS)}")
