"""Job secrets with real Docker, through the service (real RabbitMQ, the real dispatcher's
`addressed` resolving them from the store, an executor, functions/logs storing the log) and
through `tasuki run` (the environment or --secrets-file): the same flow gives the same result.

A job that prints its secret (whole, split across two writes a second apart, and inside base64)
shows `***`, and the stored log holds only the masked text; a job that did not list the secret
does not see it; an unknown name fails the job before its container starts, naming it; a run of
a fork's pull request gets no secrets.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasuki.functions.dispatcher import addressed
from tasuki.local.cli import runner
from tasuki.shared import flowfile, vault
from tasuki.shared.messages import Event, JobOrder, PullRequest, Ref, Repository
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.settings import Settings
from tasuki.shared.store import JobRecord, RunRecord
from tests.conftest import git, write_files
from tests.dockerjobs import IMAGE, script
from tests.integration import test_executor

# The executor tests' world (a vhost, the functions, a pump) and executors in threads, reused.
functions, world, start_executor = test_executor.functions, test_executor.world, test_executor.start_executor

TOKEN = "tok-5e3cr3t-9f8e7d6c"
FLOW = f"""\
jobs:
  deploy: {{image: {IMAGE}, run: ci/show, secrets: [DEPLOY_TOKEN]}}
  renamed: {{image: {IMAGE}, run: ci/show, secrets: [{{name: TOKEN_AS, from: DEPLOY_TOKEN}}]}}
  other: {{image: {IMAGE}, run: ci/show}}
  unknown: {{image: {IMAGE}, run: ci/show, secrets: [NOT_SET_ANYWHERE]}}
"""
FILES = {
    ".tasuki.yml": FLOW,
    "ci/show": script(
        'value="${DEPLOY_TOKEN:-$TOKEN_AS}"\n'
        'echo "listed=${value:+yes}"\n'
        'echo "token=$value"\n'
        # split across two writes a second apart: two reads, likely two chunks
        'printf "%s" "$value" | cut -c1-7 | tr -d "\\n"; sleep 1; printf "%s\\n" "$value" | cut -c8-\n'
        'printf "user:%s" "$value" | base64'
    ),
}
Outcome = dict[str, tuple[str, str, str]]  # job -> (status, log, message)


def masked_everywhere(log: str) -> None:
    assert "5e3cr3t" not in log and "9f8e7d6c" not in log
    assert base64.b64encode(f"user:{TOKEN}".encode()).decode()[8:20] not in log


# --- the two ways to run a flow ------------------------------------------------------------------------


def event(commit: str, fork: str = "") -> Event:
    pull_request = PullRequest(number=3, source_branch="topic", source_repository=fork) if fork else None
    return Event(
        host="github",
        event="pull_request.opened" if fork else "push",
        kind="pull_request" if fork else "push",
        delivery_id=f"d-{commit[:8]}-{fork}",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="branch", name="topic" if fork else "main"),
        after=commit,
        pull_request=pull_request,
    )


def through_the_service(world, start_executor, make_repo, fork: str = "") -> Outcome:
    """Each job ordered as the dispatcher orders it (`addressed` resolves and seals its secrets),
    run by an executor, its log read back from the store."""
    repo, commit = make_repo(FILES)
    world.store.put_repository("acme/api", RepositoryConfig(clone_url=str(repo)))
    vault.put(world.store, world.rt.settings.store_key_value(), "acme/api", "DEPLOY_TOKEN", TOKEN)
    start_executor()
    flow = flowfile.parse(FLOW)
    run_id = f"secrets-{'fork' if fork else 'push'}"
    ev = event(commit, fork)
    world.store.create_run(RunRecord(id=run_id, event=ev, status="running", admitted=True))
    for name, spec in flow.jobs.items():
        world.store.put_job(JobRecord(run_id=run_id, name=name, status="queued", spec=spec, attempt=1))
        order = addressed(world.rt, JobOrder(run_id=run_id, event=ev, job=spec))
        world.broker.publish(order, message_id=order.message_id)
    outcome = {}
    for name in flow.jobs:
        done = world.finished(run_id, name)
        outcome[name] = (done.status, world.log(run_id, name).decode(), done.message)
    return outcome


def through_tasuki_run(tmp_path: Path, source: str) -> Outcome:
    """`tasuki run` in a checkout of the same files, the secret in the environment or a file."""
    root = tmp_path / "checkout"
    root.mkdir()
    write_files(root, FILES)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "flow")
    options = runner.Options(directory=root, parallel=2)
    environ = {"DEPLOY_TOKEN": TOKEN}
    if source == "file":
        (tmp_path / "secrets.env").write_text(f"# for tasuki run\nDEPLOY_TOKEN={TOKEN}\n")
        options.secrets_file, environ = tmp_path / "secrets.env", {}
    out = io.StringIO()
    run = runner.LocalRun(Settings(data_dir=tmp_path / "data", job_memory="256m"), options, out=out, environ=environ)
    assert run() == 1  # `unknown` fails
    printed = out.getvalue()
    masked_everywhere(printed)
    outcome = {}
    for name in flowfile.parse(FLOW).jobs:
        log = "".join(
            line.split(" | ", 1)[1] + "\n" for line in printed.splitlines() if line.split(" | ", 1)[0].strip() == name
        )
        [status] = [
            line.split()[1] for line in printed.splitlines() if " | " not in line and line.split()[:1] == [name]
        ]
        outcome[name] = (status, log, log)  # a refused job's message is the last line of its log
    return outcome


@pytest.fixture(params=["service", "tasuki run (environment)", "tasuki run (--secrets-file)"])
def run_flow(request, tmp_path, make_repo) -> Iterator[Callable[[], Outcome]]:
    if request.param == "service":
        world, start = request.getfixturevalue("world"), request.getfixturevalue("start_executor")
        yield lambda: through_the_service(world, start, make_repo)
    else:
        request.getfixturevalue("docker_client")
        source = "file" if "file" in request.param else "environment"
        yield lambda: through_tasuki_run(tmp_path, source)


# --- the tests ------------------------------------------------------------------------------------------


def test_a_job_gets_only_the_secrets_it_lists_masked_in_its_log(run_flow):
    outcome = run_flow()
    for name in ("deploy", "renamed"):
        status, log, _ = outcome[name]
        assert status == "success", (name, log)
        # The job had the value (it printed it whole, split and in base64), the log shows ***
        assert "listed=yes" in log and "token=***\n" in log and "\n***\n" in log, log
        assert "***" in log.split("token=***\n***\n", 1)[1], log  # the base64 line
        masked_everywhere(log)
    status, log, _ = outcome["other"]
    assert status == "success" and "listed=\n" in log and "token=\n" in log
    # An unknown name fails the job before its container starts (its script never ran)
    status, log, message = outcome["unknown"]
    assert status == "error" and "NOT_SET_ANYWHERE" in message and "listed=" not in log, (message, log)


def test_the_store_holds_the_masked_log_only(world, start_executor, make_repo):
    through_the_service(world, start_executor, make_repo)
    rows = world.store._query("SELECT data FROM logs")  # every chunk of every job, as stored
    stored = b"".join(bytes(r[0]) for r in rows).decode()
    assert "token=***" in stored
    masked_everywhere(stored)


def test_a_run_of_a_fork_pull_request_gets_no_secrets(world, start_executor, make_repo, docker_client):
    outcome = through_the_service(world, start_executor, make_repo, fork="mallory/api")
    for name in ("deploy", "renamed"):
        status, log, message = outcome[name]
        assert status == "error" and "DEPLOY_TOKEN" in message and "fork (mallory/api)" in message, message
        assert "listed=" not in log and "gets no secrets" in log  # it never started, the log says why
    status, log, _ = outcome["other"]  # a job that lists none runs as it would
    assert status == "success" and "listed=\n" in log
