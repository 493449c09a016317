"""Helpers for tests that run job containers: the test image, leftover containers, workspaces made
of files (the `executor_id` fixture is in conftest)."""

from __future__ import annotations

from pathlib import Path

from tasuki.local.executor import convert
from tests.conftest import TEST_IMAGE, write_files

IMAGE = TEST_IMAGE


def leftovers(docker_client, ident: str) -> list:
    """Containers labelled with this executor id (as listed: sparse, no inspect of each, which
    fails for a container removed in between)."""
    return docker_client.containers.list(all=True, sparse=True, filters={"label": f"{convert.LABEL_EXECUTOR}={ident}"})


def leftover_networks(docker_client, ident: str) -> list:
    """Networks (of jobs' services) labelled with this executor id."""
    return docker_client.networks.list(filters={"label": f"{convert.LABEL_EXECUTOR}={ident}"})


def make_workspace(root: Path, files: dict[str, str | tuple[str, bool]]) -> Path:
    """A folder with these files (name -> text, executables as (text, True))."""
    return write_files(root, files)


def script(body: str) -> tuple[str, bool]:
    """An executable /bin/sh script for the busybox test image."""
    return (f"#!/bin/sh\n{body}\n", True)
