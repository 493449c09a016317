"""End to end, through every real process (`tasuki local`), real RabbitMQ and real Docker: flows
of several jobs, failure, [skip ci], an invalid flow file, and the rule options
cancel_previous and concurrency (with `tasuki runs cancel`).

Repositories are local bare repositories; webhooks are the captured Bitbucket push re-aimed at
them (`bitbucket_push`). Nothing here asserts a duration: parallelism is proven by a barrier the
two jobs must meet at, and order by the start and finish times the run recorded.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from tasuki.shared.broker import Broker
from tasuki.shared.messages import JobUpdated, RunUpdated
from tests.conftest import bitbucket_push, commit_to, listen_to_runs, queued_messages, take
from tests.harness import LocalTasuki

BUSYBOX = "tasuki/busybox"
OK = ('#!/bin/sh\necho "$TASUKI_JOB ran at $TASUKI_COMMIT"\n', True)
FAIL = ('#!/bin/sh\necho "$TASUKI_JOB fails"\nexit 1\n', True)
SLOW = ("#!/bin/sh\necho started\nsleep 300\n", True)
DIAMOND = f"""\
jobs:
  build:  {{image: {BUSYBOX}, run: ci/build}}
  test:   {{image: {BUSYBOX}, run: ci/test, needs: [build], timeout: 3m}}
  lint:   {{image: {BUSYBOX}, run: ci/lint, needs: [build], timeout: 3m}}
  deploy: {{image: {BUSYBOX}, run: ci/deploy, needs: [test, lint], when: {{branch: [main]}}}}
"""
ONE_JOB = f"jobs:\n  build: {{image: {BUSYBOX}, run: ci/build, timeout: 10m}}\n"


def start(tmp_path: Path, amqp_url: str, rules: str, repositories: dict[str, Path]) -> LocalTasuki:
    (tmp_path / "rules.yml").write_text(rules)
    (tmp_path / "repos.yml").write_text(
        json.dumps({"repositories": {name: {"clone_url": str(path)} for name, path in repositories.items()}})
    )
    return LocalTasuki(
        {
            "TASUKI_AMQP_URL": amqp_url,
            "TASUKI_DATA_DIR": str(tmp_path / "data"),
            "TASUKI_RULES_FILE": str(tmp_path / "rules.yml"),
            "TASUKI_REPOSITORIES_FILE": str(tmp_path / "repos.yml"),
        }
    )


def push(tasuki: LocalTasuki, repository: str, branch: str, commit: str, **kwargs) -> None:
    answer = tasuki.post_webhook(*bitbucket_push(repository, branch, commit, **kwargs))
    assert answer.status_code == 202, answer.text


class Barrier:
    """A TCP barrier on the host for job containers: each job sends its name and is answered
    `together` once `parties` jobs are connected at the same time (`alone` after `timeout`)."""

    def __init__(self, parties: int = 2, timeout: float = 150) -> None:
        self.parties, self.timeout = parties, timeout
        self.server = socket.create_server(("0.0.0.0", 0))
        self.port = self.server.getsockname()[1]
        self.arrived: list[str] = []
        self.waiting: list[socket.socket] = []
        self.full = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while len(self.waiting) < self.parties:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.arrived.append(conn.recv(100).decode().strip())
            self.waiting.append(conn)
        self.full.set()

    def answer(self) -> None:
        answer = b"together\n" if self.full.wait(self.timeout) else b"alone\n"
        for conn in self.waiting:
            conn.sendall(answer)
            conn.close()

    def script(self) -> tuple[str, bool]:
        """The job: meet the others at the barrier; succeed only if they were all there."""
        return (
            "#!/bin/sh\n"
            "gateway=$(ip route | awk '/default/ {print $3}')\n"
            f'answer=$(echo "$TASUKI_JOB" | nc -w 200 "$gateway" {self.port})\n'
            'echo "$TASUKI_JOB met the others: $answer"\n'
            '[ "$answer" = together ]\n',
            True,
        )

    def close(self) -> None:
        self.server.close()


def diamond_repo(make_repo, barrier: Barrier) -> tuple[Path, str]:
    """A repository whose diamond's test and lint pass only if they meet at `barrier` (which
    starts answering here): they must run at the same time."""
    threading.Thread(target=barrier.answer, daemon=True).start()
    return make_repo(
        {
            ".tasuki.yml": DIAMOND,
            "ci/build": OK,
            "ci/test": barrier.script(),
            "ci/lint": barrier.script(),
            "ci/deploy": OK,
        },
        branch="main",
    )


def test_a_diamond_runs_build_then_test_and_lint_together_then_deploy(tmp_path, vhost, docker_client, make_repo):
    barrier = Barrier(parties=2)
    repo, commit = diamond_repo(make_repo, barrier)
    with start(
        tmp_path, vhost, "rules:\n  - {event: push, repository: acme/diamond}\n", {"acme/diamond": repo}
    ) as tasuki:
        broker = Broker(vhost)
        events = listen_to_runs(broker)
        push(tasuki, "acme/diamond", "main", commit)
        run = tasuki.wait_for_run(timeout=240)
        jobs = {j.name: j for j in tasuki.store.get_jobs(run.id)}
        assert run.status == "success", (run.message, {n: (j.status, j.message) for n, j in jobs.items()}, tasuki.log())
        build, test, lint, deploy = (jobs[n] for n in ("build", "test", "lint", "deploy"))
        # build first
        assert build.finished_at <= test.started_at and build.finished_at <= lint.started_at
        # test and lint together: they met at the barrier, so each started before the other finished
        assert sorted(barrier.arrived) == ["lint", "test"]
        assert "met the others: together" in tasuki.log_of(run.id, "test")
        assert test.started_at < lint.finished_at and lint.started_at < test.finished_at
        # deploy last
        assert deploy.started_at >= max(test.finished_at, lint.finished_at)
        assert run.message == "4 jobs passed"
        # One push can be followed through every process's log lines: each names the delivery, the run, the job
        about = [r for r in tasuki.log_records() if r.get("run") == run.id]
        assert {r["process"] for r in about} == {"functions", "executor"}
        assert {r["job"] for r in about if r["logger"] == "tasuki.executor"} == {"build", "test", "lint", "deploy"}
        assert {r["delivery"] for r in about if "delivery" in r} == {run.event.delivery_id}
        assert any(
            r["logger"] == "tasuki.ingress" and r.get("delivery") == run.event.delivery_id for r in tasuki.log_records()
        )
        # Every state change was an event on tasuki.runs
        seen = [
            (getattr(m, "job", "run"), m.status)
            for m in take(broker, events)
            if isinstance(m, RunUpdated | JobUpdated) and m.run_id == run.id
        ]
        assert [s for j, s in seen if j == "run"] == ["queued", "running", "success"]
        for name in jobs:
            assert [s for j, s in seen if j == name] == ["queued", "running", "success"], seen
        broker.close()
    barrier.close()


def test_a_failing_test_skips_deploy(tmp_path, vhost, docker_client, make_repo):
    repo, commit = make_repo(
        {".tasuki.yml": DIAMOND, "ci/build": OK, "ci/test": FAIL, "ci/lint": OK, "ci/deploy": OK}, branch="main"
    )
    with start(tmp_path, vhost, "rules:\n  - {event: push, repository: acme/red}\n", {"acme/red": repo}) as tasuki:
        push(tasuki, "acme/red", "main", commit)
        run = tasuki.wait_for_run()
        jobs = {j.name: (j.status, j.exit_code) for j in tasuki.store.get_jobs(run.id)}
        assert jobs == {
            "build": ("success", 0),
            "test": ("failure", 1),
            "lint": ("success", 0),
            "deploy": ("skipped", None),
        }
        assert (run.status, run.message) == (
            "failure",
            "test: failure (exit code 1): exited with code 1; skipped: deploy",
        )
        assert "test fails" in tasuki.log_of(run.id, "test")
        assert tasuki.log_of(run.id, "deploy") == ""


def test_a_skip_ci_push_makes_no_run(tmp_path, vhost, docker_client, make_repo):
    repo, first = make_repo({".tasuki.yml": ONE_JOB, "ci/build": OK}, branch="main")
    with start(tmp_path, vhost, "rules:\n  - {event: push, repository: acme/docs}\n", {"acme/docs": repo}) as tasuki:
        # When a push whose head commit says [skip ci] arrives
        push(tasuki, "acme/docs", "main", first, message="Fix a typo [skip ci]")
        # Then once the router and dispatcher have taken every message, there is no run
        tasuki.wait_until(
            lambda: all(queued_messages(vhost)[q] == 0 for q in ("tasuki.router", "tasuki.dispatcher")),
            "the router and the dispatcher finished their messages",
        )
        assert tasuki.store.list_runs() == []
        # while the next push without it runs (the rule does match this repository)
        second = commit_to(repo, {"README": "more"}, branch="main", message="Add a README")
        push(tasuki, "acme/docs", "main", second, before=first, message="Add a README")
        run = tasuki.wait_for_run()
        assert (run.status, run.commit) == ("success", second)
        assert [r.id for r in tasuki.store.list_runs()] == [run.id]


def test_an_invalid_flow_file_fails_the_run_with_the_validation_message(tmp_path, vhost, docker_client, make_repo):
    flow = ONE_JOB + f"  test: {{image: {BUSYBOX}, run: ci/test, needs: [biuld]}}\n"
    repo, commit = make_repo({".tasuki.yml": flow, "ci/build": OK}, branch="main")
    with start(tmp_path, vhost, "rules:\n  - {event: push, repository: acme/typo}\n", {"acme/typo": repo}) as tasuki:
        push(tasuki, "acme/typo", "main", commit)
        run = tasuki.wait_for_run()
        assert run.status == "error"
        assert run.message == (
            ".tasuki.yml:3: job 'test': needs[0]: needs 'biuld', which is not a job in this file (jobs: build)"
        )
        assert tasuki.store.get_jobs(run.id) == []
        shown = tasuki.cli("runs", "show", run.id)
        assert "error" in shown.stdout and "needs 'biuld'" in shown.stdout


def containers_of(docker_client, run_id: str) -> list:
    # sparse: the list alone, no inspect of each one (a container removed in between is a 404)
    return docker_client.containers.list(all=True, sparse=True, filters={"label": f"tasuki.run={run_id}"})


def test_a_second_push_to_the_branch_cancels_the_first_run_when_the_rule_says_so(
    tmp_path, vhost, docker_client, make_repo
):
    repo, slow = make_repo({".tasuki.yml": ONE_JOB, "ci/build": SLOW}, branch="main")
    rules = "rules:\n  - {event: push, repository: acme/busy, branch: main, cancel_previous: true}\n"
    with start(tmp_path, vhost, rules, {"acme/busy": repo}) as tasuki:
        # Given a first run whose job is running
        push(tasuki, "acme/busy", "main", slow)
        first = tasuki.wait_for_run(lambda r: r.status == "running")
        tasuki.wait_until(lambda: containers_of(docker_client, first.id), "the first run's container runs")
        # When a second push to main arrives
        quick = commit_to(repo, {"ci/build": OK}, branch="main", message="Make the build quick")
        push(tasuki, "acme/busy", "main", quick, before=slow, message="Make the build quick")
        # Then the second run runs and passes, and the first is cancelled, its container stopped
        second = tasuki.wait_for_run(lambda r: r.commit == quick and r.status == "success")
        first = tasuki.wait_for_run(lambda r: r.id == first.id and r.status == "cancelled")
        assert first.message == f"superseded by run {second.id}, a newer push to main"
        assert [(j.name, j.status) for j in tasuki.store.get_jobs(first.id)] == [("build", "cancelled")]
        tasuki.wait_until(lambda: not containers_of(docker_client, first.id), "the first run's container is gone")


def test_a_run_beyond_the_limit_waits_until_a_place_frees_and_runs_cancel_frees_one(
    tmp_path, vhost, docker_client, make_repo
):
    repo, slow = make_repo({".tasuki.yml": ONE_JOB, "ci/build": SLOW}, branch="main")
    quick = commit_to(repo, {"ci/build": OK}, branch="feature", message="Quick")
    rules = "rules:\n  - {event: push, repository: acme/one, concurrency: 1}\n"
    with start(tmp_path, vhost, rules, {"acme/one": repo}) as tasuki:
        assert (
            "if push to acme/one then run .tasuki.yml, at most 1 run of the repository at a time"
            in tasuki.cli("rules").stdout
        )
        # Given a run of the repository whose job is running
        push(tasuki, "acme/one", "main", slow)
        first = tasuki.wait_for_run(lambda r: r.status == "running")
        # When a push to another branch arrives, its run waits queued, saying why
        push(tasuki, "acme/one", "feature", quick)
        waiting = tasuki.wait_for_run(lambda r: r.commit == quick and r.message.startswith("waiting for a place"))
        assert (waiting.status, tasuki.store.get_jobs(waiting.id)) == ("queued", [])
        # When the first run is cancelled from the command line
        cancelled = tasuki.cli("runs", "cancel", first.id)
        assert cancelled.returncode == 0, cancelled.stderr
        # Then its container stops, and the waiting run gets the place and passes
        second = tasuki.wait_for_run(lambda r: r.id == waiting.id and r.status == "success")
        first = tasuki.store.get_run(first.id)
        assert (first.status, first.message) == ("cancelled", "cancelled from the command line")
        assert second.started_at >= first.finished_at
        tasuki.wait_until(lambda: not containers_of(docker_client, first.id), "the first run's container is gone")
        assert tasuki.cli("runs", "cancel", first.id).returncode == 1  # over already
