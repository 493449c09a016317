"""The files around a job, in one place of its lifecycle (`jobs.run_job` calls `before` and
`after`): the artifacts of the jobs it needs and its cache before the container starts; its
artifacts and its cache after it ends. The same for the executor service and `tasuki run`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tasuki.local.executor import artifacts, caches
from tasuki.local.executor.artifacts import Say, Tick
from tasuki.shared.errors import FilesRefused
from tasuki.shared.flowfile import Job
from tasuki.shared.messages import Artifact
from tasuki.shared.objects import Objects

if TYPE_CHECKING:
    from tasuki.local.executor.jobs import Outcome


@dataclass
class JobFiles:
    store: Objects
    run_id: str
    scope: caches.Scope | None  # None: no cache (a fork's pull request)
    artifacts_limit: int
    cache_limit: int
    tick: Tick = lambda: None
    cache_store: Objects | None = None  # caches somewhere else (`tasuki run`); None: `store`
    artifact_runs: dict[str, str] = dataclasses.field(default_factory=dict)  # JobOrder.artifact_runs
    _cache_key: str = ""
    _cache_hit: bool = False

    def before(self, job: Job, workspace: Path, say: Say) -> None:
        """The needs' artifacts into the workspace, then the cache (FilesRefused: the job fails)."""
        if job.needs:
            artifacts.fetch(
                self.store, self.run_id, job.needs, workspace, say=say, tick=self.tick, elsewhere=self.artifact_runs
            )
        if job.cache is None:
            return
        if self.scope is None:
            say(
                "cache: not used here (a pull request from a fork neither reads nor writes caches; a run needs a branch)"
            )
            return
        try:
            self._cache_key = caches.render_key(job.cache.key, workspace)
        except FilesRefused as exc:  # hashFiles of a symlink out of the workspace
            self.scope = None
            say(f"cache: not used: {exc}")
            return
        self._cache_hit = caches.restore(
            self.cache_store or self.store, self.scope, job.cache, self._cache_key, workspace, say=say, tick=self.tick
        )

    def after(self, job: Job, workspace: Path, outcome: Outcome, say: Say) -> Outcome:
        """Keep the artifacts (and the cache, after a success); the outcome with what was kept,
        or a failure when the artifacts were refused."""
        kept: list[Artifact] = []
        spec = job.artifacts
        if spec is not None and outcome.status != "cancelled" and (spec.when == "always" or outcome.ok):
            kept = artifacts.keep(
                self.store,
                self.run_id,
                job.name,
                workspace,
                spec,
                limit=self.artifacts_limit,
                say=say,
                tick=self.tick,
            )
        if job.cache is not None and self.scope is not None and outcome.ok and not self._cache_hit:
            caches.save(
                self.cache_store or self.store,
                self.scope,
                job.cache,
                self._cache_key,
                workspace,
                limit=self.cache_limit,
                say=say,
                tick=self.tick,
            )
        return dataclasses.replace(outcome, artifacts=tuple(kept))
