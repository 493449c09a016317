"""`tasuki rules`: create, list, disable, enable, delete and load rules, one sentence each."""

from __future__ import annotations

import pytest

from tasuki.local.cli.commands import main


@pytest.fixture
def tasuki(tmp_path, monkeypatch, capsys):
    for key in [k for k in __import__("os").environ if k.startswith("TASUKI_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("TASUKI_DATA_DIR", str(tmp_path / "data"))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_rules_are_created_listed_disabled_enabled_and_deleted_as_sentences(tasuki):
    assert tasuki("rules")[1].startswith("no rules yet")
    code, out, _ = tasuki("rules", "create", "--repo", "acme/api", "--branch", "main", "--cancel-previous")
    assert code == 0 and out.endswith(
        "if push to acme/api on main then run .tasuki.yml, cancelling older runs of the branch\n"
    )
    rule_id = out.split()[1]
    tasuki("rules", "create", "--repo", "acme/*", "--event", "tag", "--tag", "v*", "--jobs", "build,release")
    code, out, _ = tasuki("rules", "list")
    assert out.splitlines() == [
        f"{rule_id}  if push to acme/api on main then run .tasuki.yml, cancelling older runs of the branch",
        out.splitlines()[1][:12] + "  if tag on acme/* matching v* then run .tasuki.yml (jobs build, release)",
    ]
    # An id prefix is enough
    assert tasuki("rules", "disable", rule_id[:5])[1].startswith(f"disabled {rule_id}  if push to acme/api on main")
    assert tasuki("rules")[1].splitlines()[0].endswith("(disabled)")
    assert not tasuki("rules", "enable", rule_id)[1].rstrip().endswith("(disabled)")
    assert tasuki("rules", "delete", rule_id)[0] == 0
    assert rule_id not in tasuki("rules")[1]


@pytest.mark.parametrize(
    "argv, error",
    [
        (["rules", "create", "--branch", "main"], "tasuki: --repo: Field required"),
        (["rules", "create", "--repo", "a/b", "--tag", "v*"], "tasuki: tag applies to rules for event tag"),
        (["rules", "create", "--repo", "a/b", "--concurrency", "0"], "tasuki: --concurrency: Input should be greater"),
        (["rules", "disable", "nope"], "tasuki: no rule with an id starting 'nope'"),
        (["rules", "delete"], "tasuki: name the rule by its id"),
        (["rules", "load"], "tasuki: no rules file"),
    ],
)
def test_a_mistake_is_one_clear_line(tasuki, argv, error):
    code, _, err = tasuki(*argv)
    assert code == 2 and err.startswith(error), err


def test_the_same_rule_twice_is_refused(tasuki):
    tasuki("rules", "create", "--repo", "acme/api")
    code, _, err = tasuki("rules", "create", "--repo", "acme/api")
    assert code == 1 and err.startswith("this rule exists already")


def test_loading_the_rules_file_twice_adds_nothing_and_a_deleted_file_rule_is_flagged(tasuki, tmp_path, monkeypatch):
    rules = tmp_path / "rules.yml"
    rules.write_text("rules:\n  - {event: push, repository: acme/api, branch: main}\n")
    assert tasuki("rules", "load", str(rules))[1].endswith("1 added, 0 changed, 0 removed\n")
    assert tasuki("rules", "load", str(rules))[1].endswith("0 added, 0 changed, 0 removed\n")
    listed = tasuki("rules")[1].splitlines()
    assert len(listed) == 1
    monkeypatch.setenv("TASUKI_RULES_FILE", str(rules))
    out = tasuki("rules", "delete", listed[0][:12])[1]
    assert f"it is in {rules} and comes back at the next start" in out
