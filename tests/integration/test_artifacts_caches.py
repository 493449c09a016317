"""Artifacts and caches through the real executor, RabbitMQ, Docker and the dispatcher, on both
object storage backends (a folder, and S3 served by moto's server mode over HTTP): a build job's
artifact reaches the job that needs it and the API; a cache saved by a first run is restored by
the second (whose job then skips its "download"); a fork's pull request neither reads nor writes
it; limits and symlinks out of the workspace fail the job with a reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasuki.functions.dispatcher import addressed
from tasuki.shared import objects
from tasuki.shared.flowfile import Job
from tasuki.shared.messages import Event, JobOrder, PullRequest, Ref, Repository
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.store import JobRecord, RunRecord
from tests.dockerjobs import IMAGE, script
from tests.integration.test_executor import World, start_executor  # noqa: F401  a fixture
from tests.objectstores import BACKENDS, folder_settings, moto_endpoint, s3_settings  # noqa: F401  a fixture
from tests.pump import Functions, Pump

FILES = {
    "requirements.txt": "left-pad==1.0\n",
    "ci/build": script(
        'mkdir -p dist reports && echo "built by $TASUKI_RUN_ID" > dist/app.txt && '
        "head -c 300000 /dev/urandom > dist/app.bin && echo '<junit/>' > reports/unit.xml && echo built"
    ),
    "ci/test": script("cat dist/app.txt && ls -l dist/app.bin && test -e reports/unit.xml && echo tested"),
    "ci/deps": script(
        "if [ -f .cache/deps/pkg ]; then echo 'deps: from the cache'; "
        "else echo 'deps: downloading'; mkdir -p .cache/deps && echo pkg > .cache/deps/pkg; fi"
    ),
    "ci/leak": script("mkdir -p dist && ln -s /etc/hostname dist/hostname && echo linked"),
}
CACHE = {"key": "deps-{{ hashFiles('requirements.txt') }}", "paths": [".cache/deps"]}


@pytest.fixture(params=BACKENDS)
def objects_env(request, tmp_path) -> dict[str, str]:
    """TASUKI_OBJECTS_* for the functions and the executor alike."""
    if request.param == "folder":
        settings = folder_settings(tmp_path)
    else:
        settings = s3_settings(request.getfixturevalue("moto_endpoint"), tmp_path)
    return {k: str(v) for k, v in settings.model_dump().items() if k.startswith("objects_") and v}


@pytest.fixture
def functions(vhost, tmp_path, tasuki_env, objects_env) -> Iterator[Functions]:
    from tasuki.shared.runtime import runtime

    tasuki_env(
        amqp_url=vhost,
        data_dir=str(tmp_path / "data"),
        push_key="a-push-key-for-tests-that-is-long-enough",
        clone_schemes="https,file",
        **objects_env,
    )
    rt = runtime()
    rt.broker.declare()
    yield Functions(rt)
    rt.broker.close()
    rt.store.close()


class Flow(World):
    def __init__(self, functions, tmp_path, make_repo, executor_id, objects_env) -> None:
        super().__init__(functions, tmp_path, make_repo, executor_id)
        self.make_repo = make_repo
        self.repo, self.commit = make_repo(FILES)
        self.store.put_repository("acme/api", RepositoryConfig(clone_url=str(self.repo)))
        self.env.update({f"TASUKI_{k.upper()}": v for k, v in objects_env.items()})
        self.objects = objects.new_objects(self.rt.settings)

    def start(self, run_id: str, jobs: dict[str, dict], *, event: Event | None = None) -> None:
        """A planned run whose jobs without needs are ordered (the dispatcher orders the rest)."""
        event = event or self.push_event(run_id)
        specs = {name: Job(name=name, image=IMAGE, **spec) for name, spec in jobs.items()}
        self.store.create_run(RunRecord(id=run_id, event=event, status="running", admitted=True))
        for name, spec in specs.items():
            first = not spec.needs
            self.store.put_job(
                JobRecord(
                    run_id=run_id,
                    name=name,
                    status="queued" if first else "pending",
                    spec=spec,
                    needs=spec.needs,
                    attempt=1 if first else 0,
                )
            )
        for spec in specs.values():
            if not spec.needs:
                order = addressed(self.rt, JobOrder(run_id=run_id, event=event, job=spec))
                self.broker.publish(order, message_id=order.message_id)

    def push_event(self, run_id: str, **extra) -> Event:
        return Event(
            **{
                "host": "github",
                "event": "push",
                "kind": "push",
                "delivery_id": f"d-{run_id}",
                "repository": Repository(full_name="acme/api", default_branch="main"),
                "ref": Ref(kind="branch", name="main"),
                "after": self.commit,
                **extra,
            }
        )

    def caches(self) -> list[str]:
        return [o.key for o in self.objects.list("caches/") if o.key.endswith(".tar.gz")]


@pytest.fixture
def flow(functions, tmp_path, make_repo, executor_id, docker_client, objects_env) -> Iterator[Flow]:
    w = Flow(functions, tmp_path, make_repo, executor_id, objects_env)
    with Pump(functions) as pump:
        w.pump = pump
        yield w
    w.broker.close()


@pytest.fixture
def world(flow) -> Flow:
    """The flow is the world `start_executor` (test_executor's) starts executors in."""
    return flow


def test_a_build_jobs_artifacts_reach_the_job_that_needs_it_and_the_api(flow, start_executor):  # noqa: F811
    start_executor()
    flow.start(
        "run-a",
        {
            "build": {"run": "ci/build", "artifacts": ["dist/", "reports/*.xml"]},
            "test": {"run": "ci/test", "needs": ["build"]},
        },
    )
    built = flow.finished("run-a", "build")
    assert built.status == "success", built.message
    assert sorted((a.path, a.size) for a in built.artifacts) == [
        ("dist/app.bin", 300_000),
        ("dist/app.txt", len("built by run-a\n")),
        ("reports/unit.xml", len("<junit/>\n")),
    ]
    build_log = flow.log("run-a", "build").decode()
    assert "[tasuki] uploaded dist/ 300.0 kB in " in build_log and "(2 files)" in build_log
    assert "[tasuki] uploaded reports/*.xml " in build_log
    tested = flow.finished("run-a", "test")
    test_log = flow.log("run-a", "test").decode()
    assert tested.status == "success", test_log
    assert "built by run-a" in test_log and "300000" in test_log and "tested" in test_log
    assert "[tasuki] downloaded the artifacts of build 300.0 kB in " in test_log
    # The dispatcher recorded them; the API lists and serves them from object storage
    flow.until(lambda: flow.job("run-a", "build").artifacts, "the build job's artifacts recorded")
    from tests.unit.conftest import function_client

    web = function_client("web")
    listed = web.get("/api/runs/run-a/artifacts").get_json()["artifacts"]
    assert {a["path"] for a in listed} == {"dist/app.bin", "dist/app.txt", "reports/unit.xml"}
    got = web.get("/api/runs/run-a/artifacts/build/dist/app.txt")
    assert got.status_code == 200 and got.get_data() == b"built by run-a\n"


def test_artifacts_over_the_limit_fail_the_job_with_the_reason(flow, start_executor):  # noqa: F811
    start_executor(artifacts_max_bytes="1000")
    flow.start(
        "run-l",
        {"build": {"run": "ci/build", "artifacts": ["dist/"]}, "test": {"run": "ci/test", "needs": ["build"]}},
    )
    done = flow.finished("run-l", "build")
    assert (done.status, done.reason) == ("error", "files-refused")
    assert "is more than the limit of 1.0 kB (TASUKI_ARTIFACTS_MAX_BYTES)" in done.message
    assert flow.objects.list("runs/") == []
    flow.until(lambda: flow.job("run-l", "test").status == "skipped", "the dependant skipped")


def test_a_symlink_out_of_the_workspace_is_refused(flow, start_executor):  # noqa: F811
    start_executor()
    flow.start("run-s", {"leak": {"run": "ci/leak", "artifacts": ["dist/"]}})
    done = flow.finished("run-s", "leak")
    assert (done.status, done.reason) == ("error", "files-refused")
    assert "dist/hostname is a symlink out of the workspace" in done.message
    assert flow.objects.list("runs/") == []


def test_a_cache_hit_makes_the_second_run_skip_the_download(flow, start_executor):  # noqa: F811
    start_executor()
    flow.start("run-1", {"deps": {"run": "ci/deps", "cache": CACHE}})
    assert flow.finished("run-1", "deps").status == "success"
    first = flow.log("run-1", "deps").decode()
    assert "[tasuki] cache: none for deps-" in first and "deps: downloading" in first
    assert "[tasuki] cache: saved deps-" in first
    assert len(flow.caches()) == 1 and "/main/deps-" in flow.caches()[0]

    flow.start("run-2", {"deps": {"run": "ci/deps", "cache": CACHE}})
    assert flow.finished("run-2", "deps").status == "success"
    second = flow.log("run-2", "deps").decode()
    assert "[tasuki] cache: restored deps-" in second and "deps: from the cache" in second
    assert "downloading" not in second and "cache: saved" not in second

    # A branch without a cache of its own restores its default branch's, and saves nothing (a hit)
    flow.start(
        "run-3",
        {"deps": {"run": "ci/deps", "cache": CACHE}},
        event=flow.push_event("run-3", ref=Ref(kind="branch", name="feature")),
    )
    assert flow.finished("run-3", "deps").status == "success"
    assert "deps: from the cache" in flow.log("run-3", "deps").decode()


def test_a_fork_pull_request_neither_reads_nor_writes_the_cache(flow, start_executor):  # noqa: F811
    start_executor()
    flow.start("run-1", {"deps": {"run": "ci/deps", "cache": CACHE}})
    assert flow.finished("run-1", "deps").status == "success"
    saved = flow.caches()
    fork = flow.push_event(
        "run-f",
        event="pull_request.opened",
        kind="pull_request",
        ref=Ref(kind="branch", name="main"),
        pull_request=PullRequest(number=9, source_branch="main", target_branch="main", source_repository="mallory/api"),
    )
    flow.start("run-f", {"deps": {"run": "ci/deps", "cache": CACHE}}, event=fork)
    assert flow.finished("run-f", "deps").status == "success"
    log = flow.log("run-f", "deps").decode()
    assert "[tasuki] cache: not used here (a pull request from a fork" in log and "deps: downloading" in log
    assert flow.caches() == saved


def test_a_1gb_artifact_streams_through_a_flat_executor_memory(flow):
    """A real `tasuki executor` process uploads a 1 GB artifact and downloads it into the job that
    needs it; its peak RSS grows by far less than what went through it (no timing asserted)."""
    from tests.harness import ExecutorProcess

    big = script("mkdir -p dist && head -c 1000000000 /dev/zero > dist/big.bin && echo made")
    check = script("ls -l dist/big.bin")
    flow.repo, flow.commit = flow.make_repo({**FILES, "ci/big": big, "ci/check": check})
    flow.store.put_repository("acme/api", RepositoryConfig(clone_url=str(flow.repo)))
    process = ExecutorProcess(flow.env)
    try:
        process.wait_for_line("taking work from")
        flow.start("warm-up", {"build": {"run": "ci/build", "artifacts": ["dist/"]}})  # loads what jobs need
        warm = flow.finished("warm-up")
        assert warm.status == "success", warm.message
        before = process.peak_rss_kb()
        flow.start(
            "run-g", {"big": {"run": "ci/big", "artifacts": ["dist/"]}, "check": {"run": "ci/check", "needs": ["big"]}}
        )
        done = flow.finished("run-g", "big")
        assert done.status == "success", done.message
        assert [(a.path, a.size) for a in done.artifacts] == [("dist/big.bin", 1_000_000_000)]
        assert flow.finished("run-g", "check").status == "success"
        assert "1000000000" in flow.log("run-g", "check").decode()
        after = process.peak_rss_kb()
        grown_mb = (after - before) / 1024
        print(f"executor peak RSS: {before / 1024:.1f} MB before, {after / 1024:.1f} MB after 1 GB up and down")
        assert grown_mb < 100, f"peak RSS grew {grown_mb:.1f} MB for a 1 GB artifact"
    finally:
        process.stop()
