"""Helpers for tests that run job containers: a unique executor id whose containers are removed
after the test (other test runs share the Docker engine), and workspaces made of files."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local import convert
from tests.conftest import TEST_IMAGE, write_files
from tests.harness import remove_containers

IMAGE = TEST_IMAGE


@pytest.fixture
def executor_id(docker_client) -> Iterator[str]:
    ident = f"test-{uuid.uuid4().hex[:10]}"
    yield ident
    remove_containers(ident)


def leftovers(docker_client, ident: str) -> list:
    """Containers labelled with this executor id."""
    return docker_client.containers.list(all=True, filters={"label": f"{convert.LABEL_EXECUTOR}={ident}"})


def make_workspace(root: Path, files: dict[str, str | tuple[str, bool]]) -> Path:
    """A folder with these files (name -> text, executables as (text, True))."""
    return write_files(root, files)


def script(body: str) -> tuple[str, bool]:
    """An executable /bin/sh script for the busybox test image."""
    return (f"#!/bin/sh\n{body}\n", True)
