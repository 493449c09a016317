"""Matrix, retries and service containers (issue 14), the same flow two ways: pushed through every
real process (`tasuki local`: RabbitMQ, the dispatcher, the executor, Docker), and run in a
checkout by `tasuki run` (Docker only). Both must give the same results.

The flow: a 2x2 matrix with one exclusion (3 jobs, each with its values; `needs: [test]` waits
for all of them), a job that fails twice then passes with `retry: 2` (it asks a counter on the
host how many times it ran), and a job that talks to its service container by name. Afterwards
no container or network of the run is left.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_IMAGE, git, write_files
from tests.integration.test_runner import TasukiRun

TAG = "i14-matrix"  # a second tag of the test image, for a matrix over images
MATRIX_JOBS = ["test (tag=latest, db=pg)", f"test (tag={TAG}, db=pg)", f"test (tag={TAG}, db=sqlite)"]
FLOW = """\
jobs:
  test:
    image: "tasuki/busybox:${{{{ matrix.tag }}}}"
    run: ci/matrix
    matrix:
      tag: [latest, {tag}]
      db: [pg, sqlite]
      exclude: [{{tag: latest, db: sqlite}}]
  report: {{image: tasuki/busybox, run: ci/report, needs: [test]}}
  flaky: {{image: tasuki/busybox, run: ci/flaky, env: {{PORT: "{port}"}}, retry: 2}}
  talk:
    image: tasuki/busybox
    run: ci/talk
    services:
      echo:
        image: tasuki/busybox
        command: [nc, -ll, -p, "7000", -e, echo, pong]
        ready: {{exec: [nc, 127.0.0.1, "7000"], timeout: 1m}}
"""
FILES = {
    "ci/matrix": ('#!/bin/sh\necho "matrix tag=$MATRIX_TAG db=$MATRIX_DB job=$TASUKI_JOB"\n', True),
    "ci/report": ("#!/bin/sh\necho report ran\n", True),
    "ci/flaky": (
        "#!/bin/sh\n"
        "gateway=$(ip route | awk '/default/ {print $3}')\n"
        'n=$(nc -w 60 "$gateway" "$PORT" </dev/null)\n'
        'echo "try $n"\n'
        '[ "$n" -ge 3 ] || exit 1\n',
        True,
    ),
    "ci/talk": ('#!/bin/sh\necho "got: $(nc echo 7000 </dev/null)"\n', True),
}


class Counter:
    """A TCP server on the host answering each connection with how many came so far."""

    def __init__(self) -> None:
        self.server = socket.create_server(("0.0.0.0", 0))
        self.port = self.server.getsockname()[1]
        self.count = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.count += 1
            conn.sendall(f"{self.count}\n".encode())
            conn.close()

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def tagged(docker_client) -> Iterator[None]:
    image = docker_client.images.get(TEST_IMAGE)
    image.tag("tasuki/busybox", TAG)
    yield
    docker_client.images.remove(f"tasuki/busybox:{TAG}")  # the tag only: the image stays


def through_the_service(tmp_path: Path, vhost: str, flow: str) -> tuple[dict, str]:
    from tests.e2e.test_flows import push, start

    work = write_files(tmp_path / "work", {".tasuki.yml": flow, **FILES})
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "flow")
    bare = tmp_path / "repo.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    commit = git(work, "rev-parse", "HEAD").strip()
    with start(
        tmp_path, vhost, "rules:\n  - {event: push, repository: acme/extras}\n", {"acme/extras": bare}
    ) as tasuki:
        push(tasuki, "acme/extras", "main", commit)
        run = tasuki.wait_for_run(timeout=300)
        results = {}
        for job in tasuki.store.get_jobs(run.id):
            logs = [
                b"".join(d for _, d in tasuki.store.read_log(run.id, job.name, attempt=a.attempt)).decode()
                for a in job.attempts
            ]
            if not job.attempts:
                logs = [tasuki.log_of(run.id, job.name)]
            results[job.name] = {
                "status": job.status,
                "exit_code": job.exit_code,
                "attempts": [(a.status, a.exit_code) for a in job.attempts] or [(job.status, job.exit_code)],
                "flaky": job.flaky,
                "log": "\n".join(logs),
            }
        # The command line shows the same: the flaky mark and every attempt with its log
        shown = tasuki.cli("runs", "show", run.id, "--log").stdout
        assert re.search(r"^  flaky\s+success exit 0 \(flaky\)", shown, re.M), shown
        assert "    attempt 1: failure exit 1\n    attempt 2: failure exit 1\n" in shown, shown
        assert "--- flaky, attempt 1 ---" in shown and "try 1" in shown, shown
        return results, run.id


def through_tasuki_run(tmp_path: Path, vhost: str, flow: str) -> tuple[dict, str]:
    root = write_files(tmp_path / "checkout", {".tasuki.yml": flow, **FILES})
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "flow")
    code, out, err = TasukiRun(tmp_path, root).wait()
    assert code == 0, out + err  # every job passed in the end
    run_id = re.search(r"^tasuki run (local-\w+):", out, re.M).group(1)
    names = [*MATRIX_JOBS, "report", "flaky", "talk"]
    table = out[out.index("\nJOB ") :]
    results = {}
    for name in names:
        row = re.search(rf"^{re.escape(name)}\s+(\w+)\s+(\d*)\s+\S+\s*(.*)$", table, re.M)
        assert row, (name, out, err)
        status, code_text, message = row.groups()
        tries = re.match(r"(?:flaky: )?(\d+) attempts: (.*?)(?:;|$)", message)
        attempts = (
            [(s, int(c) if c else 0) for s, c in re.findall(r"(\w+)(?: \((\d+)\))?", tries.group(2))]
            if tries
            else [(status, int(code_text) if code_text else None)]
        )
        prefix = re.compile(rf"^{re.escape(name)}\s*\| (.*)$", re.M)
        results[name] = {
            "status": status,
            "exit_code": int(code_text) if code_text else None,
            "attempts": attempts,
            "flaky": message.startswith("flaky:"),
            "log": "\n".join(prefix.findall(out[: out.index("\nJOB ")])),
        }
    return results, run_id


@pytest.mark.parametrize("way", [through_the_service, through_tasuki_run], ids=["service", "tasuki-run"])
def test_matrix_retries_and_services_give_the_same_results_both_ways(tmp_path, vhost, docker_client, tagged, way):
    counter = Counter()
    try:
        results, run_id = way(tmp_path, vhost, FLOW.format(tag=TAG, port=counter.port))
    finally:
        counter.close()
    summary = json.dumps({n: (r["status"], r["attempts"]) for n, r in results.items()}, indent=1)
    # The 2x2 matrix less its exclusion: three jobs, each with its own values
    assert sorted(n for n in results if n.startswith("test")) == sorted(MATRIX_JOBS), summary
    for name in MATRIX_JOBS:
        tag, db = re.match(r"test \(tag=(\S+), db=(\S+)\)", name).groups()
        assert results[name]["status"] == "success", summary
        assert f"matrix tag={tag} db={db} job={name}" in results[name]["log"]
    assert results["report"]["status"] == "success" and "report ran" in results["report"]["log"]
    # Failed twice, passed on its third attempt: success, every attempt kept, marked flaky
    flaky = results["flaky"]
    assert (flaky["status"], flaky["flaky"], counter.count) == ("success", True, 3), summary
    assert [s for s, _ in flaky["attempts"]] == ["failure", "failure", "success"], summary
    assert all(f"try {n}" in flaky["log"] for n in (1, 2, 3)), flaky["log"]
    # The job reached its service by name; the service's output is beside the job's
    talk = results["talk"]
    assert talk["status"] == "success" and "got: pong" in talk["log"], talk["log"]
    assert "service echo: ready after" in talk["log"]
    # Nothing of the run is left on the engine
    assert docker_client.containers.list(all=True, sparse=True, filters={"label": f"tasuki.run={run_id}"}) == []
    assert docker_client.networks.list(filters={"label": f"tasuki.run={run_id}"}) == []
