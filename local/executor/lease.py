"""A job's lease as its executor holds it: claim, grant, heartbeats, self-fencing.

    claim (job.started) --> granted: run the container   | refused: start nothing
                            no answer in time: the order goes back to the queue
    while it runs, from the job's own run loop: beat() sends a heartbeat every `timeout / 4`
    seconds; each granted answer renews the lease from the moment that heartbeat was sent.
    A refused answer (the run was cancelled, the attempt superseded) or no renewal for
    `timeout * 3 / 4` seconds (the dispatcher unreachable: it orders the job again after
    `timeout` from the last heartbeat it saw) stops the attempt: `stop_reason()` says why, and the
    executor kills the container before anyone else may start the job again.

Times are the executor's own monotonic clock, never compared with another host's. `publish` and
`clock` come from the caller, so this is tested without a broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tasuki.shared.errors import TasukiError
from tasuki.shared.messages import JobHeartbeat, JobStarted, LeaseAnswer, Message

log = logging.getLogger("tasuki.executor")

LOST = "lost: the dispatcher renewed no heartbeat in time; the job is ordered again elsewhere"


class Lease:
    def __init__(
        self,
        run_id: str,
        job: str,
        attempt: int,
        executor: str,
        *,
        timeout: float,
        publish: Callable[[Message], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id, self.job, self.attempt, self.executor = run_id, job, attempt, executor
        self.interval = timeout / 4
        self.fence = timeout * 3 / 4
        self._publish = publish
        self._clock = clock
        self._lock = threading.Lock()
        self._answered = threading.Event()
        self.granted: bool | None = None  # None until the claim is answered
        self.reason = ""  # why it was refused
        self._claimed = 0.0
        self._renewed = 0.0  # when the newest heartbeat that was granted was sent
        self._beat = 0.0

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.run_id, self.job, self.attempt)

    def claim(self) -> None:
        self._claimed = self._clock()
        self._publish(JobStarted(run_id=self.run_id, job=self.job, attempt=self.attempt, executor=self.executor))

    def wait(self, timeout: float) -> bool:
        """Wait for the claim's answer; False if none came within `timeout` seconds."""
        return self._answered.wait(timeout)

    def answer(self, answer: LeaseAnswer) -> None:
        with self._lock:
            if answer.granted:
                if self.granted is None:
                    self.granted, self._renewed, self._beat = True, self._claimed, self._claimed
                elif self.granted and answer.sent:
                    self._renewed = max(self._renewed, answer.sent)
            else:
                if self.granted is None:
                    self.granted = False
                self.reason = self.reason or answer.reason or "refused"
            self._answered.set()

    def beat(self) -> None:
        """Send a heartbeat if one is due (call it often, from the job's run loop)."""
        now = self._clock()
        if not self.granted or now - self._beat < self.interval:
            return
        self._beat = now
        try:
            self._publish(
                JobHeartbeat(run_id=self.run_id, job=self.job, attempt=self.attempt, executor=self.executor, sent=now)
            )
        except TasukiError as exc:  # not renewed: the fence decides
            log.warning("run %s job %s: heartbeat not sent: %s", self.run_id, self.job, exc)

    def stop_reason(self) -> str:
        """Why the attempt must stop now ("" while it may go on)."""
        with self._lock:
            if self.reason:
                return self.reason
            if self.granted and self._clock() - self._renewed > self.fence:
                return LOST
            return ""

    def release(self) -> None:
        """Give the job back (the executor is stopping): it is ordered again at once."""
        self._publish(
            JobHeartbeat(run_id=self.run_id, job=self.job, attempt=self.attempt, executor=self.executor, release=True)
        )
