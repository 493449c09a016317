"""infra/gcp: the Terraform configuration is formatted as `terraform fmt` wants (where a terraform
binary is on the machine; providers cannot be downloaded here, so nothing is validated beyond
that), and reads from the bundles' manifest only what `tasuki deploy bundle` writes into it. The
clock's Cloud Scheduler jobs are derived from the flow: a subscription taking `tick` (the
dispatcher's) gets one."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tasuki.functions import dispatcher
from tasuki.local.deploy import clock
from tasuki.shared import codec, push, topics
from tasuki.shared.messages import Tick

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


def test_a_scheduler_job_exists_exactly_for_each_subscription_that_takes_the_clock():
    takers = [s.name for s in topics.SUBSCRIPTIONS if clock.CLOCK in s.keys]
    assert [job["function"] for job in clock.schedules()] == takers


def test_the_dispatcher_takes_the_clock_and_gets_a_scheduler_job_pushing_a_tick():
    # The dispatcher's tick (run-out leases, the outbox, retention) keeps going on Google Cloud
    # without a bridge: Cloud Scheduler pushes it once a minute
    (job,) = clock.schedules(project="acme-ci")
    assert (job["name"], job["function"], job["schedule"]) == ("clock-dispatcher", "dispatcher", "* * * * *")
    pushed = push.parse(job["body"])
    assert (pushed.type, pushed.subscription) == ("tick", "projects/acme-ci/subscriptions/dispatcher")
    assert isinstance(codec.decode(pushed.data, dispatcher.ACCEPTS[pushed.type]), Tick)
