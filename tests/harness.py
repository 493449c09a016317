"""The end-to-end harness: `tasuki local` as a real process tree, on free ports, in a fresh vhost.

with LocalTasuki(settings_env) as tasuki:
    tasuki.post_webhook(body, headers)
    run = tasuki.wait_for_run(lambda r: r.status in RUN_FINAL)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import requests

from tasuki.functions import NAMES
from tasuki.shared.messages import RUN_FINAL
from tasuki.shared.settings import Settings
from tasuki.shared.store import RunRecord, new_store
from tests.conftest import free_port

TASUKI = Path(sys.executable).parent / "tasuki"


class LocalTasuki:
    def __init__(
        self,
        env: dict[str, str],
        ready_timeout: float = 60,
        *,
        tasuki: Path = TASUKI,
        cwd: Path | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        """`tasuki` is the command to start (this venv's unless given), in `cwd` (here unless
        given), with `args` after `local` (e.g. --no-executor)."""
        self.tasuki, self.cwd, self.args = tasuki, cwd, args
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TASUKI_")}
        for name in NAMES:
            self.env.setdefault(f"TASUKI_{name.upper()}_PORT", str(free_port()))
        self.env.setdefault("TASUKI_EXECUTOR_ID", f"test-{uuid.uuid4().hex[:8]}")
        # The test repositories are folders on this machine (the harness allows file for itself).
        self.env.setdefault("TASUKI_CLONE_SCHEMES", "https,file")
        self.env.update(env)
        self.settings = Settings.from_env(self.env)
        self.ready_timeout = ready_timeout
        self.output: list[str] = []
        self.ready = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.store = new_store(self.settings)

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.ingress_port}/"

    def __enter__(self) -> LocalTasuki:
        self.proc = subprocess.Popen(
            [str(self.tasuki), "local", *self.args],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(self.ready_timeout):
            self.__exit__(None, None, None)
            raise AssertionError("tasuki local printed no ready line:\n" + self.log())
        return self

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self.output.append(line)
            if "Tasuki is ready" in line:
                self.ready.set()

    def log(self) -> str:
        return "".join(self.output[-200:])

    def log_records(self) -> list[dict]:
        """The JSON log lines of the processes (their output is not a terminal), each with the
        name of the process that wrote it under "process"."""
        records = []
        for line in self.output:
            prefix, bar, rest = line.partition("| ")
            if bar and rest.startswith("{"):
                record = json.loads(rest)
                record["process"] = prefix.split()[-1]
                records.append(record)
        return records

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        remove_containers(self.settings.executor_id)
        self.store.close()

    def post_webhook(self, body: bytes, headers: dict[str, str]) -> requests.Response:
        return requests.post(self.ingress_url, data=body, headers=headers, timeout=15)

    def wait_for_run(
        self,
        predicate: Callable[[RunRecord], bool] = lambda r: r.status in RUN_FINAL,
        *,
        repository: str | None = None,
        timeout: float = 90,
    ) -> RunRecord:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.store.list_runs(repository=repository):
                if predicate(run):
                    return run
            time.sleep(0.3)
        runs = [(r.id, r.repository, r.status, r.message) for r in self.store.list_runs()]
        raise AssertionError(f"no run matched within {timeout}s; runs: {runs}\n--- log ---\n{self.log()}")

    def wait_until(self, condition: Callable[[], object], what: str, *, timeout: float = 90) -> object:
        """The first true value of `condition()`, polled; an AssertionError saying `what` after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.3)
        raise AssertionError(f"{what}: not within {timeout}s\n--- log ---\n{self.log()}")

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """`tasuki ARGS` with this Tasuki's settings."""
        return subprocess.run(
            [str(self.tasuki), *args], env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=60
        )

    def log_of(self, run_id: str, job: str, timeout: float = 30) -> str:
        """The job's log, once every chunk its executor announced is stored (functions/logs may
        store the last ones a moment after the run ended)."""
        return log_of(self.store, run_id, job, timeout)


def log_of(store, run_id: str, job: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        chunks = store.read_log(run_id, job)
        record = next((j for j in store.get_jobs(run_id) if j.name == job), None)
        complete = record is None or record.log_chunks is None or len(chunks) >= record.log_chunks
        if complete or time.monotonic() > deadline:
            return b"".join(d for _, d in chunks).decode("utf-8", "replace")
        time.sleep(0.1)


class ExecutorProcess:
    """`tasuki executor` as a real process with these settings only, its output kept for the
    assertions' messages."""

    def __init__(self, env: dict[str, str], wait: float = 180) -> None:
        self.env = env
        self.wait = wait
        self.output: list[str] = []
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TASUKI_")}
        self.proc = subprocess.Popen(
            [str(TASUKI), "executor"], env={**clean, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def id(self) -> str:
        return self.env["TASUKI_EXECUTOR_ID"]

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.output.append(line)

    def wait_for_line(self, words: str) -> None:
        deadline = time.monotonic() + self.wait
        while not any(words in line for line in self.output):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the executor never said {words!r}:\n{''.join(self.output)}")
            time.sleep(0.1)

    def peak_rss_kb(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(self.wait)


def configured(tmp: Path, amqp_url: str, repositories: dict[str, dict], rules: str, **settings: str) -> LocalTasuki:
    """A `LocalTasuki` with this registry and these rules (written as files in `tmp`), its data in
    `tmp/data`, and these more settings (`bitbucket_api_url="..."` is TASUKI_BITBUCKET_API_URL)."""
    (tmp / "repos.yml").write_text(json.dumps({"repositories": repositories}))
    (tmp / "rules.yml").write_text(rules)
    env = {
        "TASUKI_AMQP_URL": amqp_url,
        "TASUKI_DATA_DIR": str(tmp / "data"),
        "TASUKI_REPOSITORIES_FILE": str(tmp / "repos.yml"),
        "TASUKI_RULES_FILE": str(tmp / "rules.yml"),
    }
    env.update({f"TASUKI_{name.upper()}": value for name, value in settings.items()})
    return LocalTasuki(env)


def remove_containers(executor_id: str) -> None:
    """Remove job containers (and service networks) an executor left (it was killed mid-job): the
    engine is shared."""
    import docker

    try:
        client = docker.from_env()
        for container in client.containers.list(
            all=True, sparse=True, filters={"label": f"tasuki.executor={executor_id}"}
        ):
            container.remove(force=True)
        for network in client.networks.list(filters={"label": f"tasuki.executor={executor_id}"}):
            network.remove()  # a job's services' network
    except docker.errors.DockerException:
        pass  # no engine, or the container went away by itself
