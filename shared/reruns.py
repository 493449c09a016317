"""Re-running a run's failed jobs (pure): which jobs the new run keeps and which it runs again.

A re-run of failed jobs is a new run of the same event at the same commit. It keeps the jobs
that succeeded (their results are not run again) and runs every other job (failed, timed out,
in error, cancelled, skipped) and every job that needs one of those, transitively: on a diamond
`build -> (unit, lint) -> deploy` whose `lint` failed, `build` and `unit` are kept and `lint` and
`deploy` run. The dispatcher marks the kept jobs succeeded when the new run is planned
(`shared.scheduler`), so a job that needs them starts at once.
"""

from __future__ import annotations

from collections.abc import Mapping

from tasuki.shared.scheduler import JobState


def again(jobs: Mapping[str, JobState]) -> list[str]:
    """The jobs that run again: those that did not succeed and what needs them, transitively."""
    chosen = {name for name, job in jobs.items() if job.status != "success"}
    grown = True
    while grown:
        grown = False
        for name, job in jobs.items():
            if name not in chosen and any(need in chosen for need in job.needs):
                chosen.add(name)
                grown = True
    return sorted(chosen)


def kept(jobs: Mapping[str, JobState]) -> list[str]:
    """The jobs a re-run of failed jobs keeps: every job that does not run again."""
    return sorted(set(jobs) - set(again(jobs)))
