"""The Docker engine, as the executor uses it: few calls, all docker errors translated.

The lifecycle of one job container (as woodpecker's backend documents it):
make sure the image is there -> create -> start -> tail the log -> wait (kill on timeout or
cancel) -> inspect (exit code, out of memory) -> remove. `Docker` opens its client lazily.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import requests

from shared.errors import DockerUnavailable, ImageMissing, JobError

log = logging.getLogger("tasuki.docker")


@dataclass
class Exit:
    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False
    oom_killed: bool = False


class Docker:
    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = docker.from_env(version="auto", timeout=120)
            except docker.errors.DockerException as exc:
                raise DockerUnavailable(
                    f"cannot reach the Docker engine ({exc}); is dockerd running? (`docker info`)"
                ) from None
        return self._client

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (requests.ConnectionError, docker.errors.DockerException) as exc:
            if isinstance(exc, docker.errors.APIError) and exc.status_code and exc.status_code < 500:
                raise JobError(f"Docker refused to {what}: {exc.explanation or exc}") from None
            raise DockerUnavailable(f"Docker engine failed to {what}: {exc}") from None

    def ping(self) -> None:
        self._call("answer a ping", self.client.ping)

    def ensure_image(self, image: str) -> None:
        try:
            self.client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        except (requests.ConnectionError, docker.errors.DockerException) as exc:
            raise DockerUnavailable(f"cannot reach the Docker engine to look up {image}: {exc}") from None
        try:
            log.info("pulling %s", image)
            self.client.images.pull(image)
        except (requests.ConnectionError, docker.errors.DockerException) as exc:
            reason = getattr(exc, "explanation", None) or str(exc)
            raise ImageMissing(
                f"image {image} is not on this Docker engine and could not be pulled ({reason}); "
                f"build or load it on the executor host (docker build / docker load), or use an "
                f"image a reachable registry has"
            ) from None

    def run(
        self,
        config: dict[str, Any],
        *,
        timeout: float,
        on_output: Callable[[bytes], None],
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Exit:
        """Create, start, stream output, wait; kill on timeout or cancel; always remove."""
        container = self._call("create the container", lambda: self.client.containers.create(**config))
        try:
            self._call("start the container", container.start)
            tail = threading.Thread(target=self._tail, args=(container, on_output), daemon=True)
            tail.start()
            done = threading.Event()
            result: dict[str, Any] = {}

            def wait() -> None:
                try:
                    result.update(container.wait())
                except Exception as exc:  # reported below as the engine failing
                    result["error"] = exc
                finally:
                    done.set()

            threading.Thread(target=wait, daemon=True).start()
            deadline = time.monotonic() + timeout
            timed_out = was_cancelled = False
            while not done.wait(0.5):
                if time.monotonic() > deadline:
                    timed_out = True
                elif cancelled():
                    was_cancelled = True
                else:
                    continue
                self._kill(container)
                done.wait(30)
                break
            tail.join(30)
            if "error" in result and not (timed_out or was_cancelled):
                raise DockerUnavailable(f"lost the container while waiting for it: {result['error']}")
            state = self._call("inspect the container", lambda: self.client.api.inspect_container(container.id))
            return Exit(
                exit_code=result.get("StatusCode", state["State"].get("ExitCode")),
                timed_out=timed_out,
                cancelled=was_cancelled,
                oom_killed=bool(state["State"].get("OOMKilled")),
            )
        finally:
            self.remove(container.id)

    @staticmethod
    def _tail(container: Any, on_output: Callable[[bytes], None]) -> None:
        try:
            for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                on_output(chunk)
        except Exception as exc:  # the log ends with the container; say why if it ended early
            on_output(f"\n[tasuki] log stream ended: {exc}\n".encode())

    def _kill(self, container: Any) -> None:
        try:
            container.kill()
        except docker.errors.APIError:
            pass  # already stopped

    def remove(self, container_id: str) -> None:
        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except (requests.ConnectionError, docker.errors.DockerException) as exc:
            log.warning("could not remove container %s: %s", container_id[:12], exc)

    def containers_labelled(self, label: str, value: str | None = None) -> list[Any]:
        wanted = f"{label}={value}" if value is not None else label
        return self._call(
            "list containers", lambda: self.client.containers.list(all=True, filters={"label": wanted})
        )
