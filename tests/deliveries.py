"""Webhook deliveries for tests and benchmarks: the fixtures with the headers each host sends,
signed the way each host signs."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

from tests.conftest import WEBHOOKS

EVENT_HEADERS = {"bitbucket": "X-Event-Key", "github": "X-GitHub-Event", "gitlab": "X-Gitlab-Event"}

# Every fixture, with the event header its host sends it with.
FIXTURES: dict[tuple[str, str], str] = {
    ("bitbucket", "first-push.json"): "repo:push",
    ("bitbucket", "repo-push.json"): "repo:push",
    ("bitbucket", "pull-request-created.json"): "pullrequest:created",
    ("bitbucket", "pull-request-updated.json"): "pullrequest:updated",
    ("bitbucket", "pull-request-merged.json"): "pullrequest:fulfilled",
    ("bitbucket", "pull-request-declined.json"): "pullrequest:rejected",
    ("bitbucket", "pull-request-comment-created.json"): "pullrequest:comment_created",
    ("github", "push.json"): "push",
    ("github", "pull-request.json"): "pull_request",
    ("github", "ping.json"): "ping",
    ("github", "create.json"): "create",
    ("github", "delete.json"): "delete",
    ("github", "workflow_dispatch.json"): "workflow_dispatch",
    ("gitlab", "push-event.json"): "Push Hook",
    ("gitlab", "tag-event.json"): "Tag Push Hook",
    ("gitlab", "merge-request-event.json"): "Merge Request Hook",
}


def fixture_body(host: str, name: str) -> bytes:
    return (WEBHOOKS / host / name).read_bytes()


def fixture(host: str, name: str) -> dict[str, Any]:
    return json.loads(fixture_body(host, name))


def headers(host: str, event: str, body: bytes, *, secret: str = "", delivery: str | None = None) -> dict[str, str]:
    """What `host` sends with `body`: content type, event header, a fresh delivery id (or the
    given one; "" for none) and, with a secret, its signature or token."""
    out = {"Content-Type": "application/json", EVENT_HEADERS[host]: event}
    delivery = str(uuid.uuid4()) if delivery is None else delivery
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if host == "bitbucket":
        out["X-Hook-UUID"] = "11111111-2222-3333-4444-555555555555"
        if delivery:
            out["X-Request-UUID"] = delivery
        if secret:
            out["X-Hub-Signature"] = signature
    elif host == "github":
        if delivery:
            out["X-GitHub-Delivery"] = delivery
        if secret:
            out["X-Hub-Signature-256"] = signature
    else:
        if delivery:
            out["Idempotency-Key"] = delivery
        if secret:
            out["X-Gitlab-Token"] = secret
    return out


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def many_refs(count: int, repository: str = "") -> bytes:
    """A Bitbucket push of `count` new branches (the captured push's repository, or `repository`,
    and its actor), each change as small as Bitbucket makes one."""
    payload = fixture("bitbucket", "first-push.json")
    if repository:
        payload["repository"]["full_name"] = repository
    payload["push"]["changes"] = [
        {
            "new": {"type": "branch", "name": f"b{n}", "target": {"type": "commit", "hash": f"{n:040x}"}},
            "old": None,
            "created": True,
            "commits": [],
        }
        for n in range(count)
    ]
    return json.dumps(payload).encode()
