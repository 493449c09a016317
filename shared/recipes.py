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

A rule for event `manual` is what lets a person start a run by hand (web page, API, command
line) of a matching repository and branch (or tag): without one, nothing may be started.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasuki.shared.errors import ConfigError, first_problem
from tasuki.shared.messages import Event
from tasuki.shared.registry import normalise

SKIP_CI = re.compile(r"\[(skip ci|ci skip)\]", re.IGNORECASE)
# A pull request in one of these states triggers nothing.
CLOSED_STATES = frozenset({"closed", "merged", "declined", "fulfilled", "rejected", "superseded"})


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = ""
    host: str = "*"
    event: Literal["push", "tag", "pull_request", "manual"] = "push"
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
            )
            object.__setattr__(self, "id", hashlib.sha256(key.encode()).hexdigest()[:12])
        return self

    def matches(self, event: Event) -> bool:
        if not self.enabled or event.kind != self.event:
            return False
        if not _glob(event.host, self.host) or not _glob(
            normalise(event.repository.full_name), normalise(self.repository)
        ):
            return False
        if event.kind == "manual":
            return self._allows_manual(event)
        if event.kind == "pull_request":
            pr = event.pull_request
            if pr is None or pr.state.lower() in CLOSED_STATES:
                return False
            return _glob(pr.source_branch, self.branch) and _glob(pr.target_branch, self.target)
        if event.deleted or event.ref is None:
            return False
        return _glob(event.ref.name, self.tag if event.kind == "tag" else self.branch)

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
        jobs = f" (jobs {', '.join(self.jobs)})" if self.jobs else ""
        options = ""
        if self.cancel_previous:
            options += ", cancelling older runs of the " + ("branch" if self.event == "push" else "pull request")
        if self.concurrency:
            options += (
                f", at most {self.concurrency} run{'s' if self.concurrency > 1 else ''} of the repository at a time"
            )
        off = " (disabled)" if not self.enabled else ""
        return f"if {host}{what} {self.repository}{cond} then run {self.flow_file}{jobs}{options}{off}"


def _glob(value: str, pattern: str) -> bool:
    return pattern in ("", "*") or fnmatch.fnmatchcase(value, pattern)


def skip_requested(event: Event) -> bool:
    """True when the head commit asks for no CI (`[skip ci]` or `[ci skip]`)."""
    return bool(SKIP_CI.search(event.head_message))


def match(rules: list[Rule], event: Event) -> list[Rule]:
    """The rules this event triggers; none when the head commit says [skip ci]."""
    if skip_requested(event):
        return []
    return [rule for rule in rules if rule.matches(event)]


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
