"""The control plane's cost of a run: CPU of every Tasuki process, messages, pushes, log latency.

Through every real process (`tasuki local`: the supervisor, `tasuki functions` with every
function in one process, the bridge, the executor), for each store backend (SQLite, and
PostgreSQL as `bench_e2e` finds or starts it):

- cost: `BENCH_ROUNDS` one-job runs one after another (the job's executable only runs `true`).
  CPU seconds of each process from /proc/<pid>/stat (utime + stime, clock ticks), the executor's
  reaped children (git) apart, divided by the runs; beside it the same processes' CPU while
  idle for as long (the clocks and loops that cost whether or not anything runs), measured in
  the same session, so that the noise of a shared machine shows in both. Messages per run by
  routing key, from a queue of the benchmark's own bound to every exchange (`#`); HTTP pushes per
  run: the messages that a subscription's bindings send to a function.
- log latency: `BENCH_LOG_ROUNDS` runs of a job that prints one line (with the machine's boot
  clock, /proc/uptime, which containers share) and then sleeps; the time from the line being
  printed to the line being readable through the log API (GET /api/runs/RUN/jobs/JOB/log), polled
  every 10 ms while the job still runs (its log not done). /proc/uptime has 10 ms steps: the
  figures may be up to 10 ms high.

And once, the floor under any of that: the CPU of one push, the bridge's and a function's that
only answers 204 (served as `tasuki local` serves the functions), one message at a time as a run
sends them (`floor`). Pushes per run times this is what the push flow costs before any function
does its work.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pika
import requests

from tasuki.shared import topics
from tasuki.shared.broker import connect
from tasuki.shared.messages import RUN_FINAL
from tests.bench import vhost
from tests.bench.bench_e2e import _percentile, _rabbitmqctl
from tests.conftest import bitbucket_push, git, write_files
from tests.harness import LocalTasuki

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))
LOG_ROUNDS = int(os.environ.get("BENCH_LOG_ROUNDS", "20"))
WARMUP = 3
TICK = os.sysconf("SC_CLK_TCK")
FILES = {
    ".tasuki.yml": "jobs:\n  build: {image: tasuki/busybox, run: ci/build}\n",
    "ci/build": ("#!/bin/sh\ntrue\n", True),
}
# The job prints its first line with the boot clock, then stays quiet while it still runs.
PRINTER = {
    ".tasuki.yml": "jobs:\n  build: {image: tasuki/busybox, run: ci/build}\n",
    "ci/build": ('#!/bin/sh\nread up idle < /proc/uptime\necho "first line at $up"\nsleep 3\n', True),
}


def _repository(root: Path, files: dict) -> tuple[Path, str]:
    work, bare = root / "work", root / "repo.git"
    write_files(work, files)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "bench")
    git(root, "clone", "-q", "--bare", str(work), str(bare))
    return bare, git(work, "rev-parse", "HEAD").strip()


# -- CPU of the process tree -----------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, float, float] | None:
    """(command, parent pid, own CPU seconds, reaped children's CPU seconds) of a process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid 4, utime 14, stime 15, cutime 16, cstime 17
    own = (int(fields[11]) + int(fields[12])) / TICK
    children = (int(fields[13]) + int(fields[14])) / TICK
    words = [a.decode() for a in argv if a]
    name = next((w for w in words[1:] if not w.startswith("-") and "/" not in w), words[0] if words else "?")
    return name, int(fields[1]), own, children


def cpu(root: int) -> dict[str, float]:
    """CPU seconds so far of `root` ("supervisor") and its child processes (by their `tasuki`
    subcommand), and the executor's reaped children as "executor children (git)"."""
    stats = {pid: s for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()) if (s := _stat(pid))}
    figures = {"supervisor": stats[root][2]}
    for _pid, (name, parent, own, children) in stats.items():
        if parent == root:
            figures[name] = own
            if name == "executor":
                figures["executor children (git)"] = children
    return figures


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


# -- messages: a queue of the benchmark's own sees every one -------------------------------------


class Tap:
    """Counts every message published on Tasuki's exchanges, by exchange and routing key."""

    def __init__(self, amqp_url: str) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(amqp_url,), daemon=True)
        self._thread.start()
        self._ready.wait(30)

    def _run(self, amqp_url: str) -> None:
        connection = connect(amqp_url)
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        for exchange in (topics.EVENTS, topics.RUNS, topics.JOBS, topics.EXECUTORS):
            channel.queue_bind(queue, exchange, routing_key="#")

        def seen(_ch, method, _props, _body) -> None:
            with self._lock:
                self.counts[(method.exchange, method.routing_key)] += 1

        channel.basic_consume(queue, seen, auto_ack=True)
        self._ready.set()
        while not self._stop.is_set():
            connection.process_data_events(time_limit=0.2)
        connection.close()

    def take(self) -> Counter[tuple[str, str]]:
        """The counts since the last take (after letting the messages in flight arrive)."""
        time.sleep(1.0)
        with self._lock:
            counts, self.counts = self.counts, Counter()
        return counts

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def pushes(counts: Counter[tuple[str, str]]) -> Counter[str]:
    """HTTP pushes per subscription: the messages its bindings route to its function."""
    out: Counter[str] = Counter()
    for (exchange, key), n in counts.items():
        for sub in topics.SUBSCRIPTIONS:
            if sub.topic == exchange and any(k == "#" or k == key for k in sub.keys):
                out[sub.name] += n
    return out


# -- the runs ------------------------------------------------------------------------------------


class Runs:
    def __init__(self, tasuki: LocalTasuki) -> None:
        self.tasuki = tasuki
        self.seen: set[str] = set()

    def push(self, repository: str, commit: str) -> None:
        body, headers = bitbucket_push(repository, "main", commit)
        answer = self.tasuki.post_webhook(body, headers)
        assert answer.status_code == 202, answer.text

    def next_run(self, final: bool, timeout: float = 120):
        """The next run not seen before (once finished, if `final`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.tasuki.store.list_runs(limit=10):
                if run.id not in self.seen and (run.status in RUN_FINAL or not final):
                    if final:
                        assert run.status == "success", (run.id, run.status, run.message)
                        self.seen.add(run.id)
                    return run
            time.sleep(0.02)
        raise AssertionError(f"no run within {timeout}s\n{self.tasuki.log()}")

    def one(self, repository: str, commit: str) -> None:
        self.push(repository, commit)
        self.next_run(final=True)


def _boot_clock() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def log_latency(tasuki: LocalTasuki, runs: Runs, commit: str) -> float:
    """Seconds from the job's first line being printed to its being readable through the API."""
    runs.push("bench/printer", commit)
    run = runs.next_run(final=False)
    url = f"{tasuki.settings.web_url}/api/runs/{run.id}/jobs/build/log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = requests.get(url, timeout=10)
        seen = _boot_clock()
        if answer.status_code == 200:
            body = answer.json()
            text = "".join(c["text"] for c in body["chunks"])
            if "first line at " in text:
                assert not body["done"], "the line showed only once the job was over"
                printed = float(text.split("first line at ", 1)[1].split()[0])
                runs.next_run(final=True)
                return seen - printed
        time.sleep(0.01)
    raise AssertionError(f"run {run.id}: its first line never showed\n{tasuki.log()}")


class Stack:
    """One `tasuki local` under measurement, with its runs and its figures."""

    def __init__(self, name: str, tmp: Path, store_url: str, command: Path | None) -> None:
        self.name = name
        tmp.mkdir()
        self.vhost = f"tasuki-bench-{uuid.uuid4().hex[:8]}"
        _rabbitmqctl("add_vhost", self.vhost)
        _rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        self.url = f"amqp://guest:guest@localhost:5672/{self.vhost}"
        true_repo, self.true_commit = _repository(tmp / "true", FILES)
        printer_repo, self.printer_commit = _repository(tmp / "printer", PRINTER)
        (tmp / "rules.yml").write_text(
            "rules:\n  - {event: push, repository: bench/true}\n  - {event: push, repository: bench/printer}\n"
        )
        (tmp / "repos.yml").write_text(
            f"repositories:\n  bench/true: {{clone_url: {true_repo}}}\n  bench/printer: {{clone_url: {printer_repo}}}\n"
        )
        env = {
            "TASUKI_AMQP_URL": self.url,
            "TASUKI_DATA_DIR": str(tmp / "data"),
            "TASUKI_RULES_FILE": str(tmp / "rules.yml"),
            "TASUKI_REPOSITORIES_FILE": str(tmp / "repos.yml"),
        }
        if store_url:
            env["TASUKI_STORE_URL"] = store_url
        self.tasuki = LocalTasuki(env, **({"tasuki": command} if command else {}))
        self.spent: Counter[str] = Counter()
        self.messages: Counter[tuple[str, str]] = Counter()
        self.idle: dict[str, float] = {}
        self.latencies: list[float] = []
        self.seconds = 0.0

    def __enter__(self) -> Stack:
        self.tasuki.__enter__()
        assert self.tasuki.proc is not None
        self.root = self.tasuki.proc.pid
        self.runs = Runs(self.tasuki)
        self.tap = Tap(self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        self.tap.close()
        self.tasuki.__exit__(*exc)
        _rabbitmqctl("delete_vhost", self.vhost)

    def one(self) -> None:
        """One measured run: the CPU spent while it goes through, added up."""
        before, began = cpu(self.root), time.monotonic()
        self.runs.one("bench/true", self.true_commit)
        self.seconds += time.monotonic() - began
        self.spent.update(_spent(before, cpu(self.root)))

    def figures(self, store: str) -> dict:
        messages = self.messages
        per_run = {name: round(seconds / ROUNDS * 1000, 1) for name, seconds in self.spent.items()}
        idle_per_run = {name: round(seconds / ROUNDS * 1000, 1) for name, seconds in self.idle.items()}
        tasuki_processes = [n for n in per_run if n != "executor children (git)"]
        by_key = {f"{exchange} {key}": round(n / ROUNDS, 2) for (exchange, key), n in sorted(messages.items())}
        return {
            "store": store,
            "rounds": ROUNDS,
            "seconds_per_run": round(self.seconds / ROUNDS, 3),
            "cpu_ms_per_run": per_run,
            "cpu_ms_per_run_total": round(sum(per_run[n] for n in tasuki_processes), 1),
            "idle_cpu_ms_per_run_time": idle_per_run,
            "idle_cpu_ms_per_run_time_total": round(sum(idle_per_run.get(n, 0) for n in tasuki_processes), 1),
            "messages_per_run": by_key,
            "messages_per_run_total": round(sum(messages.values()) / ROUNDS, 2),
            "pushes_per_run": {name: round(n / ROUNDS, 2) for name, n in sorted(pushes(messages).items())},
            "pushes_per_run_total": round(sum(pushes(messages).values()) / ROUNDS, 2),
            "log_rounds": LOG_ROUNDS,
            "log_latency_p50_ms": round(statistics.median(self.latencies) * 1000, 1),
            "log_latency_p99_ms": round(_percentile(self.latencies, 99) * 1000, 1),
        }


def _measure(tmp: Path, store: str, database: Callable[[], str]) -> dict:
    """This Tasuki, and beside it (both up at once, their runs taken in turns, so the machine's
    noise falls on both alike) the one `BENCH_BASELINE` names (a `tasuki` command), if any."""
    baseline = os.environ.get("BENCH_BASELINE", "")
    stacks = [Stack("this", tmp / "this", database(), None)]
    if baseline:
        stacks.insert(0, Stack("baseline", tmp / "baseline", database(), Path(baseline)))
    with contextlib.ExitStack() as up:
        for stack in stacks:
            up.enter_context(stack)
        for stack in stacks:
            for _ in range(WARMUP):
                stack.runs.one("bench/true", stack.true_commit)
            stack.tap.take()
        # The runs, one after another, in turns; each one's CPU counted while it goes through
        for _ in range(ROUNDS):
            for stack in stacks:
                stack.one()
        for stack in stacks:
            stack.messages = stack.tap.take()
        # As long again with nothing to do
        took = sum(stack.seconds for stack in stacks)
        before = [cpu(stack.root) for stack in stacks]
        time.sleep(took / len(stacks))
        for stack, was in zip(stacks, before, strict=True):
            stack.idle = _spent(was, cpu(stack.root))
        for _ in range(LOG_ROUNDS):
            for stack in stacks:
                stack.latencies.append(log_latency(stack.tasuki, stack.runs, stack.printer_commit))
    results = {stack.name: stack.figures(store) for stack in stacks}
    for name, figures in results.items():
        print(
            f"{store} ({name}): {ROUNDS} one-job runs, {figures['seconds_per_run']:.2f} s each; Tasuki's CPU per run "
            f"{figures['cpu_ms_per_run_total']} ms (aim: <= 20 ms) {figures['cpu_ms_per_run']}; idle for as long: "
            f"{figures['idle_cpu_ms_per_run_time_total']} ms; {figures['messages_per_run_total']} messages and "
            f"{figures['pushes_per_run_total']} pushes per run; first log line readable p50 "
            f"{figures['log_latency_p50_ms']} ms, p99 {figures['log_latency_p99_ms']} ms (aim: p50 <= 300 ms)",
            flush=True,
        )
        for key, n in figures["messages_per_run"].items():
            print(f"  {n:6.2f}  {key}")
    if baseline:
        this, base = results["this"], results["baseline"]
        results["ratios"] = {
            "cpu": round(this["cpu_ms_per_run_total"] / base["cpu_ms_per_run_total"], 3),
            "messages": round(this["messages_per_run_total"] / base["messages_per_run_total"], 3),
            "pushes": round(this["pushes_per_run_total"] / base["pushes_per_run_total"], 3),
            "log_latency_p50": round(this["log_latency_p50_ms"] / base["log_latency_p50_ms"], 3),
        }
        print(f"{store}: this / baseline {results['ratios']}", flush=True)
    return results if baseline else results["this"]


# -- the floor: what a push costs when the function does nothing -----------------------------------

FLOOR_FUNCTION = """
import os
import functions_framework

SEEN = os.open(os.environ["BENCH_FLOOR_SEEN"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


@functions_framework.http
def floor(request):
    request.get_data()
    if request.path == "/":  # not the bridge's clock (its ticks go to /tick)
        os.write(SEEN, b".")
    return "", 204
"""
# Served as `tasuki functions` serves the functions: functions-framework's app on waitress.
FLOOR_SERVER = (
    "import sys, waitress; from tasuki.local.cli.serving import app; "
    "waitress.serve(app('floor', sys.argv[1]), listen=sys.argv[2], threads=16, asyncore_use_poll=True, _quiet=True)"
)


def floor(tmp: Path) -> dict:
    """CPU per push of the bridge and of a function that only answers 204, served as in
    `tasuki local`, one message at a time as a one-job run sends them: each message published
    once the last one reached the function. What any push of a run costs before its function
    does any work; `ROUNDS` * 10 pushes."""
    with vhost("control (floor)") as amqp_url:
        return _floor(tmp, amqp_url)


def _floor(tmp: Path, amqp_url: str) -> dict:
    from tests.conftest import free_port
    from tests.harness import TASUKI

    source, seen, port = tmp / "floor.py", tmp / "seen", free_port()
    source.write_text(FLOOR_FUNCTION)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASUKI_")}
    env.update(
        BENCH_FLOOR_SEEN=str(seen),
        TASUKI_AMQP_URL=amqp_url,
        TASUKI_DATA_DIR=str(tmp / "data"),
        TASUKI_ROUTER_URL=f"http://127.0.0.1:{port}/",
        TASUKI_DISPATCHER_URL=f"http://127.0.0.1:{port}/tick",
        TASUKI_LOG_LEVEL="WARNING",
    )
    function = subprocess.Popen(
        [sys.executable, "-c", FLOOR_SERVER, str(source), f"127.0.0.1:{port}"], env=env, start_new_session=True
    )
    bridge = subprocess.Popen([str(TASUKI), "bridge"], env=env, start_new_session=True)
    connection = connect(amqp_url)
    try:
        channel = connection.channel()

        def one(n: int) -> None:
            channel.basic_publish(
                topics.EVENTS,
                "bench.floor",
                b"\x85" + b"x" * 200,
                pika.BasicProperties(delivery_mode=2, message_id=f"floor-{n}", type="bench.floor"),
            )
            deadline = time.monotonic() + 60
            while not seen.exists() or seen.stat().st_size < n:
                if time.monotonic() > deadline:
                    raise AssertionError(f"push {n} never reached the function")
                time.sleep(0.001)

        deadline = time.monotonic() + 60
        while True:  # until the bridge has declared the topology
            try:
                channel.exchange_declare(topics.EVENTS, passive=True)
                break
            except pika.exceptions.ChannelClosedByBroker:
                if time.monotonic() > deadline:
                    raise
                channel = connection.channel()
                time.sleep(0.2)
        time.sleep(1)  # and consumes
        for n in range(1, 21):  # both warm
            one(n)
        pushes = ROUNDS * 10
        time.sleep(0.5)  # the last ack through
        before = {"bridge": _stat(bridge.pid), "function": _stat(function.pid)}
        for n in range(21, 21 + pushes):
            one(n)
        time.sleep(0.5)
        after = {"bridge": _stat(bridge.pid), "function": _stat(function.pid)}
    finally:
        connection.close()
        for proc in (bridge, function):
            proc.terminate()
            proc.wait(30)
    per_push = {name: round((after[name][2] - before[name][2]) / pushes * 1000, 2) for name in before}
    figures = {"pushes": pushes, "cpu_ms_per_push": per_push, "cpu_ms_per_push_total": round(sum(per_push.values()), 2)}
    print(
        f"floor: a push through the bridge to a function that only answers 204, one at a time: "
        f"{figures['cpu_ms_per_push_total']} ms of CPU {per_push} ({pushes} pushes)",
        flush=True,
    )
    return figures


def main() -> dict:
    from tests.conftest import free_port
    from tests.postgres import Cluster, Unavailable

    results = {}
    cluster = None
    stores = [s for s in os.environ.get("BENCH_STORES", "sqlite,postgresql").split(",") if s]
    given = os.environ.get("BENCH_POSTGRES_URL", "")
    if given and os.environ.get("BENCH_BASELINE"):
        raise SystemExit("BENCH_POSTGRES_URL holds one database: the baseline needs one of its own (leave it unset)")
    try:
        if "postgresql" in stores and not given:
            try:
                cluster = Cluster(free_port())
                cluster.start()
            except Unavailable as exc:
                print(f"postgresql: not measured ({exc})")
                stores.remove("postgresql")

        def database(store: str) -> Callable[[], str]:
            if store == "sqlite":
                return lambda: ""
            if given:
                return lambda: given
            assert cluster is not None
            return lambda: cluster.create_database(f"bench_{uuid.uuid4().hex[:8]}")

        with tempfile.TemporaryDirectory(prefix="tasuki-bench-") as tmp:
            results["floor"] = floor(Path(tmp))
        for store in [s for s in ("sqlite", "postgresql") if s in stores]:
            with tempfile.TemporaryDirectory(prefix="tasuki-bench-") as tmp:
                results[store] = _measure(Path(tmp), store, database(store))
    finally:
        if cluster is not None:
            cluster.stop()
    return results


if __name__ == "__main__":
    main()
