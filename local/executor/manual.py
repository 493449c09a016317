"""Planning a manual run (issue 16): the head of the branch or tag it names, and its parameters
checked against the flow file (`shared.manual` draws the whole path of a manual start)."""

from __future__ import annotations

from tasuki.local.executor.checkout import Checkouts
from tasuki.shared.errors import FlowFileError
from tasuki.shared.flowfile import Flow
from tasuki.shared.flowfile.params import resolve
from tasuki.shared.messages import Event, PlanOrder
from tasuki.shared.registry import RepositoryConfig


def head(checkouts: Checkouts, order: PlanOrder, auth: RepositoryConfig | None) -> str:
    """The commit to build for an event that names none: a manual run's branch or tag, or a
    scheduled run's branch (issue 16's clock), as it is now."""
    event = order.event
    if event.kind not in ("manual", "schedule") or event.ref is None:
        raise FlowFileError("the event names no commit to build")
    return checkouts.head(order.clone_url, event.ref.kind, event.ref.name, auth, host=event.host)


def params(flow: Flow, event: Event) -> dict[str, str]:
    """A manual run's parameters: every one the flow file declares, given or defaulted, each
    checked (ParamError names the one that does not fit); none for a git event."""
    if event.kind != "manual":
        return {}
    return resolve(flow.params, event.params)
