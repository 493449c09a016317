"""`tasuki run`: a checkout's flow on this machine, in the same containers, with no service at all.

    read .tasuki.yml from the checkout -> choose the jobs (the named ones and what they need;
    `when` judged against --event, --branch, --tag; a matrix job is one job per combination) ->
    run every job whose needs passed, in parallel, each in a fresh copy of the checkout as it is
    now, with its services, again after a failure as its `retry:` says -> print each log line
    prefixed by its job -> a summary table (a job that passed after a retry is marked flaky) ->
    exit 0 only if every job that ran passed.

A job gets the secrets it lists from the file named with --secrets-file (NAME=value lines), or
else from the environment, never from the repository; they are masked in its output as the
executor masks them.

No broker, no store, no service: only git, the Docker engine and the job code the executor uses
(`local.jobs`). Artifacts pass between the run's jobs through a folder of the run's own (gone
when it ends); caches live in the object storage of TASUKI_OBJECTS_URL (by default the folder
<data dir>/objects), scoped to the checkout's repository and branch as on the service. A job whose needs did not all pass is skipped, as the dispatcher does
(`shared.scheduler.advance`). Ctrl-C kills the running containers and removes them.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import re
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tasuki.local.executor import caches, convert, jobs
from tasuki.local.executor import secrets as job_secrets
from tasuki.local.executor.checkout import git, remove_tree, toplevel, working_copy
from tasuki.local.executor.containers import Docker
from tasuki.local.executor.jobfiles import JobFiles
from tasuki.local.executor.logsink import LogSink
from tasuki.shared import flowfile, objects, scheduler
from tasuki.shared.errors import CheckoutFailed, FlowFileError, JobError, ParamError
from tasuki.shared.flowfile import Flow, Job
from tasuki.shared.flowfile.params import given, resolve
from tasuki.shared.settings import Settings

PASSED = frozenset({"success"})
LINE_LIMIT = 16 * 1024  # a longer line without a newline is printed as it is


@dataclass
class Options:
    directory: Path = Path(".")
    jobs: list[str] = field(default_factory=list)
    event: str = ""  # empty: "tag" with --tag, else "push"
    branch: str | None = None  # None: the checkout's current branch
    tag: str = ""
    flow_file: str = flowfile.FLOW_FILE
    parallel: int = 0  # 0: one job per CPU
    params: dict[str, str] = field(default_factory=dict)  # with event manual: TASUKI_PARAM_<NAME>
    # Where the secrets jobs list come from: this file's NAME=value lines, or (None) the environment.
    secrets_file: Path | None = None


@dataclass(frozen=True)
class Result:
    name: str
    status: str
    exit_code: int | None = None
    seconds: float | None = None
    message: str = ""
    by_when: bool = False  # skipped because its `when` does not match: not a failure


# --- what to run (pure) ---------------------------------------------------------------------------


def choose(flow: Flow, options: Options, branch: str) -> tuple[dict[str, Job], list[str]]:
    """The jobs to run and the ones `when` skips, for the named jobs (all when none is named)."""
    return flowfile.select(
        flow, event=event_of(options), branch=branch, tag=options.tag, changed=None, names=options.jobs
    )


def event_of(options: Options) -> str:
    return options.event or ("tag" if options.tag else "push")


def manual_params(flow: Flow, options: Options) -> tuple[tuple[str, str], ...]:
    """`--event manual`: the flow file's parameters as `-p` sets them or by default, checked
    as the service checks them (ParamError naming the one that does not fit)."""
    if event_of(options) != "manual":
        if options.params:
            raise ParamError("parameters (-p) are for manual runs: add --event manual")
        return ()
    return tuple(sorted(resolve(flow.params, given(options.params)).items()))


def summary(results: list[Result]) -> str:
    """The table printed at the end, one row per job in the order they were planned."""
    rows = [("JOB", "STATUS", "EXIT", "TIME", "")]
    for r in results:
        code = "" if r.exit_code is None else str(r.exit_code)
        took = "" if r.seconds is None else jobs.duration(round(r.seconds, 1))
        rows.append((r.name, r.status, code, took, r.message))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        f"{name:<{widths[0]}}  {status:<{widths[1]}}  {code:>{widths[2]}}  {took:>{widths[3]}}  {message}".rstrip()
        for name, status, code, took, message in rows
    ]
    bad = [r.name for r in results if not passed(r)]
    lines.append(
        f"failed: {', '.join(bad)}" if bad else f"passed: {sum(r.status == 'success' for r in results)} job(s)"
    )
    return "\n".join(lines)


def passed(result: Result) -> bool:
    return result.status in PASSED or (result.status == "skipped" and result.by_when)


# --- printing ---------------------------------------------------------------------------------------


class Printer:
    """Log lines of parallel jobs on one stream, each prefixed by its job; thread-safe."""

    def __init__(self, out: TextIO, names: list[str]) -> None:
        self.out = out
        self.width = max((len(n) for n in names), default=0)
        self._partial: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def writer(self, job: str) -> Callable[[int, bytes], None]:
        return lambda _seq, data: self.write(job, data)

    def write(self, job: str, data: bytes) -> None:
        with self._lock:
            *lines, rest = (self._partial.pop(job, b"") + data).split(b"\n")
            if len(rest) > LINE_LIMIT:
                lines, rest = [*lines, rest], b""
            for line in lines:
                self._line(job, line)
            if rest:
                self._partial[job] = rest
            self.out.flush()

    def close(self, job: str) -> None:
        with self._lock:
            rest = self._partial.pop(job, b"")
            if rest:
                self._line(job, rest)
                self.out.flush()

    def say(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def _line(self, job: str, line: bytes) -> None:
        self.out.write(f"{job:<{self.width}} | {line.decode('utf-8', 'replace').rstrip(chr(13))}\n")


# --- running ------------------------------------------------------------------------------------------


class LocalRun:
    def __init__(
        self,
        settings: Settings,
        options: Options,
        *,
        out: TextIO = sys.stdout,
        docker: Docker | None = None,
        environ: Mapping[str, str] = os.environ,
    ):
        self.settings = settings
        self.options = options
        self.environ = environ
        self.secrets: Mapping[str, str] = {}
        self.secrets_from = "in the environment (or name a --secrets-file)"
        self.out = out
        self.docker = docker or Docker(settings.docker_host)
        self.limits = convert.Limits.of(settings)
        self.run_id = f"local-{uuid.uuid4().hex[:12]}"
        self.cancel = threading.Event()
        self.caches = objects.new_objects(settings)
        self.artifacts: objects.Objects | None = None  # a folder in the run's temporary folder

    def __call__(self) -> int:
        root = Path(self.options.directory).resolve()
        root = toplevel(root) or root
        flow = self._flow(root)
        self._secret_source()
        branch = self.options.branch if self.options.branch is not None else current_branch(root)
        selected, skipped = choose(flow, self.options, branch)
        self.limits.memory_bytes  # noqa: B018  a bad TASUKI_JOB_MEMORY stops here, clearly
        commit = head_commit(root)
        ctx = convert.Context(
            repository=repository_name(root),
            ref=f"refs/tags/{self.options.tag}" if self.options.tag else (f"refs/heads/{branch}" if branch else ""),
            branch=branch,
            tag=self.options.tag,
            commit=commit,
            run_id=self.run_id,
            event=event_of(self.options),
            host="local",
            actor=_user(),
            params=manual_params(flow, self.options),
        )
        order = [
            n
            for n in flowfile.topological_order({n: flow.jobs[n].needs for n in flow.jobs}) or []
            if n in selected or n in skipped
        ]
        printer = Printer(self.out, list(selected))
        where = f"branch {branch}" if branch else (f"tag {self.options.tag}" if self.options.tag else "no branch")
        printer.say(
            f"tasuki run {self.run_id}: {len(selected)} job(s) for a {ctx.event} on {where} "
            f"at {commit[:12] or 'no commit'}" + (f"; skipped by when: {', '.join(skipped)}" if skipped else "")
        )
        results = {n: Result(n, "skipped", message="its when does not match", by_when=True) for n in skipped}
        if selected:
            self.docker.ping()  # one clear error now, rather than one per job
            with tempfile.TemporaryDirectory(prefix="tasuki-run-") as tmp:
                self.artifacts = objects.FolderObjects(Path(tmp) / "objects")
                try:
                    self._schedule(selected, ctx, root, Path(tmp), printer, results)
                except KeyboardInterrupt:
                    self._report([results.get(n) or Result(n, "cancelled") for n in order], printer)
                    return 130
        return self._report([results[n] for n in order], printer)

    def _report(self, final: list[Result], printer: Printer) -> int:
        printer.say("")
        printer.say(summary(final))
        return 0 if all(passed(r) for r in final) else 1

    def _secret_source(self) -> None:
        """Secrets come from the user, never from the repository: the file they named, or else
        the environment (a job still gets only the ones it lists)."""
        if self.options.secrets_file is not None:
            self.secrets = job_secrets.read_file(self.options.secrets_file)
            self.secrets_from = f"in {self.options.secrets_file}"
        else:
            self.secrets = self.environ

    def _flow(self, root: Path) -> Flow:
        path = root / self.options.flow_file
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            raise FlowFileError(f"{self.options.flow_file}: not found in {root}; add one (see README)") from None
        except OSError as exc:
            raise FlowFileError(f"{self.options.flow_file}: cannot read it: {exc}") from None
        return flowfile.parse(text, self.options.flow_file)

    def _schedule(
        self,
        selected: dict[str, Job],
        ctx: convert.Context,
        root: Path,
        tmp: Path,
        printer: Printer,
        results: dict[str, Result],
    ) -> None:
        status = {name: "pending" for name in selected}
        parallel = self.options.parallel or os.cpu_count() or 2
        running: dict[Future, str] = {}
        with ThreadPoolExecutor(parallel, thread_name_prefix="job") as pool:
            try:
                while True:
                    step = scheduler.advance(
                        {n: scheduler.JobState(status[n], tuple(j.needs)) for n, j in selected.items()}
                    )
                    for name in step.skipped:
                        status[name] = "skipped"
                        results[name] = Result(name, "skipped", message="a job it needs did not pass")
                    for name in step.ready:
                        status[name] = "running"
                        job_ctx = dataclasses.replace(ctx, job=name)
                        running[pool.submit(self._one, selected[name], job_ctx, root, tmp, printer)] = name
                    if not running:
                        return
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        name = running.pop(future)
                        results[name] = future.result()
                        status[name] = results[name].status
            except KeyboardInterrupt:
                # Ctrl-C: every job sees the flag, kills and removes its container, and ends.
                self.cancel.set()
                printer.say("tasuki run: interrupted; stopping the running jobs")
                for future, name in running.items():
                    results[name] = Result(name, "cancelled") if future.cancel() else future.result()
                raise

    def _one(self, job: Job, ctx: convert.Context, root: Path, tmp: Path, printer: Printer) -> Result:
        """Every attempt of the job (its `retry:`, as the dispatcher decides it), each in a fresh
        copy of the checkout, as the executor makes a fresh checkout for each."""
        name = job.name
        workspace = tmp / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        ended: list[jobs.Outcome] = []
        received = job_secrets.from_environment(job, self.secrets, self.secrets_from)
        try:
            with LogSink(printer.writer(name), received.masked(self.settings.secret_values())) as sink:
                while True:
                    attempt = len(ended) + 1
                    outcome = self._attempt(
                        job, dataclasses.replace(ctx, attempt=attempt), root, workspace, sink, received
                    )
                    ended.append(outcome)
                    if not job.retry.again(outcome.status, attempt) or self.cancel.is_set():
                        break
                    why = job.retry.why(attempt, attempt, outcome.status, outcome.exit_code, outcome.message)
                    sink.feed(f"[tasuki] attempt {attempt + 1}: {why}\n".encode())
        except JobError as exc:
            return Result(name, "error", message=str(exc))
        finally:
            printer.close(name)
        last = ended[-1]
        message = last.message
        if len(ended) > 1:
            codes = ", ".join(
                f"{o.status}" + (f" ({o.exit_code})" if o.exit_code not in (None, 0) else "") for o in ended
            )
            flaky = "flaky: " if last.ok else ""
            message = f"{flaky}{len(ended)} attempts: {codes}" + (f"; {last.message}" if last.message else "")
        seconds = sum(o.seconds for o in ended)
        return Result(name, last.status, last.exit_code, seconds, message)

    def _attempt(
        self,
        job: Job,
        ctx: convert.Context,
        root: Path,
        workspace: Path,
        sink: LogSink,
        received: job_secrets.Received,
    ) -> jobs.Outcome:
        try:
            try:
                working_copy(root, workspace)
            except (CheckoutFailed, OSError) as exc:
                error = CheckoutFailed(f"cannot copy the checkout for {job.name}: {exc}")
                sink.feed(f"[tasuki] {error}\n".encode())
                return jobs.Outcome("error", None, error.reason, str(error))
            return jobs.run_job(
                self.docker,
                job,
                ctx,
                workspace,
                limits=self.limits,
                timeout=job.timeout or self.settings.job_timeout,
                on_output=sink.feed,
                cancelled=self.cancel.is_set,
                on_tick=sink.tick,
                executor_id=self.run_id,
                files=self._files(ctx),
                secrets=received,
            )
        finally:
            remove_tree(workspace)

    def _files(self, ctx: convert.Context) -> JobFiles:
        assert self.artifacts is not None, "jobs run inside the run's temporary folder"
        scope = caches.Scope(ctx.repository, ctx.branch) if ctx.branch else None
        return JobFiles(
            self.artifacts,
            self.run_id,
            scope,
            self.settings.artifacts_max_bytes,
            self.settings.cache_max_bytes,
            cache_store=self.caches,
        )


def run(settings: Settings, options: Options, *, out: TextIO = sys.stdout) -> int:
    return LocalRun(settings, options, out=out)()


# --- the checkout's facts -----------------------------------------------------------------------------


def current_branch(root: Path) -> str:
    try:
        return git("symbolic-ref", "--short", "-q", "HEAD", cwd=root, timeout=30).strip()
    except CheckoutFailed:
        return ""  # detached, or not a git checkout


def head_commit(root: Path) -> str:
    try:
        return git("rev-parse", "-q", "--verify", "HEAD", cwd=root, timeout=30).strip()
    except CheckoutFailed:
        return ""


def repository_name(root: Path) -> str:
    """owner/name from the `origin` remote's URL, else the folder's name."""
    try:
        url = git("remote", "get-url", "origin", cwd=root, timeout=30).strip()
    except CheckoutFailed:
        return root.name
    parts = [p for p in re.split(r"[/:]", url.removesuffix(".git")) if p]
    return "/".join(parts[-2:]) if len(parts) >= 2 else root.name


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (a container without /etc/passwd)
        return ""
