"""`tasuki deliveries`: the list with one line of outcome each, `show ID` with the whole story,
and `rules create --schedule`."""

from __future__ import annotations

from tasuki.shared import recipes, stories
from tasuki.shared.settings import Settings
from tasuki.shared.store import new_store
from tests.unit.test_cli_rules import tasuki  # noqa: F401  (the fixture)
from tests.unit.test_recipes import push


def test_deliveries_are_listed_and_told_from_the_command_line(tasuki, tmp_path):  # noqa: F811
    assert tasuki("deliveries")[1] == "no deliveries yet\n"
    store = new_store(Settings(data_dir=tmp_path / "data"))
    event = push("feature/x", delivery="bitbucket:d1")
    rules = [recipes.Rule(repository="acme/api", branch="main"), recipes.Rule(repository="acme/web")]
    store.tell("bitbucket:d1", "ingress", stories.accepted("bitbucket", "repo:push", "acme/api", [event]))
    store.tell("bitbucket:d1", "router:x", stories.weighed(event, recipes.weigh(rules, event), {}))
    store.close()
    code, out, _ = tasuki("deliveries")
    assert code == 0 and out.startswith("bitbucket:d1  ")
    assert out.rstrip().endswith(
        "closest was “if push to acme/api on main then run .tasuki.yml” (branch feature/x does not match main)"
    )
    code, out, _ = tasuki("deliveries", "show", "bitbucket:d1")
    lines = out.splitlines()
    assert lines[0].startswith("delivery bitbucket:d1: no rule matched")
    assert any("-> no: branch feature/x does not match main (closest)" in line for line in lines)
    assert any("-> no: repository acme/api does not match acme/web" in line for line in lines)
    code, _, err = tasuki("deliveries", "show", "nope")
    assert code == 2 and "there is no delivery nope" in err


def test_a_schedule_rule_is_created_from_the_command_line(tasuki):  # noqa: F811
    code, out, _ = tasuki(
        "rules",
        "create",
        "--event",
        "schedule",
        "--schedule",
        "weekly on monday at 06:00",
        "--repo",
        "acme/api",
        "--branch",
        "main",
    )
    assert code == 0 and out.endswith("every Monday at 06:00 UTC on acme/api main, run .tasuki.yml\n")
    code, _, err = tasuki(
        "rules", "create", "--event", "schedule", "--schedule", "soon", "--repo", "acme/api", "--branch", "main"
    )
    assert code == 2 and "--schedule: " in err and "not a schedule" in err
