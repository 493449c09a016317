"""Bitbucket Cloud deliveries become Events: the fixtures field by field, and every shape of
`repo:push` (new and deleted refs, tags, several changes, forced, truncated)."""

from __future__ import annotations

import copy
import hashlib
import hmac

import pytest

from tasuki.shared.errors import WebhookError
from tasuki.shared.hosts import HOSTS, Unpublished
from tests.conftest import first_push_headers
from tests.deliveries import fixture, fixture_body

bitbucket = HOSTS["bitbucket"]

NEW = "709d658dc5b6d6afcd46049c2f332ee3f515a67d"
OLD = "1e65c05c1d5171631d92438a13901ca7dae9618c"


def push(**change_edits) -> dict:
    """The repo-push fixture with its one change edited."""
    payload = fixture("bitbucket", "repo-push.json")
    payload["push"]["changes"][0].update(change_edits)
    return payload


def test_the_captured_first_push_parses_field_by_field():
    body = fixture_body("bitbucket", "first-push.json")
    delivery = bitbucket.delivery_id(first_push_headers(), body)
    [event] = bitbucket.parse("repo:push", fixture("bitbucket", "first-push.json"), delivery)
    assert event.routing_key == "bitbucket.repo.push"
    assert (event.host, event.event, event.kind) == ("bitbucket", "repo.push", "push")
    assert delivery.startswith("bitbucket:50ac74f5-e8d8-4b6a-82ce-02f433d4816c:")
    assert event.delivery_id == delivery
    assert event.repository.full_name == "takitake/mysidia"
    assert event.repository.web_url == "https://bitbucket.org/takitake/mysidia"
    assert event.repository.clone_url == "https://bitbucket.org/takitake/mysidia.git"
    assert (event.ref.kind, event.ref.name) == ("branch", "master")
    # old: null, the first push of a new repository
    assert event.before == "" and event.after == "8fb0eefc6a340d57598ca553a07fade1a10f2c30"
    assert event.actor == "takitake"
    assert [c.id for c in event.commits] == ["8fb0eefc6a340d57598ca553a07fade1a10f2c30"]
    assert [c.message for c in event.commits] == ["Initial commit with contributors\n"]
    assert event.commits[0].author == "TakiTake <TakiTake.create@gmail.com>"
    assert (event.forced, event.truncated, event.deleted, event.pull_request) == (False, False, False, None)
    assert event.payload == fixture("bitbucket", "first-push.json")
    assert event.attributes() == {
        "host": "bitbucket",
        "event": "repo.push",
        "repo": "takitake/mysidia",
        "ref": "master",
        "delivery": delivery,
    }


def test_the_sample_push_parses_field_by_field():
    [event] = bitbucket.parse("repo:push", fixture("bitbucket", "repo-push.json"), "bitbucket:d")
    assert (event.routing_key, event.kind, event.delivery_id) == ("bitbucket.repo.push", "push", "bitbucket:d")
    assert event.repository.full_name == "team_name/repo_name"
    assert event.repository.clone_url == "https://bitbucket.org/team_name/repo_name.git"
    assert event.repository.web_url == "https://api.bitbucket.org/bitbucket/bitbucket"  # as the sample says
    assert (event.ref.kind, event.ref.name) == ("branch", "name-of-branch")
    assert (event.before, event.after) == (OLD, NEW)
    assert event.actor == "emmap1"
    # a commit by a Bitbucket user whose author has no `raw`: the user's display name
    assert [(c.id, c.message, c.author) for c in event.commits] == [
        ("03f4a7270240708834de475bcf21532d6134777e", "commit message\n", "Emma")
    ]
    assert (event.forced, event.truncated, event.deleted) == (False, False, False)


def test_the_delivery_id_is_the_request_uuid_when_there_is_one():
    assert bitbucket.delivery_id({"X-Request-UUID": "r-1", "X-Hook-UUID": "h"}, b"{}") == "bitbucket:r-1"


def test_without_a_request_uuid_the_hook_uuid_is_combined_with_the_event_and_the_body():
    hook = {"X-Hook-UUID": "h", "X-Event-Key": "repo:push"}
    one = bitbucket.delivery_id(hook, b'{"a": 1}')
    assert one == bitbucket.delivery_id(dict(hook), b'{"a": 1}')  # a redelivery: the same
    assert one != bitbucket.delivery_id(hook, b'{"a": 2}')  # another push through the same hook
    assert one != bitbucket.delivery_id({**hook, "X-Event-Key": "pullrequest:updated"}, b'{"a": 1}')


def test_a_new_branch_has_no_before():
    [event] = bitbucket.parse("repo:push", push(old=None, created=True), "d")
    assert (event.before, event.after, event.ref.name) == ("", NEW, "name-of-branch")


def test_a_deleted_branch_has_no_after_and_is_named_by_its_old_ref():
    [event] = bitbucket.parse("repo:push", push(new=None, closed=True, commits=[]), "d")
    assert (event.kind, event.ref.kind, event.ref.name) == ("push", "branch", "name-of-branch")
    assert (event.before, event.after, event.deleted) == (OLD, "", True)


@pytest.mark.parametrize("ref_type", ["tag", "annotated_tag"])
def test_tags_and_annotated_tags_are_tag_events_for_their_commit(ref_type):
    payload = push()
    change = payload["push"]["changes"][0]
    change["old"] = None
    change["new"].update(type=ref_type, name="v1.2.0")
    [event] = bitbucket.parse("repo:push", payload, "d")
    assert (event.routing_key, event.kind, event.ref.kind, event.ref.name) == (
        "bitbucket.repo.push",
        "tag",
        "tag",
        "v1.2.0",
    )
    assert (event.before, event.after) == ("", NEW)


def test_a_deleted_tag():
    payload = push(new=None)
    payload["push"]["changes"][0]["old"].update(type="tag", name="v0.9")
    [event] = bitbucket.parse("repo:push", payload, "d")
    assert (event.kind, event.ref.name, event.after, event.deleted) == ("tag", "v0.9", "", True)


def test_several_changes_make_one_event_each_in_order():
    payload = push()
    second = copy.deepcopy(payload["push"]["changes"][0])
    second["new"].update(type="tag", name="v2")
    second["old"] = None
    payload["push"]["changes"].append(second)
    events = bitbucket.parse("repo:push", payload, "d")
    assert [(e.kind, e.ref.name) for e in events] == [("push", "name-of-branch"), ("tag", "v2")]
    assert {e.delivery_id for e in events} == {"d"}


def test_forced_and_truncated_pushes_say_so():
    [event] = bitbucket.parse("repo:push", push(forced=True, truncated=True), "d")
    assert (event.forced, event.truncated) == (True, True)


def test_commits_are_listed_oldest_first_so_the_last_is_the_head():
    head = {"hash": NEW, "message": "head [skip ci]\n", "author": {"raw": "A <a@example.com>"}}
    parent = {"hash": "p" * 40, "message": "parent\n", "author": {"raw": "B <b@example.com>"}}
    [event] = bitbucket.parse("repo:push", push(commits=[head, parent]), "d")  # Bitbucket: newest first
    assert [c.id for c in event.commits] == ["p" * 40, NEW]
    assert event.head_message == "head [skip ci]\n"
    assert event.commits[1].author == "A <a@example.com>"


def test_a_push_of_only_mercurial_refs_is_ignored():
    payload = push()
    payload["push"]["changes"][0]["new"]["type"] = "named_branch"
    assert isinstance(bitbucket.parse("repo:push", payload, "d"), Unpublished)


def test_an_empty_change_list_is_ignored():
    payload = push()
    payload["push"]["changes"] = []
    assert bitbucket.parse("repo:push", payload, "d").status == "ignored"


@pytest.mark.parametrize("changes", [None, "x", [1], [{"new": None, "old": None}], [{"new": {"type": "branch"}}]])
def test_a_malformed_push_is_a_400(changes):
    payload = push()
    payload["push"]["changes"] = changes
    with pytest.raises(WebhookError) as caught:
        bitbucket.parse("repo:push", payload, "d")
    assert caught.value.http_status == 400


@pytest.mark.parametrize(
    ("name", "event", "action", "state"),
    [
        ("pull-request-created.json", "pullrequest:created", "opened", "open"),
        ("pull-request-updated.json", "pullrequest:updated", "updated", "open"),
        ("pull-request-merged.json", "pullrequest:fulfilled", "merged", "merged"),
        ("pull-request-declined.json", "pullrequest:rejected", "closed", "closed"),
    ],
)
def test_pull_request_events_field_by_field(name, event, action, state):
    [ev] = bitbucket.parse(event, fixture("bitbucket", name), "d")
    assert ev.routing_key == "bitbucket." + event.replace(":", ".")
    assert (ev.kind, ev.event) == ("pull_request", event.replace(":", "."))
    assert ev.repository.full_name == "team_name/repo_name"
    assert (ev.ref.kind, ev.ref.name) == ("branch", "branch2")
    # the commit to build is the source commit
    assert (ev.before, ev.after, ev.deleted) == ("", "d3022fc0ca3d", False)
    assert ev.actor == "emmap1"
    pr = ev.pull_request
    assert (pr.number, pr.title, pr.action, pr.state) == (1, "Title of pull request", action, state)
    assert (pr.source_branch, pr.source_commit, pr.source_repository) == (
        "branch2",
        "d3022fc0ca3d",
        "team_name/repo_name",
    )
    assert (pr.target_branch, pr.target_commit) == ("master", "ce5965ddd289")
    assert pr.url == "https://api.bitbucket.org/pullrequest_id"


def test_a_real_pull_request_state_is_used_when_it_is_one():
    payload = fixture("bitbucket", "pull-request-updated.json")
    payload["pullrequest"]["state"] = "DECLINED"
    [event] = bitbucket.parse("pullrequest:updated", payload, "d")
    assert event.pull_request.state == "closed"


@pytest.mark.parametrize("event", ["pullrequest:comment_created", "repo:fork", "pullrequest:approved", "issue:created"])
def test_other_events_are_ignored(event):
    result = bitbucket.parse(event, fixture("bitbucket", "pull-request-comment-created.json"), "d")
    assert isinstance(result, Unpublished) and result.status == "ignored" and event in result.reason


def test_the_signature_is_checked_against_the_body():
    body = b'{"a": 1}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    bitbucket.verify({"X-Hub-Signature": good}, body, "s3cret")
    for headers in ({}, {"X-Hub-Signature": good.replace("sha256=", "sha1=")}, {"X-Hub-Signature": "sha256=00"}):
        with pytest.raises(WebhookError) as caught:
            bitbucket.verify(headers, body, "s3cret")
        assert caught.value.http_status == 401
    with pytest.raises(WebhookError):
        bitbucket.verify({"X-Hub-Signature": good}, body + b" ", "s3cret")
