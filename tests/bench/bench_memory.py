"""The footprint of `make local` at rest: resident memory of every process of the stack.

Starts `tasuki local` (its own data dir, free ports, a vhost of its own), runs `tasuki demo` to
a finished run, lets the stack settle, then reads /proc: every process in the tree under
`tasuki local` (the supervisor, what it started, and what those started), with its resident
set (VmRSS) and its proportional share (Pss: pages shared between processes, such as those of
forked workers, divided among them). The figure is the sum of RSS, the aim under 300 MB.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bench import vhost
from tests.harness import LocalTasuki

SETTLE_SECONDS = float(os.environ.get("BENCH_SETTLE_SECONDS", "5"))
AIM_MB = 300


@dataclass(frozen=True)
class Member:
    pid: int
    ppid: int
    command: str
    rss_kb: int
    pss_kb: int


def process_tree(root: int) -> list[Member]:
    """`root` and every process descended from it, read from /proc (zombies and vanished ones left out)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    tree, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        if pid in parents:
            tree.append(pid)
            frontier.extend(child for child, parent in parents.items() if parent == pid)
    members = [member(pid, parents[pid]) for pid in sorted(tree)]
    return [m for m in members if m is not None]


def member(pid: int, ppid: int) -> Member | None:
    try:
        status = _fields(Path(f"/proc/{pid}/status").read_text())
        rollup = _fields(Path(f"/proc/{pid}/smaps_rollup").read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    command = " ".join(Path(a.decode()).name if i == 0 else a.decode() for i, a in enumerate(argv) if a)
    return Member(pid, ppid, command, status.get("VmRSS", 0), rollup.get("Pss", 0))


def _fields(text: str) -> dict[str, int]:
    """`Name:   1234 kB` lines -> {name: 1234}."""
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            values[name] = int(parts[0])
    return values


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="tasuki-bench-") as tmp, vhost("memory") as url:
        env = {"TASUKI_AMQP_URL": url, "TASUKI_DATA_DIR": str(Path(tmp) / "data")}
        with LocalTasuki(env) as tasuki:
            demo = tasuki.cli("demo")
            if demo.returncode != 0:
                raise SystemExit(f"bench memory: tasuki demo failed:\n{demo.stdout}{demo.stderr}")
            run = tasuki.wait_for_run(repository="demo/hello", timeout=180)
            time.sleep(SETTLE_SECONDS)
            assert tasuki.proc is not None
            members = process_tree(tasuki.proc.pid)
    return report(members, run.status)


def report(members: list[Member], run_status: str) -> dict:
    rss = sum(m.rss_kb for m in members)
    pss = sum(m.pss_kb for m in members)
    print(f"{'pid':>7} {'ppid':>7} {'RSS MB':>8} {'PSS MB':>8}  command")
    for m in members:
        print(f"{m.pid:>7} {m.ppid:>7} {m.rss_kb / 1024:8.1f} {m.pss_kb / 1024:8.1f}  {m.command[:100]}")
    print(
        f"total: {len(members)} processes, RSS {rss / 1024:.1f} MB (aim: under {AIM_MB} MB), PSS {pss / 1024:.1f} MB; "
        f"the demo run ended {run_status}, then {SETTLE_SECONDS:g}s at rest"
    )
    return {
        "rss_mb": round(rss / 1024, 1),
        "pss_mb": round(pss / 1024, 1),
        "processes": len(members),
        "demo_run": run_status,
        "per_process": [
            {
                "pid": m.pid,
                "command": m.command,
                "rss_mb": round(m.rss_kb / 1024, 1),
                "pss_mb": round(m.pss_kb / 1024, 1),
            }
            for m in members
        ],
    }
