"""The `tasuki` command line.

    tasuki local                    every process on this machine (what `make local` runs)
    tasuki serve FUNCTION           one function (ingress, router, dispatcher) under gunicorn
    tasuki bridge | executor        one long-running process
    tasuki topology declare         declare exchanges and queues in RabbitMQ
    tasuki topology export          write infra/rabbitmq/definitions.json from shared/topics.py
    tasuki deadletters [list]       messages that failed too often;  deadletters replay ID|--all
    tasuki runs [--repo R]          recent runs;  tasuki runs show RUN [--log]

Settings come from TASUKI_* environment variables (see README). Errors are one clear line and
exit code 2; nothing prints a traceback for a mistake a person can fix.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.errors import TasukiError
from shared.runtime import Runtime
from shared.settings import Settings

DEFINITIONS = "infra/rabbitmq/definitions.json"


def _logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOGLEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # pika logs every failed connection attempt with a traceback; Tasuki reports the same
    # failures itself, in one line that says what to do (shared.broker, local/bridge.py).
    logging.getLogger("pika").setLevel(logging.CRITICAL)


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


def cmd_topology(rt: Runtime, args: argparse.Namespace) -> int:
    if args.action == "export":
        from local import supervisor
        from shared import topics

        text = json.dumps(topics.definitions(vhost=args.vhost), indent=2) + "\n"
        if args.output == "-":
            sys.stdout.write(text)
            return 0
        path = Path(args.output) if args.output else supervisor.ROOT / DEFINITIONS
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path} (vhost {args.vhost}); import it with `rabbitmqctl import_definitions {path}`")
        return 0
    rt.broker.declare(pools=(rt.settings.executor_pool,))
    print("declared exchanges and queues in RabbitMQ")
    return 0


def cmd_deadletters(rt: Runtime, args: argparse.Namespace) -> int:
    from shared import deadletters

    url = rt.settings.amqp_url
    if args.action == "replay":
        if bool(args.letter_id) == args.all:
            print("tasuki deadletters replay: give one ID, or --all", file=sys.stderr)
            return 2
        replayed = deadletters.replay(url, None if args.all else args.letter_id)
        for letter_id in replayed:
            print(f"replayed {letter_id}")
        if not replayed:
            print("no dead letters to replay")
        return 0
    letters = deadletters.list_letters(url)
    if not letters:
        print("no dead letters")
    for letter in letters:
        when = f"{letter.dead_lettered_at:%Y-%m-%d %H:%M:%S}" if letter.dead_lettered_at else "?"
        print(f"{letter.id}  {when}  {letter.subscription}  {letter.attempts} attempts  "
              f"{letter.type or '-'}  {letter.message_id}  {letter.last_error[:120]}")
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
    topo = sub.add_parser("topology", help="RabbitMQ exchanges and queues")
    topo.add_argument("action", choices=["declare", "export"])
    topo.add_argument("--vhost", default="/", help="export: the vhost named in the definitions")
    topo.add_argument("-o", "--output", help=f"export: file to write ('-' for stdout); default {DEFINITIONS}")
    topo.set_defaults(fn=cmd_topology)
    dead = sub.add_parser("deadletters", help="messages that failed too often: list, or replay them")
    dead.add_argument("action", nargs="?", choices=["list", "replay"], default="list")
    dead.add_argument("letter_id", nargs="?", metavar="ID", help="replay: the dead letter's id (or message id)")
    dead.add_argument("--all", action="store_true", help="replay: every dead letter")
    dead.set_defaults(fn=cmd_deadletters)
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
