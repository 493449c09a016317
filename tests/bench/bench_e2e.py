"""Push -> run finished through every real process (`tasuki local`), beside a bare `docker run`.

- latency: one signed Bitbucket push at a time on an otherwise idle Tasuki, for a one-job flow;
  the time from just before the webhook POST to the run's `finished_at` (both this machine's
  clock), beside `docker run --rm` of the same image and command on a checkout of the same
  commit. Rounds alternate, so both sides share the machine's noise; reported: p50 and p99 of
  the difference (Tasuki's overhead: ingress, router, dispatcher, plan, claim, checkout, the
  container's lifecycle through the API, the result back through the dispatcher).
- burst: `BENCH_BURST` pushes at once, drained by one executor at concurrency
  `BENCH_CONCURRENCY`, beside `docker run` of as many containers with that parallelism; the
  ratio of the two rates (runs finished per second).

Each store backend is measured: SQLite, and PostgreSQL: the database `BENCH_POSTGRES_URL` names
(one this benchmark may fill), or else a throwaway cluster started for the benchmark as the
tests start theirs (tests/postgres.py; Debian's `postgresql` package, which `local/setup.sh`
installs).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tasuki.shared.messages import RUN_FINAL
from tests.conftest import bitbucket_push, git, write_files
from tests.harness import LocalTasuki

IMAGE = "tasuki/busybox:latest"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))
BURST = int(os.environ.get("BENCH_BURST", "20"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "2"))
WARMUP = 3
HELLO = '#!/bin/sh\necho "hello from $TASUKI_JOB"\n'
FLOW = "jobs:\n  build: {image: tasuki/busybox, run: ci/hello}\n"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def _repository(root: Path) -> tuple[Path, str, Path]:
    work, bare = root / "work", root / "repo.git"
    write_files(work, {".tasuki.yml": FLOW, "ci/hello": (HELLO, True)})
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "bench")
    git(root, "clone", "-q", "--bare", str(work), str(bare))
    return bare, git(work, "rev-parse", "HEAD").strip(), work


def _docker_run(workspace: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [
            *("docker", "run", "--rm", "-v", f"{workspace}:/workspace", "-w", "/workspace"),
            *("-e", "TASUKI_JOB=build", "--entrypoint", "/workspace/ci/hello", IMAGE),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    took = time.perf_counter() - started
    assert done.stdout == "hello from build\n", done.stdout
    return took


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Bench:
    def __init__(self, tasuki: LocalTasuki, commit: str) -> None:
        self.tasuki = tasuki
        self.commit = commit
        self.seen: set[str] = set()

    def push(self) -> float:
        body, headers = bitbucket_push("bench/hello", "main", self.commit)
        started = time.time()
        answer = self.tasuki.post_webhook(body, headers)
        assert answer.status_code == 202, answer.text
        return started

    def finished(self, count: int, timeout: float = 300) -> list:
        """The next `count` runs to finish (not seen before), each once over."""
        deadline = time.monotonic() + timeout
        while True:
            runs = [r for r in self.tasuki.store.list_runs(limit=500) if r.id not in self.seen]
            done = [r for r in runs if r.status in RUN_FINAL]
            if len(done) >= count:
                assert all(r.status == "success" for r in done), [(r.id, r.status, r.message) for r in done]
                self.seen.update(r.id for r in done)
                return done
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(done)} of {count} runs finished in {timeout}s\n{self.tasuki.log()}")
            time.sleep(0.01)


def _measure(tmp: Path, url: str, store: str, store_url: str) -> dict:
    repo, commit, work = _repository(tmp)
    (tmp / "rules.yml").write_text("rules:\n  - {event: push, repository: bench/hello}\n")
    (tmp / "repos.yml").write_text(f"repositories:\n  bench/hello: {{clone_url: {repo}}}\n")
    env = {
        "TASUKI_AMQP_URL": url,
        "TASUKI_DATA_DIR": str(tmp / "data"),
        "TASUKI_RULES_FILE": str(tmp / "rules.yml"),
        "TASUKI_REPOSITORIES_FILE": str(tmp / "repos.yml"),
        "TASUKI_EXECUTOR_CONCURRENCY": str(CONCURRENCY),
    }
    if store_url:
        env["TASUKI_STORE_URL"] = store_url
    with LocalTasuki(env) as tasuki:
        bench = Bench(tasuki, commit)
        overhead, tasuki_s, docker_s = [], [], []
        for n in range(WARMUP + ROUNDS):
            started = bench.push()
            [run] = bench.finished(1)
            took = run.finished_at.timestamp() - started
            bare = _docker_run(work)
            if n >= WARMUP:
                tasuki_s.append(took)
                docker_s.append(bare)
                overhead.append(took - bare)
        # The burst: every push at once, drained at the executor's concurrency
        started = time.time()
        for _ in range(BURST):
            bench.push()
        runs = bench.finished(BURST)
        tasuki_rate = BURST / (max(r.finished_at.timestamp() for r in runs) - started)
    began = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(lambda _: _docker_run(work), range(BURST)))
    docker_rate = BURST / (time.perf_counter() - began)
    figures = {
        "store": store,
        "rounds": ROUNDS,
        "push_to_finished_p50_s": round(statistics.median(tasuki_s), 4),
        "docker_run_p50_s": round(statistics.median(docker_s), 4),
        "overhead_p50_ms": round(statistics.median(overhead) * 1000, 1),
        "overhead_p99_ms": round(_percentile(overhead, 99) * 1000, 1),
        "burst": BURST,
        "concurrency": CONCURRENCY,
        "tasuki_runs_per_s": round(tasuki_rate, 2),
        "docker_runs_per_s": round(docker_rate, 2),
        "burst_ratio": round(tasuki_rate / docker_rate, 3),
    }
    print(
        f"{store}: push -> run finished p50 {figures['push_to_finished_p50_s'] * 1000:.0f} ms beside docker run "
        f"{figures['docker_run_p50_s'] * 1000:.0f} ms: overhead p50 {figures['overhead_p50_ms']:.0f} ms, "
        f"p99 {figures['overhead_p99_ms']:.0f} ms (aim: p50 <= 50 ms); burst of {BURST} at concurrency "
        f"{CONCURRENCY}: {tasuki_rate:.2f} runs/s beside docker run {docker_rate:.2f}/s, ratio "
        f"{figures['burst_ratio']:.2f} (aim >= 0.95)",
        flush=True,
    )
    return figures


def main() -> dict:
    from tests.conftest import free_port
    from tests.postgres import Cluster, Unavailable

    results = {}
    cluster = None
    try:
        postgres = os.environ.get("BENCH_POSTGRES_URL", "")
        if not postgres:
            try:
                cluster = Cluster(free_port())
                cluster.start()
                postgres = cluster.create_database(f"bench_{uuid.uuid4().hex[:8]}")
            except Unavailable as exc:
                print(f"postgresql: not measured ({exc})")
        for store, store_url in [("sqlite", ""), *([("postgresql", postgres)] if postgres else [])]:
            vhost = f"tasuki-bench-{uuid.uuid4().hex[:8]}"
            _rabbitmqctl("add_vhost", vhost)
            _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            try:
                with tempfile.TemporaryDirectory(prefix="tasuki-bench-") as tmp:
                    url = f"amqp://guest:guest@localhost:5672/{vhost}"
                    results[store] = _measure(Path(tmp), url, store, store_url)
            finally:
                _rabbitmqctl("delete_vhost", vhost)
    finally:
        if cluster is not None:
            cluster.stop()
    return results


if __name__ == "__main__":
    main()
