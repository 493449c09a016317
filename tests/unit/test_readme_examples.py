"""The README's examples are what Tasuki accepts: every flow file, rules file and registry shown
there is read without a complaint, and every command line of its shell examples is one the
`tasuki` command takes (a newcomer copies them first)."""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

import pytest

from tasuki.local.cli.commands import parser
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


def command_lines() -> list[str]:
    """The arguments of each `.venv/bin/tasuki` line of the shell examples (comments and
    redirections left out)."""
    lines = re.findall(r"^\.venv/bin/tasuki ([^#<>\n]*)", README.read_text(), re.M)
    return [line.strip() for line in lines]


def test_the_readme_has_the_command_lines_these_tests_read():
    assert len(command_lines()) >= 15


@pytest.mark.parametrize("line", command_lines())
def test_every_command_line_of_the_readme_is_one_tasuki_takes(line, capsys):
    try:
        parser().parse_args(shlex.split(line))
    except SystemExit:
        pytest.fail(f"tasuki {line}: {capsys.readouterr().err.strip()}")
