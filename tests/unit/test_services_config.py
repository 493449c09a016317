"""Service containers as Engine API bodies (pure): the job's limits, labels and network."""

from __future__ import annotations

from pathlib import Path

from tasuki.local.executor import convert, services
from tasuki.shared.flowfile import Job, Service

ECHO = Service(image="tasuki/busybox", command=["nc", "-ll", "-p", "7000"], env={"GREETING": "hello"})


def test_services_get_the_jobs_limits_and_labels_on_the_jobs_network():
    ctx = convert.Context(run_id="run-1", job="test", attempt=2)
    spec = Job(name="test", image="tasuki/busybox", run="ci/test", services={"echo": ECHO})
    limits = convert.Limits(memory="256m", cpus=0.5, pids=64, user="1000")
    network = services.network_name(ctx, spec, "ex-1")
    config = services.service_config("echo", ECHO, ctx, spec, limits, "ex-1", network)
    host = config["HostConfig"]
    assert {k: host[k] for k in convert.confined(limits)} == convert.confined(limits)
    assert (host["CapDrop"], host["Privileged"], host["NetworkMode"], config["User"]) == (
        ["ALL"],
        False,
        network,
        "1000",
    )
    assert config["NetworkingConfig"]["EndpointsConfig"][network]["Aliases"] == ["echo"]
    assert config["Labels"][convert.LABEL_EXECUTOR] == "ex-1" and config["Labels"][convert.LABEL_ATTEMPT] == "2"
    assert config["Env"] == ["GREETING=hello"] and config["Cmd"] == ECHO.command
    assert network != services.network_name(convert.Context(run_id="run-1", job="test", attempt=3), spec, "ex-1")
    job_config = convert.container_config(spec, ctx, Path("/tmp"), limits, "ex-1", network=network)
    assert job_config["HostConfig"]["NetworkMode"] == network
