"""Tasuki's own exceptions: every library error is translated into one of these at the boundary.

Domain code never sees a pika, docker, sqlite3, yaml or msgpack exception. The tree:

    TasukiError
    ├── ConfigError              a setting or a configuration file is invalid
    │   ├── FilterError          a subscription filter does not parse; carries the position
    │   └── SealError            a sealed value cannot be opened (another TASUKI_ORDER_KEY?)
    ├── DecodeError              a message body is not what its model expects
    ├── BrokerError
    │   ├── BrokerUnavailable    RabbitMQ cannot be reached (or the connection dropped)
    │   └── PublishRefused       the broker nacked the publish, or no queue was bound to take it
    ├── StoreError               the store could not read or write
    ├── FlowFileError            `.tasuki.yml` is missing or invalid (says file, line and job)
    ├── WebhookError             a delivery that cannot be accepted; carries the HTTP status
    ├── AuthError                a push request without a valid bearer token
    └── JobError                 a job could not run; `reason` is a short machine-readable word
        ├── CheckoutFailed
        ├── ImageMissing
        ├── ExecutableMissing
        └── DockerUnavailable

Messages say what was expected and what was found.
"""

from __future__ import annotations

from pydantic import ValidationError


class TasukiError(Exception):
    """Base of every error Tasuki raises on purpose."""


class ConfigError(TasukiError):
    """A setting (named in the message) has an invalid value."""


class FilterError(ConfigError):
    """A subscription filter is not valid Pub/Sub filter syntax; `position` is 0-based."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


class SealError(ConfigError):
    """A sealed value cannot be opened with this key, or the key itself is unusable."""


class DecodeError(TasukiError):
    """A message body could not be decoded into the expected model."""


class BrokerError(TasukiError):
    """Something went wrong talking to RabbitMQ."""


class BrokerUnavailable(BrokerError):
    """RabbitMQ could not be reached or the connection was lost."""


class PublishRefused(BrokerError):
    """The broker did not take responsibility for a message (nack, or unroutable)."""


class StoreError(TasukiError):
    """The store failed to read or write."""


class FlowFileError(TasukiError):
    """The flow file is missing or invalid."""


class WebhookError(TasukiError):
    """A webhook delivery that cannot be accepted, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AuthError(TasukiError):
    """A push request came without a valid bearer token."""


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
