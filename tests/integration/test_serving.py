"""`tasuki functions`: every function in one process, each on its own port, one shared server.

Each port answers for its own function only; a body the shared server would have to hold beyond
its bound is refused before it is read; SIGTERM stops the process cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tasuki.functions import NAMES
from tasuki.local.cli.serving import body_limit
from tasuki.shared.settings import Settings
from tests.conftest import free_port

TASUKI = Path(sys.executable).parent / "tasuki"
LIMIT = 64 * 1024


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Settings, subprocess.Popen]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASUKI_")}
    env.update({f"TASUKI_{name.upper()}_PORT": str(free_port()) for name in NAMES})
    env.update(TASUKI_DATA_DIR=str(tmp_path), TASUKI_MAX_BODY_BYTES=str(LIMIT), TASUKI_LOG_FORMAT="json")
    settings = Settings.from_env(env)
    proc = subprocess.Popen(
        [str(TASUKI), "functions"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 60
    while not all(answers(settings.host, getattr(settings, f"{n}_port")) for n in NAMES):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.1)
    yield settings, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_each_port_answers_for_its_own_function(served):
    settings, _ = served
    url = {name: f"http://127.0.0.1:{getattr(settings, f'{name}_port')}/" for name in NAMES}
    assert requests.get(url["web"] + "runs", timeout=10).status_code == 200
    ingress = requests.post(url["ingress"], data=b"{}", headers={"Content-Type": "application/json"}, timeout=10)
    assert ingress.status_code == 400 and "event header" in ingress.json()["error"]
    for name in ("router", "dispatcher", "reporter"):
        assert requests.post(url[name], json={}, timeout=10).status_code == 401, name  # no push token
    assert requests.get(url["ingress"] + "runs", timeout=10).status_code != 200  # the web page is not here


def test_bodies_over_the_limit_are_refused(served):
    settings, _ = served
    port = settings.ingress_port
    head = {"Content-Type": "application/json", "X-Event-Key": "repo:push"}
    # Over the ingress's own limit: its answer, which names the setting
    over = requests.post(f"http://127.0.0.1:{port}/", data=b" " * (LIMIT + 1), headers=head, timeout=10)
    assert over.status_code == 413 and "TASUKI_MAX_BODY_BYTES" in over.json()["error"]
    # Announcing more than the shared server holds: refused before the body is sent
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {body_limit(settings) + 1}\r\n\r\n".encode()
        )
        assert s.recv(100).startswith(b"HTTP/1.1 413")


def test_sigterm_stops_the_process_cleanly(served):
    _, proc = served
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert "stopped serving" in (proc.stdout.read() if proc.stdout else "")
