"""The functions over HTTP: one as a FaaS platform serves it, or all of them in one process.

- `serve_function` (`tasuki serve FUNCTION`): one function under functions-framework's own
  server, gunicorn (a master and a worker process with threads), as Cloud Run and Cloud
  Functions run it. The benchmarks serve their handlers this way.
- `serve_functions` (`tasuki functions`, what `tasuki local` runs): every function in one process,
  each still its own HTTP endpoint on its own port (TASUKI_<FUNCTION>_PORT), on one waitress
  server whose `TASUKI_SERVER_THREADS` threads they share. No forked workers: one process of
  the stack instead of ten.

Either way each function is the same functions-framework app (`create_app(target, source)`),
so nothing a function does depends on how it is served, and each stays deployable on its own.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tasuki import functions
from tasuki.shared.settings import Settings

log = logging.getLogger("tasuki.functions")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Open connections the shared server keeps at once (keep-alive pushes of the bridge, browsers,
# git hosts); more wait in the listen backlog.
CONNECTIONS = 256


def app(name: str, source: Path | None = None) -> Any:
    """Function `name` as functions-framework makes it: a Flask app around the module's target.
    `source` is its module file, the installed `tasuki/functions/<name>.py` unless given."""
    from functions_framework import create_app

    return create_app(target=name, source=str(source or functions.source(name)))


def serve_function(name: str, host: str, port: int, source: Path | None = None) -> None:
    """Serve one function as functions-framework does in production (gunicorn, threads)."""
    from functions_framework._http.gunicorn import GunicornApplication

    # No control socket: several gunicorns on one machine would fight over its default path.
    # Gunicorn's own lines go through Tasuki's log set-up like every other line.
    GunicornApplication(
        app(name, source), host, port, False, control_socket_disable=True, logger_class=gunicorn_logs()
    ).run()


class ByPort:
    """One WSGI app in front of several: a request goes to the app of the port it came in on.

    SERVER_PORT is the port of the socket that accepted the connection, set by the server (no
    proxy headers are trusted), so a client cannot reach a function through another's port."""

    def __init__(self, apps: dict[int, WSGIApp]) -> None:
        self.apps = apps

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = self.apps.get(int(environ.get("SERVER_PORT") or 0))
        if target is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no function on this port\n"]
        return target(environ, start_response)


def listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def body_limit(settings: Settings) -> int:
    """The largest request body the shared server takes: the largest any function reads, a push
    (`Settings.max_push_bytes`: a message can carry a webhook's whole payload, base64-encoded).
    The ingress and the pushed-to functions enforce their exact limits themselves."""
    return settings.max_push_bytes


def serve_functions(settings: Settings, names: Iterable[str] = functions.NAMES) -> None:
    """Serve every function in this process, each on its own port, until SIGTERM or Ctrl-C."""
    import waitress

    ports = {name: getattr(settings, f"{name}_port") for name in names}
    server = waitress.create_server(
        ByPort({port: app(name) for name, port in ports.items()}),
        listen=" ".join(listen_address(settings.host, port) for port in ports.values()),
        threads=settings.server_threads,
        connection_limit=CONNECTIONS,
        max_request_body_size=body_limit(settings),
        asyncore_use_poll=True,
        ident="tasuki",
    )

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(0)  # waitress closes its sockets and lets running requests end

    signal.signal(signal.SIGTERM, stop)
    for name, port in ports.items():
        log.info("serving %s at http://%s/", name, listen_address(settings.host, port))
    server.run()
    log.info("stopped serving")


def gunicorn_logs() -> type:
    """Gunicorn's logger class whose error log goes to the root logger (shared.logs formats it)."""
    from gunicorn.glogging import Logger

    class Logs(Logger):
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers[:]:
                self.error_log.removeHandler(handler)
            self.error_log.propagate = True

    return Logs
