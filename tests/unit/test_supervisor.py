"""`tasuki local`'s supervisor with small stand-in processes: output relayed with each process's
name, one process ending or a signal stops all of them, and what ignores SIGTERM is killed with
its whole process group. Also: the one shared server sends each port to its own function.

The stand-ins are child Python processes that print, sleep and exit: they reach for no service."""

from __future__ import annotations

import io
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from tasuki.local.cli.serving import ByPort, listen_address
from tasuki.local.cli.supervisor import Supervisor, process_environment
from tasuki.shared.settings import Settings


def python(code: str) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


SLEEPER = python("import time; print('up', flush=True); time.sleep(60)")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_one_process_ending_stops_the_others_and_its_code_is_returned():
    output = io.StringIO()
    supervisor = Supervisor(
        {"quick": python("print('hello'); raise SystemExit(3)"), "slow": SLEEPER},
        dict(os.environ),
        kill_wait=10,
        output=output,
    )
    assert supervisor.run() == 3
    lines = output.getvalue().splitlines()
    assert any(line.endswith("quick  | hello") for line in lines), lines
    assert any("sending SIGTERM to slow" in line for line in lines)
    assert any("slow stopped (rc=-15)" in line for line in lines)


def test_what_ignores_sigterm_is_killed_with_its_process_group_after_the_wait(tmp_path):
    # A process that ignores SIGTERM and has a child of its own (a job's git, say): both go.
    grandchild = tmp_path / "grandchild.pid"
    stubborn = python(
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(grandchild)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    output = io.StringIO()
    supervisor = Supervisor(
        # `quick` ends once `stubborn` ignores SIGTERM and its child runs
        {
            "stubborn": stubborn,
            "quick": python(f"import os, time\nwhile not os.path.exists({str(grandchild)!r}): time.sleep(0.05)"),
        },
        dict(os.environ),
        kill_wait=1,
        output=output,
    )
    assert supervisor.run() == 0  # the first to end was `quick`, with 0
    assert "sending SIGKILL to stubborn" in output.getvalue()
    pid = int(grandchild.read_text())
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


class SignalOnLine(io.StringIO):
    """An output that sends this process `signum` once a line containing `marker` is printed."""

    def __init__(self, marker: str, signum: int) -> None:
        super().__init__()
        self.marker, self.signum, self.sent = marker, signum, False

    def write(self, text: str) -> int:
        if self.marker in text and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)
        return super().write(text)


def test_a_signal_to_the_supervisor_stops_every_process():
    output = SignalOnLine("| up", signal.SIGTERM)
    supervisor = Supervisor({"one": SLEEPER, "two": SLEEPER}, dict(os.environ), kill_wait=10, output=output)
    assert supervisor.run() == 143
    text = output.getvalue()
    assert "SIGTERM received" in text
    assert "one stopped" in text and "two stopped" in text
    assert all(child.returncode is not None for child in supervisor.children)
    assert signal.getsignal(signal.SIGTERM) is not supervisor._on_signal  # its handlers are put back


def test_a_command_that_cannot_start_stops_the_rest():
    output = io.StringIO()
    supervisor = Supervisor(
        {"missing": "/nonexistent/tasuki-nothing", "slow": SLEEPER}, dict(os.environ), kill_wait=10, output=output
    )
    assert supervisor.run() == 127
    assert "missing could not start" in output.getvalue()


def test_every_process_gets_every_setting_and_the_log_format_it_is_told():
    env = process_environment(
        Settings(web_port=9000, log_format="auto"), {"HOME": "/root", "TASUKI_STRAY": "x"}, log_format="color"
    )
    assert env["TASUKI_WEB_PORT"] == "9000" and env["TASUKI_LOG_FORMAT"] == "color"
    assert "TASUKI_STRAY" not in env and env["HOME"] == "/root"
    assert Path(env["TASUKI_DATA_DIR"]).is_absolute()


def wsgi(app, port: int) -> tuple[str, bytes]:
    answered = []
    body = b"".join(app({"SERVER_PORT": str(port), "PATH_INFO": "/"}, lambda status, headers: answered.append(status)))
    return answered[0], body


def test_the_shared_server_sends_each_port_to_its_own_function():
    def named(name: str):
        def app(environ, start_response):
            start_response("200 OK", [])
            return [name.encode()]

        return app

    app = ByPort({8080: named("ingress"), 8000: named("web")})
    assert wsgi(app, 8080) == ("200 OK", b"ingress")
    assert wsgi(app, 8000) == ("200 OK", b"web")
    assert wsgi(app, 8081)[0] == "404 Not Found"


def test_listen_addresses_bracket_ipv6_hosts():
    assert listen_address("127.0.0.1", 8000) == "127.0.0.1:8000"
    assert listen_address("::1", 8000) == "[::1]:8000"
