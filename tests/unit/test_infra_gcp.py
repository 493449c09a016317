"""infra/gcp: the Terraform configuration is formatted as `terraform fmt` wants (where a terraform
binary is on the machine; providers cannot be downloaded here, so nothing is validated beyond
that), and reads from the bundles' manifest only what `tasuki deploy bundle` writes into it. The
clock's Cloud Scheduler jobs are derived from the flow: a subscription taking `tick` gets one."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tasuki.local.deploy import clock
from tasuki.shared import codec, push, topics
from tasuki.shared import messages as tasuki_messages

GCP = Path(__file__).resolve().parents[2] / "infra" / "gcp"


def test_the_configuration_is_formatted_as_terraform_fmt_wants():
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on this machine: `terraform fmt -check infra/gcp` not run")
    done = subprocess.run(
        [terraform, "fmt", "-check", "-diff", "-recursive", str(GCP)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_configuration_reads_only_what_a_bundle_manifest_holds():
    text = "\n".join(p.read_text() for p in GCP.glob("*.tf"))
    function_keys = {"folder", "zip", "target", "sha256", "pushed"}  # local/deploy/bundle.py
    schedule_keys = {"name", "function", "schedule", "body"}  # local/deploy/clock.py
    used = set(re.findall(r"\beach\.value\.(\w+)", text)) | set(re.findall(r"\bfunction\.(\w+)", text))
    used -= {"id", "secret_id", "location", "name"} - function_keys  # attributes of resources, not of the manifest
    assert used <= function_keys | schedule_keys, used - function_keys - schedule_keys
    assert set(re.findall(r"local\.manifest\.(\w+)", text)) == {"functions", "python", "schedules"}


def test_no_subscription_takes_the_clock_and_so_there_is_no_scheduler_job(monkeypatch):
    assert all(clock.CLOCK not in s.keys for s in topics.SUBSCRIPTIONS) == (clock.schedules() == [])


def test_a_subscription_that_takes_the_clock_gets_a_scheduler_job_pushing_its_message(monkeypatch):
    class Tick(tasuki_messages.Message):
        TYPE = KEY = "tick"
        EXCHANGE = topics.RUNS

    ticked = topics.Subscription(name="dispatcher", topic=topics.RUNS, keys=("tick",), endpoint="dispatcher")
    monkeypatch.setattr(topics, "SUBSCRIPTIONS", (*topics.SUBSCRIPTIONS, ticked))
    monkeypatch.setitem(tasuki_messages.MODELS, "tick", Tick)
    (job,) = clock.schedules(project="acme-ci")
    assert (job["function"], job["schedule"]) == ("dispatcher", "* * * * *")
    pushed = push.parse(job["body"])
    assert (pushed.type, pushed.subscription) == ("tick", "projects/acme-ci/subscriptions/dispatcher")
    assert codec.decode(pushed.data, Tick) == Tick()
