"""`tasuki local`: every Tasuki process on one machine, from `local/Procfile`, under honcho.

Declares the RabbitMQ topology first (a clear error if RabbitMQ is not there), starts each
Procfile line with the same TASUKI_* settings, prints one ready line once every function
answers, and stops them all on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import honcho.manager
from honcho.environ import parse_procfile
from honcho.manager import Manager

from tasuki import functions
from tasuki.shared.broker import Broker
from tasuki.shared.errors import ConfigError
from tasuki.shared.settings import PREFIX, Settings
from tasuki.shared.web import access

# The Procfile ships inside the package (package data): `pip install .` gives a working `tasuki local`.
PROCFILE = resources.files("tasuki.local.cli").joinpath("Procfile")
FUNCTIONS = ("ingress", "router", "dispatcher", "reporter", "logs", "web")


def process_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of every process: this one's, plus every setting spelled out."""
    env = {k: v for k, v in environ.items() if not k.startswith(PREFIX)}
    values = settings.model_dump()
    values["data_dir"] = Path(settings.data_dir).resolve()
    for name, value in values.items():
        if value is not None:
            env[PREFIX + name.upper()] = str(value)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ready_line(settings: Settings) -> str:
    return (
        f"Tasuki is ready: web page {settings.web_url}/ · webhooks {settings.public_webhook_url} "
        f"(Bitbucket, GitHub, GitLab) · data {Path(settings.data_dir).resolve()} · Ctrl-C stops everything"
    )


def _wait_until_ready(settings: Settings, stop: threading.Event) -> None:
    ports = [getattr(settings, f"{name}_port") for name in FUNCTIONS]
    while not stop.is_set():
        if all(_answers(settings.host, port) for port in ports):
            print(ready_line(settings), flush=True)
            return
        time.sleep(0.2)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def serve_function(name: str, host: str, port: int, source: Path | None = None) -> None:
    """Serve one function module as functions-framework does in production (gunicorn threads).

    `source` is the module file, the installed `tasuki/functions/<name>.py` unless given (the benchmarks serve a
    baseline handler from elsewhere in exactly the same way)."""
    from functions_framework import create_app
    from functions_framework._http.gunicorn import GunicornApplication

    app = create_app(target=name, source=str(source or functions.source(name)))
    # No control socket: several gunicorns on one machine would fight over its default path.
    GunicornApplication(app, host, port, False, control_socket_disable=True).run()


def check_ports_free(settings: Settings) -> None:
    for name in FUNCTIONS:
        port = getattr(settings, f"{name}_port")
        if _answers(settings.host, port):
            raise ConfigError(
                f"port {port} for {name} is in use (another `tasuki local`?); stop it or set TASUKI_{name.upper()}_PORT"
            )


def run(settings: Settings, environ: Mapping[str, str], *, without: tuple[str, ...] = ()) -> int:
    """Run every Procfile process but those named in `without` (e.g. the executor, when
    executors run on other hosts)."""
    access.check_configuration(settings)
    check_ports_free(settings)
    Broker(settings.amqp_url).declare(pools=(settings.executor_pool,))
    env = process_environment(settings, environ)
    # Ctrl-C: honcho sends SIGTERM, then SIGKILL after KILL_WAIT; give running jobs their grace.
    honcho.manager.KILL_WAIT = settings.stop_grace + 5
    manager = Manager()
    for name, process in parse_procfile(PROCFILE.read_text()).processes.items():
        if name in without:
            continue
        manager.add_process(name, process, env=env, cwd=str(Path.cwd()))
    stop = threading.Event()
    threading.Thread(target=_wait_until_ready, args=(settings, stop), daemon=True).start()
    try:
        manager.loop()
    finally:
        stop.set()
    return manager.returncode or 0
