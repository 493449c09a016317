"""What decides about a job before or after Docker runs it: paths inside the repository, durations.
The job in a real container is tests/integration/test_jobs.py."""

from __future__ import annotations

import pytest

from tasuki.local.executor import jobs
from tasuki.shared.errors import ExecutableMissing, FlowFileError
from tasuki.shared.flowfile import parse


def test_a_path_with_dotdot_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(FlowFileError, match=r"\.tasuki\.yml:2: job 'test'.* inside the repository.* with '\.\.'"):
        parse("jobs:\n  test: {image: busybox, run: ci/../../etc/x}\n")
    with pytest.raises(ExecutableMissing, match="not a path inside the repository"):
        jobs.check_executable(tmp_path, "../x")


def test_durations_read_like_a_person_writes_them():
    assert [jobs.duration(s) for s in (0.4, 2, 90, 3600, 5400)] == ["0.4s", "2s", "1m30s", "1h", "1h30m"]
