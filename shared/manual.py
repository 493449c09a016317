"""Manual runs: a person starts a run of a branch or a tag by hand, with parameters (pure).

    if manual on acme/api on main then run .tasuki.yml (jobs deploy)

Only rules decide what may be started: a start request becomes an `Event` of kind `manual`,
weighed against the rules like any event (`shared.recipes`); every enabled manual rule that
matches requests one run, and with none the start is refused. The web page, the API and the
command line all go through `shared.web.actions.start_run`, which calls these.

The event names the branch or tag but no commit: the executor that plans the run resolves the
ref's head in its mirror of the registry's clone URL (the executor speaks only RabbitMQ, and
only functions touch the store), reads the flow file there, checks the parameters against the
flow file's `params` and answers with the commit and the parameters (`RunPlanned`); a parameter
that does not fit ends the run in error, naming it. Before that, the functions check the
parameters against the declaration of the repository's last planned run, so that a mistake is
refused at once (422) where it is known.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import time
from collections.abc import Iterable, Mapping

from tasuki.shared import recipes
from tasuki.shared.errors import ActionError
from tasuki.shared.flowfile import params as flowparams
from tasuki.shared.flowfile.params import Param
from tasuki.shared.messages import Event, Ref, Repository, RunRequested
from tasuki.shared.registry import normalise
from tasuki.shared.store import RunRecord
from tasuki.shared.text import clip

# A branch or tag name git accepts, and nothing an argv could read as an option or a range.
_REF = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/@+-]{1,200}(?<![./])(?<!\.lock)$")


def ref(branch: str = "", tag: str = "") -> Ref:
    """The branch or the tag to start (exactly one), its name checked."""
    if bool(branch) == bool(tag):
        raise ActionError(400, "name a branch or a tag to run (one of them)")
    kind, name = ("branch", branch) if branch else ("tag", tag)
    if not _REF.match(name):
        raise ActionError(400, f"{clip(name, 80)!r} is not a {kind} name")
    return Ref(kind=kind, name=name)


def event(repository: str, at: Ref, given: Mapping[str, str], actor: str, host: str = "") -> Event:
    """The event of one manual start (its delivery id is new: each start is a new run)."""
    started = f"{repository}|{at.kind}|{at.name}|{time.time_ns()}"
    return Event(
        host=host,
        event="manual",
        kind="manual",
        delivery_id="manual-" + hashlib.sha256(started.encode()).hexdigest()[:16],
        repository=Repository(full_name=repository),
        ref=at,
        actor=clip(actor, 200),
        params=dict(given),
    )


def requests(rules: Iterable[recipes.Rule], started: Event) -> list[RunRequested]:
    """One run request per enabled manual rule that lets this start happen; refused (403) when
    none does, saying what rule would."""
    matching = recipes.match(list(rules), started)
    if not matching:
        what = f"{started.ref.kind} {started.ref.name}" if started.ref else "it"
        raise ActionError(
            403,
            f"no rule lets anyone start runs of {started.repository.full_name} ({what}): add one like "
            f"'if manual on {started.repository.full_name} then run .tasuki.yml' (event manual)",
        )
    return [
        RunRequested(
            run_id=recipes.run_id(started, rule),
            rule_id=rule.id,
            event=started,
            flow_file=rule.flow_file,
            jobs=rule.jobs,
            concurrency=rule.concurrency,
        )
        for rule in matching
    ]


def manual_rules(rules: Iterable[recipes.Rule], repository: str) -> list[recipes.Rule]:
    """The enabled manual rules of a repository (no rule, no Run button)."""
    name = normalise(repository)
    return [
        r for r in rules if r.enabled and r.event == "manual" and fnmatch.fnmatchcase(name, normalise(r.repository))
    ]


def declared(runs: Iterable[RunRecord], flow_file: str) -> dict[str, Param] | None:
    """The parameters the flow file declared when a run of the repository was last planned with
    it (`runs` newest first); None when none was planned yet."""
    for run in runs:
        if run.flow_file == flow_file and run.declared_params is not None:
            return dict(run.declared_params)
    return None


def check(declaration: Mapping[str, Param] | None, given: Mapping[str, str]) -> None:
    """Refuse (ParamError: 422, naming the parameter) what the known declaration does not
    accept; with no declaration known yet, the executor checks at planning."""
    if declaration is not None:
        flowparams.resolve(declaration, given)
