"""One job in a real container (the code the executor and `tasuki run` share), on the real engine."""

from __future__ import annotations

import dataclasses
import os
import re
import uuid
from pathlib import Path

import pytest

from tasuki.local.executor import convert, jobs
from tasuki.local.executor.containers import Docker
from tasuki.local.executor.logsink import MASK, LogSink
from tasuki.shared.flowfile import Job
from tests.dockerjobs import IMAGE, leftovers, make_workspace, script

CTX = convert.Context(
    repository="acme/api",
    ref="refs/heads/main",
    branch="main",
    commit="c0ffee",
    run_id="run-1",
    job="test",
    event="push",
)
ROOMY = convert.Limits(memory="256m", cpus=1.0, pids=128)


def run(
    ws: Path,
    executor_id: str,
    *,
    job: Job | None = None,
    ctx: convert.Context = CTX,
    limits: convert.Limits = ROOMY,
    timeout: float = 120,
    docker: Docker | None = None,
    secrets: tuple[str, ...] = (),
    chunk: int = 64 * 1024,
    **kw,
) -> tuple[jobs.Outcome, str]:
    job = job or Job(name="test", image=IMAGE, run="ci/test")
    out: list[bytes] = []
    with LogSink(lambda seq, data: out.append(data), secrets, chunk=chunk) as sink:
        outcome = jobs.run_job(
            docker or Docker(),
            job,
            ctx,
            ws,
            limits=limits,
            timeout=timeout,
            on_output=sink.feed,
            on_tick=sink.tick,
            executor_id=executor_id,
            **kw,
        )
    return outcome, b"".join(out).decode()


def test_a_passing_job_sees_its_checkout_and_variables(tmp_path, executor_id, docker_client):
    ws = make_workspace(
        tmp_path / "ws",
        {"ci/test": script('echo "in $PWD: $(ls)"; echo "$CI $TASUKI_REPO $TASUKI_COMMIT $TASUKI_JOB $MODE"')},
    )
    job = Job(name="test", image=IMAGE, run="ci/test", env={"MODE": "fast"})
    outcome, log = run(ws, executor_id, job=job)
    assert (outcome.status, outcome.exit_code) == ("success", 0), log
    assert "in /workspace: ci" in log and "true acme/api c0ffee test fast" in log
    assert leftovers(docker_client, executor_id) == []  # removed after the job


def test_a_failing_job_reports_its_exit_code(tmp_path, executor_id):
    ws = make_workspace(tmp_path / "ws", {"ci/test": script("echo about to fail; exit 3")})
    outcome, log = run(ws, executor_id)
    assert (outcome.status, outcome.exit_code, outcome.reason) == ("failure", 3, "exit-code")
    assert outcome.message == "exited with code 3" and "about to fail" in log


def test_a_job_past_its_timeout_is_killed(tmp_path, executor_id, docker_client):
    ws = make_workspace(tmp_path / "ws", {"ci/test": script("echo started; sleep 600")})
    outcome, log = run(ws, executor_id, timeout=2)
    assert (outcome.status, outcome.reason) == ("timeout", "timeout")
    assert outcome.message == "killed after the 2s timeout" and "started" in log
    assert leftovers(docker_client, executor_id) == []


def test_a_job_over_its_memory_limit_is_killed(tmp_path, executor_id):
    # Given a 64 MiB limit and a job that holds 300 MB in a shell variable
    ws = make_workspace(
        tmp_path / "ws", {"ci/test": script('x=$(head -c 300000000 /dev/zero | tr "\\0" a); echo "survived ${#x}"')}
    )
    outcome, log = run(ws, executor_id, limits=convert.Limits(memory="64m", pids=128))
    assert (outcome.status, outcome.reason) == ("failure", "out-of-memory")
    assert "out of memory (the limit is 64m)" in log and "survived" not in log


def test_a_job_keeps_only_the_capabilities_a_root_build_needs(tmp_path, executor_id):
    # Given a job running as the image's user (root) that tries what the dropped capabilities allow
    ws = make_workspace(
        tmp_path / "ws",
        {
            "ci/test": script(
                "grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status\n"
                "touch owned && chown 1234:1234 owned && echo chown-ok\n"
                "mknod /tmp/null c 1 3 && echo MKNOD-WORKED\n"
                "chroot / true && echo CHROOT-WORKED\n"
                "exit 0"
            )
        },
    )
    outcome, log = run(ws, executor_id)
    assert outcome.status == "success", log
    # Then chown works (CHOWN kept); device nodes and chroot do not (MKNOD, SYS_CHROOT dropped)
    assert "chown-ok" in log and "MKNOD-WORKED" not in log and "CHROOT-WORKED" not in log
    assert "NoNewPrivs:\t1" in log
    effective = int(re.search(r"CapEff:\s+([0-9a-f]+)", log).group(1), 16)
    kept = {0: "CHOWN", 1: "DAC_OVERRIDE", 3: "FOWNER", 4: "FSETID", 5: "KILL", 6: "SETGID", 7: "SETUID"}
    assert effective == sum(1 << bit for bit in kept), hex(effective)
    assert sorted(kept.values()) == sorted(convert.CAPABILITIES)


def test_a_job_runs_as_the_user_the_operator_names(tmp_path, executor_id):
    ws = make_workspace(tmp_path / "ws", {"ci/test": script("id -u; id -g")})
    outcome, log = run(ws, executor_id, limits=dataclasses.replace(ROOMY, user="4321:4321"))
    assert outcome.status == "success" and log.split() == ["4321", "4321"], log


def test_a_cancelled_job_is_killed(tmp_path, executor_id):
    ws = make_workspace(tmp_path / "ws", {"ci/test": script("echo waiting; sleep 600")})
    seen = []

    def cancelled() -> bool:
        seen.append(1)
        return len(seen) > 3

    outcome, _ = run(ws, executor_id, cancelled=cancelled)
    assert outcome.status == "cancelled"


@pytest.mark.parametrize(
    "target", ["$(touch /tmp/pwned-{id})", "$(touch /workspace/pwned-{id})", "`touch /tmp/pwned-{id}`"]
)
def test_a_hostile_branch_name_reaches_the_job_as_a_plain_value(tmp_path, executor_id, target):
    ident = uuid.uuid4().hex[:8]
    branch = target.format(id=ident)
    ws = make_workspace(
        tmp_path / "ws",
        {
            "ci/test": script(
                'echo "branch=$TASUKI_BRANCH"; ls -a /workspace /tmp 2>&1 | grep pwned || echo "no pwned file"'
            )
        },
    )
    ctx = dataclasses.replace(CTX, branch=branch)
    outcome, log = run(ws, executor_id, ctx=ctx)
    assert outcome.ok, log
    assert f"branch={branch}\n" in log  # the value, byte for byte
    assert "no pwned file" in log  # nothing ran it inside the container
    assert not Path(f"/tmp/pwned-{ident}").exists() and not (ws / f"pwned-{ident}").exists()  # nor outside


def test_a_secret_is_masked_in_the_log_even_across_chunks(tmp_path, executor_id):
    ws = make_workspace(
        tmp_path / "ws",
        {"ci/test": script("printf 'token=hunt'; sleep 1; printf 'er2-xyz\\n'; echo 'again hunter2-xyz'")},
    )
    outcome, log = run(ws, executor_id, secrets=("hunter2-xyz",), chunk=4)
    assert outcome.ok
    assert "hunter2" not in log and "hunt" not in log.replace(MASK.decode(), "")
    assert log == f"token={MASK.decode()}\nagain {MASK.decode()}\n"


def test_a_job_without_network_has_only_loopback(tmp_path, executor_id):
    ws = make_workspace(tmp_path / "ws", {"ci/test": script("ls /sys/class/net")})
    outcome, log = run(ws, executor_id, job=Job(name="test", image=IMAGE, run="ci/test", network="none"))
    assert outcome.ok and log.split() == ["lo"]


def test_a_plugin_runs_its_image_with_settings_as_plugin_variables(tmp_path, executor_id):
    ws = make_workspace(tmp_path / "ws", {"README": "x"})
    job = Job(name="notify", plugin=IMAGE, settings={"channel": "ci", "tags": ["a", "b"]}, args=["env"])
    outcome, log = run(ws, executor_id, job=job)
    assert outcome.ok, (outcome, log)
    env = dict(line.split("=", 1) for line in log.splitlines())
    assert (env["PLUGIN_CHANNEL"], env["PLUGIN_TAGS"], env["DRONE_COMMIT_SHA"]) == ("ci", "a,b", "c0ffee")


# --- clear errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"ci/other": script("true")}, "ci/test is not in the repository at this commit"),
        (
            {"ci/test": ("#!/bin/sh\necho hi\n", False)},
            "ci/test is not executable; .*git update-index --chmod=\\+x ci/test",
        ),
        ({"ci/test/inner": script("true")}, "ci/test is not a file"),
    ],
)
def test_an_executable_missing_or_not_executable_is_a_clear_error(tmp_path, executor_id, docker_client, files, words):
    ws = make_workspace(tmp_path / "ws", files)
    outcome, log = run(ws, executor_id)
    assert (outcome.status, outcome.reason) == ("error", "executable-missing")
    assert re.search(words, outcome.message) and "[tasuki]" in log
    assert leftovers(docker_client, executor_id) == []


@pytest.mark.parametrize("link", ["/bin/sh", "../../outside", "../.."])
def test_an_executable_outside_the_repository_is_refused(tmp_path, executor_id, link):
    # Given ci/test is a symlink that leads out of the checkout (on the host, or in the image)
    (tmp_path / "outside").write_text("#!/bin/sh\necho escaped\n")
    (tmp_path / "outside").chmod(0o755)
    ws = make_workspace(tmp_path / "ws" / "repo", {"README": "x"})
    (ws / "ci").mkdir()
    os.symlink(link, ws / "ci" / "test")
    outcome, log = run(ws, executor_id)
    assert (outcome.status, outcome.reason) == ("error", "executable-missing")
    assert "points outside the repository" in outcome.message and "escaped" not in log


def test_an_image_that_is_missing_and_cannot_be_pulled_is_a_clear_error(tmp_path, executor_id):
    ws = make_workspace(tmp_path / "ws", {"ci/test": script("true")})
    job = Job(name="test", image=f"tasuki/not-here-{uuid.uuid4().hex[:8]}:1", run="ci/test")
    outcome, log = run(ws, executor_id, job=job)
    assert (outcome.status, outcome.reason) == ("error", "image-missing")
    assert "is not on this Docker engine and could not be pulled" in outcome.message
    assert "docker build / docker load" in log


def test_an_unreachable_docker_engine_is_a_clear_error(tmp_path, executor_id):
    ws = make_workspace(tmp_path / "ws", {"ci/test": script("true")})
    outcome, _ = run(ws, executor_id, docker=Docker(f"unix://{tmp_path}/no-docker.sock"))
    assert (outcome.status, outcome.reason) == ("error", "docker-unavailable")
    assert "cannot reach the Docker engine at unix://" in outcome.message and "is dockerd running" in outcome.message
