"""Laying out a run's jobs as a flow graph: pure, no I/O.

Each job goes in the column of its longest chain of needs (build | test, lint | deploy); jobs
in a column are stacked in name order. Edges run from a need to the job that needs it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 150, 40, 50, 16, 8


@dataclass(frozen=True)
class Node:
    name: str
    status: str
    x: int
    y: int
    w: int = BOX_W
    h: int = BOX_H


@dataclass(frozen=True)
class Edge:
    path: str  # SVG path from the need's right edge to the job's left edge


@dataclass(frozen=True)
class Layout:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def columns(needs: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """The column of each job: 0 for jobs with no needs, else 1 + the deepest need's column."""
    column: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        if name in column:
            return column[name]
        inside = [n for n in needs.get(name, ()) if n in needs and n not in seen]
        column[name] = 1 + max((depth(n, seen | {name}) for n in inside), default=-1)
        return column[name]

    for name in needs:
        depth(name, frozenset())
    return column


def layout(jobs: Mapping[str, tuple[str, Sequence[str]]]) -> Layout:
    """`jobs`: name -> (status, needs)."""
    col = columns({name: needs for name, (_, needs) in jobs.items()})
    rows: dict[int, list[str]] = {}
    for name in sorted(jobs):
        rows.setdefault(col[name], []).append(name)
    nodes: dict[str, Node] = {}
    for c, names in rows.items():
        for r, name in enumerate(names):
            nodes[name] = Node(name, jobs[name][0], PAD + c * (BOX_W + GAP_X), PAD + r * (BOX_H + GAP_Y))
    edges = []
    for name, (_, needs) in sorted(jobs.items()):
        for need in needs:
            if need in nodes:
                a, b = nodes[need], nodes[name]
                x1, y1, x2, y2 = a.x + a.w, a.y + a.h // 2, b.x, b.y + b.h // 2
                mid = (x1 + x2) // 2
                edges.append(Edge(f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"))
    width = PAD * 2 + (max(rows, default=0) + 1) * (BOX_W + GAP_X) - GAP_X
    height = PAD * 2 + max((len(v) for v in rows.values()), default=1) * (BOX_H + GAP_Y) - GAP_Y
    return Layout(list(nodes.values()), edges, width, height)
