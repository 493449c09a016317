"""Object storage for tests: a folder, or S3 served by moto's server mode (boto3 over real HTTP
to a local endpoint, no in-process patching). `objects_settings` gives the settings of either."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasuki.shared.settings import Settings
from tests.conftest import free_port

BACKENDS = ("folder", "s3")
KEYS = {"objects_access_key_id": "testing", "objects_secret_access_key": "testing", "objects_region": "us-east-1"}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto S3 server for the session, listening on a free local port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_settings(endpoint: str, tmp_path: Path, **extra) -> Settings:
    """Settings for a fresh bucket of its own on the moto server."""
    import boto3

    bucket = f"tasuki-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    return Settings(
        data_dir=tmp_path / "data",
        objects_url=f"s3://{bucket}/ci",
        objects_endpoint_url=endpoint,
        **KEYS,
        **extra,
    )


def folder_settings(tmp_path: Path, **extra) -> Settings:
    return Settings(data_dir=tmp_path / "data", objects_url=f"file://{tmp_path / 'objects'}", **extra)


@pytest.fixture(params=BACKENDS)
def objects_settings(request, tmp_path: Path) -> Settings:
    if request.param == "s3":
        return s3_settings(request.getfixturevalue("moto_endpoint"), tmp_path)
    return folder_settings(tmp_path)
