"""Tasuki's own exceptions: every library error is translated into one of these at the boundary.

Domain code never sees a pika, docker, sqlite3, yaml, msgpack or requests exception. The tree,
with the HTTP status each class answers with (`http_status`; "own" is the status it carries):

    TasukiError                                                                           500
    ├── ConfigError              a setting or a configuration file is invalid             500
    │   ├── FilterError          a subscription filter does not parse; carries the position
    │   ├── SealError            a sealed value cannot be opened (another TASUKI_ORDER_KEY?)
    │   └── ScheduleError        a rule's schedule is neither a cron expression nor a phrase
    ├── DecodeError              a message body is not what its model expects             400
    ├── BrokerError                                                                       503
    │   ├── BrokerUnavailable    RabbitMQ cannot be reached (or the connection dropped)
    │   └── PublishRefused       the broker nacked the publish, or no queue was bound to take it
    ├── StoreError               the store could not read or write                        503
    ├── FlowFileError            `.tasuki.yml` is missing or invalid (says file, line and job)
    ├── ParamError               a manual run's parameter is not what the flow file       422
    │                            declares (names the parameter)
    ├── WebhookError             a delivery that cannot be accepted                       own
    ├── AuthError                a push request without a valid bearer token              401
    ├── BodyTooLarge             a request body over its limit (read no further)          413
    ├── ActionError              what the page or the API was asked cannot be done        own
    │   └── NoSuchLetter         the dead letter to replay is not in the queue            404
    ├── HostUnavailable          a git host's API failed in a way that may pass (5xx,     503
    │                            rate limit, timeout); carries the host's Retry-After
    ├── HostRefused              a git host's API refused a commit status for good        502
    │   │                        (bad token, unknown commit, a redirect elsewhere)
    │   └── StatusNotSent        Tasuki would not send it: a commit id that is not one,
    │                            or a URL that leaves the host's configured API
    ├── DeployError              a step of `tasuki deploy` failed (AWS refused it, or the
    │                            dependencies layer could not be installed)
    └── JobError                 a job could not run; `reason` is a short machine-readable word
        ├── CheckoutFailed
        ├── ImageMissing
        ├── ExecutableMissing
        └── DockerUnavailable

A subclass answers as its parent unless the drawing says otherwise. `http_status` is the one
place errors meet HTTP: the functions' `answers.translated` and the web page's `web.site.handle`
both answer with it (as JSON, or as the page's error page). Messages say what was expected and
what was found.
"""

from __future__ import annotations

from pydantic import ValidationError


class TasukiError(Exception):
    """Base of every error Tasuki raises on purpose."""

    # The HTTP status of an answer to a request that failed with this error: a Tasuki error
    # that says nothing more specific is Tasuki's own fault.
    http_status = 500


class ConfigError(TasukiError):
    """A setting (named in the message) has an invalid value."""


class FilterError(ConfigError):
    """A subscription filter is not valid Pub/Sub filter syntax; `position` is 0-based."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


class SealError(ConfigError):
    """A sealed value cannot be opened with this key, or the key itself is unusable."""


class ScheduleError(ConfigError):
    """A rule's schedule is neither a cron expression nor one of the phrases (shared/schedules.py)."""


class DecodeError(TasukiError):
    """A message body could not be decoded into the expected model."""

    http_status = 400


class BrokerError(TasukiError):
    """Something went wrong talking to RabbitMQ (the caller retries: the git host, or the bridge)."""

    http_status = 503


class BrokerUnavailable(BrokerError):
    """RabbitMQ could not be reached or the connection was lost."""


class PublishRefused(BrokerError):
    """The broker did not take responsibility for a message (nack, or unroutable)."""


class StoreError(TasukiError):
    """The store failed to read or write (the caller retries)."""

    http_status = 503


class FlowFileError(TasukiError):
    """The flow file is missing or invalid."""


class ParamError(TasukiError):
    """A manual run's parameter is unknown, missing, or outside its declared type or choices."""

    http_status = 422


class WebhookError(TasukiError):
    """A webhook delivery that cannot be accepted, with the HTTP status to answer."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status


class AuthError(TasukiError):
    """A push request came without a valid bearer token."""

    http_status = 401


class BodyTooLarge(TasukiError):
    """A request's body is over its limit; the rest of it was not read."""

    http_status = 413


class ActionError(TasukiError):
    """What the web page or the API was asked cannot be done (no such run, a rule that exists
    already, input that is not valid), with the HTTP status to answer (a 4xx)."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status


class NoSuchLetter(ActionError):
    """The dead letter asked for is not in the queue (or does not say where to replay it)."""

    http_status = 404

    def __init__(self, message: str) -> None:
        super().__init__(self.http_status, message)


class HostUnavailable(TasukiError):
    """A git host's API failed in a way that may pass (5xx, rate limit, timeout): retry later,
    after `retry_after` seconds when the host said."""

    http_status = 503

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HostRefused(TasukiError):
    """A git host's API refused a commit status for good (bad token, unknown commit): retrying
    cannot help."""

    http_status = 502


class StatusNotSent(HostRefused):
    """A commit status Tasuki refuses to send: its commit is not a commit id, or its request would
    leave the host's configured API (the repository's credential goes nowhere else)."""


class DeployError(TasukiError):
    """A step of a deploy failed (AWS refused it, or the layer could not be installed); the
    message names the step."""


class JobError(TasukiError):
    """A job could not be run. `reason` names the kind of failure for people and machines."""

    reason = "error"


class CheckoutFailed(JobError):
    reason = "checkout-failed"


class ImageMissing(JobError):
    reason = "image-missing"


class ExecutableMissing(JobError):
    reason = "executable-missing"


class DockerUnavailable(JobError):
    reason = "docker-unavailable"


def first_problem(exc: ValidationError) -> tuple[str, str]:
    """Where the first validation problem is (dotted path, "" for the whole) and what it is, in
    words a person can act on (pydantic's "Value error, " prefix dropped)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return where, str(first["msg"]).removeprefix("Value error, ")
