"""The Docker engine, as Tasuki uses it: few calls, every docker error translated.

The lifecycle of one job container (as woodpecker's backend documents it):
create (pull the image first if the engine lacks it) -> attach -> start -> stream the output ->
wait (kill on timeout, cancel or shutdown) -> inspect (out of memory?) -> remove, always.
Attaching before the start is what `docker run` does: no output is missed, and the engine
writes no log file, since the output flows straight to the reader (and waits for it: a job that
prints faster than Tasuki stores is slowed down, never buffered without bound).

`Docker` speaks the Engine API through docker-py's low-level client, opened on first use; the
calls of a container's lifecycle go the lean way (`local.executor.engine`) when the engine is
on a unix socket, with the same answers and errors.
Errors: the engine not answering is `DockerUnavailable`; an image it lacks and cannot pull is
`ImageMissing`; an executable it cannot start is `ExecutableMissing`; anything else it refuses
is a `JobError` with the engine's words.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import requests
from docker.utils import parse_repository_tag
from docker.utils.socket import frames_iter

from tasuki.local.executor.engine import SocketEngine
from tasuki.shared.errors import DockerUnavailable, ExecutableMissing, ImageMissing, JobError

log = logging.getLogger("tasuki.docker")

POLL = 0.1  # seconds between checks of the timeout and the cancel flag (and log ticks) while a job runs
_TRANSPORT = (
    requests.ConnectionError,
    requests.Timeout,
    docker.errors.DockerException,
    OSError,
    http.client.HTTPException,
)


@dataclass
class Exit:
    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False
    oom_killed: bool = False


class Docker:
    def __init__(self, base_url: str = "", *, timeout: float = 120) -> None:
        """`base_url` like unix:///var/run/docker.sock or tcp://host:2375; empty: DOCKER_HOST or
        the engine's default socket, as the docker command line finds it."""
        self.base_url = base_url
        self.timeout = timeout
        self._api: Any = None
        self._lifecycle: Any = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return self.base_url or "the default socket (DOCKER_HOST)"

    @property
    def api(self) -> Any:
        with self._lock:
            if self._api is None:
                try:
                    if self.base_url:
                        self._api = docker.APIClient(base_url=self.base_url, version="auto", timeout=self.timeout)
                    else:
                        self._api = docker.from_env(version="auto", timeout=self.timeout).api
                except _TRANSPORT as exc:
                    raise self._unavailable(exc) from None
                if str(self._api.base_url).startswith("http+docker://"):
                    # A local socket: no proxy or .netrc applies, so requests need not look them
                    # up in the environment and the home folder on every call.
                    self._api.trust_env = False
            return self._api

    @property
    def lifecycle(self) -> Any:
        """Who makes the calls of a container's lifecycle: the lean socket path if the engine is
        on a unix socket, else docker-py's client (the same names, answers and errors)."""
        if self._lifecycle is None:
            api = self.api
            self._lifecycle = SocketEngine.beside(api) or api
        return self._lifecycle

    def _unavailable(self, exc: BaseException) -> DockerUnavailable:
        return DockerUnavailable(
            f"cannot reach the Docker engine at {self.where} ({_words(exc)}); is dockerd running, "
            f"and may this user use it? (`docker info` says)"
        )

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except docker.errors.ImageNotFound as exc:
            raise ImageMissing(_words(exc)) from None
        except docker.errors.APIError as exc:
            if exc.status_code is None:
                raise self._unavailable(exc) from None
            raise JobError(f"Docker refused to {what}: {_words(exc)}") from None
        except _TRANSPORT as exc:
            raise self._unavailable(exc) from None

    def ping(self) -> None:
        self._call("answer a ping", self.api.ping)

    # -- images -----------------------------------------------------------------------------------

    def pull(self, image: str) -> None:
        repository, tag = parse_repository_tag(image)
        log.info("pulling %s", image)
        try:
            self.api.pull(repository, tag=tag or "latest")
        except docker.errors.APIError as exc:
            raise ImageMissing(_missing(image, _words(exc))) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ImageMissing(_missing(image, _words(exc))) from None

    def create(self, config: dict[str, Any]) -> str:
        """Create a container from an Engine API body; pull its image once if the engine lacks it."""
        api = self.lifecycle

        def create() -> str:
            return self._call("create the container", lambda: api.create_container_from_config(config))["Id"]

        try:
            return create()
        except ImageMissing:
            self.pull(config["Image"])
        try:
            return create()
        except ImageMissing:
            raise ImageMissing(_missing(config["Image"], "the pull did not bring it")) from None

    # -- one container, start to end ----------------------------------------------------------------

    def run(
        self,
        config: dict[str, Any],
        *,
        timeout: float,
        on_output: Callable[[bytes], None],
        cancelled: Callable[[], bool] = lambda: False,
        on_tick: Callable[[], None] = lambda: None,
    ) -> Exit:
        """Create, attach, start, stream, wait; kill on timeout or cancel; always remove."""
        container = self.create(config)
        try:
            return self._follow(container, config, timeout, on_output, cancelled, on_tick)
        finally:
            self.remove(container)

    def _follow(
        self,
        container: str,
        config: dict[str, Any],
        timeout: float,
        on_output: Callable[[bytes], None],
        cancelled: Callable[[], bool],
        on_tick: Callable[[], None],
    ) -> Exit:
        api = self.lifecycle
        sock = self._call(
            "attach to the container",
            lambda: api.attach_socket(container, params={"stdout": 1, "stderr": 1, "stream": 1}),
        )
        closing = threading.Event()  # set when Tasuki itself ends the stream: not worth a log line
        tail = threading.Thread(
            target=_tail, args=(sock, on_output, closing), daemon=True, name=f"tail-{container[:12]}"
        )
        tail.start()
        try:
            self._start(container, config)
        except BaseException:
            closing.set()
            _close(sock)
            raise
        done = threading.Event()
        result: dict[str, Any] = {}

        def wait() -> None:
            try:
                result.update(api.wait(container))
            except Exception as exc:  # reported below as the engine failing
                result["error"] = exc
            finally:
                done.set()

        threading.Thread(target=wait, daemon=True, name=f"wait-{container[:12]}").start()
        deadline = time.monotonic() + timeout
        timed_out = was_cancelled = False
        while not done.wait(POLL):
            on_tick()
            if time.monotonic() > deadline:
                timed_out = True
            elif cancelled():
                was_cancelled = True
            else:
                continue
            self.kill(container)
            done.wait(60)
            break
        tail.join(30)
        if tail.is_alive():  # the stream should end with the container; do not hang on it
            closing.set()
            _close(sock)
            tail.join(5)
        if "error" in result and not (timed_out or was_cancelled):
            raise self._unavailable(result["error"])
        code = result.get("StatusCode")
        if code == 0 and not (timed_out or was_cancelled):
            return Exit(exit_code=0)  # nothing more to know: skip a round trip
        state = self._call("inspect the container", lambda: api.inspect_container(container))["State"]
        return Exit(
            exit_code=state.get("ExitCode") if code is None else code,
            timed_out=timed_out,
            cancelled=was_cancelled,
            oom_killed=bool(state.get("OOMKilled")),
        )

    def _start(self, container: str, config: dict[str, Any]) -> None:
        try:
            self.lifecycle.start(container)
        except docker.errors.APIError as exc:
            words = _words(exc)
            entrypoint = " ".join(config.get("Entrypoint") or [])
            if exc.status_code is not None and entrypoint and ("exec" in words or "permission denied" in words):
                raise ExecutableMissing(
                    f"the image {config['Image']} cannot execute {entrypoint} ({words}); if it is a "
                    f"script, its first line (#!) must name an interpreter that this image has"
                ) from None
            if exc.status_code is None:
                raise self._unavailable(exc) from None
            raise JobError(f"Docker could not start the container: {words}") from None
        except _TRANSPORT as exc:
            raise self._unavailable(exc) from None

    def kill(self, container: str) -> None:
        try:
            self.lifecycle.kill(container)
        except docker.errors.APIError:
            pass  # it stopped already
        except _TRANSPORT as exc:
            log.warning("could not kill container %s: %s", container[:12], exc)

    def remove(self, container: str) -> None:
        try:
            self.lifecycle.remove_container(container, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.APIError, *_TRANSPORT) as exc:
            log.warning("could not remove container %s: %s", container[:12], exc)

    # -- beside a job: service containers and their network (`local.executor.services`) ---------

    def start(self, container: str) -> None:
        self._call("start the container", lambda: self.lifecycle.start(container))

    def state(self, container: str) -> dict[str, Any]:
        """The container's State (Running, ExitCode, ...)."""
        return self._call("inspect the container", lambda: self.lifecycle.inspect_container(container))["State"]

    def execute(self, container: str, argv: list[str]) -> int | None:
        """Run `argv` inside a running container (no shell), its output dropped: the exit code."""
        api = self.api
        made = self._call("run a command in the container", lambda: api.exec_create(container, argv))
        self._call("run a command in the container", lambda: api.exec_start(made["Id"]))
        return self._call("inspect the command", lambda: api.exec_inspect(made["Id"])).get("ExitCode")

    def output(self, container: str, limit: int) -> bytes:
        """The container's output so far (its last `limit` bytes), stdout and stderr together."""
        data = self._call("read the container's output", lambda: self.api.logs(container, stdout=True, stderr=True))
        return data[-limit:] if isinstance(data, bytes) else b""

    def create_network(self, name: str, labels: dict[str, str]) -> str:
        made = self._call("create a network", lambda: self.api.create_network(name, driver="bridge", labels=labels))
        return made["Id"]

    def remove_network(self, network: str) -> None:
        try:
            self.api.remove_network(network)
        except docker.errors.NotFound:
            pass
        except (docker.errors.APIError, *_TRANSPORT) as exc:
            log.warning("could not remove network %s: %s", network[:12], exc)

    def networks_labelled(self, label: str, value: str | None = None) -> list[dict[str, Any]]:
        """Every network with this label; dicts with Id, Name, Labels."""
        wanted = f"{label}={value}" if value is not None else label
        return self._call("list networks", lambda: self.api.networks(filters={"label": wanted}))

    def containers_labelled(self, label: str, value: str | None = None) -> list[dict[str, Any]]:
        """Every container (running or not) with this label; dicts with Id, Labels, State."""
        wanted = f"{label}={value}" if value is not None else label
        return self._call("list containers", lambda: self.api.containers(all=True, filters={"label": wanted}))


def _tail(sock: Any, on_output: Callable[[bytes], None], closing: threading.Event) -> None:
    try:
        for _stream, data in frames_iter(sock, False):
            on_output(data)
    except Exception as exc:  # the stream ends with the container; say why if it ended early
        if not closing.is_set():
            on_output(f"\n[tasuki] the output stream ended early: {_words(exc)}\n".encode())
    finally:
        _close(sock)


def _close(sock: Any) -> None:
    try:
        sock.close()
    except Exception:
        pass


def _words(exc: BaseException) -> str:
    words = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
    return words.decode("utf-8", "replace") if isinstance(words, bytes) else str(words)


def _missing(image: str, why: str) -> str:
    return (
        f"image {image} is not on this Docker engine and could not be pulled ({why}); build or load "
        f"it on the executor host (docker build / docker load), or name an image a reachable "
        f"registry has"
    )
