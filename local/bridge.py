"""The push bridge: serves each subscription's queue to its handler as Pub/Sub push requests.

For every subscription in `shared.topics.SUBSCRIPTIONS` one consumer thread holds a RabbitMQ
connection and takes up to `max_outstanding` unacknowledged messages. Each message is POSTed to
the handler as a Pub/Sub push request with `Authorization: Bearer <JWT>`:

- 102, 200, 201, 202, 204 ack; anything else, a connection error or no answer within the ack
  deadline is a nack;
- a nacked message stays unacknowledged in RabbitMQ and is pushed again after exponential
  backoff (between the subscription's minimum and maximum); `deliveryAttempt` counts up;
- after `max_delivery_attempts` it is published (confirmed) to the dead-letter topic with its
  history, and only then acknowledged;
- with ordering on, messages with the same ordering key are pushed one at a time, in order; a
  nacked message holds back the rest of its key;
- RabbitMQ is acked only after the handler acked (or the dead-letter publish was confirmed), so
  a bridge that dies loses nothing: RabbitMQ redelivers what was in flight. The bridge
  reconnects by itself.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pika.exceptions as pe
import requests

from shared import broker as brokers
from shared import push, tokens, topics
from shared.broker import Broker, attributes_of
from shared.errors import BrokerError
from shared.settings import Settings
from shared.topics import Subscription

log = logging.getLogger("tasuki.bridge")


def backoff(attempt: int, sub: Subscription) -> float:
    """Seconds to wait before push number `attempt + 1` after `attempt` failed pushes."""
    low, high = sub.retry.minimum_backoff, sub.retry.maximum_backoff
    return min(high, low * (2 ** max(0, attempt - 1)))


@dataclass
class Delivery:
    tag: int
    generation: int
    body: bytes
    properties: Any
    exchange: str
    routing_key: str
    attempt: int  # pushes already made, counted from the broker's redelivery count
    ordering_key: str = ""
    last_error: str = ""
    started: float = field(default_factory=time.monotonic)


class SubscriptionServer:
    """Consumes one subscription's queue and pushes each message to its endpoint."""

    def __init__(self, sub: Subscription, settings: Settings, stop: threading.Event) -> None:
        self.sub = sub
        self.settings = settings
        self.stop = stop
        self.endpoint = settings.endpoint(sub.endpoint)
        self.path = push.subscription_path(settings.project, sub.name)
        self.key = settings.signing_key()
        self.publisher = Broker(settings.amqp_url)
        self.pool = ThreadPoolExecutor(max_workers=sub.max_outstanding, thread_name_prefix=f"push-{sub.name}")
        self._http = threading.local()
        self._lock = threading.Lock()
        self._generation = 0
        self._connection: Any = None
        self._channel: Any = None
        # ordering: key -> deliveries waiting behind the one in flight
        self._waiting: dict[str, collections.deque[Delivery]] = {}

    # -- the consumer loop ----------------------------------------------------------------------

    def serve(self) -> None:
        delay = 0.5
        while not self.stop.is_set():
            try:
                self._consume()
                delay = 0.5
            except (BrokerError, pe.AMQPError, OSError) as exc:
                log.warning("%s: RabbitMQ connection lost (%s); reconnecting in %.1fs", self.sub.name, exc, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 10)
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _consume(self) -> None:
        connection = brokers.connect(self.settings.amqp_url)
        channel = connection.channel()
        channel.basic_qos(prefetch_count=self.sub.max_outstanding)
        with self._lock:
            self._generation += 1
            self._connection, self._channel = connection, channel
            self._waiting.clear()
        channel.basic_consume(self.sub.queue, self._on_message)
        log.info("%s: pushing %s to %s", self.sub.name, self.sub.queue, self.endpoint)
        try:
            while not self.stop.is_set():
                connection.process_data_events(time_limit=0.2)
        finally:
            with self._lock:
                self._generation += 1  # in-flight pushes of this connection must not ack on the next
            if connection.is_open:
                try:
                    connection.close()
                except Exception:
                    pass

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        headers = properties.headers or {}
        delivery = Delivery(
            tag=method.delivery_tag,
            generation=self._generation,
            body=body,
            properties=properties,
            exchange=method.exchange,
            routing_key=method.routing_key,
            attempt=int(headers.get("x-delivery-count", 0) or 0),
            ordering_key=str(headers.get(brokers.ORDERING_HEADER, "") or "") if self.sub.ordering else "",
        )
        with self._lock:
            if delivery.ordering_key:
                queue = self._waiting.get(delivery.ordering_key)
                if queue is not None:  # this key has a push in flight: wait behind it
                    queue.append(delivery)
                    return
                self._waiting[delivery.ordering_key] = collections.deque()
        self.pool.submit(self._deliver, delivery)

    # -- one message, until acked or dead-lettered ------------------------------------------------

    def _deliver(self, delivery: Delivery) -> None:
        try:
            while not self.stop.is_set():
                if delivery.generation != self._generation:
                    return  # its connection is gone: RabbitMQ redelivers it on the new one
                delivery.attempt += 1
                ok, error = self._push(delivery)
                if ok:
                    self._settle(delivery)
                    return
                delivery.last_error = error
                log.warning(
                    "%s: push %s attempt %d failed: %s",
                    self.sub.name, delivery.properties.message_id, delivery.attempt, error,
                )
                if delivery.attempt >= self.sub.max_delivery_attempts:
                    self._dead_letter(delivery)
                    self._settle(delivery)
                    return
                self.stop.wait(backoff(delivery.attempt, self.sub))
        except Exception:  # never lose the thread silently; the message stays unacked
            log.exception("%s: delivering %s failed", self.sub.name, delivery.properties.message_id)

    def _push(self, delivery: Delivery) -> tuple[bool, str]:
        props = delivery.properties
        headers = props.headers or {}
        body = push.envelope(
            delivery.body,
            attributes=attributes_of(headers),
            message_id=props.message_id or "",
            publish_ms=int(headers.get(brokers.PUBLISHED_HEADER) or (props.timestamp or 0) * 1000),
            subscription=self.path,
            delivery_attempt=delivery.attempt,
            ordering_key=delivery.ordering_key,
        )
        token = tokens.sign(self.key, self.endpoint)
        try:
            response = self._session().post(
                self.endpoint,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=(5, self.sub.ack_deadline),
            )
        except requests.Timeout:
            return False, f"no answer within the ack deadline ({self.sub.ack_deadline:g}s)"
        except requests.RequestException as exc:
            return False, f"cannot reach {self.endpoint}: {type(exc).__name__}"
        if response.status_code in push.ACK_STATUSES:
            return True, ""
        return False, f"HTTP {response.status_code}: {response.text[:200]}"

    def _session(self) -> requests.Session:
        session = getattr(self._http, "session", None)
        if session is None:
            session = self._http.session = requests.Session()
        return session

    def _dead_letter(self, delivery: Delivery) -> None:
        props = delivery.properties
        headers = dict(props.headers or {})
        headers.update(
            {
                "x-subscription": self.sub.name,
                "x-delivery-attempts": delivery.attempt,
                "x-original-exchange": delivery.exchange,
                "x-original-routing-key": delivery.routing_key,
                "x-last-error": delivery.last_error[:500],
                "x-dead-lettered-ms": int(time.time() * 1000),
            }
        )
        while not self.stop.is_set():
            try:
                self.publisher.publish_raw(
                    self.sub.dead_letter_topic,
                    delivery.routing_key,
                    delivery.body,
                    message_id=props.message_id or "",
                    message_type=props.type or "",
                    headers=headers,
                )
                log.error(
                    "%s: dead-lettered %s after %d attempts: %s",
                    self.sub.name, props.message_id, delivery.attempt, delivery.last_error,
                )
                return
            except BrokerError as exc:
                log.warning("%s: cannot dead-letter yet (%s); retrying", self.sub.name, exc)
                self.stop.wait(1)
        raise RuntimeError("stopping before the dead-letter publish was confirmed")

    def _settle(self, delivery: Delivery) -> None:
        """Ack in RabbitMQ (from the connection's thread) and let the next of its key go."""
        with self._lock:
            current = delivery.generation == self._generation
            connection, channel = self._connection, self._channel
            following = None
            if delivery.ordering_key:
                waiting = self._waiting.get(delivery.ordering_key)
                if waiting:
                    following = waiting.popleft()
                else:
                    self._waiting.pop(delivery.ordering_key, None)
        if current:
            try:
                connection.add_callback_threadsafe(lambda: channel.basic_ack(delivery.tag))
            except Exception as exc:  # connection gone: RabbitMQ redelivers it, nothing is lost
                log.warning("%s: could not ack %s: %s", self.sub.name, delivery.properties.message_id, exc)
        if following is not None:
            self.pool.submit(self._deliver, following)


class Bridge:
    def __init__(self, settings: Settings, subscriptions: tuple[Subscription, ...] = topics.SUBSCRIPTIONS) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.servers = [SubscriptionServer(sub, settings, self.stop) for sub in subscriptions]
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for server in self.servers:
            thread = threading.Thread(target=server.serve, name=f"sub-{server.sub.name}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def close(self, timeout: float = 10) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)


def main(settings: Settings) -> None:
    Broker(settings.amqp_url).declare()
    bridge = Bridge(settings)
    bridge.start()
    try:
        while any(t.is_alive() for t in bridge.threads):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        bridge.close()
