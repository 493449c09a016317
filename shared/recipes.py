"""Trigger rules ("recipes"), as simple as IFTTT: *if* this event *then* run that flow.

    if push to acme/api on main then run .tasuki.yml

A rule matches an `Event` by host, kind (push, tag, pull_request), repository, and a glob on
the branch, the tag or the pull request's target branch. `match()` is pure; the router calls
it and publishes one `run.requested` per matching rule.

Rules file (`TASUKI_RULES_FILE`):

    rules:
      - {event: push, repository: acme/api, branch: main}
      - {event: tag, repository: "acme/*", tag: "v*", jobs: [release]}
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import ConfigError
from shared.messages import Event

SKIP_CI = re.compile(r"\[(skip ci|ci skip)\]", re.IGNORECASE)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = ""
    host: str = "*"
    event: Literal["push", "tag", "pull_request"] = "push"
    repository: str
    branch: str = "*"  # push: the pushed branch; pull_request: the source branch
    tag: str = "*"
    target: str = "*"  # pull_request: the target branch
    flow_file: str = ".tasuki.yml"
    jobs: list[str] = Field(default_factory=list)
    enabled: bool = True

    @model_validator(mode="after")
    def _stable_id(self) -> Rule:
        if not self.id:
            key = "|".join(
                [self.host, self.event, self.repository, self.branch, self.tag, self.target, self.flow_file,
                 ",".join(self.jobs)]
            )
            object.__setattr__(self, "id", hashlib.sha256(key.encode()).hexdigest()[:12])
        return self

    def matches(self, event: Event) -> bool:
        if not self.enabled or event.kind != self.event:
            return False
        if not _glob(event.host, self.host) or not _glob(event.repository.full_name, self.repository):
            return False
        if event.kind == "pull_request":
            pr = event.pull_request
            return pr is not None and _glob(pr.source_branch, self.branch) and _glob(pr.target_branch, self.target)
        if event.deleted or event.ref is None:
            return False
        return _glob(event.ref.name, self.tag if event.kind == "tag" else self.branch)

    def sentence(self) -> str:
        what = {"push": "push to", "tag": "tag on", "pull_request": "pull request on"}[self.event]
        where = self.repository
        if self.host != "*":
            where = f"{self.host}:{where}"
        cond = ""
        if self.event == "push" and self.branch != "*":
            cond = f" on {self.branch}"
        elif self.event == "tag" and self.tag != "*":
            cond = f" matching {self.tag}"
        elif self.event == "pull_request" and self.target != "*":
            cond = f" into {self.target}"
        jobs = f" (jobs {', '.join(self.jobs)})" if self.jobs else ""
        off = " [disabled]" if not self.enabled else ""
        return f"if {what} {where}{cond} then run {self.flow_file}{jobs}{off}"


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
    rules = []
    for index, item in enumerate(items):
        try:
            rules.append(Rule.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "rule"
            raise ConfigError(f"{path}: rules[{index}]: {where}: {first['msg']}") from None
    return rules
