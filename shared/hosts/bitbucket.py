"""Bitbucket Cloud webhooks: `X-Event-Key` names the event, `X-Hub-Signature` signs the body.

A `repo:push` delivery lists one change per pushed ref; each change becomes one `Event`.
Bitbucket lists a change's commits newest first; events list them oldest first, so that the
last commit is the head.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from shared.errors import WebhookError
from shared.messages import Commit, Event, Ref, Repository

HOST = "bitbucket"
EVENT_HEADER = "X-Event-Key"
SIGNATURE_HEADER = "X-Hub-Signature"
TAG_TYPES = ("tag", "annotated_tag")


def delivery_id(headers: Mapping[str, str], body: bytes) -> str:
    """`X-Request-UUID` is per delivery; older deliveries only carry the hook's `X-Hook-UUID`,
    which is the same for every delivery of a hook, so it is combined with the body's digest."""
    request = headers.get("X-Request-UUID")
    if request:
        return f"bitbucket:{request}"
    hook = headers.get("X-Hook-UUID", "")
    return f"bitbucket:{hook}:{hashlib.sha256(body).hexdigest()[:32]}"


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    given = headers.get(SIGNATURE_HEADER, "")
    if not given:
        raise WebhookError(401, f"this repository has a webhook secret, but the delivery has no {SIGNATURE_HEADER}")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookError(401, f"{SIGNATURE_HEADER} does not match the body signed with this repository's secret")


def repository_name(payload: Mapping[str, Any]) -> str:
    repo = payload.get("repository")
    name = repo.get("full_name") if isinstance(repo, dict) else None
    if not isinstance(name, str) or not name:
        raise WebhookError(400, "expected repository.full_name in the delivery, found none")
    return name


def parse(event_name: str, payload: Mapping[str, Any], delivery: str) -> list[Event] | None:
    if event_name == "repo:push":
        return _push(payload, delivery)
    return None


def _repository(payload: Mapping[str, Any]) -> Repository:
    repo = payload["repository"]
    name = repository_name(payload)
    web = _get(repo, "links", "html", "href") or f"https://bitbucket.org/{name}"
    return Repository(full_name=name, clone_url=f"https://bitbucket.org/{name}.git", web_url=web)


def _actor(payload: Mapping[str, Any]) -> str:
    actor = payload.get("actor") or {}
    return str(actor.get("nickname") or actor.get("username") or actor.get("display_name") or "")


def _push(payload: Mapping[str, Any], delivery: str) -> list[Event]:
    changes = _get(payload, "push", "changes")
    if not isinstance(changes, list):
        raise WebhookError(400, "expected push.changes (a list) in a repo:push delivery")
    repository, actor = _repository(payload), _actor(payload)
    events = []
    for change in changes:
        new, old = change.get("new"), change.get("old")
        ref = new or old
        if not isinstance(ref, dict) or not ref.get("name"):
            raise WebhookError(400, "expected each change to have a new or old ref with a name")
        is_tag = ref.get("type") in TAG_TYPES
        commits = [
            Commit(id=c.get("hash", ""), message=c.get("message", ""), author=_get(c, "author", "raw") or "")
            for c in reversed(change.get("commits") or [])
        ]
        events.append(
            Event(
                host=HOST,
                event="repo.push",
                kind="tag" if is_tag else "push",
                delivery_id=delivery,
                repository=repository,
                ref=Ref(kind="tag" if is_tag else "branch", name=ref["name"]),
                before=_get(old, "target", "hash") or "" if old else "",
                after=_get(new, "target", "hash") or "" if new else "",
                actor=actor,
                commits=commits,
                forced=bool(change.get("forced")),
                truncated=bool(change.get("truncated")),
                payload=dict(payload),
            )
        )
    return events


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
