"""The jobs' `needs` as a graph: what is wrong with it, an order that respects it, a cycle in it.
Pure functions over `{job: [needed jobs]}`."""

from __future__ import annotations

from typing import Any


def dag_problem(needs: dict[str, list[str]]) -> tuple[tuple[Any, ...], str] | None:
    """The first thing wrong with the jobs' needs, with where it is: (location, message)."""
    if not needs:
        return ("jobs",), "empty: name at least one job"
    for name, deps in needs.items():
        for index, need in enumerate(deps):
            if need == name:
                return ("jobs", name, "needs", index), "a job cannot need itself"
            if need not in needs:
                known = ", ".join(sorted(n for n in needs if n != name))
                return (
                    ("jobs", name, "needs", index),
                    f"needs {need!r}, which is not a job in this file (jobs: {known})",
                )
    if topological_order(needs) is None:
        cycle = find_cycle(needs)
        return ("jobs", cycle[0], "needs"), f"these needs form a cycle: {' -> '.join(cycle)}"
    return None


def topological_order(needs: dict[str, list[str]]) -> list[str] | None:
    """Jobs in an order where every job comes after its needs; None if there is a cycle."""
    order: list[str] = []
    done: set[str] = set()
    remaining = dict(needs)
    while remaining:
        ready = sorted(n for n, deps in remaining.items() if all(d in done for d in deps))
        if not ready:
            return None
        for name in ready:
            order.append(name)
            done.add(name)
            del remaining[name]
    return order


def find_cycle(needs: dict[str, list[str]]) -> list[str]:
    """One cycle among the needs, its first name repeated at the end; [] if there is none."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str]:
        visiting.append(name)
        for need in needs.get(name, []):
            if need in visiting:
                return [*visiting[visiting.index(need) :], need]
            if need in needs and need not in done:
                cycle = visit(need)
                if cycle:
                    return cycle
        visiting.pop()
        done.add(name)
        return []

    for name in sorted(needs):
        if name not in done:
            cycle = visit(name)
            if cycle:
                return cycle
    return []
