"""Trigger rules ("recipes"), as simple as IFTTT: *if* this event *then* run that flow.

    if push to acme/api on main then run .tasuki.yml

A rule matches an `Event` by host, kind (push, tag, pull_request), repository (a glob, compared
normalised as the registry compares names: `ACME/Api` is `acme/api`), and a glob on
the branch, the tag or the pull request's target branch. `match()` is pure; the router calls
it and publishes one `run.requested` per matching rule. Two options shape the runs a rule makes:
`cancel_previous` (a newer push cancels the older unfinished run of the same branch) and
`concurrency` (at most that many unfinished runs of the repository at a time; more wait queued).

Rules live in the store. The rules file (`TASUKI_RULES_FILE`) is loaded into it at start
(`tasuki local`, or `tasuki rules load`); `tasuki rules` creates, lists, disables and deletes them.

    rules:
      - {event: push, repository: acme/api, branch: main, cancel_previous: true}
      - {event: tag, repository: "acme/*", tag: "v*", jobs: [release]}
      - {event: pull_request, repository: acme/api, target: main, concurrency: 2}
      - {event: manual, repository: acme/api, branch: main, jobs: [deploy]}
      - {event: schedule, schedule: "daily at 02:00", repository: acme/api, branch: main, jobs: [nightly]}

A rule for event `manual` is what lets a person start a run by hand (web page, API, command
line) of a matching repository and branch (or tag): without one, nothing may be started.

`mismatch()` says, as data, the first reason a rule does not match an event (the delivery's
story shows it for every rule weighed). A schedule rule matches no git event: the clock starts
its runs (`scheduled()`, see shared/schedules.py), each building the branch's head at that time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasuki.shared import schedules
from tasuki.shared.errors import ConfigError, ScheduleError, first_problem
from tasuki.shared.messages import Event, Ref, Repository, RunRequested
from tasuki.shared.registry import normalise

SKIP_CI = re.compile(r"\[(skip ci|ci skip)\]", re.IGNORECASE)
# A pull request in one of these states triggers nothing.
CLOSED_STATES = frozenset({"closed", "merged", "declined", "fulfilled", "rejected", "superseded"})


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = ""
    host: str = "*"
    event: Literal["push", "tag", "pull_request", "manual", "schedule"] = "push"
    repository: str
    branch: str = "*"  # push: the pushed branch; pull_request: the source branch; manual: a branch to start
    tag: str = "*"  # tag: the pushed tag; manual: a tag to start
    target: str = "*"  # pull_request: the target branch
    flow_file: str = ".tasuki.yml"
    jobs: list[str] = Field(default_factory=list)
    enabled: bool = True
    # A newer push to the same branch (or pull request) cancels this rule's older unfinished run.
    cancel_previous: bool = False
    # At most this many unfinished runs of the repository at a time; None: no limit.
    concurrency: int | None = Field(None, ge=1)
    # --- schedules (issue 16): event "schedule" runs at the times of a cron expression (UTC);
    # written as one or as a phrase (shared/schedules.py), kept as the cron expression.
    schedule: str = ""
    # Runs of pull requests from forks start without waiting for approval (shared/approval.py).
    trust_forks: bool = False

    @model_validator(mode="after")
    def _fits_the_event(self) -> Rule:
        wrong = {
            "branch": self.event == "tag",
            "tag": self.event not in ("tag", "manual"),
            "target": self.event != "pull_request",
        }
        for name, misplaced in wrong.items():
            if misplaced and getattr(self, name) != "*":
                uses = {"branch": "push, pull_request and manual", "tag": "tag and manual", "target": "pull_request"}
                raise ValueError(f"{name} applies to rules for event {uses[name]}; this rule is for event {self.event}")
        if self.cancel_previous and self.event in ("tag", "manual"):
            not_to = {"tag": "tags", "manual": "manual runs"}[self.event]
            raise ValueError(f"cancel_previous applies to pushes and pull requests, not to {not_to}")
        if self.trust_forks and self.event != "pull_request":
            raise ValueError("trust_forks applies to pull_request rules (only pull requests come from forks)")
        return self

    @field_validator("schedule")
    @classmethod
    def _cron(cls, text: str) -> str:
        """Kept as the cron expression, whether written as one or as a phrase."""
        try:
            return schedules.parse(text) if text else text
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _a_schedule(self) -> Rule:
        """A schedule rule names its schedule, one repository and one branch (what it builds)."""
        if self.event != "schedule":
            if self.schedule:
                raise ValueError("schedule applies to rules for event schedule")
            return self
        if not self.schedule:
            raise ValueError(f"a schedule rule needs its schedule: {', '.join(schedules.PHRASES)}")
        for name in ("repository", "branch"):
            if any(c in getattr(self, name) for c in "*?[") or not getattr(self, name):
                raise ValueError(f"a schedule builds one {name}: name it, not a pattern")
        if self.cancel_previous:
            raise ValueError("cancel_previous applies to pushes and pull requests, not to schedules")
        return self

    @model_validator(mode="after")
    def _stable_id(self) -> Rule:
        if not self.id:
            key = "|".join(
                [
                    self.host,
                    self.event,
                    self.repository,
                    self.branch,
                    self.tag,
                    self.target,
                    self.flow_file,
                    ",".join(self.jobs),
                ]
                + ([self.schedule] if self.schedule else [])
            )
            object.__setattr__(self, "id", hashlib.sha256(key.encode()).hexdigest()[:12])
        return self

    def matches(self, event: Event) -> bool:
        """True when the event triggers this rule (`mismatch` says why not otherwise)."""
        return mismatch(self, event) is None

    def _allows_manual(self, event: Event) -> bool:
        """A manual start of a branch (or tag) this rule names. A rule that names only branches
        starts no tag, and one that names only tags starts no branch."""
        ref = event.ref
        if ref is None or not ref.name:
            return False
        if ref.kind == "tag":
            return not (self.branch != "*" and self.tag == "*") and _glob(ref.name, self.tag)
        return not (self.tag != "*" and self.branch == "*") and _glob(ref.name, self.branch)

    def _manual_condition(self) -> str:
        named = [f"on {self.branch}" if self.branch != "*" else "", f"for tags {self.tag}" if self.tag != "*" else ""]
        return "".join(f" {part}" for part in named if part)

    def sentence(self) -> str:
        """The rule as one sentence: `if push to acme/api on main then run .tasuki.yml`."""
        if self.event == "schedule":
            return schedule_sentence(self)
        host = f"{self.host} " if self.host != "*" else ""
        what = {"push": "push to", "tag": "tag on", "pull_request": "pull request on", "manual": "manual on"}[
            self.event
        ]
        cond = ""
        if self.event == "manual":
            cond = self._manual_condition()
        elif self.event == "push" and self.branch != "*":
            cond = f" on {self.branch}"
        elif self.event == "tag" and self.tag != "*":
            cond = f" matching {self.tag}"
        elif self.event == "pull_request":
            cond = (f" from {self.branch}" if self.branch != "*" else "") + (
                f" into {self.target}" if self.target != "*" else ""
            )
        return f"if {host}{what} {self.repository}{cond} then run {self.flow_file}{self._tail()}"

    def _tail(self) -> str:
        """The jobs, the options and whether the rule is off, as the end of its sentence."""
        jobs = f" (jobs {', '.join(self.jobs)})" if self.jobs else ""
        options = ""
        if self.cancel_previous:
            options += ", cancelling older runs of the " + ("branch" if self.event == "push" else "pull request")
        if self.concurrency:
            options += (
                f", at most {self.concurrency} run{'s' if self.concurrency > 1 else ''} of the repository at a time"
            )
        if self.trust_forks:
            options += ", trusting pull requests from forks"
        off = " (disabled)" if not self.enabled else ""
        return f"{jobs}{options}{off}"


def schedule_sentence(rule: Rule) -> str:
    """`every day at 02:00 UTC on acme/api main, run .tasuki.yml (jobs nightly)`."""
    host = f" on {rule.host}" if rule.host != "*" else ""
    when = schedules.describe(rule.schedule)
    return f"{when} on {rule.repository} {rule.branch}{host}, run {rule.flow_file}{rule._tail()}"


# --- why a rule does not match ------------------------------------------------------------------


class Mismatch(BaseModel):
    """The first reason a rule does not match an event. `rank` orders how far the event got
    through the rule's checks (a higher rank came closer): the "closest" rule of a push that
    matched none is the one with the highest rank."""

    model_config = ConfigDict(frozen=True)

    check: Literal["disabled", "host", "event", "repository", "closed", "deleted", "ref", "skip_ci"]
    rank: int
    reason: str


def mismatch(rule: Rule, event: Event) -> Mismatch | None:
    """None if the event triggers the rule, else the first reason it does not (pure)."""
    if not rule.enabled:
        return Mismatch(check="disabled", rank=0, reason="the rule is disabled")
    if not _glob(event.host, rule.host):
        return Mismatch(check="host", rank=1, reason=f"host {event.host} is not {rule.host}")
    if rule.event == "schedule":  # the clock starts its runs (`scheduled`), never an event
        return Mismatch(check="event", rank=2, reason="a schedule rule runs at its times, not on events")
    if event.kind != rule.event:
        return Mismatch(check="event", rank=2, reason=f"a {_kind(event.kind)} is not a {_kind(rule.event)}")
    if not _glob(normalise(event.repository.full_name), normalise(rule.repository)):
        return Mismatch(
            check="repository",
            rank=3,
            reason=f"repository {event.repository.full_name} does not match {rule.repository}",
        )
    wrong = _wrong_ref(rule, event)
    if wrong is not None:
        return wrong
    if skip_requested(event):
        return Mismatch(check="skip_ci", rank=7, reason="the head commit says [skip ci]")
    return None


def _wrong_ref(rule: Rule, event: Event) -> Mismatch | None:
    if event.kind == "manual":
        if rule._allows_manual(event):
            return None
        what = f"{event.ref.kind} {event.ref.name}" if event.ref else "no branch or tag"
        return Mismatch(check="ref", rank=6, reason=f"{what} is not one this rule starts")
    if event.kind == "pull_request":
        pr = event.pull_request
        if pr is None or pr.state.lower() in CLOSED_STATES:
            return Mismatch(check="closed", rank=4, reason=f"the pull request is {pr.state if pr else 'missing'}")
        if not _glob(pr.source_branch, rule.branch):
            return Mismatch(check="ref", rank=6, reason=f"branch {pr.source_branch} does not match {rule.branch}")
        if not _glob(pr.target_branch, rule.target):
            return Mismatch(check="ref", rank=6, reason=f"target {pr.target_branch} does not match {rule.target}")
        return None
    if event.deleted or event.ref is None:
        return Mismatch(check="deleted", rank=5, reason=f"the {event.kind} was deleted")
    pattern, what = (rule.tag, "tag") if event.kind == "tag" else (rule.branch, "branch")
    if not _glob(event.ref.name, pattern):
        return Mismatch(check="ref", rank=6, reason=f"{what} {event.ref.name} does not match {pattern}")
    return None


def _kind(kind: str) -> str:
    return {"pull_request": "pull request", "schedule": "schedule"}.get(kind, kind)


def weigh(rules: list[Rule], event: Event) -> list[tuple[Rule, Mismatch | None]]:
    """Every rule with the first reason it does not match the event (None: it does)."""
    return [(rule, mismatch(rule, event)) for rule in rules]


def closest(weighed: list[tuple[Rule, Mismatch | None]]) -> tuple[Rule, Mismatch] | None:
    """Of rules that did not match, the one the event came closest to (the first of equals)."""
    missed = [(rule, why) for rule, why in weighed if why is not None]
    if not missed:
        return None
    best = max(why.rank for _, why in missed)
    return next((rule, why) for rule, why in missed if why.rank == best)


# --- schedules: what the clock starts -----------------------------------------------------------


def scheduled(rules: list[Rule], after: datetime, until: datetime) -> list[tuple[Rule, datetime]]:
    """The enabled schedule rules that fired in the window (after, until], each with its latest
    firing: one run per rule however many firings a clock outage missed."""
    due = []
    for rule in rules:
        if rule.enabled and rule.event == "schedule":
            fired = schedules.latest_fire(rule.schedule, after, until)
            if fired is not None:
                due.append((rule, fired))
    return due


def scheduled_event(rule: Rule, fired: datetime) -> Event:
    """The event of a scheduled run: the rule's branch, no commit yet (`after` empty: the
    executor that plans the run resolves the branch's head, as for a manual run). Its delivery id
    names the rule and the minute, so the same firing makes the same run however often asked."""
    return Event(
        host=rule.host if rule.host != "*" else "",
        event="schedule",
        kind="schedule",
        delivery_id=f"schedule-{rule.id}-{fired:%Y%m%dT%H%MZ}",
        repository=Repository(full_name=rule.repository),
        ref=Ref(kind="branch", name=rule.branch),
        actor="schedule",
    )


def _glob(value: str, pattern: str) -> bool:
    return pattern in ("", "*") or fnmatch.fnmatchcase(value, pattern)


def skip_requested(event: Event) -> bool:
    """True when the head commit asks for no CI (`[skip ci]` or `[ci skip]`)."""
    return bool(SKIP_CI.search(event.head_message))


def match(rules: list[Rule], event: Event) -> list[Rule]:
    """The rules this event triggers; none when the head commit says [skip ci]."""
    return [rule for rule, why in weigh(rules, event) if why is None]


def request(event: Event, rule: Rule, *, approval: bool = False) -> RunRequested:
    """The run this event (a git event, or a schedule's firing) requests of this rule; with
    `approval` it waits for a person to approve it (a fork's pull request, shared/approval.py)."""
    return RunRequested(
        run_id=run_id(event, rule),
        rule_id=rule.id,
        event=event,
        flow_file=rule.flow_file,
        jobs=rule.jobs,
        cancel_previous=rule.cancel_previous,
        concurrency=rule.concurrency,
        approval=approval,
    )


def run_id(event: Event, rule: Rule) -> str:
    """Deterministic: the same event delivered twice makes the same run id, hence one run."""
    ref = event.ref.name if event.ref else ""
    key = f"{event.delivery_id}|{event.event}|{ref}|{event.after}|{rule.id}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def load_rules(path: Path) -> list[Rule]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"TASUKI_RULES_FILE: no file at {path}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"TASUKI_RULES_FILE: cannot read {path}: {exc}") from None
    items = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"{path}: expected a 'rules' list")
    rules: dict[str, tuple[int, Rule]] = {}
    for index, item in enumerate(items):
        try:
            rule = Rule.model_validate(item)
        except ValidationError as exc:
            where, problem = first_problem(exc)
            raise ConfigError(f"{path}: rules[{index}]: {where + ': ' if where else ''}{problem}") from None
        if rule.id in rules:
            raise ConfigError(
                f"{path}: rules[{index}] is the same rule as rules[{rules[rule.id][0]}]: {rule.sentence()}"
            )
        rules[rule.id] = (index, rule)
    return [rule for _, rule in rules.values()]
