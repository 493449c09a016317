"""Reading a delivery (pure): every fixture, every refusal and its status, secrets per
repository, and properties over arbitrary input: only `WebhookError`, and only carriable events."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasuki.shared import codec, webhooks
from tasuki.shared.errors import WebhookError
from tasuki.shared.messages import Event
from tasuki.shared.registry import Registry, Repositories, RepositoryConfig, find_in
from tests.deliveries import EVENT_HEADERS, FIXTURES, fixture, fixture_body, headers
from tests.strategies import event_names, header_names, json_values, paths, replaced

OPEN = Registry()

# What each fixture must become: the routing keys it publishes, or how it is answered.
EXPECTED = {
    ("bitbucket", "first-push.json"): ["bitbucket.repo.push"],
    ("bitbucket", "repo-push.json"): ["bitbucket.repo.push"],
    ("bitbucket", "pull-request-created.json"): ["bitbucket.pullrequest.created"],
    ("bitbucket", "pull-request-updated.json"): ["bitbucket.pullrequest.updated"],
    ("bitbucket", "pull-request-merged.json"): ["bitbucket.pullrequest.fulfilled"],
    ("bitbucket", "pull-request-declined.json"): ["bitbucket.pullrequest.rejected"],
    ("bitbucket", "pull-request-comment-created.json"): "ignored",
    ("github", "push.json"): ["github.push"],
    ("github", "pull-request.json"): ["github.pull_request.opened"],
    ("github", "ping.json"): "pong",
    ("github", "create.json"): "ignored",
    ("github", "delete.json"): "ignored",
    ("github", "workflow_dispatch.json"): "ignored",
    ("gitlab", "push-event.json"): ["gitlab.push"],
    ("gitlab", "tag-event.json"): ["gitlab.tag_push"],
    ("gitlab", "merge-request-event.json"): ["gitlab.merge_request.open"],
}


def read(head, body, registry=OPEN, **kw) -> webhooks.Delivery:
    """Read a delivery; unknown repositories are accepted unless the test says otherwise."""
    kw.setdefault("unknown_repositories", "accept")
    return webhooks.read(head, body, registry=registry, **kw)


def refused(head, body, registry=OPEN, **kw) -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        read(head, body, registry, **kw)
    return caught.value


def test_every_fixture_is_covered():
    assert set(EXPECTED) == set(FIXTURES)


@pytest.mark.parametrize(("host", "name"), sorted(FIXTURES))
def test_every_fixture_reads_as_expected(host, name):
    body = fixture_body(host, name)
    delivery = read(headers(host, FIXTURES[host, name], body, delivery="d-1"), body)
    assert delivery.host == host and delivery.delivery_id.startswith(f"{host}:")
    expected = EXPECTED[host, name]
    if isinstance(expected, str):
        assert delivery.unpublished is not None and delivery.unpublished.status == expected
        assert delivery.events == []
    else:
        assert delivery.unpublished is None
        assert [e.routing_key for e in delivery.events] == expected
        for event in delivery.events:
            assert event.delivery_id == delivery.delivery_id
            assert event.repository.full_name == delivery.repository
            assert codec.decode(codec.encode(event), Event) == event


@pytest.mark.parametrize("content_type", ["", "text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
def test_a_body_that_is_not_declared_json_is_a_415(content_type):
    body = fixture_body("github", "push.json")
    head = {**headers("github", "push", body), "Content-Type": content_type}
    error = refused(head, body)
    assert error.http_status == 415 and "application/json" in str(error)


def test_json_with_a_charset_is_json():
    body = fixture_body("github", "push.json")
    head = {**headers("github", "push", body), "content-type": "Application/JSON; charset=utf-8"}
    assert read(head, body).events


def test_no_event_header_is_a_400_naming_the_headers_expected():
    error = refused({"Content-Type": "application/json"}, b"{}")
    assert error.http_status == 400 and all(h in str(error) for h in EVENT_HEADERS.values())


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe{", b"[1, 2]", b'"push"', b"null", b"{'a': 1}"])
def test_a_body_that_is_not_a_json_object_is_a_400(body):
    assert refused(headers("github", "push", body), body).http_status == 400


def test_json_nested_deeper_than_the_limit_is_a_400():
    payload = fixture("github", "push.json")
    deep = payload
    for _ in range(webhooks.MAX_DEPTH):
        deep["x"] = {}
        deep = deep["x"]
    body = json.dumps(payload).encode()
    error = refused(headers("github", "push", body), body)
    assert error.http_status == 400 and "nests deeper" in str(error)
    body = b"[" * 100_000 + b"]" * 100_000
    assert refused(headers("github", "push", body), body).http_status == 400


def test_a_number_no_message_can_carry_is_a_400():
    payload = fixture("github", "push.json")
    payload["repository"]["size"] = 10**30
    body = json.dumps(payload).encode()
    error = refused(headers("github", "push", body), body)
    assert error.http_status == 400 and "cannot be carried" in str(error)


def test_a_delivery_id_that_is_not_an_id_is_a_400():
    body = fixture_body("github", "push.json")
    assert refused(headers("github", "push", body, delivery="x" * 500), body).http_status == 400
    assert refused(headers("github", "push", body, delivery="a\x00b"), body).http_status == 400


# --- repositories and secrets -------------------------------------------------------------------

SIGNED = {
    "bitbucket": ("repo-push.json", "repo:push", "team_name/repo_name"),
    "github": ("push.json", "push", "binkkatal/sample_app"),
    "gitlab": ("push-event.json", "Push Hook", "mike/diaspora"),
}


def registry_with(name: str, secret: str = "") -> Registry:
    return Registry(repositories={name: RepositoryConfig(clone_url="/x.git", secret=secret)})


@pytest.mark.parametrize("host", sorted(SIGNED))
def test_a_repository_with_a_secret_takes_only_deliveries_signed_with_it(host):
    name, event, repository = SIGNED[host]
    body = fixture_body(host, name)
    registry = registry_with(repository, "s3cret")
    # signed with the secret: accepted
    assert read(headers(host, event, body, secret="s3cret"), body, registry).events
    # unsigned, or signed with another secret: 401 saying what to check
    for head in (headers(host, event, body), headers(host, event, body, secret="other")):
        error = refused(head, body, registry)
        assert error.http_status == 401 and "secret" in str(error)
    # a body changed after signing (the token of GitLab signs nothing, so it does not apply)
    if host != "gitlab":
        tampered = body.rstrip()[:-1] + b', "x": 1}'
        assert refused(headers(host, event, body, secret="s3cret"), tampered, registry).http_status == 401


@pytest.mark.parametrize("host", sorted(SIGNED))
def test_the_secret_of_a_repository_cannot_be_dodged_by_changing_the_case_of_its_name(host):
    name, event, repository = SIGNED[host]
    body = fixture_body(host, name).replace(repository.encode(), repository.upper().encode())
    assert refused(headers(host, event, body), body, registry_with(repository, "s3cret")).http_status == 401


class Stored:
    """The store's side of the registry: repositories registered on the page."""

    def __init__(self, **configs: RepositoryConfig) -> None:
        self.configs = {name.replace("__", "/"): config for name, config in configs.items()}

    def list_repositories(self):
        return dict(self.configs)

    def find_repository(self, full_name):
        return find_in(self.configs.items(), full_name)


def test_a_registry_over_several_places_is_searched_without_case_too():
    body = fixture_body("github", "push.json").replace(b"binkkatal/sample_app", b"BinkKatal/Sample_App")
    registry = Repositories(Registry(), Stored(binkkatal__sample_app=RepositoryConfig(secret="s3cret")))
    assert refused(headers("github", "push", body), body, registry).http_status == 401
    assert read(headers("github", "push", body, secret="s3cret"), body, registry).events


@pytest.mark.parametrize("host", sorted(SIGNED))
@pytest.mark.parametrize("spelling", ["{} ", " {}", "{}/", "/{}/", "{}\t", "{} /"])
def test_no_spelling_of_a_registered_name_escapes_its_secret(host, spelling):
    # Given a repository registered with a secret, in the file and (another) on the page
    name, event, repository = SIGNED[host]
    variant = spelling.format(repository.upper())
    body = json.dumps(fixture(host, name)).replace(json.dumps(repository), json.dumps(variant)).encode()
    for registry in (
        registry_with(repository, "s3cret"),
        Repositories(Registry(), Stored(**{repository.replace("/", "__"): RepositoryConfig(secret="s3cret")})),
    ):
        # When a delivery names it with spaces, slashes or another case, unsigned: refused
        assert refused(headers(host, event, body), body, registry).http_status == 401
        # Signed, it is read, and its events name the repository as registered
        delivery = read(headers(host, event, body, secret="s3cret"), body, registry, unknown_repositories="reject")
        assert {e.repository.full_name for e in delivery.events} == {repository}


def test_an_event_never_carries_the_payloads_clone_url():
    payload = fixture("github", "push.json")
    payload["repository"]["clone_url"] = "http://169.254.169.254/latest/meta-data.git"
    body = json.dumps(payload).encode()
    for registry in (OPEN, registry_with("binkkatal/sample_app")):
        (event,) = read(headers("github", "push", body), body, registry).events
        assert event.repository.clone_url == ""


def test_a_push_of_more_refs_than_the_limit_is_refused_before_anything_is_encoded():
    payload = fixture("bitbucket", "repo-push.json")
    change = payload["push"]["changes"][0]
    payload["push"]["changes"] = [{**change, "new": {**change["new"], "name": f"branch-{n}"}} for n in range(101)]
    body = json.dumps(payload).encode()
    error = refused(headers("bitbucket", "repo:push", body), body)
    assert error.http_status == 413 and "101 refs" in str(error) and "TASUKI_MAX_EVENTS_PER_DELIVERY" in str(error)
    assert len(read(headers("bitbucket", "repo:push", body), body, max_events=101).events) == 101


def test_each_event_of_a_push_carries_only_its_own_ref():
    # Given a Bitbucket push of 500 refs, each with its commits
    payload = fixture("bitbucket", "repo-push.json")
    change = payload["push"]["changes"][0]
    payload["push"]["changes"] = [{**change, "new": {**change["new"], "name": f"branch-{n}"}} for n in range(500)]
    body = json.dumps(payload).encode()
    delivery = read(headers("bitbucket", "repo:push", body), body, max_events=500)
    # Then each event's payload is the delivery with its own change only, and all of them
    # together are about the size of the delivery, not 500 times it
    for n, event in enumerate(delivery.events):
        assert event.payload["push"]["changes"] == [payload["push"]["changes"][n]]
        assert event.payload["repository"] == payload["repository"]
    assert sum(len(b) for b in delivery.bodies) < 4 * len(body)


def test_a_registered_repository_without_a_secret_takes_unsigned_deliveries():
    body = fixture_body("github", "push.json")
    assert read(headers("github", "push", body), body, registry_with("binkkatal/sample_app")).events


def test_unknown_repositories_are_refused_with_a_404_unless_accepted_on_purpose():
    body = fixture_body("github", "push.json")
    head = headers("github", "push", body)
    assert read(head, body, unknown_repositories="accept").events
    with pytest.raises(WebhookError) as caught:
        webhooks.read(head, body, registry=OPEN)  # the default
    error = caught.value
    assert (
        error.http_status == 404 and "binkkatal/sample_app" in str(error) and "TASUKI_REPOSITORIES_FILE" in str(error)
    )
    assert "/api/repositories" in str(error)
    assert read(head, body, registry_with("binkkatal/sample_app"), unknown_repositories="reject").events


def test_a_ping_for_a_repository_with_a_secret_proves_the_secret():
    payload = fixture("github", "ping.json")
    payload["repository"] = {"full_name": "acme/api"}
    body = json.dumps(payload).encode()
    registry = registry_with("acme/api", "s3cret")
    assert read(headers("github", "ping", body, secret="s3cret"), body, registry).unpublished.status == "pong"
    assert refused(headers("github", "ping", body, secret="wrong"), body, registry).http_status == 401


# --- properties ---------------------------------------------------------------------------------


def check(head, body, registry=OPEN) -> None:
    """The property: a delivery is read, or refused with a 4xx; what is read can be published."""
    try:
        delivery = read(head, body, registry)
    except WebhookError as error:
        assert 400 <= error.http_status < 500
        return
    assert (delivery.unpublished is None) == bool(delivery.events)
    for event in delivery.events:
        codec.encode(event)
        assert event.routing_key.startswith(f"{delivery.host}.")
        assert event.kind != "pull_request" or event.pull_request is not None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(head=st.dictionaries(header_names, st.text(max_size=40)), body=st.binary(max_size=300))
def test_arbitrary_headers_and_bytes_are_read_or_refused(head, body):
    check(head, body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    host=st.sampled_from(sorted(EVENT_HEADERS)),
    event=event_names,
    payload=st.dictionaries(st.text(max_size=10), json_values),
)
def test_arbitrary_json_objects_are_read_or_refused(host, event, payload):
    body = json.dumps(payload).encode()
    check(headers(host, event, body), body)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.sampled_from(sorted(FIXTURES)),
    path=paths,
    replacement=json_values,
    secret=st.sampled_from(["", "s3cret"]),
)
def test_fixtures_with_any_part_replaced_are_read_or_refused(which, path, replacement, secret):
    host, name = which
    payload = replaced(fixture(host, name), path, replacement)
    body = json.dumps(payload).encode()
    registry = registry_with(webhooks.hosts.HOSTS[host].repository_name(fixture(host, name)) or "x/y", secret)
    check(headers(host, FIXTURES[which], body, secret=secret), body, registry)
