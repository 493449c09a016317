"""`tasuki local`: every Tasuki process on one machine, from `local/cli/Procfile`.

Declares the RabbitMQ topology first (a clear error if RabbitMQ is not there), then starts each
Procfile line (the functions, all in one process; the bridge; the executor) with the same
TASUKI_* settings, each in a process group of its own, so that Ctrl-C reaches only this process.
Their output is printed line by line, each line prefixed with the time and the process's name
in its colour (honcho's printer); one ready line follows once every function answers.

Ctrl-C, SIGTERM, SIGHUP, or any process ending, stops them all: SIGTERM to each process group,
then SIGKILL to what is left after TASUKI_STOP_GRACE + 5 seconds (the executor gives running jobs
their grace). `tasuki local` returns only once every process it started has ended.

Each process is watched by a thread of this one. (honcho's manager watches each from a forked
copy of this process instead: 29 MB resident apiece, measured by `make bench BENCH=memory`.)
"""

from __future__ import annotations

import datetime
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

from honcho.colour import get_colours
from honcho.environ import parse_procfile
from honcho.printer import Message, Printer

from tasuki.functions import NAMES
from tasuki.shared import logs
from tasuki.shared.broker import Broker
from tasuki.shared.errors import ConfigError
from tasuki.shared.settings import PREFIX, Settings
from tasuki.shared.web import access

# The Procfile ships inside the package (package data): `pip install .` gives a working `tasuki local`.
PROCFILE = resources.files("tasuki.local.cli").joinpath("Procfile")
SYSTEM = "system"
SIGNAL_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def process_environment(settings: Settings, environ: Mapping[str, str], log_format: str) -> dict[str, str]:
    """The environment of every process: this one's, plus every setting spelled out; log lines
    in `log_format` (they reach the terminal, if any, through this process)."""
    env = {k: v for k, v in environ.items() if not k.startswith(PREFIX)}
    values = settings.model_dump()
    values["data_dir"] = Path(settings.data_dir).resolve()
    values["log_format"] = log_format
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


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def check_ports_free(settings: Settings) -> None:
    for name in NAMES:
        port = getattr(settings, f"{name}_port")
        if _answers(settings.host, port):
            raise ConfigError(
                f"port {port} for {name} is in use (another `tasuki local`?); stop it or set TASUKI_{name.upper()}_PORT"
            )


@dataclass
class Child:
    name: str
    argv: list[str]
    colour: str
    process: subprocess.Popen[bytes] | None = None
    returncode: int | None = None
    relay: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    """Runs processes side by side, relays their output, and stops all of them when one ends or
    this process is told to stop."""

    def __init__(
        self, commands: Mapping[str, str], env: Mapping[str, str], *, kill_wait: float, output: IO[str] = sys.stdout
    ) -> None:
        colours = get_colours()
        self.children = [Child(name, shlex.split(command), next(colours)) for name, command in commands.items()]
        self.env = dict(env)
        self.kill_wait = kill_wait
        self.printer = Printer(output, width=max(len(SYSTEM), *(len(c.name) for c in self.children)))
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def say(self, text: str, name: str = SYSTEM, colour: str | None = None) -> None:
        with self._lock:
            self.printer.write(Message("line", text, datetime.datetime.now(), name, colour))

    def plain(self, text: str) -> None:
        with self._lock:
            print(text, file=self.printer.output, flush=True)

    def run(self) -> int:
        """Start every process; return once all have ended (the first one's code, or the signal's)."""
        handled = {s: signal.signal(s, self._on_signal) for s in SIGNAL_CODES}
        try:
            for child in self.children:
                self._start(child)
            self._wait()
        finally:
            for signum, previous in handled.items():
                signal.signal(signum, previous)
        return self.returncode or 0

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.events.put(("signal", signum))

    def _start(self, child: Child) -> None:
        try:
            child.process = subprocess.Popen(
                child.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                process_group=0,  # a group of its own: the terminal's Ctrl-C reaches only the supervisor
            )
        except OSError as exc:
            self.say(f"{child.name} could not start: {exc}\n")
            self.events.put(("ended", (child, 127)))
            return
        self.say(f"{child.name} started (pid={child.process.pid})\n")
        child.relay = threading.Thread(target=self._relay, args=(child,), name=f"relay-{child.name}", daemon=True)
        child.relay.start()

    def _relay(self, child: Child) -> None:
        assert child.process is not None and child.process.stdout is not None
        for line in iter(child.process.stdout.readline, b""):
            self.say(line.decode("utf-8", "replace"), child.name, child.colour)
        child.process.stdout.close()
        self.events.put(("ended", (child, child.process.wait())))

    def _wait(self) -> None:
        deadline: float | None = None
        while any(c.returncode is None for c in self.children):
            try:
                kind, value = self.events.get(timeout=0.2)
            except queue.Empty:
                kind, value = "", None
            if kind == "signal":
                self.say(f"{signal.Signals(value).name} received\n")
                if self.returncode is None:
                    self.returncode = SIGNAL_CODES[value]
            elif kind == "ended":
                child, code = value
                child.returncode = code  # recorded here, by the one thread that decides, so no ending goes unseen
                self.say(f"{child.name} stopped (rc={child.returncode})\n")
                if self.returncode is None:
                    self.returncode = child.returncode
            if kind and deadline is None:
                deadline = time.monotonic() + self.kill_wait
                self._send(signal.SIGTERM)
            if deadline is not None and time.monotonic() > deadline:
                self._send(signal.SIGKILL)
                deadline = float("inf")

    def _send(self, signum: signal.Signals) -> None:
        for child in self.children:
            if child.process is not None and child.returncode is None:
                self.say(f"sending {signum.name} to {child.name} (pid {child.process.pid})\n")
                try:
                    os.killpg(child.process.pid, signum)
                except ProcessLookupError:
                    pass  # it ended meanwhile


def _announce_when_ready(supervisor: Supervisor, settings: Settings, stop: threading.Event) -> None:
    ports = [getattr(settings, f"{name}_port") for name in NAMES]
    while not stop.is_set():
        if all(_answers(settings.host, port) for port in ports):
            supervisor.plain(ready_line(settings))
            return
        stop.wait(0.2)


def run(settings: Settings, environ: Mapping[str, str], *, without: tuple[str, ...] = ()) -> int:
    """Run every Procfile process but those named in `without` (the executor, when executors run
    on other hosts)."""
    access.check_configuration(settings)
    check_ports_free(settings)
    Broker(settings.amqp_url).declare(pools=(settings.executor_pool,))
    env = process_environment(settings, environ, logs.resolved(settings.log_format, sys.stdout))
    commands = {n: c for n, c in parse_procfile(PROCFILE.read_text()).processes.items() if n not in without}
    supervisor = Supervisor(commands, env, kill_wait=settings.stop_grace + 5)
    stop = threading.Event()
    threading.Thread(target=_announce_when_ready, args=(supervisor, settings, stop), daemon=True).start()
    try:
        return supervisor.run()
    finally:
        stop.set()
