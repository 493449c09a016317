"""`GitHost`: everything Tasuki knows about one git host, and the data it speaks in.

A host is read three ways, each by generic code that knows no host by name:

    webhooks     shared/webhooks.py      event_header finds the host of a delivery; then
                                         repository_name, verify, delivery_id, parse
    statuses     shared/statuses.py      status_request (the host's HTTP request for a commit
                 (the reporter)          status), status_outcome (what its answer means)
    clones       local/executor/         clone_login (the user and password git presents over
                 checkout.py             HTTPS, from the repository's registry credentials)

Implementations are pure: no I/O, no clock. Every method is given what the host sent or what
it needs, and answers with data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from tasuki.shared.messages import Event
from tasuki.shared.registry import RepositoryConfig


@dataclass(frozen=True)
class Unpublished:
    """A delivery that is answered but not published: an event Tasuki does not act on
    (`status="ignored"`), or a host's hello (`status="pong"`)."""

    status: str
    reason: str


@dataclass(frozen=True)
class CommitStatus:
    """What Tasuki tells a host about one run or job, in Tasuki's words (`statuses.status_for`)."""

    host: str
    repository: str  # full name, e.g. acme/api or group/sub/project
    commit: str
    key: str  # stable per rule and job: a later status with the same key replaces the earlier
    name: str
    state: str  # Tasuki's status: queued, running, success, failure, error, timeout, cancelled, skipped
    url: str
    description: str
    refname: str = ""


@dataclass(frozen=True)
class StatusRequest:
    """The HTTP request that sets a commit status on a host."""

    method: str
    url: str
    headers: dict[str, str]
    json: dict[str, Any]


@dataclass(frozen=True)
class StatusAnswer:
    """The host's answer to a `StatusRequest`."""

    code: int
    headers: Mapping[str, str]  # case-insensitive
    text: str


# What a host's answer to a status means: done; a failure that may pass (retry later); a
# refusal for good (retrying cannot help).
Outcome = Literal["done", "retry", "refused"]


@runtime_checkable
class GitHost(Protocol):
    # "github": `Event.host`, the first word of the host's routing keys, and the NAME of
    # TASUKI_<NAME>_API_URL where settings have one.
    name: str
    # "GitHub", for people.
    title: str
    # The header that names a delivery's event; its presence tells which host sent it.
    event_header: str
    # The public API that commit statuses go to, unless settings name another (an Enterprise
    # or self-hosted server).
    api_url: str

    # -- webhooks ---------------------------------------------------------------------------------

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        """The host's id for this delivery (the dedupe key), the same when it is sent again."""
        ...

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str) -> None:
        """`WebhookError(401)` unless the delivery is signed with (or carries) `secret`."""
        ...

    def repository_name(self, payload: Mapping[str, Any]) -> str | None:
        """The repository's full name, to find its secret; None when the delivery names none."""
        ...

    def parse(self, event_name: str, payload: Mapping[str, Any], delivery: str) -> list[Event] | Unpublished:
        """The normalised events (one per pushed ref), or why the delivery is not published.
        A payload not shaped as its event requires raises `WebhookError(400)`."""
        ...

    # -- commit statuses --------------------------------------------------------------------------

    def status_request(self, status: CommitStatus, api_url: str, credentials: RepositoryConfig) -> StatusRequest:
        """The request that sets `status` through the API at `api_url`, authenticated with the
        repository's registry credentials."""
        ...

    def status_outcome(self, answer: StatusAnswer) -> Outcome:
        """What the host's answer to a status request means."""
        ...

    # -- clones -----------------------------------------------------------------------------------

    def clone_login(self, credentials: RepositoryConfig) -> tuple[str, str] | None:
        """The user and password git presents to clone over HTTPS; None when the credentials
        hold nothing to clone with."""
        ...
