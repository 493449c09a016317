"""The executor remembers small flow files it parsed, by their text (`service.parse_flow`):
the same text gives the same frozen flow, a big one is parsed each time, an invalid one says
why each time."""

from __future__ import annotations

import pytest

from tasuki.local.executor import service
from tasuki.shared.errors import FlowFileError

FLOW = b"jobs:\n  build: {image: busybox, run: ci/build}\n"


def test_the_same_small_text_is_parsed_once_and_its_frozen_flow_shared():
    first = service.parse_flow(FLOW, ".tasuki.yml", 3600)
    assert service.parse_flow(FLOW, ".tasuki.yml", 3600) is first
    assert service.parse_flow(FLOW + b"\n", ".tasuki.yml", 3600) is not first  # another text
    assert service.parse_flow(FLOW, ".tasuki.yml", 60) is not first  # another limit
    with pytest.raises(Exception):  # noqa: B017  frozen: nobody changes what another run shares
        first.jobs = {}


def test_a_big_flow_file_is_not_remembered_and_an_invalid_one_says_why_each_time():
    big = FLOW + b"#" * service.FLOW_REMEMBERED_BYTES + b"\n"
    assert service.parse_flow(big, ".tasuki.yml", 3600) is not service.parse_flow(big, ".tasuki.yml", 3600)
    for _ in range(2):
        with pytest.raises(FlowFileError, match="not valid YAML"):
            service.parse_flow(b"jobs: [", ".tasuki.yml", 3600)
