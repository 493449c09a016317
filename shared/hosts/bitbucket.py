"""Bitbucket Cloud: `X-Event-Key` names the event, `X-Hub-Signature` signs the body.

Webhooks:

    repo:push                 one Event per change (pushed ref): kind push, or tag for the
                              ref types tag and annotated_tag; `old: null` is a new ref
                              (before ""), `new: null` a deleted one (after ""); its payload
                              is the delivery with only its own change in push.changes
    pullrequest:created       kind pull_request, action opened
    pullrequest:updated       action updated (Bitbucket does not say whether commits changed)
    pullrequest:fulfilled     action merged
    pullrequest:rejected      action closed (declined)

Every other event key is answered "ignored". Routing keys are `bitbucket.repo.push`,
`bitbucket.pullrequest.created` and so on. Bitbucket lists a change's commits newest first;
events list them oldest first, so that the last commit is the head.

Commit statuses (build statuses), with a username and app password (Basic) or an access token
(Bearer):

    POST {api}/repositories/{workspace}/{slug}/commit/{sha}/statuses/build
    {key, state: INPROGRESS|SUCCESSFUL|FAILED|STOPPED, name, url, description, refname}

Clones over HTTPS: the username and app password, or the access token as `x-token-auth`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasuki.shared.errors import WebhookError
from tasuki.shared.hosts.common import (
    api_headers,
    basic,
    bearer,
    digest,
    get,
    items,
    login,
    number,
    outcome,
    person,
    text,
    verify_hmac,
)
from tasuki.shared.hosts.protocol import CommitStatus, Outcome, StatusAnswer, StatusRequest, Unpublished
from tasuki.shared.messages import Commit, Event, PullRequest, Ref, Repository
from tasuki.shared.registry import RepositoryConfig

HOST = "bitbucket"
EVENT_HEADER = "X-Event-Key"
SIGNATURE_HEADER = "X-Hub-Signature"
TAG_TYPES = ("tag", "annotated_tag")
PULL_REQUEST_ACTIONS = {"created": "opened", "updated": "updated", "fulfilled": "merged", "rejected": "closed"}
PULL_REQUEST_STATES = {"OPEN": "open", "MERGED": "merged", "DECLINED": "closed", "SUPERSEDED": "closed"}


# Tasuki's statuses as Bitbucket's build states.
STATES = {
    "pending": "INPROGRESS",
    "queued": "INPROGRESS",
    "running": "INPROGRESS",
    "success": "SUCCESSFUL",
    "skipped": "SUCCESSFUL",
    "failure": "FAILED",
    "error": "FAILED",
    "timeout": "FAILED",
    "cancelled": "STOPPED",
}


class Bitbucket:
    name = HOST
    title = "Bitbucket"
    event_header = EVENT_HEADER
    api_url = "https://api.bitbucket.org/2.0"

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        """`X-Request-UUID` is per delivery; older deliveries only carry the hook's `X-Hook-UUID`,
        which is the same for every delivery of a hook, so it is combined with the digest of the
        event key and the body."""
        request = headers.get("X-Request-UUID")
        if request:
            return f"bitbucket:{request}"
        hook = headers.get("X-Hook-UUID", "")
        return f"bitbucket:{hook}:{digest(headers.get(EVENT_HEADER, ''), body)}"

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str) -> None:
        verify_hmac(headers, SIGNATURE_HEADER, body, secret)

    def repository_name(self, payload: Mapping[str, Any]) -> str | None:
        return text(payload, "repository", "full_name") or None

    def parse(self, event_name: str, payload: Mapping[str, Any], delivery: str) -> list[Event] | Unpublished:
        if event_name == "repo:push":
            return _push(payload, delivery)
        kind, _, action = event_name.partition(":")
        if kind == "pullrequest" and action in PULL_REQUEST_ACTIONS:
            return [_pull_request(action, payload, delivery)]
        return Unpublished("ignored", f"Tasuki does not act on Bitbucket {event_name} events")

    def status_request(self, status: CommitStatus, api_url: str, credentials: RepositoryConfig) -> StatusRequest:
        body = {
            "key": status.key,
            "state": STATES[status.state],
            "name": status.name,
            "url": status.url,
            "description": status.description,
        }
        if status.refname:
            body["refname"] = status.refname
        if credentials.username and credentials.app_password:
            auth = {"Authorization": basic(credentials.username, credentials.app_password)}
        else:
            auth = bearer(credentials.token)
        url = f"{api_url}/repositories/{status.repository}/commit/{status.commit}/statuses/build"
        return StatusRequest("POST", url, api_headers(auth), body)

    def status_outcome(self, answer: StatusAnswer) -> Outcome:
        return outcome(answer)

    def clone_login(self, credentials: RepositoryConfig) -> tuple[str, str] | None:
        return login(credentials, "x-token-auth")


def _repository(payload: Mapping[str, Any], what: str) -> Repository:
    name = text(payload, "repository", "full_name", required=what)
    web = text(payload, "repository", "links", "html", "href") or f"https://bitbucket.org/{name}"
    return Repository(
        full_name=name,
        clone_url=f"https://bitbucket.org/{name}.git",
        web_url=web,
        default_branch=text(payload, "repository", "mainbranch", "name"),
    )


def _actor(payload: Mapping[str, Any]) -> str:
    return (
        text(payload, "actor", "nickname")
        or text(payload, "actor", "username")
        or text(payload, "actor", "display_name")
    )


def _commit(data: Mapping[str, Any]) -> Commit:
    # `author.raw` is "Name <email>"; a commit by a known user also has `author.user`.
    author = text(data, "author", "raw") or person(
        text(data, "author", "user", "display_name") or text(data, "author", "display_name"), ""
    )
    return Commit(id=text(data, "hash"), message=text(data, "message"), author=author)


def _push(payload: Mapping[str, Any], delivery: str) -> list[Event] | Unpublished:
    changes = get(payload, "push", "changes")
    if not isinstance(changes, list):
        raise WebhookError(400, "expected push.changes (a list) in a repo:push delivery")
    repository, actor = _repository(payload, "repo:push"), _actor(payload)
    events = []
    for change in changes:
        if not isinstance(change, dict):
            raise WebhookError(400, "expected each of push.changes to be an object")
        new, old = get(change, "new"), get(change, "old")
        ref = new or old
        if not isinstance(ref, dict) or not text(ref, "name"):
            raise WebhookError(400, "expected each change to have a new or old ref with a name")
        ref_type = text(ref, "type")
        if ref_type not in (*TAG_TYPES, "branch"):
            continue  # not a git branch or tag (Mercurial's named branches and bookmarks)
        is_tag = ref_type in TAG_TYPES
        events.append(
            Event(
                host=HOST,
                event="repo.push",
                kind="tag" if is_tag else "push",
                delivery_id=delivery,
                repository=repository,
                ref=Ref(kind="tag" if is_tag else "branch", name=text(ref, "name")),
                # An annotated tag's target is its commit, as for any other ref.
                before=text(old, "target", "hash"),
                after=text(new, "target", "hash"),
                actor=actor,
                commits=[_commit(c) for c in reversed(items(change, "commits"))],
                forced=get(change, "forced") is True,
                truncated=get(change, "truncated") is True,
                payload=_own_change(payload, change),
            )
        )
    if not events:
        return Unpublished("ignored", "the push changed no git branch or tag")
    return events


def _own_change(payload: Mapping[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """The delivery as Bitbucket sent it, but with only this ref's change in `push.changes`: an
    event carries its own ref, never the other refs' data (a push of many refs stays linear)."""
    return {**payload, "push": {**payload["push"], "changes": [change]}}


def _pull_request(action: str, payload: Mapping[str, Any], delivery: str) -> Event:
    what = f"pullrequest:{action}"
    pr = get(payload, "pullrequest")
    if not isinstance(pr, dict):
        raise WebhookError(400, f"expected a pullrequest object in a {what} delivery")
    normalised = PULL_REQUEST_ACTIONS[action]
    state = PULL_REQUEST_STATES.get(text(pr, "state").upper())
    if state is None:  # as the event tells it
        state = {"merged": "merged", "closed": "closed"}.get(normalised, "open")
    source_branch = text(pr, "source", "branch", "name", required=what)
    source_commit = text(pr, "source", "commit", "hash")
    return Event(
        host=HOST,
        event=f"pullrequest.{action}",
        kind="pull_request",
        delivery_id=delivery,
        repository=_repository(payload, what),
        ref=Ref(kind="branch", name=source_branch),
        after=source_commit,
        actor=_actor(payload),
        pull_request=PullRequest(
            number=number(pr, "id", required=what),
            title=text(pr, "title"),
            state=state,
            source_branch=source_branch,
            source_commit=source_commit,
            target_branch=text(pr, "destination", "branch", "name", required=what),
            target_commit=text(pr, "destination", "commit", "hash"),
            action=normalised,
            url=text(pr, "links", "html", "href"),
            source_repository=text(pr, "source", "repository", "full_name"),
        ),
        payload=dict(payload),
    )
