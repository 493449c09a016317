"""Trigger rules: matching, [skip ci], run ids, sentences, the rules file and its loading."""

from __future__ import annotations

import pytest

from tasuki.shared import recipes
from tasuki.shared.errors import ConfigError
from tasuki.shared.messages import Commit, Event, PullRequest, Ref, Repository
from tasuki.shared.recipes import Rule


def push(
    branch="main",
    repo="acme/api",
    *,
    message="fix the thing",
    after="c2",
    kind="branch",
    host="bitbucket",
    delivery="d1",
    commits=None,
) -> Event:
    return Event(
        host=host,
        event="repo.push",
        kind="tag" if kind == "tag" else "push",
        delivery_id=delivery,
        repository=Repository(full_name=repo),
        ref=Ref(kind=kind, name=branch),
        before="c1",
        after=after,
        commits=commits if commits is not None else [Commit(id=after, message=message)],
    )


def pull_request(source="feature/x", target="main", state="OPEN") -> Event:
    return Event(
        host="github",
        event="pull_request.opened",
        kind="pull_request",
        delivery_id="d9",
        repository=Repository(full_name="acme/api"),
        pull_request=PullRequest(number=7, state=state, source_branch=source, target_branch=target),
    )


@pytest.mark.parametrize(
    "rule, event, matches",
    [
        (Rule(repository="acme/api", branch="main"), push("main"), True),
        (Rule(repository="acme/api", branch="main"), push("develop"), False),
        (Rule(repository="acme/*", branch="release/*"), push("release/2.0", "acme/web"), True),
        (Rule(repository="acme/*"), push("anything", "other/api"), False),
        (Rule(repository="acme/api", host="github"), push("main"), False),
        (Rule(repository="acme/api", host="bitbucket"), push("main"), True),
        (Rule(repository="acme/api", enabled=False), push("main"), False),
        (Rule(repository="acme/api"), push("main", after=""), False),  # a deleted branch runs nothing
        (Rule(repository="acme/api", event="tag", tag="v*"), push("v1.0", kind="tag"), True),
        (Rule(repository="acme/api", event="tag", tag="v*"), push("nightly", kind="tag"), False),
        (Rule(repository="acme/api"), push("v1.0", kind="tag"), False),  # a push rule is not a tag rule
        (Rule(repository="acme/api", event="pull_request", target="main"), pull_request(target="main"), True),
        (Rule(repository="acme/api", event="pull_request", target="main"), pull_request(target="develop"), False),
        (Rule(repository="acme/api", event="pull_request", branch="feature/*"), pull_request("feature/y"), True),
        (Rule(repository="acme/api", event="pull_request", branch="feature/*"), pull_request("bugfix/y"), False),
        (Rule(repository="acme/api", event="pull_request"), pull_request(state="MERGED"), False),
        (Rule(repository="acme/api", event="pull_request"), pull_request(state="declined"), False),
    ],
)
def test_a_rule_matches_host_event_repository_and_branch_globs(rule, event, matches):
    assert rule.matches(event) is matches
    assert recipes.match([rule], event) == ([rule] if matches else [])


@pytest.mark.parametrize("message", ["[skip ci] docs only", "typo [ci skip]", "WIP [Skip CI]"])
def test_skip_ci_in_the_head_commit_triggers_nothing(message):
    event = push(message=message)
    assert recipes.skip_requested(event)
    assert recipes.match([Rule(repository="acme/api")], event) == []


def test_only_the_head_commit_can_skip_ci():
    event = push(commits=[Commit(id="c1", message="[skip ci] wip"), Commit(id="c2", message="finish it")])
    assert not recipes.skip_requested(event)
    assert len(recipes.match([Rule(repository="acme/api")], event)) == 1


def test_run_ids_are_the_same_for_the_same_event_and_rule_only():
    rule, other = Rule(repository="acme/api"), Rule(repository="acme/api", jobs=["test"])
    assert recipes.run_id(push(), rule) == recipes.run_id(push(), rule)
    assert (
        len(
            {
                recipes.run_id(push(), rule),
                recipes.run_id(push(), other),
                recipes.run_id(push(delivery="d2"), rule),
                recipes.run_id(push(after="c3"), rule),
            }
        )
        == 4
    )


def test_rule_ids_are_stable_and_do_not_depend_on_options():
    rule = Rule(repository="acme/api", branch="main")
    assert rule.id == Rule(repository="acme/api", branch="main", cancel_previous=True, concurrency=2, enabled=False).id
    assert rule.id != Rule(repository="acme/api", branch="develop").id


@pytest.mark.parametrize(
    "rule, sentence",
    [
        (Rule(event="push", repository="acme/api", branch="main"), "if push to acme/api on main then run .tasuki.yml"),
        (Rule(repository="acme/*"), "if push to acme/* then run .tasuki.yml"),
        (
            Rule(event="tag", repository="acme/api", tag="v*", jobs=["release"]),
            "if tag on acme/api matching v* then run .tasuki.yml (jobs release)",
        ),
        (
            Rule(event="pull_request", repository="acme/api", target="main", host="github"),
            "if github pull request on acme/api into main then run .tasuki.yml",
        ),
        (
            Rule(repository="acme/api", branch="main", flow_file="ci/nightly.yml", cancel_previous=True, concurrency=1),
            "if push to acme/api on main then run ci/nightly.yml, cancelling older runs of the branch, "
            "at most 1 run of the repository at a time",
        ),
        (Rule(repository="acme/api", enabled=False), "if push to acme/api then run .tasuki.yml (disabled)"),
    ],
)
def test_a_rule_reads_as_one_sentence(rule, sentence):
    assert rule.sentence() == sentence


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"repository": "acme/api", "tag": "v*"}, "tag applies to rules for event tag"),
        ({"repository": "acme/api", "event": "tag", "branch": "main"}, "branch applies to rules for event push"),
        ({"repository": "acme/api", "target": "main"}, "target applies to rules for event pull_request"),
        ({"repository": "acme/api", "event": "tag", "cancel_previous": True}, "not to tags"),
        ({"repository": "acme/api", "concurrency": 0}, "greater than or equal to 1"),
    ],
)
def test_a_rule_that_cannot_match_is_refused(fields, error):
    with pytest.raises(ValueError, match=error):
        Rule.model_validate(fields)


# --- the rules file ------------------------------------------------------------------------------

RULES = """\
rules:
  - {event: push, repository: acme/api, branch: main, cancel_previous: true}
  - {event: tag, repository: "acme/*", tag: "v*", jobs: [release]}
"""


def test_the_rules_file_reads_into_rules(tmp_path):
    (tmp_path / "rules.yml").write_text(RULES)
    rules = recipes.load_rules(tmp_path / "rules.yml")
    assert [r.sentence() for r in rules] == [
        "if push to acme/api on main then run .tasuki.yml, cancelling older runs of the branch",
        "if tag on acme/* matching v* then run .tasuki.yml (jobs release)",
    ]


@pytest.mark.parametrize(
    "text, error",
    [
        ("rules: nope\n", "expected a 'rules' list"),
        ("rules:\n  - {event: push}\n", r"rules\[0\]: repository: Field required"),
        ("rules:\n  - {repository: a/b}\n  - {repository: a/b, brnch: x}\n", r"rules\[1\]: brnch: Extra inputs"),
        (
            "rules:\n  - {repository: a/b}\n  - {repository: a/b, concurrency: 2}\n",
            r"rules\[1\] is the same rule as rules\[0\]",
        ),
        ("rules: [\n", "cannot read"),
    ],
)
def test_a_bad_rules_file_is_refused_naming_the_rule(tmp_path, text, error):
    (tmp_path / "rules.yml").write_text(text)
    with pytest.raises(ConfigError, match=error):
        recipes.load_rules(tmp_path / "rules.yml")
