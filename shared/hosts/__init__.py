"""The git hosts Tasuki knows, one module each, every one behind the protocol `GitHost`.

A host's module holds everything about it: reading its webhooks and checking their signature
or token, its commit-status API (the request, and what its answers mean), and how git logs in
to clone over HTTPS with a repository's registry credentials. `protocol.py` defines `GitHost`
and the data it speaks; `common.py` holds what hosts share.

    bitbucket.py   Bitbucket Cloud         X-Event-Key        signed (X-Hub-Signature)
    github.py      GitHub                  X-GitHub-Event     signed (X-Hub-Signature-256)
    gitlab.py      GitLab                  X-Gitlab-Event     token  (X-Gitlab-Token)

Generic code reaches a host only through `HOSTS` (or `detect()`): `shared/webhooks.py`,
`shared/statuses.py` (the reporter) and `local/executor/checkout.py` name no host. Adding a
host is one new module with a class that implements `GitHost`, and one line in `HOSTS`.
"""

from __future__ import annotations

from collections.abc import Mapping

from tasuki.shared.hosts.bitbucket import Bitbucket
from tasuki.shared.hosts.github import GitHub
from tasuki.shared.hosts.gitlab import GitLab
from tasuki.shared.hosts.protocol import CommitStatus, GitHost, StatusAnswer, StatusRequest, Unpublished

HOSTS: dict[str, GitHost] = {host.name: host for host in (Bitbucket(), GitHub(), GitLab())}

__all__ = ["HOSTS", "CommitStatus", "GitHost", "StatusAnswer", "StatusRequest", "Unpublished", "detect"]


def detect(headers: Mapping[str, str]) -> GitHost | None:
    """Which host sent this delivery, by its event header; None if none we know."""
    for host in HOSTS.values():
        if headers.get(host.event_header):
            return host
    return None
