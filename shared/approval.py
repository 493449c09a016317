"""Fork pull requests: whose code a run runs, and who must approve it first.

A pull request from a fork (`Event.from_fork`: its source branch lives in another repository)
runs code that nobody with access to the repository wrote or reviewed. Its run waits in status
`approval`, with no job ordered and nothing cloned, until a person approves it (the run page's
button, `POST /api/runs/<id>/approve`, `tasuki runs approve ID`), unless the rule or the
repository says forks are trusted (`trust_forks: true`). Approved or trusted, a fork's run still
never gets the repository's API credentials in its orders (`credentials_for`): it clones with
none, so it reaches only what anyone could.

Pure decisions, no I/O: the router asks `needed`, the dispatcher asks `credentials_for`.
"""

from __future__ import annotations

from tasuki.shared.messages import Event
from tasuki.shared.registry import RepositoryConfig

STATUS = "approval"


def needed(event: Event, *, rule_trusts_forks: bool, repository: RepositoryConfig | None) -> bool:
    """True when the event's run must wait for a person's approval before anything runs."""
    if not event.from_fork:
        return False
    return not (rule_trusts_forks or (repository is not None and repository.trust_forks))


def waiting_message(event: Event) -> str:
    source = event.pull_request.source_repository if event.pull_request else ""
    return (
        f"waiting for approval: a pull request from a fork ({source or 'a repository the host no longer knows'}) "
        "runs only once someone approves it (the run page, the API, or tasuki runs approve)"
    )


def credentials_for(event: Event, credentials: dict[str, str]) -> dict[str, str]:
    """The registry's credentials an order of this event may carry: none for a fork's run."""
    return {} if event.from_fork else credentials
