"""The `tasuki` command line.

    tasuki local                    every process on this machine (what `make local` runs)
    tasuki serve FUNCTION           one function (ingress, router, dispatcher) under gunicorn
    tasuki bridge | executor        one long-running process
    tasuki run [JOB ...]            run this checkout's flow in containers, no service needed
    tasuki topology declare         declare exchanges and queues in RabbitMQ
    tasuki runs [--repo R]          recent runs;  tasuki runs show RUN [--log]

Settings come from TASUKI_* environment variables (see README). Errors are one clear line and
exit code 2; nothing prints a traceback for a mistake a person can fix.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from shared.errors import TasukiError
from shared.runtime import Runtime
from shared.settings import Settings


def _logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOGLEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pika").setLevel(logging.WARNING)


def cmd_local(rt: Runtime, args: argparse.Namespace) -> int:
    from local import supervisor

    return supervisor.run(rt.settings, os.environ)


def cmd_serve(rt: Runtime, args: argparse.Namespace) -> int:
    from local import supervisor

    port = args.port or getattr(rt.settings, f"{args.function}_port")
    supervisor.serve_function(args.function, rt.settings.host, port)
    return 0


def cmd_bridge(rt: Runtime, args: argparse.Namespace) -> int:
    from local import bridge

    bridge.main(rt.settings)
    return 0


def cmd_executor(rt: Runtime, args: argparse.Namespace) -> int:
    from local import executor

    executor.main(rt.settings, rt.store, rt.registry)
    return 0


def cmd_run(rt: Runtime, args: argparse.Namespace) -> int:
    from pathlib import Path

    from local import runner

    options = runner.Options(
        directory=Path(args.directory), jobs=args.jobs, event=args.event or "", branch=args.branch,
        tag=args.tag, flow_file=args.file, parallel=args.parallel,
    )
    return runner.run(rt.settings, options)


def cmd_topology(rt: Runtime, args: argparse.Namespace) -> int:
    rt.broker.declare(pools=(rt.settings.executor_pool,))
    print("declared exchanges and queues in RabbitMQ")
    return 0


def cmd_runs(rt: Runtime, args: argparse.Namespace) -> int:
    if args.action == "show":
        return _show_run(rt, args.run_id, args.log)
    runs = rt.store.list_runs(repository=args.repo, status=args.status, limit=args.limit)
    if not runs:
        print("no runs yet")
    for run in runs:
        ref = run.event.ref.name if run.event.ref else ""
        print(f"{run.id}  {run.status:<9}  {run.repository}  {ref}  {run.commit[:12]}  {run.created_at:%Y-%m-%d %H:%M:%S}")
    return 0


def _show_run(rt: Runtime, run_id: str | None, with_log: bool) -> int:
    run = rt.store.get_run(run_id or "")
    if run is None:
        print(f"no run {run_id}", file=sys.stderr)
        return 1
    print(f"run {run.id}: {run.status}  {run.repository} {run.commit[:12]}  {run.message}")
    for job in rt.store.get_jobs(run.id):
        code = f" exit {job.exit_code}" if job.exit_code is not None else ""
        print(f"  {job.name:<16} {job.status}{code}  {job.message}")
        if with_log:
            for _, data in rt.store.read_log(run.id, job.name):
                sys.stdout.write(data.decode("utf-8", "replace"))
    return 0


def supervisor_functions() -> list[str]:
    from local import supervisor

    return list(supervisor.FUNCTIONS)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tasuki", description="Tasuki: a small CI service.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("local", help="run every process on this machine").set_defaults(fn=cmd_local)
    serve = sub.add_parser("serve", help="serve one function with functions-framework (gunicorn)")
    serve.add_argument("function", choices=supervisor_functions())
    serve.add_argument("--port", type=int, help="default: its TASUKI_<FUNCTION>_PORT")
    serve.set_defaults(fn=cmd_serve)
    sub.add_parser("bridge", help="push subscriptions to the functions").set_defaults(fn=cmd_bridge)
    sub.add_parser("executor", help="run jobs in Docker containers").set_defaults(fn=cmd_executor)
    run = sub.add_parser(
        "run", help="run this checkout's flow in containers, with no broker, store or service",
        description="Run the jobs of .tasuki.yml (the named ones and what they need) in the same "
        "containers as the executor, on this machine. Exit code 0 only if every job passed.",
    )
    run.add_argument("jobs", nargs="*", metavar="JOB", help="jobs to run with what they need (default: all)")
    run.add_argument("--event", choices=["push", "tag", "pull_request"], help="the event `when` sees (default: push, or tag with --tag)")
    run.add_argument("--branch", help="the branch `when` sees (default: the checkout's current branch)")
    run.add_argument("--tag", default="", help="the tag `when` sees")
    run.add_argument("-C", "--directory", default=".", help="the checkout (default: here)")
    run.add_argument("-f", "--file", default=".tasuki.yml", help="the flow file, relative to the checkout")
    run.add_argument("-j", "--parallel", type=int, default=0, help="jobs at once (default: one per CPU)")
    run.set_defaults(fn=cmd_run)
    topo = sub.add_parser("topology", help="RabbitMQ exchanges and queues")
    topo.add_argument("action", choices=["declare"])
    topo.set_defaults(fn=cmd_topology)
    runs = sub.add_parser("runs", help="list runs, or show one")
    runs.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    runs.add_argument("run_id", nargs="?")
    runs.add_argument("--repo")
    runs.add_argument("--status")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--log", action="store_true", help="with show: print each job's log")
    runs.set_defaults(fn=cmd_runs)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _logging()
    try:
        rt = Runtime(Settings.from_env(os.environ))
        return args.fn(rt, args)
    except TasukiError as exc:
        print(f"tasuki: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
