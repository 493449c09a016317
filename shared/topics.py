"""Topics and subscriptions: the whole message flow of Tasuki, declared once as data.

One push, top to bottom::

    git host --POST--> functions/ingress          verify, normalise, dedupe
        publish  tasuki.events   <host>.<event>   (Event)              e.g. bitbucket.repo.push
    subscription "router"     (bridge pushes)  --> functions/router    match trigger rules
        publish  tasuki.runs     run.requested    (RunRequested)
    subscription "dispatcher" (bridge pushes, ordered by run id) --> functions/dispatcher
        a fork's pull request (unless forks are trusted) waits in status approval: nothing is
        ordered until a person publishes run.approve (run page, API, `tasuki runs approve`)
        a rule's cancel_previous: publish run.cancel for the older runs of the branch
        a rule's concurrency: the run waits queued until its repository has a place; every run
        that finishes (or starts) publishes run.wake for the runs waiting in its repository
        publish  tasuki.jobs     job.<pool>       (PlanOrder)          read the flow file
    queue tasuki.executor.<pool> (executors pull) --> local/executor   check out, read .tasuki.yml
        publish  tasuki.runs     run.planned      (RunPlanned)         -> dispatcher
        dispatcher records, then publishes (an outbox: recorded with the state change, published
        after the commit, cleared once confirmed)  job.<pool>  (JobOrder)  one per ready job,
        with the clone URL from the registry and the clone credentials sealed (TASUKI_ORDER_KEY),
        and the secrets the job lists sealed the same way (shared/vault.py)
    executor claims the job   tasuki.runs  job.started (run, job, attempt, executor)
    dispatcher grants or refuses it   tasuki.executors  executor.<id>  (LeaseAnswer); the
        executor acknowledges the order only then, so RabbitMQ's consumer_timeout never bounds
        a job; refused: cancelled, finished, or held by another executor
    executor runs the container; from its run loop, every lease/4 seconds
        publish  tasuki.runs     job.heartbeat   -> dispatcher renews the lease, answers
                                 job.log (chunks, none lost)  -> subscription "logs" -> functions/logs
                                 job.finished    -> dispatcher
    the bridge publishes a `tick` every few seconds -> dispatcher: a lease that ran out
        (executor gone) becomes job.expired in the run's order -> the job is ordered again
        (attempt + 1); late messages of the lost attempt are ignored. An executor that cannot
        renew its lease kills its own container first.
        The tick is also the schedule clock: the dispatcher that claims a minute in the store
        (once per minute, whatever the number of clocks) publishes run.requested for every
        schedule rule that fired; the executor planning such a run resolves the branch's head
        (fetched into its mirror, as for a manual run) and answers it in run.planned.
    dispatcher advances the DAG, and on every status change publishes
        tasuki.runs  run.updated, job.updated
    subscription "reporter"   (bridge pushes, ordered by run id) --> functions/reporter
        POST the commit status to the git host the push came from
    `tasuki runs cancel RUN` publishes run.cancel -> dispatcher, which answers the executors
        holding its running jobs with a refused lease: they stop the containers

A push that fails too often goes to `tasuki.deadletter` and waits in the queue
`tasuki.deadletters` to be inspected and replayed (`tasuki deadletters`).

Exchanges are durable topic exchanges; every queue is a durable quorum queue and every message
is persistent, so a RabbitMQ restart loses nothing. Subscriptions are what the push bridge serves
(`local/bridge.py`), with Google Cloud Pub/Sub's settings and ranges (see `Subscription`).
`topology()` lists every exchange, queue and binding: `shared.broker` declares exactly that, and
`infra/rabbitmq/definitions.json` is generated from it (`tasuki topology export`; a test fails
when the file and this module disagree).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasuki.shared import filters
from tasuki.shared.errors import FilterError

EVENTS = "tasuki.events"
RUNS = "tasuki.runs"
JOBS = "tasuki.jobs"
EXECUTORS = "tasuki.executors"
DEADLETTER = "tasuki.deadletter"
EXCHANGES = (EVENTS, RUNS, JOBS, EXECUTORS, DEADLETTER)

DEADLETTER_QUEUE = "tasuki.deadletters"
QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}


def executor_queue(pool: str = "default") -> str:
    return f"tasuki.executor.{pool}"


def executor_key(executor_id: str) -> str:
    """The routing key on tasuki.executors of what is addressed to one executor (lease answers)."""
    return f"executor.{executor_id}"


class RetryPolicy(BaseModel):
    """Exponential backoff between redeliveries of a nacked message, as Pub/Sub's retry policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    minimum_backoff: float = Field(10.0, ge=0, le=600, description="seconds")
    maximum_backoff: float = Field(600.0, ge=0, le=600, description="seconds")

    @model_validator(mode="after")
    def _ordered(self) -> RetryPolicy:
        if self.maximum_backoff < self.minimum_backoff:
            raise ValueError(
                f"maximum_backoff ({self.maximum_backoff:g}s) must not be below minimum_backoff "
                f"({self.minimum_backoff:g}s)"
            )
        return self

    def delay(self, attempts: int) -> float:
        """Seconds before the next push of a message whose `attempts` pushes all failed."""
        return min(self.maximum_backoff, self.minimum_backoff * 2 ** max(0, attempts - 1))


class Subscription(BaseModel):
    """A Pub/Sub push subscription served by the bridge from the queue `tasuki.<name>`.

    Ranges are Google's: ack deadline 10-600 s (default 10), backoff 0-600 s (defaults 10 and
    600), max delivery attempts 5-100 (default 5), filter at most 256 bytes. A nacked message is
    pushed again after `retry.delay(attempts)`; after `max_delivery_attempts` pushes it goes to
    `dead_letter_topic` with its history. With `ordering`, messages with the same ordering key
    are pushed one at a time, in order. `max_outstanding` bounds the pushes in flight at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")
    topic: str
    keys: tuple[str, ...] = Field(min_length=1)
    # The function that receives the pushes; its URL comes from settings (`Settings.endpoint`).
    endpoint: str
    ack_deadline: int = Field(10, ge=10, le=600, description="seconds")
    retry: RetryPolicy = RetryPolicy()
    dead_letter_topic: str = DEADLETTER
    max_delivery_attempts: int = Field(5, ge=5, le=100)
    ordering: bool = False
    filter: str = ""
    max_outstanding: int = Field(16, ge=1, le=1000)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.lower().startswith("goog"):
            raise ValueError("a subscription name must not start with 'goog'")
        return name

    @field_validator("filter")
    @classmethod
    def _valid_filter(cls, text: str) -> str:
        try:
            filters.parse(text)
        except FilterError as exc:
            raise ValueError(str(exc)) from None
        return text

    @property
    def queue(self) -> str:
        return f"tasuki.{self.name}"


SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription(name="router", topic=EVENTS, keys=("#",), endpoint="router"),
    Subscription(
        name="dispatcher",
        topic=RUNS,
        keys=(
            "run.requested",
            "run.approve",
            "run.wake",
            "run.planned",
            "run.cancel",
            "job.started",
            "job.heartbeat",
            "job.expired",
            "job.finished",
            "tick",
        ),
        endpoint="dispatcher",
        ordering=True,
    ),
    # Job logs into the store, chunk by chunk, stored once each whatever the order of arrival.
    Subscription(name="logs", topic=RUNS, keys=("job.log",), endpoint="logs", max_outstanding=32),
    # Commit statuses on the git host; ordered by run id so a job's statuses arrive in order.
    Subscription(
        name="reporter",
        topic=RUNS,
        keys=("run.updated", "job.updated"),
        endpoint="reporter",
        ordering=True,
    ),
)


def subscription(name: str) -> Subscription:
    for sub in SUBSCRIPTIONS:
        if sub.name == name:
            return sub
    raise KeyError(f"no subscription named {name!r}; known: {', '.join(s.name for s in SUBSCRIPTIONS)}")


# --- the topology: what RabbitMQ must hold ----------------------------------------------------


@dataclass(frozen=True)
class Queue:
    name: str
    arguments: dict[str, Any] = field(default_factory=lambda: dict(QUORUM))


@dataclass(frozen=True)
class Binding:
    exchange: str
    queue: str
    key: str


@dataclass(frozen=True)
class Topology:
    exchanges: tuple[str, ...]
    queues: tuple[Queue, ...]
    bindings: tuple[Binding, ...]


def topology(
    pools: tuple[str, ...] = ("default",), subscriptions: tuple[Subscription, ...] = SUBSCRIPTIONS
) -> Topology:
    """Every exchange (durable topic), queue (durable quorum) and binding Tasuki uses."""
    exchanges = list(EXCHANGES)
    queues: list[Queue] = []
    bindings: list[Binding] = []
    for sub in subscriptions:
        for name in (sub.topic, sub.dead_letter_topic):
            if name not in exchanges:
                exchanges.append(name)
        queues.append(Queue(sub.queue))
        bindings.extend(Binding(sub.topic, sub.queue, key) for key in sub.keys)
    for pool in pools:
        # An order no executor can read is dead-lettered (nack without requeue), never dropped.
        queues.append(Queue(executor_queue(pool), {**QUORUM, "x-dead-letter-exchange": DEADLETTER}))
        bindings.append(Binding(JOBS, executor_queue(pool), f"job.{pool}"))
    queues.append(Queue(DEADLETTER_QUEUE))
    bindings.append(Binding(DEADLETTER, DEADLETTER_QUEUE, "#"))
    return Topology(tuple(exchanges), tuple(queues), tuple(bindings))


def definitions(vhost: str = "/", pools: tuple[str, ...] = ("default",)) -> dict[str, Any]:
    """The topology as a RabbitMQ definitions document (`rabbitmqctl import_definitions`)."""
    topo = topology(pools)
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": [
            {
                "name": name,
                "vhost": vhost,
                "type": "topic",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for name in topo.exchanges
        ],
        "queues": [
            {"name": q.name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": q.arguments}
            for q in topo.queues
        ],
        "bindings": [
            {
                "source": b.exchange,
                "vhost": vhost,
                "destination": b.queue,
                "destination_type": "queue",
                "routing_key": b.key,
                "arguments": {},
            }
            for b in topo.bindings
        ],
    }
