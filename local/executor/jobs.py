"""Running one job in a container: the same code for the executor service and `tasuki run`.

the job's secrets were given (or it fails, naming them) -> check the executable is a file in
the checkout -> the files it needs (artifacts of its needs, its cache: `local.executor.jobfiles`)
-> start its services, if any, and wait until they are ready (`local.executor.services`) ->
convert the job to a container request (pure, `local.convert`) -> run it, streaming output
(`local.containers`) through the log limit (`loglimit`: past it the container is stopped) ->
remove the services -> the files it keeps -> an `Outcome` a person can read: status, exit code,
and why. Every failure to run becomes an `error` outcome with its
reason and the words that say what to do; it is also written into the job's log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasuki.local.executor import convert, loglimit, services
from tasuki.local.executor.containers import Docker, Exit
from tasuki.local.executor.jobfiles import JobFiles
from tasuki.local.executor.loglimit import LogLimit
from tasuki.local.executor.secrets import NONE as NO_SECRETS
from tasuki.local.executor.secrets import Received
from tasuki.shared.errors import ExecutableMissing, JobError
from tasuki.shared.flowfile import Job, duration
from tasuki.shared.messages import Artifact


@dataclass(frozen=True)
class Outcome:
    status: str  # success, failure, error, timeout, cancelled
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    seconds: float = 0.0  # from the check of the executable to the container's removal
    checkout_seconds: float = 0.0  # making the workspace (set by the executor)
    artifacts: tuple[Artifact, ...] = ()  # the files the job kept

    @property
    def ok(self) -> bool:
        return self.status == "success"


def check_executable(workspace: Path, run: str) -> Path:
    """The executable must be a file inside the checkout (symlinks followed), executable."""
    root = Path(workspace).resolve()
    if ".." in Path(run).parts or Path(run).is_absolute():
        raise ExecutableMissing(f"{run} is not a path inside the repository; run: must name a file in it")
    path = (root / run).resolve()
    if not path.is_relative_to(root):
        raise ExecutableMissing(
            f"{run} points outside the repository (to {path}); run: must name a file in the repository"
        )
    if not path.exists():
        raise ExecutableMissing(f"{run} is not in the repository at this commit; add it, or fix run: in .tasuki.yml")
    if not path.is_file():
        raise ExecutableMissing(f"{run} is not a file; run: must name an executable file")
    if not os.access(path, os.X_OK):
        raise ExecutableMissing(
            f"{run} is not executable; make it so and commit that: git update-index --chmod=+x {run}"
        )
    return path


def run_job(
    docker: Docker,
    job: Job,
    ctx: convert.Context,
    workspace: Path,
    *,
    limits: convert.Limits,
    timeout: float,
    on_output: Callable[[bytes], None],
    cancelled: Callable[[], bool] = lambda: False,
    on_tick: Callable[[], None] = lambda: None,
    executor_id: str = "",
    files: JobFiles | None = None,
    secrets: Received = NO_SECRETS,
) -> Outcome:
    """`secrets`: what the job received (`local.executor.secrets`); a job refused its secrets
    ends `error` with the reason before anything else, and its container never starts."""
    started = time.monotonic()

    def say(text: str) -> None:
        on_output(f"[tasuki] {text}\n".encode())

    def outcome(status: str, code: int | None = None, reason: str = "", message: str = "") -> Outcome:
        return Outcome(status, code, reason, message, time.monotonic() - started)

    try:
        secrets.check()
        if job.run:
            check_executable(workspace, job.run)
        if files is not None:
            files.before(job, workspace, say)
        if cancelled():
            return outcome("cancelled", None, "cancelled", "cancelled before it started")
        log = LogLimit(limits.log_bytes, on_output)  # past it: the container is stopped
        around = services.beside(
            docker, job, ctx, limits, executor_id, on_output=log.feed, cancelled=cancelled, on_tick=on_tick
        )
        with around as network:  # the job's services, removed when the job is over, whatever happened
            config = convert.container_config(job, ctx, workspace, limits, executor_id, secrets.values, network=network)
            if cancelled():
                return outcome("cancelled", None, "cancelled", "cancelled before it started")
            exit = docker.run(
                config,
                timeout=timeout,
                on_output=log.feed,
                cancelled=lambda: log.passed or cancelled(),
                on_tick=on_tick,
            )
    except JobError as exc:
        say(str(exc))
        return outcome("error", None, exc.reason, str(exc))
    result = _result(exit, log, limits, timeout, outcome, on_output)
    if files is None:
        return result
    try:
        return files.after(job, workspace, result, say)
    except JobError as exc:  # its artifacts were refused: the job fails, saying why
        say(str(exc))
        return outcome("error", exit.exit_code, exc.reason, str(exc))


def _result(
    exit: Exit,
    log: LogLimit,
    limits: convert.Limits,
    timeout: float,
    outcome: Callable[..., Outcome],
    on_output: Callable[[bytes], None],
) -> Outcome:
    if log.passed and log.limit is not None:
        return outcome("failure", exit.exit_code, loglimit.REASON, loglimit.message(log.limit))
    if exit.cancelled:
        return outcome("cancelled", exit.exit_code, "cancelled", "cancelled while running")
    if exit.timed_out:
        message = f"killed after the {duration(timeout)} timeout"
        on_output(f"\n[tasuki] {message}\n".encode())
        return outcome("timeout", exit.exit_code, "timeout", message)
    if exit.oom_killed:
        message = f"killed: out of memory (the limit is {limits.memory})"
        on_output(f"\n[tasuki] {message}\n".encode())
        return outcome("failure", exit.exit_code, "out-of-memory", message)
    if exit.exit_code == 0:
        return outcome("success", 0)
    return outcome("failure", exit.exit_code, "exit-code", f"exited with code {exit.exit_code}")
