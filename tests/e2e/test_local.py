"""`tasuki local` (what `make local` runs): every process starts, one ready line, every URL
answers, and SIGINT stops them all, leaving no process behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import requests

from tests.harness import LocalTasuki


def session_members(sid: int) -> list[int]:
    """Every live process in a session (the harness starts `tasuki local` as a session leader)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            members.append(int(entry.name))
    return members


def test_tasuki_local_starts_everything_and_stops_everything(tmp_path, rabbitmq):
    env = {"TASUKI_AMQP_URL": rabbitmq, "TASUKI_DATA_DIR": str(tmp_path / "data")}
    with LocalTasuki(env) as tasuki:
        s = tasuki.settings
        [ready] = [line for line in tasuki.output if "Tasuki is ready" in line]
        assert f"web page http://127.0.0.1:{s.web_port}/" in ready
        assert f"webhooks http://127.0.0.1:{s.ingress_port}/" in ready
        # every process is up, each under its Procfile name; the functions share one process
        for name in ("functions", "bridge", "executor"):
            assert any(f"{name} started" in line for line in tasuki.output), name
        serving = {r["message"] for r in tasuki.log_records() if r["process"] == "functions"}
        for name in ("ingress", "router", "dispatcher", "reporter", "web"):
            assert f"serving {name} at http://127.0.0.1:{getattr(s, f'{name}_port')}/" in serving, name
        # every URL answers, each port only for its own function
        assert requests.get(f"http://127.0.0.1:{s.web_port}/runs", timeout=5).status_code == 200
        assert requests.get(f"http://127.0.0.1:{s.ingress_port}/runs", timeout=5).status_code != 200
        assert (
            requests.post(
                f"http://127.0.0.1:{s.ingress_port}/",
                data=b"{}",
                timeout=5,
                headers={"Content-Type": "application/json"},
            ).status_code
            == 400
        )  # no event header
        for name in ("router", "dispatcher", "reporter"):
            port = getattr(s, f"{name}_port")
            assert requests.post(f"http://127.0.0.1:{port}/", json={}, timeout=5).status_code == 401  # no token
        sid = tasuki.proc.pid
        assert len(session_members(sid)) == 4  # supervisor, functions, bridge, executor
    # after SIGINT: nothing of that session is left
    deadline = time.monotonic() + 15
    while session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session_members(sid) == [], [Path(f"/proc/{p}/cmdline").read_text() for p in session_members(sid)]
    assert tasuki.proc.returncode is not None


def test_a_busy_port_is_a_clear_error(tmp_path, rabbitmq):
    import socket
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASUKI_")}
        env.update({"TASUKI_AMQP_URL": rabbitmq, "TASUKI_DATA_DIR": str(tmp_path), "TASUKI_INGRESS_PORT": str(port)})
        done = subprocess.run(
            [str(Path(sys.executable).parent / "tasuki"), "local"], env=env, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2
    assert f"port {port} for ingress is in use" in done.stderr


def test_listening_beyond_this_machine_needs_a_web_token(tmp_path, rabbitmq):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TASUKI_")}
    env.update({"TASUKI_AMQP_URL": rabbitmq, "TASUKI_DATA_DIR": str(tmp_path), "TASUKI_HOST": "0.0.0.0"})
    done = subprocess.run(
        [str(Path(sys.executable).parent / "tasuki"), "local"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "TASUKI_WEB_TOKEN" in done.stderr
