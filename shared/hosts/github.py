"""GitHub (and GitHub Enterprise): `X-GitHub-Event` names the event, `X-Hub-Signature-256` signs
the body.

Webhooks:

    push            one Event: kind push for refs/heads/*, tag for refs/tags/*; a created ref
                    has before "", a deleted one after ""; for an annotated tag, after is the
                    tagged commit (`head_commit`), not the tag object
    pull_request    kind pull_request for the actions opened, synchronize (action updated),
                    reopened and closed (action closed, or merged when it was merged)
    ping            answered "pong" (after the signature check when the repository has a
                    secret, so that GitHub's test delivery proves the secret), not published

Every other event (create, delete, workflow_dispatch, ...) and pull-request action (edited,
labeled, ...) is answered "ignored". Routing keys: `github.push`, `github.pull_request.opened`.
`X-GitHub-Delivery` is the same when a delivery is redelivered, so it is the dedupe key.

Commit statuses, with a token (Bearer); a 403 with `X-RateLimit-Remaining: 0` is the rate limit
(retry later), not a refusal:

    POST {api}/repos/{owner}/{repo}/statuses/{sha}
    {state: pending|success|failure|error, context, target_url, description}

Clones over HTTPS: the token as `x-access-token` (what GitHub App installation tokens need).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasuki.shared.errors import WebhookError
from tasuki.shared.hosts.common import (
    api_headers,
    bearer,
    digest,
    get,
    items,
    login,
    number,
    outcome,
    person,
    sha,
    text,
    verify_hmac,
)
from tasuki.shared.hosts.protocol import CommitStatus, Outcome, StatusAnswer, StatusRequest, Unpublished
from tasuki.shared.messages import Commit, Event, PullRequest, Ref, Repository
from tasuki.shared.registry import RepositoryConfig

HOST = "github"
EVENT_HEADER = "X-GitHub-Event"
SIGNATURE_HEADER = "X-Hub-Signature-256"
DELIVERY_HEADER = "X-GitHub-Delivery"
PULL_REQUEST_ACTIONS = ("opened", "synchronize", "reopened", "closed")
# GitHub lists at most this many commits in a push; a push with more is cut.
MAX_COMMITS = 2048


# Tasuki's statuses as GitHub's commit states.
STATES = {
    "pending": "pending",
    "queued": "pending",
    "running": "pending",
    "success": "success",
    "skipped": "success",
    "failure": "failure",
    "timeout": "failure",
    "error": "error",
    "cancelled": "error",
}


class GitHub:
    name = HOST
    title = "GitHub"
    event_header = EVENT_HEADER
    api_url = "https://api.github.com"

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        given = headers.get(DELIVERY_HEADER)
        return f"github:{given}" if given else f"github:{digest(headers.get(EVENT_HEADER, ''), body)}"

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str) -> None:
        verify_hmac(headers, SIGNATURE_HEADER, body, secret)

    def repository_name(self, payload: Mapping[str, Any]) -> str | None:
        return text(payload, "repository", "full_name") or None

    def parse(self, event_name: str, payload: Mapping[str, Any], delivery: str) -> list[Event] | Unpublished:
        if event_name == "ping":
            return Unpublished("pong", text(payload, "zen") or "GitHub says hello")
        if event_name == "push":
            return _push(payload, delivery)
        if event_name == "pull_request":
            action = text(payload, "action")
            if action in PULL_REQUEST_ACTIONS:
                return [_pull_request(action, payload, delivery)]
            return Unpublished("ignored", f"Tasuki does not act on pull requests being {action or '(no action)'}")
        return Unpublished("ignored", f"Tasuki does not act on GitHub {event_name} events")

    def status_request(self, status: CommitStatus, api_url: str, credentials: RepositoryConfig) -> StatusRequest:
        body = {
            "state": STATES[status.state],
            "context": status.name,
            "target_url": status.url,
            "description": status.description,
        }
        url = f"{api_url}/repos/{status.repository}/statuses/{status.commit}"
        headers = api_headers(bearer(credentials.token), accept="application/vnd.github+json")
        return StatusRequest("POST", url, headers, body)

    def status_outcome(self, answer: StatusAnswer) -> Outcome:
        if answer.code == 403 and answer.headers.get("X-RateLimit-Remaining") == "0":
            return "retry"  # the rate limit is used up until it resets
        return outcome(answer)

    def clone_login(self, credentials: RepositoryConfig) -> tuple[str, str] | None:
        return login(credentials, "x-access-token")


def _repository(payload: Mapping[str, Any], what: str) -> Repository:
    name = text(payload, "repository", "full_name", required=what)
    return Repository(
        full_name=name,
        clone_url=text(payload, "repository", "clone_url") or f"https://github.com/{name}.git",
        web_url=text(payload, "repository", "html_url") or f"https://github.com/{name}",
        default_branch=text(payload, "repository", "default_branch"),
    )


def _actor(payload: Mapping[str, Any]) -> str:
    return text(payload, "sender", "login") or text(payload, "pusher", "name")


def _commit(data: Mapping[str, Any]) -> Commit:
    author = person(text(data, "author", "name"), text(data, "author", "email"))
    return Commit(id=text(data, "id"), message=text(data, "message"), author=author)


def _push(payload: Mapping[str, Any], delivery: str) -> list[Event] | Unpublished:
    ref = text(payload, "ref", required="push")
    if ref.startswith("refs/heads/"):
        kind, name = "push", ref.removeprefix("refs/heads/")
    elif ref.startswith("refs/tags/"):
        kind, name = "tag", ref.removeprefix("refs/tags/")
    else:
        return Unpublished("ignored", f"the push changed {ref}, which is neither a branch nor a tag")
    repository = _repository(payload, "push")
    after = sha(text(payload, "after"))
    if after:  # the commit, which for an annotated tag is not `after` (the tag object)
        after = text(payload, "head_commit", "id") or after
    commits = [_commit(c) for c in items(payload, "commits")]
    return [
        Event(
            host=HOST,
            event="push",
            kind=kind,
            delivery_id=delivery,
            repository=repository,
            ref=Ref(kind="tag" if kind == "tag" else "branch", name=name),
            before=sha(text(payload, "before")),
            after=after,
            actor=_actor(payload),
            commits=commits,
            forced=get(payload, "forced") is True,
            truncated=len(commits) >= MAX_COMMITS,
            payload=dict(payload),
        )
    ]


def _pull_request(action: str, payload: Mapping[str, Any], delivery: str) -> Event:
    what = f"pull_request {action}"
    pr = get(payload, "pull_request")
    if not isinstance(pr, dict):
        raise WebhookError(400, f"expected a pull_request object in a {what} delivery")
    merged = get(pr, "merged") is True
    state = "merged" if merged else ("closed" if text(pr, "state") == "closed" else "open")
    normalised = {"synchronize": "updated", "closed": "merged" if merged else "closed"}.get(action, action)
    source_branch = text(pr, "head", "ref", required=what)
    source_commit = text(pr, "head", "sha", required=what)
    return Event(
        host=HOST,
        event=f"pull_request.{action}",
        kind="pull_request",
        delivery_id=delivery,
        repository=_repository(payload, what),
        ref=Ref(kind="branch", name=source_branch),
        before=sha(text(payload, "before")),  # synchronize: the head before the new commits
        after=source_commit,
        actor=_actor(payload),
        pull_request=PullRequest(
            number=number(pr, "number", required=what),
            title=text(pr, "title"),
            state=state,
            source_branch=source_branch,
            source_commit=source_commit,
            target_branch=text(pr, "base", "ref", required=what),
            target_commit=text(pr, "base", "sha"),
            action=normalised,
            url=text(pr, "html_url"),
            source_repository=text(pr, "head", "repo", "full_name"),
        ),
        payload=dict(payload),
    )
