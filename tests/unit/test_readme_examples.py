"""The README's YAML examples are what Tasuki accepts: every flow file, rules file and registry
shown there is read without a complaint (a newcomer copies them first)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from tasuki.shared import flowfile
from tasuki.shared.recipes import load_rules
from tasuki.shared.registry import load_registry

README = Path(__file__).resolve().parents[2] / "README.md"


def yaml_blocks() -> list[tuple[int, str]]:
    """(line, text) of each ```yaml block, its indentation removed."""
    text = README.read_text()
    blocks = []
    for match in re.finditer(r"^([ \t]*)```yaml\n(.*?)^[ \t]*```", text, re.S | re.M):
        blocks.append((text.count("\n", 0, match.start()) + 1, textwrap.dedent(match.group(2))))
    return blocks


def of_kind(key: str) -> list[tuple[int, str]]:
    return [(line, block) for line, block in yaml_blocks() if re.search(rf"^{key}:", block, re.M)]


def test_the_readme_has_the_examples_these_tests_read():
    assert len(of_kind("jobs")) >= 4 and of_kind("rules") and of_kind("repositories")


@pytest.mark.parametrize(("line", "block"), of_kind("jobs"), ids=lambda v: f"line {v}" if isinstance(v, int) else "")
def test_every_flow_file_example_is_a_valid_flow_file(line, block):
    flow = flowfile.parse(block)
    assert flow.jobs


@pytest.mark.parametrize(("line", "block"), of_kind("rules"), ids=lambda v: f"line {v}" if isinstance(v, int) else "")
def test_every_rules_example_loads(tmp_path, line, block):
    path = tmp_path / "rules.yml"
    path.write_text(block)
    assert load_rules(path)


@pytest.mark.parametrize(
    ("line", "block"), of_kind("repositories"), ids=lambda v: f"line {v}" if isinstance(v, int) else ""
)
def test_every_registry_example_loads(tmp_path, line, block):
    if "…" in block:  # a sketch with the values left out (the commit statuses' credentials)
        pytest.skip("values left out")
    path = tmp_path / "repositories.yml"
    path.write_text(block)
    assert load_registry(path).repositories
