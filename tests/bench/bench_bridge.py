"""The push bridge beside its baselines, at the same concurrency, in the same run.

- direct: a load generator POSTs the same push request (same body, same bearer token, the same
  HTTP client library as the bridge, keep-alive) to a trivial functions-framework endpoint
  served by gunicorn, from `max_outstanding` threads;
- bridge: the bridge drains a queue of the same number of messages to that endpoint;
- raw: a plain pika consumer drains such a queue (same prefetch), acking each message.

Reported: pushes per second of each, and the ratios bridge/direct (the aim: at least 0.8) and
bridge/raw. Each rate is measured after the first tenth of the messages (warm-up). The machine is
shared and noisy, so direct and bridge runs alternate, `ROUNDS` times, and medians are compared.

Reading the ratio: where the endpoint, the load generator or bridge, and RabbitMQ share a few
cores, both rates are CPU-bound, and the ratio is close to CPU(load generator + endpoint) /
CPU(bridge + endpoint + RabbitMQ) per push. So the CPU this process spends per push is reported
beside the rates: the bridge's exceeds the load generator's by its consumer (pika), its
scheduling and the envelope of each message; RabbitMQ's own work (quorum queue delivery and ack)
comes on top and is not in these figures.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pika
import urllib3

from tasuki.local.bridge.pusher import Pusher
from tasuki.local.bridge.server import Bridge
from tasuki.shared import push, topics
from tasuki.shared.broker import Broker
from tasuki.shared.settings import Settings
from tasuki.shared.topics import Subscription

MESSAGES = int(os.environ.get("BENCH_BRIDGE_MESSAGES", "3000"))
ROUNDS = int(os.environ.get("BENCH_BRIDGE_ROUNDS", "3"))
KEY = "bench-push-key-of-at-least-32-bytes-long"
BODY = b"\x85" + b"x" * 200  # a small msgpack-sized body

ENDPOINT = """
import threading
import functions_framework
count = 0
lock = threading.Lock()

@functions_framework.http
def trivial(request):
    global count
    if request.method == "GET":
        return str(count), 200
    request.get_data()
    with lock:
        count += 1
    return "", 204
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


class TrivialEndpoint:
    def __init__(self, workdir: Path) -> None:
        source = workdir / "trivial.py"
        source.write_text(ENDPOINT)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "functions-framework"),
                "--target",
                "trivial",
                "--source",
                str(source),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.http = urllib3.PoolManager()
        for _ in range(200):
            try:
                self.count()
                return
            except urllib3.exceptions.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the trivial endpoint did not start")

    def count(self) -> int:
        return int(self.http.request("GET", self.url, retries=False, timeout=5).data)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _rate(endpoint: TrivialEndpoint, start: int, total: int) -> float:
    """Pushes per second seen by the endpoint, from a tenth of `total` on until all arrived."""
    warm = start + total // 10
    while endpoint.count() < warm:
        time.sleep(0.01)
    t0, c0 = time.perf_counter(), endpoint.count()
    while (c := endpoint.count()) < start + total:
        time.sleep(0.02)
    return (c - c0) / (time.perf_counter() - t0)


def direct(endpoint: TrivialEndpoint, concurrency: int, total: int) -> float:
    pusher = Pusher(endpoint.url, KEY, connections=concurrency)
    request = push.envelope(
        BODY,
        attributes={"type": "bench"},
        message_id="m",
        publish_ms=int(time.time() * 1000),
        subscription="projects/tasuki/subscriptions/bench",
        delivery_attempt=1,
    )
    left = iter(range(total))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if next(left, None) is None:
                    return
            outcome = pusher.push(request, 10)
            assert outcome.acked, outcome.error

    start = endpoint.count()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    rate = _rate(endpoint, start, total)
    for t in threads:
        t.join()
    pusher.close()
    return rate


def fill(url: str, queue: str, total: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    props = pika.BasicProperties(delivery_mode=2, message_id="m", type="bench", headers={"type": "bench"})
    for n in range(total):
        channel.basic_publish(
            "",
            queue,
            BODY,
            pika.BasicProperties(
                delivery_mode=2, message_id=f"m-{n}", type="bench", headers=props.headers, timestamp=int(time.time())
            ),
        )
    while channel.queue_declare(queue, passive=True).method.message_count < total:
        time.sleep(0.05)
    connection.close()
    time.sleep(1)  # let RabbitMQ finish writing before the clock starts


def bridge(endpoint: TrivialEndpoint, url: str, sub: Subscription, total: int) -> float:
    """The bridge's rate over a queue already holding `total` messages."""
    settings = Settings(amqp_url=url, router_url=endpoint.url, push_key=KEY, data_dir=Path(tempfile.gettempdir()))
    start = endpoint.count()
    with Bridge(settings, (sub,)):
        return _rate(endpoint, start, total)


def raw(url: str, queue: str, prefetch: int, total: int) -> float:
    fill(url, queue, total)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    seen = 0
    warm = total // 10
    t0 = 0.0

    def on_message(ch, method, properties, body) -> None:
        nonlocal seen, t0
        ch.basic_ack(method.delivery_tag)
        seen += 1
        if seen == warm:
            t0 = time.perf_counter()

    channel.basic_consume(queue, on_message)
    while seen < total:
        connection.process_data_events(time_limit=0.1)
    rate = (total - warm) / (time.perf_counter() - t0)
    connection.close()
    return rate


def main() -> dict:
    vhost = f"tasuki-bench-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    url = f"amqp://guest:guest@localhost:5672/{vhost}"
    sub = Subscription(name="bench", topic=topics.EVENTS, keys=("bench.#",), endpoint="router")
    Broker(url).declare(subscriptions=(sub,))
    with pika.BlockingConnection(pika.URLParameters(url)) as connection:
        connection.channel().queue_declare("bench.raw", durable=True, arguments=topics.QUORUM)
    workdir = Path(tempfile.mkdtemp(prefix="tasuki-bench-"))
    endpoint = TrivialEndpoint(workdir)
    try:
        concurrency = sub.max_outstanding
        direct(endpoint, concurrency, MESSAGES // 4)  # warm the endpoint up
        directs, bridges, raws, cpu = [], [], [], {"direct": 0.0, "bridge": 0.0}
        for _ in range(ROUNDS):
            started = time.process_time()
            directs.append(direct(endpoint, concurrency, MESSAGES))
            cpu["direct"] += time.process_time() - started
            fill(url, sub.queue, MESSAGES)
            started = time.process_time()
            bridges.append(bridge(endpoint, url, sub, MESSAGES))
            cpu["bridge"] += time.process_time() - started
            raws.append(raw(url, "bench.raw", min(65535, max(32, concurrency * 8)), MESSAGES))
        direct_rate, bridge_rate, raw_rate = (statistics.median(x) for x in (directs, bridges, raws))
    finally:
        endpoint.close()
        _rabbitmqctl("delete_vhost", vhost)
    figures = {
        "messages": MESSAGES,
        "rounds": ROUNDS,
        "direct_runs": [round(x) for x in directs],
        "bridge_runs": [round(x) for x in bridges],
        "concurrency": concurrency,
        "direct_per_s": round(direct_rate, 1),
        "bridge_per_s": round(bridge_rate, 1),
        "raw_consume_per_s": round(raw_rate, 1),
        "bridge_over_direct": round(bridge_rate / direct_rate, 3),
        "bridge_over_raw": round(bridge_rate / raw_rate, 3),
        # CPU of this process per push: the load generator's, and the bridge's (consumer, scheduler
        # and HTTP client; the filling of the queue is not counted).
        "loadgen_cpu_us_per_push": round(cpu["direct"] / (ROUNDS * MESSAGES) * 1e6),
        "bridge_cpu_us_per_push": round(cpu["bridge"] / (ROUNDS * MESSAGES) * 1e6),
    }
    for name, value in figures.items():
        print(f"  {name:<20} {value}")
    return figures


if __name__ == "__main__":
    main()
