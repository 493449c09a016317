"""The deployable bundles run on their own: every bundle is built, a fresh virtual environment
gets only a bundle's requirements.txt (no project install; pip may use its cache and the index),
functions-framework serves each function from its bundle folder alone, exactly as Cloud
Functions (2nd gen) and Cloud Run run it, and a real push goes through all of them against the
test RabbitMQ (a fresh vhost) and PostgreSQL (a fresh database): a signed webhook of a
registered repository into the ingress, the event it published into the router (a rule
matches), the run it requested into the dispatcher (the plan is ordered; its jobs too once
planned), the clock's tick into the dispatcher as Cloud Scheduler pushes it, a job's log chunk
into the logs function (stored), a status change into the reporter with a Google-signed OIDC
token (no credentials: noted on the run), and the web function's API lists the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tasuki import functions as tasuki_functions
from tasuki.local.deploy import bundle, clock
from tasuki.shared import codec, push, tokens, topics
from tasuki.shared.flowfile import Job
from tasuki.shared.messages import JobLog, RunPlanned, RunUpdated
from tasuki.shared.recipes import Rule
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.runtime import Runtime
from tasuki.shared.settings import Settings
from tests import deliveries
from tests.conftest import bitbucket_push, free_port, take
from tests.google_keys import KeySet

KEY = "bundle-test-push-key-of-at-least-32-bytes"
ACCOUNT = "tasuki-push@acme-ci.iam.gserviceaccount.com"
SECRET = "the-webhook-secret-of-acme-api"
LISTEN = ("--host", "127.0.0.1", "--port")
START_WITHIN = 120  # seconds for a function to answer after its process started (a slow, busy machine)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles")
    bundle.build(out)
    return out


@pytest.fixture(scope="module")
def bundle_env(bundles, tmp_path_factory) -> Path:
    """A fresh virtual environment with a bundle's requirements only; its bin folder."""
    pins = {(bundles / name / "requirements.txt").read_text() for name in tasuki_functions.NAMES}
    assert len(pins) == 1, "every bundle pins the same requirements, so one environment serves them all"
    home = tmp_path_factory.mktemp("bundle-venv")
    # (a venv without pip of its own, filled by this one's pip, bytecode left to the first import:
    # a second pip and compiling every module cost seconds and test nothing)
    venv.create(home / "venv", with_pip=False)
    bin_dir = home / "venv" / "bin"
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(bin_dir / "python"),
            "install",
            "-q",
            "--no-compile",
            "--disable-pip-version-check",
            "-r",
            "requirements.txt",
        ],
        cwd=bundles / tasuki_functions.NAMES[0],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return bin_dir


def clean_env(**settings: str) -> dict[str, str]:
    """An environment with nothing of this checkout in it: no PYTHONPATH, no virtual env."""
    return {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", **settings}


def test_a_bundle_environment_knows_nothing_of_tasuki_but_its_bundle(bundles, bundle_env, tmp_path):
    files = {str(p.relative_to(bundles / "router")) for p in (bundles / "router").rglob("*") if p.is_file()}
    assert {
        "main.py",
        "requirements.txt",
        "tasuki/functions/router.py",
        "tasuki/shared/web/templates/run.html",
    } <= files
    assert not [f for f in files if f.startswith(("tests", ".venv", "tasuki/local")) or "__pycache__" in f]
    outside = subprocess.run(
        [str(bundle_env / "python"), "-c", "import tasuki.shared"], cwd=tmp_path, env=clean_env(), capture_output=True
    )
    assert outside.returncode != 0, "the bundle's environment must not have Tasuki installed"
    inside = subprocess.run(
        [str(bundle_env / "python"), "-c", "import tasuki.shared.push as m; print(m.__file__)"],
        cwd=bundles / "router",
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert inside.stdout.strip() == str(bundles / "router" / "tasuki" / "shared" / "push.py"), inside.stderr


class Served:
    """The functions, each served by functions-framework from its own bundle folder."""

    def __init__(self, bundles: Path, bin_dir: Path, settings: dict[str, str], logs: Path) -> None:
        self.ports = {name: free_port() for name in tasuki_functions.NAMES}
        self.urls = {name: f"http://127.0.0.1:{port}/" for name, port in self.ports.items()}
        env = clean_env(
            **settings,
            **{f"TASUKI_{name.upper()}_URL": self.urls[name] for name in bundle.pushed_functions()},
        )
        self.processes = {}
        for name, port in self.ports.items():
            log = (logs / f"{name}.log").open("w")
            self.processes[name] = subprocess.Popen(
                [str(bin_dir / "functions-framework"), "--source", "main.py", "--target", name, *LISTEN, str(port)],
                cwd=bundles / name,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.logs = logs

    def wait(self) -> None:
        for name, url in self.urls.items():
            deadline = time.monotonic() + START_WITHIN
            while True:
                try:
                    requests.get(url, timeout=5)
                    break
                except requests.ConnectionError:
                    if self.processes[name].poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"{name} did not start: {(self.logs / f'{name}.log').read_text()[-3000:]}")
                    time.sleep(0.2)

    def push(self, function: str, message, token: str = "") -> requests.Response:
        """POST `message` as the bridge does (or with this bearer token)."""
        body = push.envelope(
            codec.encode(message),
            attributes={**message.attributes(), "type": message.TYPE},
            message_id=uuid.uuid4().hex,
            publish_ms=int(time.time() * 1000),
            subscription=push.subscription_path("tasuki", function),
            delivery_attempt=1,
            ordering_key=message.ordering_key(),
        )
        token = token or tokens.sign(KEY, self.urls[function])
        return requests.post(self.urls[function], json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def output(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def served(bundles, bundle_env, vhost, postgres_url, tmp_path) -> Iterator[tuple[Served, Runtime, KeySet]]:
    google = KeySet()
    settings = {
        "TASUKI_AMQP_URL": vhost,
        "TASUKI_STORE_URL": postgres_url,
        "TASUKI_DATA_DIR": str(tmp_path / "data"),
        "TASUKI_PUSH_KEY": KEY,
        "TASUKI_PUSH_OIDC_SERVICE_ACCOUNT": ACCOUNT,
        "TASUKI_PUSH_OIDC_CERTS_URL": google.url,
    }
    rt = Runtime(Settings.from_env(settings))
    rt.broker.declare()
    functions = Served(bundles, bundle_env, settings, tmp_path)
    try:
        with google:
            functions.wait()
            yield functions, rt, google
    finally:
        functions.stop()
        rt.broker.close()
        rt.store.close()


def test_every_bundle_serves_its_function_from_its_folder_alone(served):
    functions, rt, google = served
    queue = {s.name: s.queue for s in topics.SUBSCRIPTIONS}
    rt.store.add_rule(Rule(repository="acme/api", branch="main"))

    # ingress: a signed Bitbucket push of a registered repository becomes an event on tasuki.events.
    rt.store.put_repository("acme/api", RepositoryConfig(clone_url="https://bitbucket.org/acme/api.git", secret=SECRET))
    body, _ = bitbucket_push("acme/api", "main", "c" * 40)
    headers = deliveries.headers("bitbucket", "repo:push", body, secret=SECRET)
    answer = requests.post(functions.urls["ingress"], data=body, headers=headers, timeout=60)
    assert answer.status_code == 202, answer.text
    (event,) = take(rt.broker, queue["router"])
    assert (event.repository.full_name, event.ref.name, event.after) == ("acme/api", "main", "c" * 40)

    # router: the rule matches, one run.requested.
    answer = functions.push("router", event)
    assert answer.status_code == 200, answer.text
    (requested,) = take(rt.broker, queue["dispatcher"])
    assert answer.json()["runs"] == [requested.run_id]

    # dispatcher: the run is recorded and its plan ordered from an executor.
    answer = functions.push("dispatcher", requested)
    assert answer.status_code == 200, answer.text
    assert rt.store.get_run(requested.run_id).repository == "acme/api"
    (order,) = take(rt.broker, topics.executor_queue())
    assert (order.run_id, order.clone_url) == (requested.run_id, "https://bitbucket.org/acme/api.git")
    build = Job(name="build", image="tasuki/busybox", run="ci/build")
    answer = functions.push("dispatcher", RunPlanned(run_id=requested.run_id, jobs={"build": build}))
    assert answer.status_code == 200, answer.text
    (order,) = take(rt.broker, topics.executor_queue())
    assert (order.job.name, order.attempt) == ("build", 1)

    # dispatcher again: the clock's tick, the body Cloud Scheduler sends with its OIDC token.
    (schedule,) = clock.schedules()
    token = google.token(audience=functions.urls["dispatcher"], email=ACCOUNT)
    answer = requests.post(
        functions.urls["dispatcher"], json=schedule["body"], headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert answer.status_code == 200 and answer.json()["expired"] == 0, answer.text

    # logs: a chunk of the job's log (attempt 1, the current one) is stored.
    chunk = JobLog(run_id=requested.run_id, job="build", attempt=1, seq=0, data="hello from the bundle\n")
    answer = functions.push("logs", chunk)
    assert answer.status_code == 200 and answer.json()["stored"] is True, answer.text
    assert rt.store.read_log(requested.run_id, "build") == [(0, b"hello from the bundle\n")]

    # reporter, pushed as Google would (a Pub/Sub push's OIDC token; google-auth and what it
    # needs are in the bundle): no API credentials for acme/api, so a note instead of a status.
    updated = RunUpdated(run_id=requested.run_id, status="running", event=event)
    answer = functions.push("reporter", updated, google.token(audience=functions.urls["reporter"], email=ACCOUNT))
    assert answer.status_code == 200 and answer.json()["reported"] is False, answer.text

    # web: the API lists the run.
    runs = requests.get(functions.urls["web"] + "api/runs", timeout=60).json()
    assert [r["id"] for r in runs["runs"]] == [requested.run_id]

    # The bundles' entry points set up the log lines: JSON (no terminal), with the run and the
    # git host's delivery they belong to.
    lines = [json.loads(line) for line in functions.output("dispatcher").splitlines() if line.startswith("{")]
    assert any(line.get("run") == requested.run_id and line["delivery"] == event.delivery_id for line in lines)


def test_a_bundle_is_rebuilt_byte_for_byte(bundles, tmp_path):
    again = {b.name: b.sha256 for b in bundle.build(tmp_path / "again")}
    manifest = json.loads((bundles / "manifest.json").read_text())
    assert again == {name: f["sha256"] for name, f in manifest["functions"].items()}
    assert set(again) == set(tasuki_functions.NAMES)
    assert manifest["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
