"""Pure conversion: a job and its context -> the Docker container configuration. No daemon needed.

The checkout is mounted at /workspace, which is also the working directory. A `run` job's
entrypoint is its executable with `args` as argv; a plugin job runs its image's own entrypoint
with its settings as `PLUGIN_*` variables. Event data reaches the container only as
environment variables and argv, never through a shell. Containers are never privileged, never
get the Docker socket, and run with memory, CPU and process-count limits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.flowfile import Job

WORKSPACE = "/workspace"
LABEL_RUN = "tasuki.run"
LABEL_JOB = "tasuki.job"
LABEL_EXECUTOR = "tasuki.executor"


@dataclass(frozen=True)
class Context:
    """What the job is running for; every field becomes a TASUKI_* variable."""

    repository: str = ""
    ref: str = ""
    branch: str = ""
    tag: str = ""
    commit: str = ""
    run_id: str = ""
    job: str = ""
    event: str = ""
    host: str = ""
    actor: str = ""


@dataclass(frozen=True)
class Limits:
    memory: str = "1g"
    cpus: float = 1.0
    pids: int = 512


def plugin_variable(name: str) -> str:
    return "PLUGIN_" + re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper()


def plugin_value(value: Any) -> str:
    """Drone's convention: lists comma-joined, maps and nested values as JSON, booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return "" if value is None else str(value)


def environment(job: Job, ctx: Context) -> dict[str, str]:
    env = {
        "CI": "true",
        "TASUKI": "true",
        "TASUKI_REPO": ctx.repository,
        "TASUKI_REF": ctx.ref,
        "TASUKI_BRANCH": ctx.branch,
        "TASUKI_TAG": ctx.tag,
        "TASUKI_COMMIT": ctx.commit,
        "TASUKI_RUN_ID": ctx.run_id,
        "TASUKI_JOB": ctx.job or job.name,
        "TASUKI_EVENT": ctx.event,
        "TASUKI_HOST": ctx.host,
        "TASUKI_ACTOR": ctx.actor,
        "TASUKI_WORKSPACE": WORKSPACE,
    }
    if job.plugin:
        # The names Drone and Woodpecker plugins read, so that existing plugin images work.
        env.update(
            {
                "DRONE": "true",
                "DRONE_REPO": ctx.repository,
                "DRONE_BRANCH": ctx.branch,
                "DRONE_TAG": ctx.tag,
                "DRONE_COMMIT": ctx.commit,
                "DRONE_COMMIT_SHA": ctx.commit,
                "DRONE_COMMIT_REF": ctx.ref,
                "DRONE_BUILD_EVENT": ctx.event,
                "DRONE_WORKSPACE": WORKSPACE,
                "CI_REPO": ctx.repository,
                "CI_COMMIT_SHA": ctx.commit,
                "CI_COMMIT_BRANCH": ctx.branch,
                "CI_COMMIT_TAG": ctx.tag,
                "CI_COMMIT_REF": ctx.ref,
                "CI_PIPELINE_EVENT": ctx.event,
                "CI_WORKSPACE": WORKSPACE,
            }
        )
        env.update({plugin_variable(k): plugin_value(v) for k, v in job.settings.items()})
    env.update(job.env)
    return env


def container_config(
    job: Job, ctx: Context, workspace: Path, limits: Limits, executor_id: str = ""
) -> dict[str, Any]:
    """Keyword arguments for docker-py's `containers.create`."""
    config: dict[str, Any] = {
        "image": job.container_image,
        "working_dir": WORKSPACE,
        "environment": environment(job, ctx),
        "labels": {LABEL_RUN: ctx.run_id, LABEL_JOB: ctx.job or job.name, LABEL_EXECUTOR: executor_id},
        "volumes": {str(Path(workspace).resolve()): {"bind": WORKSPACE, "mode": "rw"}},
        "network_mode": job.network,
        "mem_limit": limits.memory,
        "memswap_limit": limits.memory,  # no swap: the memory limit is the limit
        "nano_cpus": int(limits.cpus * 1e9),
        "pids_limit": limits.pids,
        "privileged": False,
        "security_opt": ["no-new-privileges"],
        "tty": False,
        "stdin_open": False,
        "detach": True,
    }
    if job.run:
        config["entrypoint"] = [f"{WORKSPACE}/{job.run}"]
        config["command"] = list(job.args)
    elif job.args:
        config["command"] = list(job.args)
    return config
