"""GitHub deliveries become Events: the fixtures field by field, branches, tags, deletions,
pull-request actions and the ping."""

from __future__ import annotations

import pytest

from tasuki.shared.errors import WebhookError
from tasuki.shared.hosts import HOSTS, Unpublished
from tests.deliveries import fixture

github = HOSTS["github"]

AFTER = "fd489864e7642b48eaad6e3f155c10e46810ec72"
BEFORE = "737d38c599c1b2991664dfc6155d6bf516fcce36"
ZERO = "0" * 40


def push(**edits) -> dict:
    payload = fixture("github", "push.json")
    payload.update(edits)
    return payload


def test_the_push_fixture_parses_field_by_field():
    [event] = github.parse("push", fixture("github", "push.json"), "github:d-1")
    assert (event.routing_key, event.host, event.event, event.kind) == ("github.push", "github", "push", "push")
    assert event.delivery_id == "github:d-1"
    assert event.repository.full_name == "binkkatal/sample_app"
    assert event.repository.clone_url == "https://github.com/binkkatal/sample_app.git"
    assert event.repository.web_url == "https://github.com/binkkatal/sample_app"
    assert (event.ref.kind, event.ref.name) == ("branch", "master")
    assert (event.before, event.after) == (BEFORE, AFTER)
    assert event.actor == "binkkatal"
    assert [(c.id, c.message, c.author) for c in event.commits] == [
        (AFTER, "test a push event", "binkkatal <binkkatal.r@gmail.com>")
    ]
    assert (event.forced, event.truncated, event.deleted, event.pull_request) == (False, False, False, None)
    assert event.payload == fixture("github", "push.json")
    assert event.attributes() == {
        "host": "github",
        "event": "push",
        "repo": "binkkatal/sample_app",
        "ref": "master",
        "delivery": "github:d-1",
    }


def test_the_delivery_id_is_the_github_delivery_guid():
    assert github.delivery_id({"X-GitHub-Delivery": "72d3162e"}, b"{}") == "github:72d3162e"
    without = github.delivery_id({"X-GitHub-Event": "push"}, b"{}")
    assert without.startswith("github:") and without == github.delivery_id({"X-GitHub-Event": "push"}, b"{}")


def test_a_created_branch_has_no_before():
    [event] = github.parse("push", push(before=ZERO, created=True), "d")
    assert (event.before, event.after) == ("", AFTER)


def test_a_deleted_branch_has_no_after():
    [event] = github.parse("push", push(after=ZERO, deleted=True, head_commit=None, commits=[]), "d")
    assert (event.kind, event.ref.name, event.before, event.after, event.deleted) == (
        "push",
        "master",
        BEFORE,
        "",
        True,
    )
    assert event.commits == []


def test_a_tag_push_is_a_tag_event():
    [event] = github.parse("push", push(ref="refs/tags/v1.0", before=ZERO, commits=[]), "d")
    assert (event.routing_key, event.kind, event.ref.kind, event.ref.name) == ("github.push", "tag", "tag", "v1.0")
    assert (event.before, event.after) == ("", AFTER)


def test_an_annotated_tag_builds_its_commit_not_the_tag_object():
    tag_object = "a" * 40
    [event] = github.parse("push", push(ref="refs/tags/v2", before=ZERO, after=tag_object, commits=[]), "d")
    assert event.after == AFTER  # head_commit.id


def test_a_deleted_tag():
    [event] = github.parse("push", push(ref="refs/tags/v1", after=ZERO, deleted=True, head_commit=None), "d")
    assert (event.kind, event.after, event.deleted) == ("tag", "", True)


def test_a_forced_push_says_so():
    [event] = github.parse("push", push(forced=True), "d")
    assert event.forced


def test_a_push_of_a_ref_that_is_neither_branch_nor_tag_is_ignored():
    assert github.parse("push", push(ref="refs/notes/commits"), "d").status == "ignored"


def test_a_branch_name_with_slashes_is_kept_whole():
    [event] = github.parse("push", push(ref="refs/heads/feature/x/y"), "d")
    assert event.ref.name == "feature/x/y"


def test_the_pull_request_fixture_parses_field_by_field():
    [event] = github.parse("pull_request", fixture("github", "pull-request.json"), "d")
    assert (event.routing_key, event.kind) == ("github.pull_request.opened", "pull_request")
    assert event.repository.full_name == "baxterthehacker/public-repo"
    assert (event.ref.kind, event.ref.name) == ("branch", "changes")
    assert (event.before, event.after) == ("", "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c")
    assert event.actor == "baxterthehacker"
    pr = event.pull_request
    assert (pr.number, pr.title, pr.state, pr.action) == (1, "Update the README with new information", "open", "opened")
    assert (pr.source_branch, pr.source_commit) == ("changes", "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c")
    assert (pr.target_branch, pr.target_commit) == ("master", "9049f1265b7d61be4a8904a9a27120d2064dab3b")
    assert pr.source_repository == "baxterthehacker/public-repo"
    assert pr.url == "https://github.com/baxterthehacker/public-repo/pull/1"


def pull_request(action: str, **pr_edits) -> dict:
    payload = fixture("github", "pull-request.json")
    payload["action"] = action
    payload["pull_request"].update(pr_edits)
    return payload


def test_synchronize_is_an_update_with_the_previous_head_as_before():
    payload = pull_request("synchronize")
    payload.update(before="b" * 40, after="0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c")
    [event] = github.parse("pull_request", payload, "d")
    assert (event.routing_key, event.pull_request.action) == ("github.pull_request.synchronize", "updated")
    assert (event.before, event.after) == ("b" * 40, "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c")


def test_reopened():
    [event] = github.parse("pull_request", pull_request("reopened"), "d")
    assert (event.routing_key, event.pull_request.action, event.pull_request.state) == (
        "github.pull_request.reopened",
        "reopened",
        "open",
    )


def test_closed_with_a_merge_is_merged_and_without_is_closed():
    [merged] = github.parse("pull_request", pull_request("closed", state="closed", merged=True), "d")
    [closed] = github.parse("pull_request", pull_request("closed", state="closed", merged=False), "d")
    assert merged.routing_key == closed.routing_key == "github.pull_request.closed"
    assert (merged.pull_request.action, merged.pull_request.state) == ("merged", "merged")
    assert (closed.pull_request.action, closed.pull_request.state) == ("closed", "closed")


def test_a_pull_request_from_a_deleted_fork_has_no_source_repository():
    payload = pull_request("opened")
    payload["pull_request"]["head"]["repo"] = None
    [event] = github.parse("pull_request", payload, "d")
    assert event.pull_request.source_repository == ""
    assert event.from_fork  # nobody can say whose code it is: treated as a fork's


def test_a_pull_request_is_from_a_fork_when_its_source_is_another_repository():
    [same] = github.parse("pull_request", pull_request("opened"), "d")
    assert not same.from_fork
    payload = pull_request("opened")
    payload["pull_request"]["head"]["repo"]["full_name"] = "BaxterTheHacker/Public-Repo/"
    [same_spelled_otherwise] = github.parse("pull_request", payload, "d")
    assert not same_spelled_otherwise.from_fork
    payload["pull_request"]["head"]["repo"]["full_name"] = "mallory/public-repo"
    [fork] = github.parse("pull_request", payload, "d")
    assert fork.from_fork
    [push] = github.parse("push", fixture("github", "push.json"), "d")
    assert not push.from_fork


@pytest.mark.parametrize("action", ["edited", "labeled", "assigned", "review_requested", ""])
def test_other_pull_request_actions_are_ignored(action):
    result = github.parse("pull_request", pull_request(action), "d")
    assert isinstance(result, Unpublished) and result.status == "ignored"


def test_ping_is_answered_with_pong():
    result = github.parse("ping", fixture("github", "ping.json"), "d")
    assert result == Unpublished("pong", "Keep it logically awesome.")


@pytest.mark.parametrize("name", ["create.json", "delete.json", "workflow_dispatch.json"])
def test_create_delete_and_workflow_dispatch_are_ignored(name):
    event = name.removesuffix(".json")
    assert github.parse(event, fixture("github", name), "d").status == "ignored"


@pytest.mark.parametrize(
    "edit",
    [{"ref": None}, {"ref": 7}, {"repository": None}, {"repository": {"full_name": ["x"]}}],
)
def test_a_malformed_push_is_a_400(edit):
    with pytest.raises(WebhookError) as caught:
        github.parse("push", push(**edit), "d")
    assert caught.value.http_status == 400


def test_a_pull_request_without_its_branches_is_a_400():
    payload = pull_request("opened")
    del payload["pull_request"]["head"]
    with pytest.raises(WebhookError) as caught:
        github.parse("pull_request", payload, "d")
    assert caught.value.http_status == 400 and "head.ref" in str(caught.value)
