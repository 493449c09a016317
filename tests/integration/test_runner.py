"""`tasuki run`: a flow on this machine with no broker, store or service (real git, real Docker)."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port, git
from tests.dockerjobs import IMAGE, script
from tests.harness import TASUKI

DIAMOND = f"""\
jobs:
  build:  {{image: {IMAGE}, run: ci/step, args: [build]}}
  test-a: {{image: {IMAGE}, run: ci/step, args: [test-a], needs: [build]}}
  test-b: {{image: {IMAGE}, run: ci/step, args: [test-b], needs: [build]}}
  deploy: {{image: {IMAGE}, run: ci/step, args: [deploy], needs: [test-a, test-b], when: {{branch: [main]}}}}
"""
# test-a and test-b each say they are running, then wait until the test releases them: both can
# only be released once both are running, which proves they run at the same time.
STEP = script("""\
echo "$1 on ${TASUKI_BRANCH} at ${TASUKI_COMMIT} in ${TASUKI_REPO}"
case "$1" in test-*) touch running; while [ ! -e release ]; do sleep 0.1; done;; esac
[ -n "$FAIL" ] && [ "$FAIL" = "$1" ] && { echo "$1 fails"; exit 5; }
echo "$1 done"
""")


def checkout(tmp_path: Path, flow: str = DIAMOND, branch: str = "main") -> Path:
    root = tmp_path / "sample"
    (root / "ci").mkdir(parents=True)
    git(root, "init", "-q", "-b", branch)
    git(root, "remote", "add", "origin", "git@bitbucket.org:acme/sample.git")
    (root / ".tasuki.yml").write_text(flow)
    (root / "ci" / "step").write_text(STEP[0])
    (root / "ci" / "step").chmod(0o755)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "sample")
    return root


class TasukiRun:
    """`tasuki run` as a real process, with RabbitMQ made unreachable: nothing may need it."""

    def __init__(self, tmp_path: Path, root: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp_path / f"tmp-{uuid.uuid4().hex[:6]}"
        self.tmp.mkdir()
        self.data = tmp_path / "data-never-made"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TASUKI_")}
        self.env = {
            **clean,
            "TMPDIR": str(self.tmp),
            "TASUKI_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/",
            "TASUKI_DATA_DIR": str(self.data),
            "TASUKI_JOB_MEMORY": "256m",
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [str(TASUKI), "run", *args],
            cwd=root,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.out: list[str] = []
        self._reader = threading.Thread(target=lambda: self.out.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    def release_when_running(self, *jobs: str) -> None:
        deadline = time.monotonic() + 180
        while True:
            workspaces = [next(self.tmp.glob(f"tasuki-run-*/{job}/running"), None) for job in jobs]
            if all(workspaces):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{jobs} were not running together:\n{''.join(self.out)}")
            time.sleep(0.1)
        for path in workspaces:
            (path.parent / "release").touch()

    def wait(self) -> tuple[int, str, str]:
        code = self.proc.wait(300)
        self._reader.join(10)
        return code, "".join(self.out), self.proc.stderr.read()


def test_a_diamond_flow_runs_locally_with_no_rabbitmq(tmp_path, docker_client):
    root = checkout(tmp_path)
    run = TasukiRun(tmp_path, root)
    run.release_when_running("test-a", "test-b")
    code, out, err = run.wait()
    assert code == 0, out + err
    commit = git(root, "rev-parse", "HEAD").strip()
    # Every line is prefixed by its job; the jobs ran in DAG order with the checkout's facts
    assert f"build  | build on main at {commit} in acme/sample\n" in out
    order = [
        re.match(r"(\S+)\s+\| \S+ done", line).group(1)
        for line in out.splitlines()
        if re.match(r"\S+\s+\| \S+ done", line)
    ]
    assert order[0] == "build" and set(order[1:3]) == {"test-a", "test-b"} and order[3] == "deploy"
    # The summary table, and nothing was made for a broker or a store
    table = out[out.index("JOB ") :]
    for job in ("build", "test-a", "test-b", "deploy"):
        assert re.search(rf"^{job}\s+success\s+0\s+\S+s$", table, re.M), table
    assert table.rstrip().endswith("passed: 4 job(s)")
    assert not run.data.exists()
    assert not list(run.tmp.glob("tasuki-run-*"))  # workspaces removed


def test_a_failing_job_fails_the_run_and_skips_what_needs_it(tmp_path, docker_client):
    root = checkout(tmp_path)
    flow = DIAMOND.replace("args: [test-a], needs", "args: [test-a], env: {FAIL: test-a}, needs")
    (root / ".tasuki.yml").write_text(flow)  # not committed: tasuki run uses the checkout as it is
    run = TasukiRun(tmp_path, root)
    run.release_when_running("test-a", "test-b")
    code, out, _ = run.wait()
    assert code == 1
    assert "test-a | test-a fails" in out
    assert re.search(r"^test-a\s+failure\s+5\s+\S+\s+exited with code 5$", out, re.M)
    assert re.search(r"^deploy\s+skipped\s+a job it needs did not pass$", out, re.M)
    assert out.rstrip().endswith("failed: test-a, deploy")


def test_when_is_judged_against_the_branch_and_event_given(tmp_path, docker_client):
    root = checkout(
        tmp_path, DIAMOND.replace("run: ci/step, args: [test-", "run: ci/step, when: {event: [tag]}, args: [test-")
    )
    branch = f"$(touch /tmp/pwned-{uuid.uuid4().hex[:8]})"
    code, out, err = TasukiRun(tmp_path, root, "--branch", branch).wait()
    assert code == 0, out + err
    assert f"build | build on {branch} at" in out  # the hostile name, as a plain value
    assert not Path(branch[len("$(touch ") : -1]).exists()
    for job in ("test-a", "test-b", "deploy"):
        assert re.search(rf"^{job}\s+skipped\s+its when does not match$", out, re.M)
    assert out.rstrip().endswith("passed: 1 job(s)")


def test_named_jobs_run_with_what_they_need_only(tmp_path, docker_client):
    root = checkout(
        tmp_path,
        f"jobs:\n  build: {{image: {IMAGE}, run: ci/step, args: [build]}}\n"
        f"  lint: {{image: {IMAGE}, run: ci/step, args: [lint]}}\n"
        f"  pack: {{image: {IMAGE}, run: ci/step, args: [pack], needs: [build]}}\n",
    )
    code, out, err = TasukiRun(tmp_path, root, "pack").wait()
    assert code == 0, out + err
    assert "build | build done" in out and "pack  | pack done" in out and "lint" not in out


@pytest.mark.parametrize(
    ("flow", "args", "words"),
    [
        (
            f"jobs:\n  build: {{image: {IMAGE}, run: ../outside}}\n",
            (),
            r"\.tasuki\.yml:2: job 'build'.* inside the repository.* with '\.\.'",
        ),
        (DIAMOND, ("nope",), "there is no job 'nope'; the flow has: build, deploy, test-a, test-b"),
    ],
)
def test_mistakes_are_one_clear_line_and_exit_code_2(tmp_path, flow, args, words):
    code, _out, err = TasukiRun(tmp_path, checkout(tmp_path, flow), *args).wait()
    assert code == 2 and re.search(words, err), err
    assert "Traceback" not in err


def test_an_unreachable_docker_engine_is_said_once(tmp_path):
    root = checkout(tmp_path)
    code, _, err = TasukiRun(tmp_path, root, env={"TASUKI_DOCKER_HOST": f"unix://{tmp_path}/none.sock"}).wait()
    assert code == 2 and "cannot reach the Docker engine" in err


def test_a_manual_run_locally_takes_its_parameters(tmp_path, docker_client):
    flow = (
        "params:\n  target: {default: staging, choices: [staging, production]}\n  dry_run: {type: bool, default: true}\n"
        f"jobs:\n  deploy: {{image: {IMAGE}, run: ci/deploy, when: {{event: manual}}}}\n"
    )
    root = checkout(tmp_path, flow)
    (root / "ci/deploy").write_text('#!/bin/sh\necho "to $TASUKI_PARAM_TARGET dry $TASUKI_PARAM_DRY_RUN"\n')
    (root / "ci/deploy").chmod(0o755)
    code, out, err = TasukiRun(tmp_path, root, "--event", "manual", "-p", "target=production").wait()
    assert code == 0, out + err
    assert "deploy | to production dry true" in out
    code, _out, err = TasukiRun(tmp_path, root, "--event", "manual", "-p", "target=moon").wait()
    assert code == 2 and "parameter 'target': expected one of staging, production, found 'moon'" in err
