"""`tasuki run`'s pieces without Docker or git: the printer and the summary. The command itself is
tests/integration/test_runner.py."""

from __future__ import annotations

import io

from tasuki.local.cli.runner import Printer, Result, passed, summary


def test_the_printer_prefixes_each_line_by_its_job_and_keeps_partial_lines():
    out = io.StringIO()
    printer = Printer(out, ["build", "test-long"])
    printer.write("build", b"one\ntw")
    printer.write("test-long", b"x\n")
    printer.write("build", b"o\n")
    printer.write("build", b"no newline")
    printer.close("build")
    assert out.getvalue() == "build     | one\ntest-long | x\nbuild     | two\nbuild     | no newline\n"


def test_the_summary_counts_jobs_skipped_by_when_as_passed():
    ok = [
        Result("build", "success", 0, 1.25),
        Result("deploy", "skipped", message="its when does not match", by_when=True),
    ]
    assert all(passed(r) for r in ok)
    assert summary(ok).splitlines() == [
        "JOB     STATUS   EXIT  TIME",
        "build   success     0  1.2s",
        "deploy  skipped              its when does not match",
        "passed: 1 job(s)",
    ]
    bad = [*ok, Result("test", "timeout", None, 600, "killed after the 10m timeout")]
    assert not passed(bad[-1]) and summary(bad).endswith("failed: test")
