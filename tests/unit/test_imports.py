"""No module opens a connection at import: functions-framework imports handler modules to find
their targets, and a module that connected at import would break cold starts and tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import importlib, pkgutil, socket, sys
attempts = []
real_connect = socket.socket.connect
def refuse(self, address):
    attempts.append(address)
    raise OSError("no connections at import time")
socket.socket.connect = refuse
socket.create_connection = lambda address, *a, **k: refuse(None, address)
names = []
for package in ("tasuki.shared", "tasuki.functions", "tasuki.local"):
    module = importlib.import_module(package)
    names.append(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        importlib.import_module(info.name)
        names.append(info.name)
print(len(names), "modules imported;", "connections attempted:", attempts)
sys.exit(1 if attempts else 0)
"""


def test_importing_every_module_opens_no_connection():
    env = {"PATH": "/usr/bin:/bin", "TASUKI_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "modules imported" in done.stdout
    count = int(done.stdout.split()[0])
    assert count >= 20, done.stdout
