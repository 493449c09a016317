"""Ingress throughput: signed Bitbucket pushes per second through the real server, beside a baseline.

Both handlers are served by `tasuki.local.cli.serving.serve_function` (functions-framework on gunicorn,
as in production) and loaded by the same `wrk` with the same connections:

- ingress: the captured Bitbucket push, signed with its repository's secret, each request with
  its own X-Request-UUID; every answer counted is a 202 after RabbitMQ confirmed the publish
  into the real topology (the router's quorum queue), which is checked against the queue;
- baseline: `tests/bench/baseline.py`, which reads the body and answers 202.

Rounds alternate between the two so that the machine's noise falls on both; the figures are
the medians of the rounds. Reported: requests per second of each, their ratio, p50/p99 latency,
and the CPU time of the serving process per request (steadier than rates on shared cores).

Both servers run functions-framework's default configuration (one worker, 4 threads per core);
`THREADS=32 BENCH_CONNECTIONS=32 make bench BENCH=ingress` measures both with 32 threads, where
the ingress, which mostly waits for RabbitMQ, gains more than the baseline.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tasuki.shared import topics
from tasuki.shared.broker import Broker
from tests.bench import vhost
from tests.conftest import WEBHOOKS, free_port

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "takitake/mysidia"
SECRET = "bench-secret"
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "8"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARMUP_SECONDS = 3

# wrk: every request the same signed body with its own delivery id; counts the answers by status.
LUA = r"""
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  body = io.open(args[1], "rb"):read("*a")
  signature, run, accepted, other, counter = args[2], args[3], 0, 0, 0
end
function request()
  counter = counter + 1
  return wrk.format("POST", "/", {
    ["Content-Type"] = "application/json",
    ["X-Event-Key"] = "repo:push",
    ["X-Hook-UUID"] = "50ac74f5-e8d8-4b6a-82ce-02f433d4816c",
    ["X-Request-UUID"] = string.format("%s-%d-%d", run, id, counter),
    ["X-Hub-Signature"] = signature,
  }, body)
end
function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local acc, oth = 0, 0
  for _, t in ipairs(threads) do acc = acc + t:get("accepted"); oth = oth + t:get("other") end
  local e = summary.errors
  io.write(string.format(
    '\nRESULT {"requests": %d, "seconds": %f, "accepted": %d, "other": %d, "p50_ms": %f, "p99_ms": %f, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, acc, oth, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.connect + e.read + e.write + e.timeout))
end
"""


def main() -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit(
            "bench ingress: wrk is not installed; `local/setup.sh system` installs it (apt-get install wrk)"
        )
    body = (WEBHOOKS / "bitbucket" / "first-push.json").read_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with tempfile.TemporaryDirectory(prefix="tasuki-bench-") as tmp, vhost("ingress") as url:
        work = Path(tmp)
        (work / "body.json").write_bytes(body)
        (work / "load.lua").write_text(LUA)
        (work / "repos.yml").write_text(json.dumps({"repositories": {REPOSITORY: {"secret": SECRET}}}))
        broker = Broker(url)
        broker.declare()
        env = {
            "TASUKI_AMQP_URL": url,
            "TASUKI_DATA_DIR": str(work / "data"),
            "TASUKI_REPOSITORIES_FILE": str(work / "repos.yml"),
        }
        with (
            serve("ingress", env) as ingress_server,
            serve("baseline", env, ROOT / "tests/bench/baseline.py") as baseline_server,
        ):

            def load(server: Server, seconds: int) -> dict:
                return drive(wrk, server, seconds, work, signature, uuid.uuid4().hex[:12])

            for server in (ingress_server, baseline_server):  # connections opened, code warm
                load(server, WARMUP_SECONDS)
            drain(broker)
            ingress, baseline = [], []
            for _ in range(ROUNDS):
                ingress.append(load(ingress_server, SECONDS))
                ingress[-1]["published"] = drain(broker)
                baseline.append(load(baseline_server, SECONDS))
        broker.close()
    return report(ingress, baseline)


def drive(wrk: str, server: Server, seconds: int, work: Path, signature: str, run: str) -> dict:
    cpu = server.cpu_seconds()
    done = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(work / "load.lua"),
            f"http://127.0.0.1:{server.port}/",
            "--",
            str(work / "body.json"),
            signature,
            run,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    line = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"bench ingress: wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(line.removeprefix("RESULT "))
    result["rate"] = result["accepted"] / result["seconds"]
    result["cpu_ms"] = (server.cpu_seconds() - cpu) / max(result["requests"], 1) * 1000
    return result


def drain(broker: Broker) -> int:
    """How many events wait for the router, once the requests still in flight when wrk stopped
    are done; the queue is emptied for the next round."""
    time.sleep(1)
    queue = topics.subscription("router").queue
    with broker.channel() as ch:
        count = ch.queue_declare(queue, passive=True).method.message_count
        ch.queue_purge(queue)
    return count


def report(ingress: list[dict], baseline: list[dict]) -> dict:
    def median(rounds: list[dict], key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 3)

    figures = {
        "ingress_per_second": median(ingress, "rate"),
        "baseline_per_second": median(baseline, "rate"),
        "ingress_p50_ms": median(ingress, "p50_ms"),
        "ingress_p99_ms": median(ingress, "p99_ms"),
        "baseline_p50_ms": median(baseline, "p50_ms"),
        "baseline_p99_ms": median(baseline, "p99_ms"),
        # CPU time of the serving process per request: less at the mercy of the machine's noise
        "ingress_cpu_ms_per_request": median(ingress, "cpu_ms"),
        "baseline_cpu_ms_per_request": median(baseline, "cpu_ms"),
        "connections": CONNECTIONS,
        "seconds_per_round": SECONDS,
        "rounds": len(ingress),
        "ingress_rounds_per_second": [round(r["rate"], 1) for r in ingress],
        "baseline_rounds_per_second": [round(r["rate"], 1) for r in baseline],
        "not_accepted": sum(r["other"] + r["socket_errors"] for r in ingress + baseline),
        # wrk stops counting at the end of a round with up to one request per connection in flight
        "published_matches_accepted": all(0 <= r["published"] - r["accepted"] <= CONNECTIONS for r in ingress),
    }
    figures["ratio"] = round(figures["ingress_per_second"] / figures["baseline_per_second"], 3)
    for name, what in (
        ("ingress", "signed pushes, deduplicated, confirmed by RabbitMQ"),
        ("baseline", "reads the body, answers 202"),
    ):
        print(
            f"{name:9s} {figures[name + '_per_second']:8.1f}/s  p50 {figures[name + '_p50_ms']:6.2f} ms  "
            f"p99 {figures[name + '_p99_ms']:6.2f} ms  cpu {figures[name + '_cpu_ms_per_request']:.3f} ms/request"
            f"  ({what})"
        )
    print(
        f"ratio     {figures['ratio']:.3f}  ({len(ingress)} rounds of {SECONDS}s, {CONNECTIONS} connections; "
        f"aim: at least 0.7)"
    )
    if figures["not_accepted"] or not figures["published_matches_accepted"]:
        print(
            f"WARNING: {figures['not_accepted']} requests were not accepted, or the published count differs: "
            f"{[(r['accepted'], r['published']) for r in ingress]}"
        )
    return figures


@dataclass
class Server:
    port: int
    master: int

    def cpu_seconds(self) -> float:
        """CPU time used so far by gunicorn's worker processes (the master only watches them)."""
        children = Path(f"/proc/{self.master}/task/{self.master}/children").read_text().split()
        total = 0.0
        for pid in children:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total


@contextmanager
def serve(name: str, env: dict[str, str], source: Path | None = None) -> Iterator[Server]:
    """One function served as `tasuki local` serves it, until the block ends."""
    port = free_port()
    code = (
        "import sys; from tasuki.local.cli.serving import serve_function; "
        "serve_function(sys.argv[1], '127.0.0.1', int(sys.argv[2]), sys.argv[3] or None)"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TASUKI_")} | env
    proc = subprocess.Popen(
        [sys.executable, "-c", code, name, str(port), str(source or "")],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"bench ingress: {name} did not start:\n{proc.stderr.read().decode() if proc.stderr else ''}"
                )
            time.sleep(0.1)
        yield Server(port=port, master=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/")
    except OSError:
        return False


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
