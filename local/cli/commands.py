"""The `tasuki` command line.

    tasuki local [--no-executor]    every process on this machine (what `make local` runs)
    tasuki demo                     with `tasuki local` running: a sample repository, a rule, a push
    tasuki functions                every function in one process, each on its own port (threads)
    tasuki serve FUNCTION           one function (ingress, router, dispatcher, ...) under gunicorn
    tasuki bridge | executor        one long-running process
    tasuki run [JOB ...]            run this checkout's flow in containers, no service needed
    tasuki topology declare         declare exchanges and queues in RabbitMQ
    tasuki topology export          write infra/rabbitmq/definitions.json from shared/topics.py
    tasuki deadletters [list]       messages that failed too often;  deadletters replay ID|--all
    tasuki runs [--repo R]          recent runs;  tasuki runs show RUN [--log]
    tasuki runs cancel RUN          cancel a run; its running jobs are stopped
    tasuki runs approve RUN         let a run waiting for approval (a fork's pull request) start
    tasuki runs start REPO --branch B [-p NAME=VALUE ...]   a manual run (a rule with event manual allows it)
    tasuki runs rerun RUN [--failed]  run it again; --failed: keep what succeeded, run the rest
    tasuki rules                    trigger rules, one sentence each
    tasuki rules create --repo R [--event E] [--branch B] ...   a new rule
    tasuki rules disable|enable|delete RULE                     change one (an id prefix is enough)
    tasuki rules load [FILE]        load the rules file (TASUKI_RULES_FILE) into the store
    tasuki deliveries [--limit N]   deliveries newest first, one line of outcome each
    tasuki deliveries show ID       a delivery's whole story;  tasuki deliveries replay ID
    tasuki secrets set REPO NAME    a job secret, the value from stdin (--global: every repository's)
    tasuki secrets list REPO | delete REPO NAME   names only; values are never shown back
    tasuki store [status]           where the store is (TASUKI_STORE_URL) and its schema version
    tasuki store migrate            bring the store's schema up to date (prints versions before and after)
    tasuki store prune              delete what is older than TASUKI_RETENTION_RUNS_DAYS / _DELIVERIES_DAYS
    tasuki deploy bundle [--out D]  one deployable folder and zip per function (build/bundles/)
    tasuki deploy aws --bucket B    the bundles on AWS Lambda behind Function URLs (infra/aws/)

Settings come from TASUKI_* environment variables (see README). Errors are one clear line and
exit code 2; nothing prints a traceback for a mistake a person can fix.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from tasuki import functions
from tasuki.shared import approval, logs, recipes, vault
from tasuki.shared.errors import ActionError, ConfigError, TasukiError, first_problem
from tasuki.shared.messages import RUN_FINAL, RunApprove, RunCancel
from tasuki.shared.runtime import Runtime
from tasuki.shared.settings import Settings

DEFINITIONS = "infra/rabbitmq/definitions.json"


def cmd_local(rt: Runtime, args: argparse.Namespace) -> int:
    from tasuki.local.cli import supervisor

    rt.store.migrate()  # once here, rather than by every process at once (and a bad TASUKI_STORE_URL stops here)
    rt.registry  # noqa: B018  a registry file that cannot be used (a clone URL not allowed, ...) stops the start
    if rt.settings.rules_file:
        load_rules_file(rt, rt.settings.rules_file)
    return supervisor.run(rt.settings, os.environ, without=("executor",) if args.no_executor else ())


def cmd_serve(rt: Runtime, args: argparse.Namespace) -> int:
    from tasuki.local.cli import serving

    port = args.port or getattr(rt.settings, f"{args.function}_port")
    if args.function == "web":
        from tasuki.shared.web import access

        access.check_configuration(rt.settings)
    serving.serve_function(args.function, rt.settings.host, port)
    return 0


def cmd_functions(rt: Runtime, args: argparse.Namespace) -> int:
    from tasuki.local.cli import serving
    from tasuki.shared.web import access

    access.check_configuration(rt.settings)
    serving.serve_functions(rt.settings)
    return 0


def cmd_demo(rt: Runtime, args: argparse.Namespace) -> int:
    from tasuki.local.cli import demo

    demo.run(rt)
    return 0


def cmd_bridge(rt: Runtime, args: argparse.Namespace) -> int:
    from tasuki.local.bridge import server as bridge

    bridge.main(rt.settings)
    return 0


def cmd_executor(rt: Runtime, args: argparse.Namespace) -> int:
    from tasuki.local.executor import service as executor

    executor.main(rt.settings)
    return 0


def cmd_run(rt: Runtime, args: argparse.Namespace) -> int:
    from pathlib import Path

    from tasuki.local.cli import runner

    options = runner.Options(
        directory=Path(args.directory),
        jobs=args.jobs,
        event=args.event or "",
        branch=args.branch,
        tag=args.tag,
        flow_file=args.file,
        parallel=args.parallel,
        secrets_file=Path(args.secrets_file) if args.secrets_file else None,
        params=dict(item.partition("=")[::2] for item in args.param or []),
    )
    return runner.run(rt.settings, options)


def cmd_topology(rt: Runtime, args: argparse.Namespace) -> int:
    if args.action == "export":
        from tasuki.shared import topics

        text = json.dumps(topics.definitions(vhost=args.vhost), indent=2) + "\n"
        if args.output == "-":
            sys.stdout.write(text)
            return 0
        path = Path(args.output or DEFINITIONS)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path} (vhost {args.vhost}); import it with `rabbitmqctl import_definitions {path}`")
        return 0
    rt.broker.declare(pools=(rt.settings.executor_pool,))
    print("declared exchanges and queues in RabbitMQ")
    return 0


def cmd_deadletters(rt: Runtime, args: argparse.Namespace) -> int:
    from tasuki.shared import deadletters

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
        print(
            f"{letter.id}  {when}  {letter.subscription}  {letter.attempts} attempts  "
            f"{letter.type or '-'}  {letter.message_id}  {letter.last_error[:120]}"
        )
    return 0


def cmd_runs(rt: Runtime, args: argparse.Namespace) -> int:
    if args.action == "show":
        return _show_run(rt, args.run_id, args.log)
    if args.action == "cancel":
        return _cancel_run(rt, args.run_id)
    if args.action == "approve":
        return _approve_run(rt, args.run_id)
    if args.action == "start":
        return _start_run(rt, args)
    if args.action == "rerun":
        return _rerun(rt, args.run_id, args.failed)
    from tasuki.shared.web import paging

    size = max(1, args.limit)
    found = rt.store.list_runs(
        repository=args.repo,
        status=args.status,
        limit=size + 1,
        before=paging.read(args.before) if args.before else None,
    )
    runs, after = paging.page(found, size, paging.of_run)
    if not runs:
        print("no more runs" if args.before else "no runs yet")
    for run in runs:
        ref = run.event.ref.name if run.event.ref else ""
        print(
            f"{run.id}  {run.status:<9}  {run.repository}  {ref}  {run.commit[:12]}  {run.created_at:%Y-%m-%d %H:%M:%S}"
        )
    if after:
        same = [
            f"--{name} {shlex.quote(value)}" for name, value in (("repo", args.repo), ("status", args.status)) if value
        ]
        print(f"older: tasuki runs {' '.join([*same, f'--limit {size}'])} --before {after}")
    return 0


def _show_run(rt: Runtime, run_id: str | None, with_log: bool) -> int:
    run = rt.store.get_run(run_id or "")
    if run is None:
        print(f"no run {run_id}", file=sys.stderr)
        return 1
    print(f"run {run.id}: {run.status}  {run.repository} {run.commit[:12]}  {run.message}")
    if run.event.kind == "manual":
        params = " ".join(f"{k}={v}" for k, v in sorted(run.event.params.items()))
        print(f"  started by {run.event.actor or 'unknown'}" + (f"; parameters: {params}" if params else ""))
    if run.rerun_of:
        print(f"  re-run of {run.rerun_of}" + (f", keeping {', '.join(run.kept)}" if run.kept else ""))
    for job in rt.store.get_jobs(run.id):
        code = f" exit {job.exit_code}" if job.exit_code is not None else ""
        flaky = " (flaky)" if job.flaky else ""
        print(f"  {job.name:<16} {job.status}{code}{flaky}  {job.message}")
        # A job run more than once (retry:, a lost executor): every attempt, each with its log.
        earlier = [a for a in job.attempts if a.attempt != job.attempt]
        for a in earlier:
            print(f"    attempt {a.attempt}: {a.status}" + (f" exit {a.exit_code}" if a.exit_code is not None else ""))
        if with_log:
            for attempt in [*(a.attempt for a in earlier), job.attempt]:
                if earlier:
                    print(f"  --- {job.name}, attempt {attempt} ---")
                _print_log(rt, run.id, job.name, attempt)
    return 0


def _print_log(rt: Runtime, run_id: str, job: str, attempt: int, page: int = 64) -> None:
    """An attempt's whole log, read a page at a time (memory stays bounded by a page)."""
    after = -1
    while chunks := rt.store.read_log(run_id, job, after, attempt=attempt, limit=page):
        for _, data in chunks:
            sys.stdout.write(data.decode("utf-8", "replace"))
        after = chunks[-1][0]


def _approve_run(rt: Runtime, run_id: str | None) -> int:
    run = rt.store.get_run(run_id or "")
    if run is None:
        print(f"no run {run_id}", file=sys.stderr)
        return 1
    if run.status != approval.STATUS:
        print(f"run {run.id} is {run.status}, not waiting for approval; nothing to approve", file=sys.stderr)
        return 1
    # The dispatcher starts it in the run's order (a second approval changes nothing).
    rt.broker.publish(RunApprove(run_id=run.id, by="the command line"), message_id=f"{run.id}:approve")
    print(f"approved run {run.id} ({run.repository} {run.commit[:12]}); `tasuki runs show {run.id}` follows it")
    return 0


def _cancel_run(rt: Runtime, run_id: str | None) -> int:
    run = rt.store.get_run(run_id or "")
    if run is None:
        print(f"no run {run_id}", file=sys.stderr)
        return 1
    if run.status in RUN_FINAL:
        print(f"run {run.id} is already over ({run.status}); nothing to cancel", file=sys.stderr)
        return 1
    # The dispatcher cancels it in the run's order; executors stop its containers.
    rt.broker.publish(RunCancel(run_id=run.id, reason="cancelled from the command line"), message_id=f"{run.id}:cancel")
    print(f"cancelling run {run.id} ({run.repository} {run.commit[:12]}); `tasuki runs show {run.id}` follows it")
    return 0


def _start_run(rt: Runtime, args: argparse.Namespace) -> int:
    from tasuki.shared.web import actions

    if not args.run_id:
        raise ActionError(400, "name the repository: tasuki runs start REPO --branch main")
    given = {}
    for item in args.param or []:
        name, equals, value = item.partition("=")
        if not equals:
            raise ActionError(400, f"-p takes NAME=VALUE, found {item!r}")
        given[name.strip()] = value
    actor = f"{getpass.getuser()} (command line)"
    run_ids = actions.start_run(
        rt, args.run_id, branch=args.branch or "", tag=args.tag or "", params=given, actor=actor
    )
    for run_id in run_ids:
        print(f"started run {run_id}; `tasuki runs show {run_id}` follows it")
    return 0


def _rerun(rt: Runtime, run_id: str | None, failed: bool) -> int:
    from tasuki.shared.web import actions

    new_id = actions.rerun(rt, run_id or "", failed=failed)
    what = "the failed jobs of run" if failed else "run"
    print(f"re-running {what} {run_id} as run {new_id}; `tasuki runs show {new_id}` follows it")
    return 0


# --- deliveries and their stories -------------------------------------------------------------


def cmd_deliveries(rt: Runtime, args: argparse.Namespace) -> int:
    from tasuki.shared import stories
    from tasuki.shared.web import actions

    if args.action == "replay":
        new_id = actions.replay_delivery(rt, _delivery_id(args))
        print(f"replayed {args.delivery_id} as delivery {new_id}; `tasuki deliveries show {new_id}` follows it")
        return 0
    if args.action == "show":
        steps = actions.delivery(rt, _delivery_id(args))
        for line in stories.told(args.delivery_id, steps):
            print(line)
        return 0
    from tasuki.shared.web import paging

    size = max(1, args.limit)
    found = rt.store.stories(limit=size + 1, before=paging.read(args.before) if args.before else None)
    rows, after = paging.page([stories.summary(d, steps) for d, steps in found], size, paging.of_delivery)
    if not rows:
        print("no more deliveries" if args.before else "no deliveries yet")
    for row in rows:
        when = f"{row['at']:%Y-%m-%d %H:%M:%S}" if row["at"] else "?"
        print(f"{row['id']}  {when}  {row['repository'] or '-'}  {row['event'] or '-'}  {row['outcome']}")
    if after:
        print(f"older: tasuki deliveries --limit {size} --before {after}")
    return 0


def _delivery_id(args: argparse.Namespace) -> str:
    if not args.delivery_id:
        raise ConfigError("name the delivery by its id; `tasuki deliveries` lists them")
    return args.delivery_id


# --- the store --------------------------------------------------------------------------------


def cmd_store(rt: Runtime, args: argparse.Namespace) -> int:
    from tasuki.shared.messages import utcnow
    from tasuki.shared.store import LATEST
    from tasuki.shared.store.location import parse

    where = parse(rt.settings.store_url, rt.settings.data_dir)
    if args.action == "migrate":
        before, after = rt.store.migrate()
        print(f"store {where}: schema version {before} -> {after} ({'migrated' if after != before else 'up to date'})")
        return 0
    if args.action == "prune":
        runs_before, deliveries_before = rt.settings.retention_cutoffs(utcnow())
        pruned = rt.store.prune(runs_before=runs_before, deliveries_before=deliveries_before)
        from tasuki.functions.dispatcher import prune_artifacts

        artifacts = f" (and the artifacts of {prune_artifacts(rt, runs_before)})" if runs_before else ""
        print(
            f"store {where}: "
            + _pruned(pruned.runs, "run", "finished", runs_before, "TASUKI_RETENTION_RUNS_DAYS")
            + artifacts
            + "; "
            + _pruned(pruned.deliveries, "delivery id", "seen", deliveries_before, "TASUKI_RETENTION_DELIVERIES_DAYS")
        )
        return 0
    version = rt.store.schema_version()
    if version == LATEST:
        state = "up to date"
    elif version < LATEST:
        state = f"`tasuki store migrate` brings it to {LATEST}"
    else:
        state = f"newer than this Tasuki knows ({LATEST}): upgrade Tasuki"
    print(f"store {where}: schema version {version} ({state})")
    return 0


def _pruned(count: int, noun: str, verb: str, before: datetime | None, setting: str) -> str:
    if before is None:
        return f"every {noun} kept ({setting}=0)"
    return f"deleted {count} {noun}{'s' if count != 1 else ''} {verb} before {before:%Y-%m-%d %H:%M} UTC"


# --- trigger rules --------------------------------------------------------------------------------


def cmd_rules(rt: Runtime, args: argparse.Namespace) -> int:
    if args.action == "create":
        return _create_rule(rt, args)
    if args.action == "load":
        path = args.rule or rt.settings.rules_file
        if not path:
            raise ConfigError("no rules file: name one (tasuki rules load FILE) or set TASUKI_RULES_FILE")
        load_rules_file(rt, Path(path))
        return 0
    if args.action in ("disable", "enable", "delete"):
        rule = _find_rule(rt, args.rule)
        if args.action == "delete":
            rt.store.delete_rule(rule.id)
            print(f"deleted {rule.id}  {rule.sentence()}")
            if _in_rules_file(rt, rule):
                print(f"it is in {rt.settings.rules_file} and comes back at the next start; remove it there too")
            return 0
        rule = rule.model_copy(update={"enabled": args.action == "enable"})
        rt.store.update_rule(rule)
        print(f"{args.action}d {rule.id}  {rule.sentence()}")
        return 0
    rules = rt.store.list_rules()
    if not rules:
        print("no rules yet: every push is accepted but starts no run; add one with `tasuki rules create`")
    for rule in rules:
        print(f"{rule.id}  {rule.sentence()}")
    return 0


def _create_rule(rt: Runtime, args: argparse.Namespace) -> int:
    fields = {
        "host": args.host,
        "event": args.event,
        "repository": args.repo,
        "branch": args.branch,
        "tag": args.tag,
        "target": args.target,
        "flow_file": args.flow_file,
        "jobs": args.jobs,
        "enabled": not args.disabled,
        "cancel_previous": args.cancel_previous,
        "concurrency": args.concurrency,
        "schedule": args.schedule,
        "trust_forks": args.trust_forks,
    }
    try:
        rule = recipes.Rule.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        where, problem = first_problem(exc)
        field = where.split(".")[0]
        option = {"repository": "repo"}.get(field, field).replace("_", "-")
        raise ConfigError(f"{'--' + option + ': ' if option else ''}{problem}") from None
    if not rt.store.add_rule(rule):
        existing = rt.store.get_rule(rule.id) or rule  # (or deleted since, by someone else)
        print(f"this rule exists already: {rule.id}  {existing.sentence()}", file=sys.stderr)
        return 1
    print(f"created {rule.id}  {rule.sentence()}")
    return 0


def _find_rule(rt: Runtime, prefix: str | None) -> recipes.Rule:
    if not prefix:
        raise ConfigError("name the rule by its id (or the start of it); `tasuki rules` lists them")
    found = [r for r in rt.store.list_rules() if r.id.startswith(prefix)]
    if len(found) != 1:
        what = "no rule" if not found else f"{len(found)} rules ({', '.join(r.id for r in found)})"
        raise ConfigError(f"{what} with an id starting {prefix!r}; `tasuki rules` lists them")
    return found[0]


def _in_rules_file(rt: Runtime, rule: recipes.Rule) -> bool:
    try:
        return rt.settings.rules_file is not None and rule.id in {
            r.id for r in recipes.load_rules(rt.settings.rules_file)
        }
    except ConfigError:
        return False


def load_rules_file(rt: Runtime, path: Path) -> None:
    """Load the rules file into the store; loading the same file again changes nothing."""
    rules = recipes.load_rules(path)
    done = rt.store.sync_rules(rules)
    print(
        f"rules from {path}: {len(rules)} in the file; {len(done.added)} added, {len(done.updated)} changed, "
        f"{len(done.removed)} removed",
        flush=True,
    )


# --- job secrets (issue 14) -----------------------------------------------------------------------


def cmd_secrets(rt: Runtime, args: argparse.Namespace) -> int:
    """set (the value from stdin, never from argv: argv shows in `ps` and shell history), list
    (names only), delete; a repository's, or with --global the ones every repository's jobs may list."""
    from tasuki.shared.web import actions

    given = [w for w in args.names if w != "--global"]
    is_global = args.global_ or len(given) < len(args.names)
    if len(given) > 2 or (is_global and len(given) > 1):
        usage = "--global NAME" if is_global else "REPO NAME"
        raise ConfigError(f"tasuki secrets {args.action} {usage}: too many words ({' '.join(given)})")
    words: list[str | None] = [None, *given] if is_global else [*given]
    repo, name = [*words, None, None][:2]
    if not is_global and not repo:
        raise ConfigError(f"name a repository (tasuki secrets {args.action} REPO ...), or use --global")
    where = "global" if repo is None else repo
    if args.action == "list":
        names = actions.secret_names(rt, repo)
        for name in names:
            print(name)
        if not names:
            print(f"no secrets ({where})", file=sys.stderr)
        return 0
    if not name:
        raise ConfigError(f"tasuki secrets {args.action}: name the secret, like DEPLOY_TOKEN")
    if args.action == "delete":
        actions.delete_secret(rt, repo, name)
        print(f"deleted {name} ({where})")
        return 0
    if sys.stdin.isatty():
        print(f"value of {name} (then Enter; input is not shown):", file=sys.stderr)
        import getpass

        value = getpass.getpass("")
    else:
        # One final newline is dropped: `echo "$TOKEN" | tasuki secrets set ...` adds it.
        value = sys.stdin.read(vault.MAX_VALUE + 2).removesuffix("\n").removesuffix("\r")
    actions.set_secret(rt, repo, name, value)
    print(f"set {name} ({where}); jobs that list it get it from their next run")
    return 0


def cmd_deploy(rt: Runtime, args: argparse.Namespace) -> int:
    try:
        from tasuki.local.deploy import aws as to_aws
        from tasuki.local.deploy import bundle
    except ImportError as exc:
        raise ConfigError(f"tasuki deploy needs its extra: pip install 'tasuki[deploy]' ({exc})") from None
    target = to_aws.target_from(args) if args.action == "aws" else None
    bundles = bundle.build(Path(args.out))
    for built in bundles:
        print(f"{built.name:<12} {built.folder}/  {built.zip}  sha256 {built.sha256[:12]}")
    print(f"{len(bundles)} bundles and {Path(args.out) / 'manifest.json'}", flush=True)
    if target is not None:
        print(f"deploying to AWS Lambda in {target.region}:", flush=True)
        to_aws.report(to_aws.deploy(target, Path(args.out)))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tasuki", description="Tasuki: a small CI service.")
    sub = p.add_subparsers(dest="command", required=True)
    local = sub.add_parser("local", help="run every process on this machine")
    local.add_argument(
        "--no-executor",
        action="store_true",
        help="run the functions and the bridge only; executors run elsewhere (`tasuki executor`)",
    )
    local.set_defaults(fn=cmd_local)
    sub.add_parser(
        "demo", help="with `tasuki local` running: a sample repository, a rule and a signed push"
    ).set_defaults(fn=cmd_demo)
    serve = sub.add_parser("serve", help="serve one function with functions-framework (gunicorn)")
    serve.add_argument("function", choices=functions.NAMES)
    serve.add_argument("--port", type=int, help="default: its TASUKI_<FUNCTION>_PORT")
    serve.set_defaults(fn=cmd_serve)
    sub.add_parser(
        "functions", help="serve every function in one process, each on its own port (what `tasuki local` runs)"
    ).set_defaults(fn=cmd_functions)
    sub.add_parser("bridge", help="push subscriptions to the functions").set_defaults(fn=cmd_bridge)
    sub.add_parser("executor", help="run jobs in Docker containers").set_defaults(fn=cmd_executor)
    run = sub.add_parser(
        "run",
        help="run this checkout's flow in containers, with no broker, store or service",
        description="Run the jobs of .tasuki.yml (the named ones and what they need) in the same "
        "containers as the executor, on this machine. Exit code 0 only if every job passed.",
    )
    run.add_argument("jobs", nargs="*", metavar="JOB", help="jobs to run with what they need (default: all)")
    run.add_argument(
        "--event",
        choices=["push", "tag", "pull_request", "manual", "schedule"],
        help="the event `when` sees (default: push, or tag with --tag)",
    )
    run.add_argument(
        "-p", "--param", action="append", metavar="NAME=VALUE", help="with --event manual: a parameter (repeat)"
    )
    run.add_argument("--branch", help="the branch `when` sees (default: the checkout's current branch)")
    run.add_argument("--tag", default="", help="the tag `when` sees")
    run.add_argument("-C", "--directory", default=".", help="the checkout (default: here)")
    run.add_argument("-f", "--file", default=".tasuki.yml", help="the flow file, relative to the checkout")
    run.add_argument("-j", "--parallel", type=int, default=0, help="jobs at once (default: one per CPU)")
    run.add_argument(
        "--secrets-file",
        metavar="FILE",
        help="NAME=value lines: the secrets jobs list (default: from the environment; never from the repository)",
    )
    run.set_defaults(fn=cmd_run)
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
    runs = sub.add_parser("runs", help="list runs, show, cancel, approve or re-run one, start one by hand")
    runs.add_argument(
        "action", nargs="?", choices=["list", "show", "cancel", "approve", "start", "rerun"], default="list"
    )
    runs.add_argument("run_id", nargs="?", metavar="RUN|REPO", help="a run id; with start: the repository")
    runs.add_argument("--branch", help="start: the branch to run (its current head)")
    runs.add_argument("--tag", help="start: the tag to run")
    runs.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="start: a parameter (repeat)")
    runs.add_argument("--failed", action="store_true", help="rerun: keep the jobs that succeeded, run the rest")
    runs.add_argument("--repo")
    runs.add_argument("--status")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--before", metavar="CURSOR", help="list: the runs older than the page that printed it")
    runs.add_argument("--log", action="store_true", help="with show: print each job's log")
    runs.set_defaults(fn=cmd_runs)
    rules = sub.add_parser("rules", help="trigger rules: list, create, disable, enable, delete, load")
    rules.add_argument(
        "action", nargs="?", choices=["list", "create", "disable", "enable", "delete", "load"], default="list"
    )
    rules.add_argument("rule", nargs="?", help="a rule id (or its start); with load: the rules file")
    rules.add_argument("--repo", help="repository (a glob): acme/api, acme/*")
    rules.add_argument("--event", choices=["push", "tag", "pull_request", "manual", "schedule"])
    rules.add_argument(
        "--schedule",
        help="schedule: a cron expression (UTC) or hourly, 'hourly at :MM', 'daily at HH:MM', 'weekly on DAY at HH:MM'",
    )
    rules.add_argument("--host", help="bitbucket, github, gitlab (default: any)")
    rules.add_argument("--branch", help="push: the branch; pull_request: the source branch (a glob)")
    rules.add_argument("--tag", help="tag: the tag (a glob)")
    rules.add_argument("--target", help="pull_request: the target branch (a glob)")
    rules.add_argument("--flow-file", help="default: .tasuki.yml")
    rules.add_argument("--jobs", type=lambda v: [j for j in v.split(",") if j], help="only these jobs: a,b")
    rules.add_argument(
        "--cancel-previous",
        action="store_true",
        default=None,
        help="a newer push cancels the older unfinished run of the branch",
    )
    rules.add_argument("--concurrency", type=int, help="at most N unfinished runs of the repository at a time")
    rules.add_argument(
        "--trust-forks",
        action="store_true",
        default=None,
        help="pull_request: runs of pull requests from forks start without waiting for approval",
    )
    rules.add_argument("--disabled", action="store_true", help="create it disabled")
    rules.set_defaults(fn=cmd_rules)
    deploy = sub.add_parser("deploy", help="deploy the functions to a FaaS platform (infra/)")
    deploy.add_argument("action", choices=["bundle", "aws"], help="bundle: build the bundles; aws: build, then deploy")
    deploy.add_argument("--out", default="build/bundles", help="the bundles' folder (default: build/bundles)")
    deploy.add_argument("--bucket", help="aws: the S3 bucket for bundles and layers (made if missing)")
    deploy.add_argument("--region", help="aws: default AWS_REGION or the AWS configuration")
    deploy.add_argument("--prefix", default="tasuki-", help="aws: prefix of the functions', layer's and role's names")
    deploy.add_argument("--env-file", help="aws: TASUKI_*=value lines, the settings of every function")
    deploy.add_argument("--memory", type=int, default=512, help="aws: MB per function (default 512)")
    deploy.add_argument("--timeout", type=int, default=60, help="aws: seconds per invocation (default 60)")
    deploy.set_defaults(fn=cmd_deploy)
    told = sub.add_parser("deliveries", help="deliveries and what became of them: list, show one, replay one")
    told.add_argument("action", nargs="?", choices=["list", "show", "replay"], default="list")
    told.add_argument("delivery_id", nargs="?", metavar="ID")
    told.add_argument("--limit", type=int, default=20)
    told.add_argument("--before", metavar="CURSOR", help="list: the deliveries older than the page that printed it")
    told.set_defaults(fn=cmd_deliveries)
    secrets = sub.add_parser(
        "secrets",
        help="job secrets: set (value from stdin), list (names only), delete",
        description="A repository's job secrets (or with --global, every repository's). "
        "`tasuki secrets set REPO NAME` reads the value from stdin; values are never shown back.",
    )
    secrets.add_argument("action", choices=["set", "list", "delete"])
    # The rest as one list (argparse fills no optional positional after an option): --global may
    # come anywhere, and cmd_secrets takes it out of the list.
    secrets.add_argument(
        "names",
        nargs=argparse.REMAINDER,
        metavar="REPO NAME",
        help="the repository (like acme/api; none with --global), the secret's name",
    )
    secrets.add_argument(
        "--global", dest="global_", action="store_true", help="the secrets every repository's jobs may list"
    )
    secrets.set_defaults(fn=cmd_secrets)
    store = sub.add_parser("store", help="the store: status, migrate (schema), prune (retention)")
    store.add_argument("action", nargs="?", choices=["status", "migrate", "prune"], default="status")
    store.set_defaults(fn=cmd_store)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        logs.configure(settings.log_format, settings.log_level)
        return args.fn(Runtime(settings), args)
    except TasukiError as exc:
        print(f"tasuki: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
