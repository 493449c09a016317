"""Planning: which jobs of a flow an event runs, and which it skips (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from tasuki.shared.errors import FlowFileError
from tasuki.shared.flowfile.dag import topological_order
from tasuki.shared.flowfile.matrix import group_of
from tasuki.shared.flowfile.model import Flow, Job


def with_needs(flow: Flow, names: Iterable[str]) -> list[str]:
    """The named jobs and every job they need, transitively; unknown names are an error."""
    wanted: set[str] = set()
    groups: dict[str, list[str]] = {}
    for name in flow.jobs:
        groups.setdefault(group_of(name), []).append(name)
    # A matrix job's name stands for all its combinations.
    stack = [n for name in names for n in (groups.get(name, [name]) if name not in flow.jobs else [name])]
    while stack:
        name = stack.pop()
        if name not in flow.jobs:
            known = ", ".join(sorted(flow.jobs))
            raise FlowFileError(f"there is no job {name!r}; the flow has: {known}")
        if name not in wanted:
            wanted.add(name)
            stack.extend(flow.jobs[name].needs)
    return sorted(wanted)


def select(
    flow: Flow,
    *,
    event: str,
    branch: str = "",
    tag: str = "",
    changed: Iterable[str] | None = None,
    names: Iterable[str] = (),
) -> tuple[dict[str, Job], list[str]]:
    """Which jobs run for this event, and which are skipped by their `when` (or a skipped need)."""
    names = list(names)
    chosen = with_needs(flow, names) if names else sorted(flow.jobs)
    changed = list(changed) if changed is not None else None
    order = topological_order({n: flow.jobs[n].needs for n in chosen}) or chosen
    run: dict[str, Job] = {}
    skipped: list[str] = []
    for name in order:
        job = flow.jobs[name]
        if any(need in skipped for need in job.needs) or not job.when.matches(
            event=event, branch=branch, tag=tag, changed=changed
        ):
            skipped.append(name)
        else:
            run[name] = job
    return run, skipped
