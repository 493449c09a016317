"""infra/containers/Dockerfile cannot be built here (no base image can be pulled): this checks
what can be checked without an engine. Each target runs a `tasuki` command that exists, the
folders it copies are the package's, and the build context leaves out the checkout's clutter."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tasuki.local.cli import commands

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "infra" / "containers" / "Dockerfile").read_text()


def stages() -> dict[str, str]:
    """Stage name -> its instructions."""
    parts = re.split(r"^FROM \S+ AS (\w+)\s*$", DOCKERFILE, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize(("target", "command"), [("bridge", "bridge"), ("executor", "executor")])
def test_each_target_runs_a_tasuki_command_that_exists(target, command):
    found = re.search(r"^CMD (\[.*\])$", stages()[target], flags=re.M)
    assert found and json.loads(found.group(1)) == [command]
    assert commands.parser().parse_args([command]).command == command
    assert '\nENTRYPOINT ["tasuki"]' in stages()["base"]


def test_the_image_holds_the_package_and_the_context_leaves_the_clutter_out():
    copied = set(re.findall(r"^COPY (\S+) ", stages()["base"], flags=re.M))
    assert {"functions", "shared", "local", "infra"} <= copied and all((ROOT / c).exists() for c in copied)
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".tasuki", "build", "tests"} <= ignored


def test_the_executor_is_told_how_to_reach_the_engine_and_where_its_data_lives():
    executor = stages()["executor"]
    assert "-v /var/run/docker.sock:/var/run/docker.sock" in DOCKERFILE
    assert "-v /var/lib/tasuki:/var/lib/tasuki" in DOCKERFILE and "ENV TASUKI_DATA_DIR=/var/lib/tasuki" in executor
    assert " git " in executor
