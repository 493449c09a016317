"""Benchmarks (`make bench`), never timed assertions in tests.

The machines are shared and noisy, so every timing benchmark measures Tasuki side by side with a
baseline in the same run and reports the ratio (memory, which the noise does not move much, is
measured alone: `bench_memory`, against its aim). Each `bench_*.py` module here has a
`main() -> dict` that prints its figures and returns them; `python -m tests.bench [NAME ...]`
runs them all (or the named ones) and writes `.tasuki/bench.json`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import rabbitmqctl


@contextmanager
def vhost(bench: str) -> Iterator[str]:
    """The AMQP URL of a RabbitMQ vhost made for one benchmark, deleted afterwards."""
    name = f"tasuki-bench-{uuid.uuid4().hex[:8]}"
    if rabbitmqctl("add_vhost", name).returncode != 0:
        raise SystemExit(f"bench {bench}: cannot create a RabbitMQ vhost; is RabbitMQ running? (`make setup`)")
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@localhost:5672/{name}"
    finally:
        rabbitmqctl("delete_vhost", name)
