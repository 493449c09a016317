"""GitLab (gitlab.com or self-hosted): `X-Gitlab-Event` names the event, `X-Gitlab-Token` carries
the secret.

Webhooks: GitLab does not sign deliveries: the token is the webhook's secret itself, compared in
constant time. The event's own name is the payload's `object_kind`:

    Push Hook            push            kind push (refs/heads/*); before "" for a new branch,
                                         after "" for a deleted one
    Tag Push Hook        tag_push        kind tag; after is the tagged commit (`checkout_sha`)
    Merge Request Hook   merge_request   kind pull_request for the actions open, reopen,
                                         update (only when it brought new commits: `oldrev`),
                                         close and merge; approvals and the like are ignored

A system hook (`X-Gitlab-Event: System Hook`) is read by its `object_kind` the same way.
Routing keys: `gitlab.push`, `gitlab.tag_push`, `gitlab.merge_request.open`, ...

Delivery ids: `Idempotency-Key` stays the same when GitLab retries or resends a delivery.
Older GitLab sends only `X-Gitlab-Event-UUID`, which recursive hooks share, so it is combined
with the body's digest (as is the per-webhook `X-Gitlab-Webhook-UUID` when nothing else is sent).

Commit statuses, with a token (`PRIVATE-TOKEN`); a 400 saying the status "cannot transition" is
the commit already having that state (a redelivered notice), which is done, not refused:

    POST {api}/projects/{url-encoded path}/statuses/{sha}
    {state: pending|running|success|failed|canceled|skipped, name, target_url, description, ref}

Clones over HTTPS: the token as `oauth2`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from tasuki.shared.errors import WebhookError
from tasuki.shared.hosts.common import (
    api_headers,
    digest,
    get,
    items,
    login,
    number,
    outcome,
    person,
    said,
    sha,
    text,
    verify_token,
)
from tasuki.shared.hosts.protocol import CommitStatus, Outcome, StatusAnswer, StatusRequest, Unpublished
from tasuki.shared.messages import Commit, Event, PullRequest, Ref, Repository
from tasuki.shared.registry import RepositoryConfig

HOST = "gitlab"
EVENT_HEADER = "X-Gitlab-Event"
TOKEN_HEADER = "X-Gitlab-Token"
HOOKS = {"Push Hook": "push", "Tag Push Hook": "tag_push", "Merge Request Hook": "merge_request"}
MERGE_REQUEST_ACTIONS = {
    "open": "opened",
    "reopen": "reopened",
    "update": "updated",
    "close": "closed",
    "merge": "merged",
}
MERGE_REQUEST_STATES = {"opened": "open", "merged": "merged", "closed": "closed", "locked": "closed"}


# Tasuki's statuses as GitLab's commit states.
STATES = {
    "pending": "pending",
    "queued": "pending",
    "running": "running",
    "success": "success",
    "skipped": "skipped",
    "failure": "failed",
    "error": "failed",
    "timeout": "failed",
    "cancelled": "canceled",
}


class GitLab:
    name = HOST
    title = "GitLab"
    event_header = EVENT_HEADER
    api_url = "https://gitlab.com/api/v4"

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        key = headers.get("Idempotency-Key")
        if key:
            return f"gitlab:{key}"
        event = headers.get("X-Gitlab-Event-UUID") or headers.get("X-Gitlab-Webhook-UUID", "")
        return f"gitlab:{event}:{digest(headers.get(EVENT_HEADER, ''), body)}"

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str) -> None:
        verify_token(headers, TOKEN_HEADER, secret)

    def repository_name(self, payload: Mapping[str, Any]) -> str | None:
        return text(payload, "project", "path_with_namespace") or None

    def parse(self, event_name: str, payload: Mapping[str, Any], delivery: str) -> list[Event] | Unpublished:
        object_kind = text(payload, "object_kind")
        if event_name == "System Hook":
            kind = object_kind if object_kind in HOOKS.values() else ""
        else:
            kind = HOOKS.get(event_name, "")
            if kind and object_kind and object_kind != kind:
                raise WebhookError(
                    400, f"{EVENT_HEADER} says {event_name}, but the payload's object_kind is {object_kind}"
                )
        if kind in ("push", "tag_push"):
            return _push(kind, payload, delivery)
        if kind == "merge_request":
            return _merge_request(payload, delivery)
        what = f"{event_name} ({object_kind})" if event_name == "System Hook" else event_name
        return Unpublished("ignored", f"Tasuki does not act on GitLab {what} events")

    def status_request(self, status: CommitStatus, api_url: str, credentials: RepositoryConfig) -> StatusRequest:
        body = {
            "state": STATES[status.state],
            "name": status.name,
            "target_url": status.url,
            "description": status.description,
        }
        if status.refname:
            body["ref"] = status.refname
        auth = {"PRIVATE-TOKEN": credentials.token} if credentials.token else {}
        url = f"{api_url}/projects/{quote(status.repository, safe='')}/statuses/{status.commit}"
        return StatusRequest("POST", url, api_headers(auth), body)

    def status_outcome(self, answer: StatusAnswer) -> Outcome:
        if answer.code == 400 and "cannot transition status" in said(answer).lower():
            return "done"  # the commit already has this state: nothing to do
        return outcome(answer)

    def clone_login(self, credentials: RepositoryConfig) -> tuple[str, str] | None:
        return login(credentials, "oauth2")


def _repository(payload: Mapping[str, Any], what: str) -> Repository:
    name = text(payload, "project", "path_with_namespace", required=what)
    clone = text(payload, "project", "git_http_url") or text(payload, "repository", "git_http_url")
    web = text(payload, "project", "web_url") or text(payload, "repository", "homepage")
    return Repository(
        full_name=name, clone_url=clone, web_url=web, default_branch=text(payload, "project", "default_branch")
    )


def _commit(data: Any) -> Commit:
    author = person(text(data, "author", "name"), text(data, "author", "email"))
    return Commit(id=text(data, "id"), message=text(data, "message"), author=author)


def _push(kind: str, payload: Mapping[str, Any], delivery: str) -> list[Event] | Unpublished:
    ref = text(payload, "ref", required=kind)
    prefix = "refs/tags/" if kind == "tag_push" else "refs/heads/"
    if not ref.startswith(prefix):
        return Unpublished("ignored", f"a {kind} of {ref}, which is not under {prefix}")
    after = sha(text(payload, "after"))
    if after:  # the commit, which for an annotated tag is not `after` (the tag object)
        after = text(payload, "checkout_sha") or after
    commits = [_commit(c) for c in items(payload, "commits")]
    total = get(payload, "total_commits_count")
    truncated = isinstance(total, int) and not isinstance(total, bool) and total > len(commits)
    return [
        Event(
            host=HOST,
            event=kind,
            kind="tag" if kind == "tag_push" else "push",
            delivery_id=delivery,
            repository=_repository(payload, kind),
            ref=Ref(kind="tag" if kind == "tag_push" else "branch", name=ref.removeprefix(prefix)),
            before=sha(text(payload, "before")),
            after=after,
            actor=text(payload, "user_username") or text(payload, "user_name"),
            commits=commits,  # GitLab lists them oldest first, at most 20
            truncated=truncated,
            payload=dict(payload),
        )
    ]


def _merge_request(payload: Mapping[str, Any], delivery: str) -> list[Event] | Unpublished:
    mr = get(payload, "object_attributes")
    if not isinstance(mr, dict):
        raise WebhookError(400, "expected object_attributes (an object) in a merge_request delivery")
    action = text(mr, "action")
    if action not in MERGE_REQUEST_ACTIONS:
        return Unpublished("ignored", f"Tasuki does not act on merge requests being {action or '(no action)'}")
    before = sha(text(mr, "oldrev"))
    if action == "update" and not before:
        return Unpublished("ignored", "the merge request was updated without new commits")
    what = f"merge_request {action}"
    source_branch = text(mr, "source_branch", required=what)
    source_commit = text(mr, "last_commit", "id")
    last_commit = get(mr, "last_commit")
    return [
        Event(
            host=HOST,
            event=f"merge_request.{action}",
            kind="pull_request",
            delivery_id=delivery,
            repository=_repository(payload, what),
            ref=Ref(kind="branch", name=source_branch),
            before=before,
            after=source_commit,
            actor=text(payload, "user", "username") or text(payload, "user", "name"),
            commits=[_commit(last_commit)] if isinstance(last_commit, dict) else [],
            pull_request=PullRequest(
                number=number(mr, "iid", required=what),
                title=text(mr, "title"),
                state=MERGE_REQUEST_STATES.get(text(mr, "state"), "open"),
                source_branch=source_branch,
                source_commit=source_commit,
                target_branch=text(mr, "target_branch", required=what),
                action=MERGE_REQUEST_ACTIONS[action],
                url=text(mr, "url"),
                source_repository=text(mr, "source", "path_with_namespace"),
            ),
            payload=dict(payload),
        )
    ]
