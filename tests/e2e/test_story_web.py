"""Issue 16 in a real Chromium against the real `tasuki local` process tree: a schedule rule
made from the form reads as a sentence; the Deliveries page explains a push that matched no
rule, naming the closest rule and the reason, and its story page shows every rule weighed."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import commit_to
from tests.e2e.test_web import browser, page, push, tasuki  # noqa: F401  (the fixtures)

WAIT = 90.0


def schedule_in_form(page, schedule: str, jobs: str = "") -> None:  # noqa: F811
    page.select_option("select[name=event]", "schedule")
    # the form offers the phrases; a schedule builds one branch of one repository
    assert page.is_visible("input[name=schedule]") and not page.is_visible("input[name=tag]")
    page.fill("input[name=schedule]", schedule)
    page.fill("input[name=repository]", "acme/green")
    page.fill("input[name=branch]", "main")
    page.fill("input[name=jobs]", jobs)
    page.click("text=Create rule")


def test_a_schedule_rule_made_from_the_form_reads_as_a_sentence(page, tasuki):  # noqa: F811
    page.goto(f"{tasuki.web}/rules")
    schedule_in_form(page, "daily at 02:00", jobs="test")
    page.wait_for_selector(".sentence >> text=Every day at 02:00 UTC on acme/green main, run .tasuki.yml (jobs test)")
    # a schedule that is not one is refused, saying why
    schedule_in_form(page, "now and then")
    page.wait_for_selector(".flash.error >> text=not a schedule")


def test_the_deliveries_page_explains_a_push_that_matched_no_rule(page, tasuki):  # noqa: F811
    # Given rules that a push to acme/green main does not match: one for another branch (the
    # closest), one for another repository
    page.goto(f"{tasuki.web}/rules")
    for repository, branch in (("acme/red", "main"), ("acme/green", "develop")):
        page.select_option("select[name=event]", "push")
        page.fill("input[name=repository]", repository)
        page.fill("input[name=branch]", branch)
        page.click("text=Create rule")
        page.wait_for_selector(f"text=If push to {repository} on {branch} then run .tasuki.yml")
    # When acme/green main is pushed
    push(tasuki, "acme/green")
    # Then the Deliveries page says no rule matched, naming the closest rule and why
    expected = "no rule matched: closest was “if push to acme/green on develop then run .tasuki.yml”"
    deadline = time.monotonic() + WAIT
    while True:
        page.goto(f"{tasuki.web}/deliveries")
        outcome = page.inner_text("#deliveries tbody tr:first-child .outcome")
        if outcome.startswith("no rule matched") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert outcome == f"{expected} (branch main does not match develop)"
    # and the delivery's story shows every rule weighed with its reason
    page.click("#deliveries tbody tr:first-child .outcome a")
    page.wait_for_selector("#outcome")
    rows = page.inner_text("table.rules")
    assert "repository acme/green does not match acme/red" in rows
    assert "branch main does not match develop (closest)" in rows
    assert page.is_visible("text=Replay")


def test_a_schedule_starts_one_run_of_the_branch_head_in_the_local_stack(tasuki):  # noqa: F811
    # Given the head of acme/green's branch moved on after the fixture's commit
    registry = json.loads(Path(tasuki.env["TASUKI_REPOSITORIES_FILE"]).read_text())["repositories"]
    head = commit_to(Path(registry["acme/green"]["clone_url"]), {"ci/test": ("#!/bin/sh\necho head\n", True)})
    # When a schedule rule that fires every minute is made (the first tick claims this minute)
    made = tasuki.cli(
        "rules",
        "create",
        "--event",
        "schedule",
        "--schedule",
        "* * * * *",
        "--repo",
        "acme/green",
        "--branch",
        "master",
        "--jobs",
        "test",
    )
    assert made.returncode == 0, made.stderr
    # Then one run of the branch's head starts and passes, and its delivery says the clock fired
    run = tasuki.wait_for_run(lambda r: r.event.kind == "schedule" and r.status == "success", timeout=WAIT)
    assert run.commit == head and run.repository == "acme/green"
    assert "head" in tasuki.log_of(run.id, "test")
    shown = tasuki.cli("deliveries", "show", run.event.delivery_id)
    assert "clock: fired at" in shown.stdout and run.id in shown.stdout
    assert [r.id for r in tasuki.store.list_runs() if r.event.delivery_id == run.event.delivery_id] == [run.id]
