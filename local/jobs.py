"""Running one job in a container: the same code for the executor service and `tasuki run`.

check the executable is a file in the checkout -> make sure the image is there -> convert the
job to a container configuration (pure, `local.convert`) -> run it, streaming output -> an
`Outcome` a person can read: status, exit code, and why.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from local import convert
from local.containers import Docker
from shared.errors import ExecutableMissing, JobError
from shared.flowfile import Job


@dataclass(frozen=True)
class Outcome:
    status: str  # success, failure, error, timeout, cancelled
    exit_code: int | None = None
    reason: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "success"


def check_executable(workspace: Path, run: str) -> Path:
    """The executable must be a file inside the checkout, with its executable bit set."""
    root = Path(workspace).resolve()
    path = (root / run).resolve()
    if not path.is_relative_to(root):
        raise ExecutableMissing(f"{run} points outside the repository (to {path}); it must be a file in it")
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
    executor_id: str = "",
) -> Outcome:
    try:
        if job.run:
            check_executable(workspace, job.run)
        docker.ensure_image(job.container_image)
        config = convert.container_config(job, ctx, workspace, limits, executor_id)
        exit = docker.run(config, timeout=timeout, on_output=on_output, cancelled=cancelled)
    except JobError as exc:
        on_output(f"[tasuki] {exc}\n".encode())
        return Outcome("error", None, exc.reason, str(exc))
    if exit.cancelled:
        return Outcome("cancelled", exit.exit_code, "cancelled", "cancelled while running")
    if exit.timed_out:
        return Outcome("timeout", exit.exit_code, "timeout", f"killed after the {_duration(timeout)} timeout")
    if exit.oom_killed:
        return Outcome(
            "failure", exit.exit_code, "out-of-memory", f"killed: out of memory (limit {limits.memory})"
        )
    if exit.exit_code == 0:
        return Outcome("success", 0)
    return Outcome("failure", exit.exit_code, "exit-code", f"exited with code {exit.exit_code}")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
