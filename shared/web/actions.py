"""What the page and the API do to the system; both call these, so they always agree.

Each action validates its input and raises `ActionError` (a 4xx with a message a person can act
on; `NoSuchLetter` is one) or the usual Tasuki errors (broker or store unavailable: 503).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import msgpack
from pydantic import ValidationError

from tasuki.shared import approval, codec, deadletters, manual, reruns, scheduler, stories, vault
from tasuki.shared.errors import ActionError, ConfigError, first_problem
from tasuki.shared.flowfile import params as flowparams
from tasuki.shared.messages import RUN_FINAL, Event, RunApprove, RunCancel, RunRequested
from tasuki.shared.recipes import Rule, load_rules
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.runtime import Runtime
from tasuki.shared.scheduler import JobState
from tasuki.shared.store import RunRecord, Step
from tasuki.shared.text import clip


def get_run(rt: Runtime, run_id: str) -> RunRecord:
    run = rt.store.get_run(run_id)
    if run is None:
        raise ActionError(404, f"there is no run {run_id}")
    return run


def cancel(rt: Runtime, run_id: str) -> RunRecord:
    run = get_run(rt, run_id)
    if run.status in RUN_FINAL:
        raise ActionError(409, f"run {run_id} has already finished ({run.status}); nothing to cancel")
    rt.broker.publish(RunCancel(run_id=run_id, reason="cancelled from the web page"))
    return run


def approve(rt: Runtime, run_id: str, by: str) -> RunRecord:
    """Let a run that waits for approval (a fork's pull request) start; 409 for any other run."""
    run = get_run(rt, run_id)
    if run.status != approval.STATUS:
        raise ActionError(409, f"run {run_id} is {run.status}, not waiting for approval; nothing to approve")
    rt.broker.publish(RunApprove(run_id=run_id, by=by), message_id=f"{run_id}:approve")
    return run


def rerun(rt: Runtime, run_id: str, *, failed: bool = False) -> str:
    """Request a new run of the same event and rule; returns the new run's id. With `failed`,
    the new run keeps the jobs that succeeded and runs the others and what needs them
    (`shared.reruns`), at the same commit."""
    run = get_run(rt, run_id)
    keep = failed_only(rt, run) if failed else []
    new_id = hashlib.sha256(f"{run.id}|rerun|{time.time_ns()}".encode()).hexdigest()[:16]
    rt.broker.publish(
        RunRequested(
            run_id=new_id,
            rule_id=run.rule_id,
            event=run.event,
            flow_file=run.flow_file,
            jobs=run.requested_jobs,
            cancel_previous=run.cancel_previous,
            concurrency=run.concurrency,
            # Re-running a run that still waits for approval does not approve it.
            approval=run.status == approval.STATUS,
            rerun_of=run.id,
            keep=keep,
            # a job this run had kept ran in an earlier run: the re-run takes its artifacts from there
            kept_from={name: scheduler.ran_in(run, name) for name in keep if name in run.kept},
        ),
        message_id=f"{new_id}:requested",
    )
    return new_id


def failed_only(rt: Runtime, run: RunRecord) -> list[str]:
    """The jobs a re-run of `run`'s failed jobs keeps; refused while it runs or if all succeeded."""
    if run.status not in RUN_FINAL:
        raise ActionError(409, f"run {run.id} has not finished ({run.status}); re-run its failed jobs once it has")
    jobs = {j.name: JobState(j.status, tuple(j.needs)) for j in rt.store.get_jobs(run.id)}
    if jobs and all(j.status == "success" for j in jobs.values()):
        raise ActionError(409, f"every job of run {run.id} succeeded; there is no failed job to re-run")
    return reruns.kept(jobs)


# --- manual runs ------------------------------------------------------------------------------------


def start_run(
    rt: Runtime, repository: str, *, branch: str = "", tag: str = "", params: dict[str, Any] | None = None, actor: str
) -> list[str]:
    """Start runs of a branch or tag by hand, with parameters: one per manual rule that allows
    it (403 without one; 404 for a repository not registered; 422 naming a parameter the flow
    file's known declaration refuses). Returns the new runs' ids."""
    name = registered(rt, repository)
    given = flowparams.given(params or {})
    recent = rt.store.list_runs(repository=name, limit=50)
    started = manual.event(name, manual.ref(branch, tag), given, actor, host=recent[0].event.host if recent else "")
    requests = manual.requests(rt.store.list_rules(), started)
    for request in requests:
        manual.check(manual.declared(recent, request.flow_file), given)
    for request in requests:
        rt.broker.publish(request, message_id=f"{request.run_id}:requested")
    return [r.run_id for r in requests]


def run_form(rt: Runtime, repository: str) -> dict[str, Any]:
    """What the Run form of a repository offers: its manual rules and the parameters the flow
    file declared when last planned (None: not known until a run is planned)."""
    name = registered(rt, repository)
    rules = manual.manual_rules(rt.store.list_rules(), name)
    recent = rt.store.list_runs(repository=name, limit=50)
    declared = manual.declared(recent, rules[0].flow_file) if rules else None
    return {"repository": name, "rules": rules, "params": declared}


def registered(rt: Runtime, repository: str) -> str:
    """The registered name of `repository` (any spelling); 404 when it is not registered."""
    found = rt.registry.find(repository)
    if found is None:
        raise ActionError(404, f"{clip(repository, 100)} is not a registered repository")
    return found[0]


# What registering a repository takes (the registry file's fields), beside its full name.
REPOSITORY_FIELDS = ("clone_url", "secret", "token", "username", "app_password", "trust_forks")


def register_repository(
    rt: Runtime,
    full_name: str,
    clone_url: str = "",
    secret: str = "",
    token: str = "",
    *,
    username: str = "",
    app_password: str = "",
    trust_forks: bool = False,
) -> str:
    """Register a repository; refused (400) with a name that is not one, a clone URL whose scheme
    is not allowed (TASUKI_CLONE_SCHEMES), a Bitbucket username without its app password (or the
    other way round), or (409) a repository registered already (any spelling)."""
    if bool(username.strip()) != bool(app_password):
        raise ActionError(400, "a Bitbucket app password goes with its username: give both, or an access token instead")
    config = RepositoryConfig(
        clone_url=clone_url.strip(),
        secret=secret,
        token=token,
        username=username.strip(),
        app_password=app_password,
        trust_forks=trust_forks,
    )
    name = rt.registry.registrable(full_name, config)
    rt.store.put_repository(name, config)
    return name


def remove_repository(rt: Runtime, full_name: str) -> None:
    found = rt.registry.find(full_name)
    if found is None or not rt.store.delete_repository(found[0]):
        raise ActionError(404, f"{full_name} was not registered from this page (the registry file is read-only here)")


# --- job secrets (issue 14): names and set/delete only, values never read back ------------------------


def secrets_of(rt: Runtime, repository: str | None) -> str | None:
    """The registered name of the repository whose secrets are asked for (None: the global ones);
    404 for a repository Tasuki does not know (a secret set for a misspelt name helps no one)."""
    if repository is None:
        return None
    vault.scope(repository)  # 400 for a name that is not one
    return registered(rt, repository)


def secret_names(rt: Runtime, repository: str | None) -> list[str]:
    return vault.names(rt.store, secrets_of(rt, repository))


def set_secret(rt: Runtime, repository: str | None, name: str, value: str) -> None:
    vault.put(rt.store, rt.settings.store_key_value(), secrets_of(rt, repository), name, value)


def delete_secret(rt: Runtime, repository: str | None, name: str) -> None:
    if not vault.delete(rt.store, secrets_of(rt, repository), name):
        raise ActionError(404, f"no secret {name} {'of ' + repository if repository else 'among the global ones'}")


# --- trigger rules ----------------------------------------------------------------------------------


def create_rule(rt: Runtime, fields: dict[str, Any]) -> Rule:
    """A rule from the page's form or the API's JSON; refusals say which field and why."""
    values = {k: v for k, v in fields.items() if v not in (None, "")}
    for glob in ("host", "branch", "tag", "target"):
        values.pop(glob, None) if values.get(glob) == "*" else None
    if isinstance(values.get("jobs"), str):
        values["jobs"] = [j.strip() for j in values["jobs"].split(",") if j.strip()]
    if "concurrency" in values:
        try:
            values["concurrency"] = int(values["concurrency"])
        except (TypeError, ValueError):
            raise ActionError(400, f"concurrency must be a whole number, found {values['concurrency']!r}") from None
    values.pop("id", None)
    try:
        rule = Rule.model_validate(values)
    except ValidationError as exc:
        where, problem = first_problem(exc)
        raise ActionError(400, f"{where + ': ' if where else ''}{problem}") from None
    if not rt.store.add_rule(rule):
        raise ActionError(409, f"this rule exists already: {rule.sentence()}")
    return rule


def get_rule(rt: Runtime, rule_id: str) -> Rule:
    rule = rt.store.get_rule(rule_id)
    if rule is None:
        raise ActionError(404, f"there is no rule {rule_id}")
    return rule


def set_rule_enabled(rt: Runtime, rule_id: str, enabled: bool) -> Rule:
    rule = get_rule(rt, rule_id).model_copy(update={"enabled": enabled})
    rt.store.update_rule(rule)
    return rule


def delete_rule(rt: Runtime, rule_id: str) -> Rule:
    rule = get_rule(rt, rule_id)
    rt.store.delete_rule(rule_id)
    return rule


def file_rule_ids(rt: Runtime) -> set[str]:
    """Ids of the rules that come from the rules file (they return at the next start if deleted)."""
    if rt.settings.rules_file is None:
        return set()
    try:
        return {r.id for r in load_rules(rt.settings.rules_file)}
    except ConfigError:
        return set()


# --- deliveries and their stories (issue 16) ---------------------------------------------------------


def delivery(rt: Runtime, delivery_id: str) -> list[Step]:
    steps = rt.store.story(delivery_id)
    if not steps:
        raise ActionError(404, f"there is no delivery {delivery_id} (deliveries are kept {_kept(rt)})")
    return stories.ordered(steps)


def _kept(rt: Runtime) -> str:
    days = rt.settings.retention_deliveries_days
    return f"{days} day{'s' if days != 1 else ''}, TASUKI_RETENTION_DELIVERIES_DAYS" if days else "for ever"


def replay_delivery(rt: Runtime, delivery_id: str) -> str:
    """Publish the delivery's events again under a new delivery id (so new runs), as the ingress
    would; its story names the delivery it replays. Returns the new delivery id."""
    steps = delivery(rt, delivery_id)
    ingress = next((r for _, _, r in steps if r.get("kind") == "ingress" and r.get("replay")), None)
    if ingress is None:
        raise ActionError(409, f"delivery {delivery_id} made no events to replay ({stories.outcome(steps)})")
    new_id = f"{delivery_id[:150]}.replay-{secrets.token_hex(4)}"
    try:
        events = [Event.model_validate({**e, "delivery_id": new_id}) for e in ingress["replay"]]
    except ValidationError as exc:
        raise ActionError(
            409, f"delivery {delivery_id}'s events can no longer be read: {first_problem(exc)[1]}"
        ) from None
    rt.publisher.publish_all([(e, f"{new_id}#{i}", codec.encode(e)) for i, e in enumerate(events)])
    rt.store.tell(
        new_id,
        "ingress",
        stories.accepted(ingress["host"], ingress["event"], ingress["repository"], events, replay_of=delivery_id),
    )
    return new_id


# --- dead letters ------------------------------------------------------------------------------------


def letters(rt: Runtime) -> list[deadletters.Letter]:
    return deadletters.list_letters(rt.settings.amqp_url)


def letter(rt: Runtime, letter_id: str) -> deadletters.Letter:
    for found in letters(rt):
        if letter_id in (found.id, found.message_id):
            return found
    raise ActionError(404, f"there is no dead letter {letter_id} (it may have been replayed)")


def replay(rt: Runtime, letter_id: str | None) -> list[str]:
    return deadletters.replay(rt.settings.amqp_url, letter_id)


def letter_body(found: deadletters.Letter) -> Any:
    """The body as data a person can read (msgpack decoded), or its bytes shown safely."""
    try:
        return msgpack.unpackb(found.body, raw=False)
    except Exception:  # not msgpack: show what it is
        return found.body.decode("utf-8", "replace")
