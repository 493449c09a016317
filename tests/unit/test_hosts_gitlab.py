"""GitLab deliveries become Events: the fixtures field by field, new and deleted branches,
annotated tags, merge-request actions, system hooks."""

from __future__ import annotations

import pytest

from tasuki.shared.errors import WebhookError
from tasuki.shared.hosts import HOSTS, Unpublished
from tests.deliveries import fixture

gitlab = HOSTS["gitlab"]

ZERO = "0" * 40
BEFORE = "95790bf891e76fee5e1747ab589903a6a1f80f22"
AFTER = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"


def push(**edits) -> dict:
    payload = fixture("gitlab", "push-event.json")
    payload.update(edits)
    return payload


def test_the_push_fixture_parses_field_by_field():
    [event] = gitlab.parse("Push Hook", fixture("gitlab", "push-event.json"), "gitlab:k")
    assert (event.routing_key, event.host, event.event, event.kind) == ("gitlab.push", "gitlab", "push", "push")
    assert event.delivery_id == "gitlab:k"
    assert event.repository.full_name == "mike/diaspora"
    assert event.repository.clone_url == "http://example.com/mike/diaspora.git"
    assert event.repository.web_url == "http://example.com/mike/diaspora"
    assert (event.ref.kind, event.ref.name) == ("branch", "master")
    assert (event.before, event.after) == (BEFORE, AFTER)
    assert event.actor == "John Smith"
    assert [(c.id, c.message, c.author) for c in event.commits] == [
        (
            "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
            "Update Catalan translation to e38cb41.",
            "Jordi Mallach <jordi@softcatala.org>",
        ),
        (AFTER, "fixed readme", "GitLab dev user <gitlabdev@dv6700.(none)>"),
    ]
    assert event.head_message == "fixed readme"
    # total_commits_count is 4, two are listed
    assert (event.truncated, event.forced, event.deleted, event.pull_request) == (True, False, False, None)
    assert event.payload == fixture("gitlab", "push-event.json")
    assert event.attributes() == {
        "host": "gitlab",
        "event": "push",
        "repo": "mike/diaspora",
        "ref": "master",
        "delivery": "gitlab:k",
    }


def test_the_tag_fixture_parses_field_by_field():
    [event] = gitlab.parse("Tag Push Hook", fixture("gitlab", "tag-event.json"), "d")
    assert (event.routing_key, event.event, event.kind) == ("gitlab.tag_push", "tag_push", "tag")
    assert event.repository.full_name == "jsmith/example"
    assert event.repository.clone_url == "http://example.com/jsmith/example.git"
    assert (event.ref.kind, event.ref.name) == ("tag", "v1.0.0")
    assert (event.before, event.after) == ("", "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7")
    assert (event.actor, event.commits, event.truncated) == ("John Smith", [], False)


def test_an_annotated_tag_builds_its_commit_not_the_tag_object():
    payload = fixture("gitlab", "tag-event.json")
    payload["after"] = "a" * 40  # the tag object; checkout_sha is the commit
    [event] = gitlab.parse("Tag Push Hook", payload, "d")
    assert event.after == "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"


def test_a_deleted_tag_has_no_after():
    payload = fixture("gitlab", "tag-event.json")
    payload.update(before=payload["after"], after=ZERO, checkout_sha=None)
    [event] = gitlab.parse("Tag Push Hook", payload, "d")
    assert (event.after, event.deleted) == ("", True)


def test_the_username_is_the_actor_when_gitlab_sends_it():
    [event] = gitlab.parse("Push Hook", push(user_username="jsmith"), "d")
    assert event.actor == "jsmith"


def test_a_new_branch_has_no_before():
    [event] = gitlab.parse("Push Hook", push(before=ZERO, ref="refs/heads/topic/new"), "d")
    assert (event.before, event.after, event.ref.name) == ("", AFTER, "topic/new")


def test_a_deleted_branch_has_no_after():
    [event] = gitlab.parse("Push Hook", push(after=ZERO, checkout_sha=None, commits=[], total_commits_count=0), "d")
    assert (event.before, event.after, event.deleted, event.truncated) == (BEFORE, "", True, False)


def test_a_push_hook_for_a_tag_ref_is_ignored():
    assert gitlab.parse("Push Hook", push(ref="refs/tags/v1"), "d").status == "ignored"


def test_a_system_hook_is_read_by_its_object_kind():
    [event] = gitlab.parse("System Hook", fixture("gitlab", "push-event.json"), "d")
    assert event.routing_key == "gitlab.push"
    assert gitlab.parse("System Hook", {"object_kind": "project_create"}, "d").status == "ignored"


def test_an_event_header_that_contradicts_the_payload_is_a_400():
    with pytest.raises(WebhookError) as caught:
        gitlab.parse("Push Hook", fixture("gitlab", "merge-request-event.json"), "d")
    assert caught.value.http_status == 400 and "merge_request" in str(caught.value)


def test_the_merge_request_fixture_parses_field_by_field():
    [event] = gitlab.parse("Merge Request Hook", fixture("gitlab", "merge-request-event.json"), "d")
    assert (event.routing_key, event.event, event.kind) == (
        "gitlab.merge_request.open",
        "merge_request.open",
        "pull_request",
    )
    assert event.repository.full_name == "gitlabhq/gitlab-test"
    assert event.repository.clone_url == "http://example.com/gitlabhq/gitlab-test.git"
    assert (event.ref.kind, event.ref.name) == ("branch", "ms-viewport")
    assert (event.before, event.after) == ("", AFTER)
    assert event.actor == "root"
    assert [(c.id, c.message) for c in event.commits] == [(AFTER, "fixed readme")]
    pr = event.pull_request
    assert (pr.number, pr.title, pr.state, pr.action) == (1, "MS-Viewport", "open", "opened")
    assert (pr.source_branch, pr.source_commit, pr.target_branch) == ("ms-viewport", AFTER, "master")
    assert pr.source_repository == "awesome_space/awesome_project"
    assert pr.url == "http://example.com/diaspora/merge_requests/1"


def merge_request(action: str, **edits) -> dict:
    payload = fixture("gitlab", "merge-request-event.json")
    payload["object_attributes"].update(action=action, **edits)
    return payload


def test_an_update_with_new_commits_is_published_with_the_old_head_as_before():
    [event] = gitlab.parse("Merge Request Hook", merge_request("update", oldrev="c" * 40), "d")
    assert (event.routing_key, event.pull_request.action, event.before) == (
        "gitlab.merge_request.update",
        "updated",
        "c" * 40,
    )


def test_an_update_without_new_commits_is_ignored():
    result = gitlab.parse("Merge Request Hook", merge_request("update"), "d")
    assert isinstance(result, Unpublished) and "without new commits" in result.reason


@pytest.mark.parametrize(
    ("action", "state", "normalised", "normalised_state"),
    [
        ("reopen", "opened", "reopened", "open"),
        ("close", "closed", "closed", "closed"),
        ("merge", "merged", "merged", "merged"),
    ],
)
def test_reopen_close_and_merge(action, state, normalised, normalised_state):
    [event] = gitlab.parse("Merge Request Hook", merge_request(action, state=state), "d")
    assert event.routing_key == f"gitlab.merge_request.{action}"
    assert (event.pull_request.action, event.pull_request.state) == (normalised, normalised_state)


@pytest.mark.parametrize("action", ["approved", "unapproved", "approval", "unapproval", None])
def test_approvals_are_ignored(action):
    assert gitlab.parse("Merge Request Hook", merge_request(action), "d").status == "ignored"


@pytest.mark.parametrize("hook", ["Note Hook", "Pipeline Hook", "Issue Hook", "Job Hook"])
def test_other_hooks_are_ignored(hook):
    assert gitlab.parse(hook, {"object_kind": "x"}, "d").status == "ignored"


def test_delivery_ids():
    assert gitlab.delivery_id({"Idempotency-Key": "k-1", "X-Gitlab-Event-UUID": "e"}, b"{}") == "gitlab:k-1"
    # X-Gitlab-Event-UUID is shared by recursive hooks: combined with the body
    one = gitlab.delivery_id({"X-Gitlab-Event-UUID": "e"}, b'{"a": 1}')
    assert one.startswith("gitlab:e:") and one != gitlab.delivery_id({"X-Gitlab-Event-UUID": "e"}, b'{"a": 2}')


def test_the_token_is_compared_with_the_secret():
    gitlab.verify({"X-Gitlab-Token": "s3cret"}, b"{}", "s3cret")
    for headers in ({}, {"X-Gitlab-Token": "s3cre"}, {"X-Gitlab-Token": "s3cret "}):
        with pytest.raises(WebhookError) as caught:
            gitlab.verify(headers, b"{}", "s3cret")
        assert caught.value.http_status == 401


@pytest.mark.parametrize("edit", [{"project": None}, {"ref": None}, {"project": {"path_with_namespace": 3}}])
def test_a_malformed_push_is_a_400(edit):
    with pytest.raises(WebhookError) as caught:
        gitlab.parse("Push Hook", push(**edit), "d")
    assert caught.value.http_status == 400
