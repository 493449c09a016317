"""Service containers: what a job's `services:` start beside it (issue 14).

    with services.beside(docker, job, ctx, limits, ...) as network:   # None: the job has none
        ... run the job's container on `network` ...

The lifecycle: a bridge network of the job's own -> each service created (its image, env and
command; the job's limits and labels; reachable on that network by its name) and started ->
each service with `ready:` polled (its `exec`, run inside it, exits 0; a service that exits
first, or is not ready in time, is the job's error, `ServiceFailed`) -> the job runs -> each
service's output (its last `OUTPUT_BYTES`) goes into the job's log under its name -> the
services and the network are removed, always: success, failure, timeout, cancel, and the
executor stopping (its jobs are cancelled). An executor that died leaves them labelled with
its id: it removes them when it starts again (`Executor.cleanup_orphans`).

`service_config()` and `network_name()` are pure (the Engine API bodies), like `convert`.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tasuki.local.executor import convert
from tasuki.local.executor.containers import Docker
from tasuki.shared.errors import ServiceFailed, TasukiError
from tasuki.shared.flowfile import Job, Service, duration

LABEL_SERVICE = "tasuki.service"
OUTPUT_BYTES = 64 * 1024  # of each service's output, kept in the job's log
POLL = 0.25  # seconds between checks of cancel and lease while waiting for a service
READY_EVERY = 1.0  # seconds between two tries of a service's `ready.exec`


def network_name(ctx: convert.Context, job: Job, executor_id: str) -> str:
    """`tasuki-<run>-<hash>`: one per attempt of a job on an executor, a valid Docker name."""
    key = f"{executor_id}\0{ctx.run_id}\0{ctx.job or job.name}\0{ctx.attempt}"
    run = re.sub(r"[^A-Za-z0-9_.-]+", "-", ctx.run_id)[:40]
    return f"tasuki-{run}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def service_config(
    name: str, service: Service, ctx: convert.Context, job: Job, limits: convert.Limits, executor_id: str, network: str
) -> dict[str, Any]:
    """The body of `POST /containers/create` for one service: the job's limits and labels (so
    the executor's clean-ups find it), on the job's network under its name. Its output is kept
    by the engine (a small capped file) to be copied into the job's log at the end."""
    config: dict[str, Any] = {
        "Image": service.image,
        "Hostname": name,
        "Env": [f"{k}={v}" for k, v in service.env.items()],
        "Labels": {**convert.labels(ctx, job, executor_id), LABEL_SERVICE: name},
        "HostConfig": {
            "NetworkMode": network,
            **convert.confined(limits),
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}},
        },
        "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": [name]}}},
    }
    if service.command:
        config["Cmd"] = list(service.command)
    if limits.user:
        config["User"] = limits.user
    return config


@contextmanager
def beside(
    docker: Docker,
    job: Job,
    ctx: convert.Context,
    limits: convert.Limits,
    executor_id: str,
    *,
    on_output: Callable[[bytes], None],
    cancelled: Callable[[], bool] = lambda: False,
    on_tick: Callable[[], None] = lambda: None,
) -> Iterator[str | None]:
    """The job's services, started and ready, for the block: yields their network's name (None
    for a job without services); removes them and the network when the block ends."""
    if not job.services:
        yield None
        return
    name = network_name(ctx, job, executor_id)
    network = docker.create_network(name, convert.labels(ctx, job, executor_id))
    started: dict[str, str] = {}
    try:
        for service_name, service in job.services.items():
            on_output(f"[tasuki] service {service_name}: starting {service.image}\n".encode())
            started[service_name] = docker.create(
                service_config(service_name, service, ctx, job, limits, executor_id, name)
            )
            docker.start(started[service_name])
        for service_name, service in job.services.items():
            _wait_ready(docker, service_name, service, started[service_name], cancelled, on_tick, on_output)
        yield name
    finally:
        for service_name, container in started.items():
            _copy_output(docker, service_name, container, on_output)
            docker.remove(container)
        docker.remove_network(network)


def _wait_ready(
    docker: Docker,
    name: str,
    service: Service,
    container: str,
    cancelled: Callable[[], bool],
    on_tick: Callable[[], None],
    on_output: Callable[[bytes], None],
) -> None:
    if service.ready is None:
        return
    argv, timeout = service.ready.exec, service.ready.timeout
    started = time.monotonic()
    deadline = started + timeout
    next_try = started
    while not cancelled():
        on_tick()
        now = time.monotonic()
        if now >= next_try:
            _still_running(docker, name, container)
            try:
                code = docker.execute(container, argv)
            except TasukiError:  # it may have exited between the look and the exec: say so if it did
                _still_running(docker, name, container)
                raise
            if code == 0:
                on_output(f"[tasuki] service {name}: ready after {duration(round(now - started, 1))}\n".encode())
                return
            next_try = now + READY_EVERY
        if now > deadline:
            raise ServiceFailed(
                f"service {name} was not ready after {duration(timeout)}: {' '.join(argv)} never exited 0 "
                f"(ready.timeout; its output is above)"
            )
        time.sleep(POLL)


def _still_running(docker: Docker, name: str, container: str) -> None:
    state = docker.state(container)
    if not state.get("Running"):
        raise ServiceFailed(
            f"service {name} exited with code {state.get('ExitCode')} before it was ready (its output is above)"
        )


def _copy_output(docker: Docker, name: str, container: str, on_output: Callable[[bytes], None]) -> None:
    try:
        data = docker.output(container, OUTPUT_BYTES)
    except TasukiError as exc:
        on_output(f"[tasuki] service {name}: its output cannot be read ({exc})\n".encode())
        return
    if not data:
        on_output(f"[tasuki] service {name}: printed nothing\n".encode())
        return
    on_output(f"[tasuki] service {name}: its output{' (the end of it)' * (len(data) >= OUTPUT_BYTES)}:\n".encode())
    for line in data.decode("utf-8", "replace").splitlines():
        on_output(f"[{name}] {line}\n".encode())


def remove_left(docker: Docker, keep: Callable[[dict[str, Any]], bool], label: str, value: str) -> int:
    """Remove the networks labelled `label=value` that `keep` does not want (their containers
    first removed by the caller): after a crash, or an earlier attempt's."""
    try:
        found = docker.networks_labelled(label, value)
    except TasukiError:
        return 0
    gone = [n for n in found if not keep(n)]
    for network in gone:
        docker.remove_network(network["Id"])
    return len(gone)
