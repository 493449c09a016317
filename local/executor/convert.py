"""Pure conversion: a job and its context -> the Docker Engine API request that creates its container.

No daemon is needed: `container_config()` returns the exact body of `POST /containers/create`,
so a test can read every decision. The checkout is mounted at /workspace, which is also the
working directory. A `run` job's entrypoint is its executable with `args` as argv; a plugin job
runs its image's own entrypoint with its settings as `PLUGIN_*` variables. Event data (branch
names, commit messages) reaches the container only as environment variables and argv, never
through a shell. Containers are never privileged, get no Docker socket (the workspace is the
only mount), cannot gain privileges, keep only the capabilities a root build needs
(`CAPABILITIES`), run as the image's user unless the operator names one (TASUKI_JOB_USER), and
run with memory, CPU and process-count limits.
Output is read by attaching to the container, so the engine keeps no log file of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasuki.shared import sizes
from tasuki.shared.errors import ConfigError
from tasuki.shared.flowfile import Job
from tasuki.shared.flowfile.params import variable
from tasuki.shared.settings import Settings

WORKSPACE = "/workspace"
LABEL_RUN = "tasuki.run"
LABEL_JOB = "tasuki.job"
LABEL_EXECUTOR = "tasuki.executor"
LABEL_ATTEMPT = "tasuki.attempt"

# Job containers drop every capability and get back only these, which a build running as root
# typically needs (Docker's default set also has MKNOD, NET_RAW, NET_BIND_SERVICE, SYS_CHROOT,
# SETFCAP, SETPCAP and AUDIT_WRITE: device nodes, raw packets and ARP spoofing on the bridge,
# chroot escapes, file capabilities, and the rest, which builds do without).
CAPABILITIES = {
    "CHOWN": "chown files: package managers and `COPY --chown`-like steps in builds",
    "DAC_OVERRIDE": "root reads and writes files it does not own, e.g. the workspace (owned by the executor's user)",
    "FOWNER": "chmod and touch files it does not own (tar and cp -p keep modes and times)",
    "FSETID": "keep setuid and setgid bits when changing such files (dpkg, rpm)",
    "SETUID": "switch users: apt drops to _apt to download, su and gosu run steps as another user",
    "SETGID": "the same for groups",
    "KILL": "signal its own processes after they switched user (test runners stopping workers)",
}


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
    attempt: int = 0  # the order's attempt (a label, not a variable: a rerun must not change a job)
    params: tuple[tuple[str, str], ...] = ()  # a manual run's parameters: TASUKI_PARAM_<NAME>


@dataclass(frozen=True)
class Limits:
    """What the operator imposes on every job container (TASUKI_JOB_*)."""

    memory: str = "1g"
    cpus: float = 1.0
    pids: int = 512
    user: str = ""  # empty: the image's own user
    log_bytes: int | None = None  # past this much output the log is cut and the job stopped

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            settings.job_memory, settings.job_cpus, settings.job_pids, settings.job_user, settings.job_log_limit_bytes
        )

    @property
    def memory_bytes(self) -> int:
        return memory_bytes(self.memory)


def memory_bytes(text: str) -> int:
    """Bytes from `512m`, `1g`, `1.5G`, `2GiB`, `1048576`; ConfigError naming the setting otherwise."""
    size = sizes.parse(text, "TASUKI_JOB_MEMORY", example="512m or 2g")
    if size < 6 * 1024**2:
        raise ConfigError(f"TASUKI_JOB_MEMORY: Docker needs at least 6m, found {text!r}")
    return size


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


def secret_environment(job: Job, secrets: Mapping[str, str]) -> dict[str, str]:
    """The job's secrets (secret name -> value) as its variables: each `secrets:` entry as its
    `name`, each `{from_secret: NAME}` setting as its PLUGIN_* variable. Nothing else of
    `secrets` reaches the job. KeyError for a secret the job lists and `secrets` lacks."""
    env = {ref.name: secrets[ref.source] for ref in job.secrets}
    env.update({plugin_variable(key): secrets[name] for key, name in job.setting_secrets().items()})
    return env


def environment(job: Job, ctx: Context, secrets: Mapping[str, str] | None = None) -> dict[str, str]:
    """The job's own `env` and its secrets first, then Tasuki's variables, which a job cannot
    override: they are facts about the run (a job that sets TASUKI_COMMIT would lie to its own
    scripts)."""
    env = dict(job.env)
    if job.plugin:
        from_secret = job.setting_secrets()
        env.update({plugin_variable(k): plugin_value(v) for k, v in job.settings.items() if k not in from_secret})
    env.update(secret_environment(job, secrets or {}))
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
    env.update(
        {
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
    )
    env.update({variable(name): value for name, value in ctx.params})
    return env


def labels(ctx: Context, job: Job, executor_id: str) -> dict[str, str]:
    return {
        LABEL_RUN: ctx.run_id,
        LABEL_JOB: ctx.job or job.name,
        LABEL_EXECUTOR: executor_id,
        LABEL_ATTEMPT: str(ctx.attempt),
    }


def confined(limits: Limits) -> dict[str, Any]:
    """What every container Tasuki starts for a job gets (its services too): memory, CPU and
    process limits, no privileges, only `CAPABILITIES`."""
    memory = limits.memory_bytes
    return {
        "Memory": memory,
        "MemorySwap": memory,  # no swap: the memory limit is the limit
        "NanoCpus": int(limits.cpus * 1e9),
        "PidsLimit": limits.pids,
        "Privileged": False,
        "SecurityOpt": ["no-new-privileges"],
        "CapDrop": ["ALL"],
        "CapAdd": sorted(CAPABILITIES),
    }


def container_config(
    job: Job,
    ctx: Context,
    workspace: Path,
    limits: Limits,
    executor_id: str = "",
    secrets: Mapping[str, str] | None = None,
    *,
    network: str | None = None,
) -> dict[str, Any]:
    """The body of Docker's `POST /containers/create` for this job (`secrets`: name -> value of
    those it lists; on `network`, if it has services)."""
    config: dict[str, Any] = {
        "Image": job.container_image,
        "WorkingDir": WORKSPACE,
        "Env": [f"{k}={v}" for k, v in environment(job, ctx, secrets).items()],
        "Labels": labels(ctx, job, executor_id),
        "AttachStdin": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": False,
        "OpenStdin": False,
        "HostConfig": {
            # The checkout is the only mount: no Docker socket, nothing else of the host.
            "Binds": [f"{Path(workspace).resolve()}:{WORKSPACE}:rw"],
            # A job with services is on their network (`local.executor.services`), no other.
            "NetworkMode": network or job.network,
            **confined(limits),
            "LogConfig": {"Type": "none", "Config": {}},  # output is streamed by attaching
        },
    }
    if limits.user:
        config["User"] = limits.user
    if job.run:
        config["Entrypoint"] = [f"{WORKSPACE}/{job.run}"]
        config["Cmd"] = list(job.args)
    elif job.args:
        config["Cmd"] = list(job.args)
    return config
