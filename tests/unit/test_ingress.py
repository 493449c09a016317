"""The ingress function through functions-framework, with the in-memory broker and SQLite:
what is published and how, dedupe, the broker away and back, the body limit (the one place a body
over `TASUKI_MAX_BODY_BYTES` is refused, before it is read), and clear 4xx answers; never a 500
or a publish on invalid input. Publishing through a real RabbitMQ connection that drops is
tests/integration/test_ingress.py."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasuki.shared import topics
from tasuki.shared.broker import attributes_of
from tasuki.shared.codec import decode
from tasuki.shared.memory import MemoryBroker
from tasuki.shared.messages import Event
from tasuki.shared.runtime import Runtime
from tests.deliveries import EVENT_HEADERS, FIXTURES, fixture, fixture_body, headers, many_refs
from tests.strategies import header_names, json_values, paths, replaced
from tests.unit.conftest import function_client

SECRET = "s3cret"
SIGNED_REPOSITORY = "takitake/mysidia"  # first-push.json
LIMIT = 64 * 1024


@dataclass
class Ingress:
    client: Any
    broker: MemoryBroker

    def post(self, body: bytes, head: dict[str, str]):
        return self.client.post("/", data=body, headers=head)

    def published(self) -> list[tuple[str, Any, Event]]:
        """Every message waiting for the router, taken off its queue: (routing key, properties, event)."""
        return [(key, props, decode(body, Event)) for key, props, body in self.published_bodies()]

    def published_bodies(self) -> list[tuple[str, Any, bytes]]:
        """As `published`, each message's body as the bytes published."""
        return [(p.routing_key, p.properties, p.body) for p in self.broker.take(topics.subscription("router").queue)]


def start(memory_runtime: Callable[..., Runtime], tmp_path: Path, **values: Any) -> Ingress:
    (tmp_path / "repos.yml").write_text(json.dumps({"repositories": {SIGNED_REPOSITORY: {"secret": SECRET}}}))
    rt = memory_runtime(repositories_file=tmp_path / "repos.yml", **values)
    return Ingress(client=function_client("ingress"), broker=rt.broker)


@pytest.fixture
def ingress(memory_runtime, tmp_path) -> Ingress:
    # Unknown repositories accepted on purpose: the fixtures of every host reach the router.
    return start(memory_runtime, tmp_path, max_body_bytes=LIMIT, unknown_repositories="accept")


def first_push(secret: str = SECRET, delivery: str | None = None) -> tuple[bytes, dict[str, str]]:
    body = fixture_body("bitbucket", "first-push.json")
    return body, headers("bitbucket", "repo:push", body, secret=secret, delivery=delivery)


def test_a_signed_push_is_published_confirmed_with_its_attributes(ingress):
    body, head = first_push(delivery="req-1")
    answer = ingress.post(body, head)
    assert answer.status_code == 202, answer.text
    assert answer.json == {
        "status": "accepted",
        "delivery": "bitbucket:req-1",
        "events": 1,
        "keys": ["bitbucket.repo.push"],
    }
    [(key, props, event)] = ingress.published()
    assert key == "bitbucket.repo.push" and props.message_id == "bitbucket:req-1#0"
    assert props.delivery_mode == 2 and props.type == "event"
    assert attributes_of(props.headers) == {
        "host": "bitbucket",
        "event": "repo.push",
        "repo": SIGNED_REPOSITORY,
        "ref": "master",
        "delivery": "bitbucket:req-1",
        "type": "event",
    }
    assert (event.after, event.delivery_id) == ("8fb0eefc6a340d57598ca553a07fade1a10f2c30", "bitbucket:req-1")
    assert event.payload == fixture("bitbucket", "first-push.json")


def test_the_same_delivery_twice_publishes_once(ingress):
    body, head = first_push()
    first, second = ingress.post(body, head), ingress.post(body, head)
    assert first.status_code == 202
    assert second.status_code == 200 and second.json["status"] == "duplicate"
    assert len(ingress.published()) == 1
    # the captured delivery has no X-Request-UUID: hook id and body make its id, as stably
    head.pop("X-Request-UUID")
    assert [ingress.post(body, head).status_code for _ in range(2)] == [202, 200]
    assert len(ingress.published()) == 1


def test_a_delivery_of_several_refs_publishes_one_event_per_ref_in_order(ingress):
    payload = fixture("bitbucket", "repo-push.json")
    tag = json.loads(json.dumps(payload["push"]["changes"][0]))
    tag["new"].update(type="annotated_tag", name="v1")
    payload["push"]["changes"].append(tag)
    body = json.dumps(payload).encode()
    answer = ingress.post(body, headers("bitbucket", "repo:push", body, delivery="multi"))
    assert answer.status_code == 202 and answer.json["events"] == 2
    published = ingress.published()
    assert [(p.message_id, e.kind, e.ref.name) for _, p, e in published] == [
        ("bitbucket:multi#0", "push", "name-of-branch"),
        ("bitbucket:multi#1", "tag", "v1"),
    ]


@pytest.mark.parametrize("host", sorted(EVENT_HEADERS))
def test_each_host_push_is_published_under_its_routing_key(ingress, host):
    name = {"bitbucket": "repo-push.json", "github": "push.json", "gitlab": "push-event.json"}[host]
    body = fixture_body(host, name)
    answer = ingress.post(body, headers(host, FIXTURES[host, name], body))
    assert answer.status_code == 202, answer.text
    [(key, _, event)] = ingress.published()
    assert key == f"{host}.push" if host != "bitbucket" else key == "bitbucket.repo.push"
    assert event.host == host


def test_a_broker_away_gives_503_and_the_retried_delivery_publishes_once(ingress):
    # Given an ingress that has published
    body, head = first_push(delivery="warm")
    assert ingress.post(body, head).status_code == 202
    # When the broker goes away, a delivery is refused with 503 and a body that says why
    ingress.broker.down()
    body, head = first_push(delivery="during-outage")
    answer = ingress.post(body, head)
    assert answer.status_code == 503, answer.text
    assert answer.json["retry"] is True and "RabbitMQ" in answer.json["error"]
    # Then, with the broker back, the host's retry of that delivery is accepted once
    ingress.broker.up()
    assert ingress.post(body, head).status_code == 202
    assert ingress.post(body, head).json["status"] == "duplicate"
    ids = [props.message_id for _, props, _ in ingress.published()]
    assert ids == ["bitbucket:warm#0", "bitbucket:during-outage#0"]


def test_ping_and_events_tasuki_does_not_act_on_are_answered_and_not_published(ingress):
    body = fixture_body("github", "ping.json")
    ping = ingress.post(body, headers("github", "ping", body))
    assert ping.status_code == 200 and ping.json["status"] == "pong" and ping.json["reason"]
    body = fixture_body("github", "create.json")
    ignored = ingress.post(body, headers("github", "create", body))
    assert ignored.status_code == 202 and ignored.json["status"] == "ignored"
    assert "create" in ignored.json["reason"]
    assert ingress.published() == []


@pytest.mark.parametrize(
    "host,event",
    [
        ("bitbucket", "repo:commit_status_created"),
        ("bitbucket", "repo:commit_status_updated"),
        ("github", "status"),
    ],
)
def test_the_commit_statuses_tasuki_sets_itself_trigger_nothing(ingress, host, event):
    # The reporter's own statuses come back as webhooks when the hook subscribes to them: they
    # are answered and never published, so a status can never start a run or another status.
    body = fixture_body("bitbucket", "first-push.json") if host == "bitbucket" else fixture_body("github", "push.json")
    signed = {"secret": SECRET} if host == "bitbucket" else {}  # the fixture's Bitbucket repository has one
    answer = ingress.post(body, headers(host, event, body, **signed))
    assert answer.status_code == 202 and answer.json["status"] == "ignored"
    assert ingress.published() == []


def bad_requests() -> list[tuple[str, int, bytes, dict[str, str]]]:
    body, head = first_push()
    unsigned = headers("bitbucket", "repo:push", body)
    wrong = headers("bitbucket", "repo:push", body, secret="wrong")
    no_event = {k: v for k, v in head.items() if k != "X-Event-Key"}
    huge = fixture("github", "push.json")
    huge["sender"]["id"] = 10**30
    huge = json.dumps(huge).encode()
    deep = b'{"repository": {"full_name": "a/b"}, "x": ' + b"[" * 500 + b"]" * 500 + b"}"
    return [
        ("malformed JSON", 400, body[:-20], head),
        ("not an object", 400, b"[]", headers("github", "push", b"[]")),
        ("wrong content type", 415, body, {**head, "Content-Type": "application/x-www-form-urlencoded"}),
        ("no event header", 400, body, no_event),
        ("unsigned", 401, body, unsigned),
        ("wrongly signed", 401, body, wrong),
        ("over the limit", 413, body + b" " * LIMIT, head),
        ("a number beyond 64 bits", 400, huge, headers("github", "push", huge)),
        ("nested too deeply", 400, deep, headers("github", "push", deep)),
        (
            "shaped wrong",
            400,
            b'{"repository": {"full_name": "x/y"}, "push": 3}',
            headers("bitbucket", "repo:push", b""),
        ),
    ]


@pytest.mark.parametrize(("why", "status", "body", "head"), bad_requests(), ids=[b[0] for b in bad_requests()])
def test_bad_input_gets_a_clear_4xx_and_nothing_published(ingress, why, status, body, head):
    answer = ingress.post(body, head)
    assert answer.status_code == status, answer.text
    assert answer.json["error"]
    assert ingress.published() == []


def test_a_body_declared_over_the_limit_is_refused_unread(ingress):
    body, head = first_push()
    # Content-Length says more than the limit; the few bytes sent are never read
    answer = ingress.client.post("/", data=body, headers=head, environ_overrides={"CONTENT_LENGTH": str(LIMIT * 100)})
    assert answer.status_code == 413 and "TASUKI_MAX_BODY_BYTES" in answer.json["error"]
    assert ingress.published() == []


def test_a_body_over_the_limit_is_a_413_that_names_the_setting(ingress):
    body = fixture_body("github", "push.json")
    over = body + b" " * (LIMIT + 1 - len(body))
    answer = ingress.post(over, headers("github", "push", over))
    assert answer.status_code == 413, answer.text
    assert "TASUKI_MAX_BODY_BYTES" in answer.json["error"]
    assert ingress.published() == []


def test_a_body_of_exactly_the_limit_goes_on_to_be_read(ingress):
    # Given a body of exactly the limit, sent with a content type the reading refuses
    body = fixture_body("github", "push.json")
    exact = body + b" " * (LIMIT - len(body))
    head = {**headers("github", "push", exact), "Content-Type": "text/plain"}
    # Then the limit lets it through, and the reading answers (415), not the limit
    answer = ingress.post(exact, head)
    assert answer.status_code == 415, answer.text


def test_a_chunked_body_over_the_limit_is_refused_after_limit_bytes(ingress):
    body, head = first_push()
    stream = io.BytesIO(body + b" " * (LIMIT * 4))
    answer = ingress.client.post(
        "/", input_stream=stream, headers=head, environ_overrides={"wsgi.input_terminated": True}
    )
    assert answer.status_code == 413
    assert stream.tell() <= LIMIT + 1  # read no further than needed to know
    small = io.BytesIO(body)
    assert (
        ingress.client.post(
            "/", input_stream=small, headers=head, environ_overrides={"wsgi.input_terminated": True}
        ).status_code
        == 202
    )
    assert len(ingress.published()) == 1


def test_unknown_repositories_get_a_404_by_default(memory_runtime, tmp_path):
    ingress = start(memory_runtime, tmp_path)
    body = fixture_body("github", "push.json")
    answer = ingress.post(body, headers("github", "push", body))
    assert answer.status_code == 404 and "not registered" in answer.json["error"]
    body, head = first_push()  # registered
    assert ingress.post(body, head).status_code == 202
    assert len(ingress.published()) == 1


def test_a_push_of_4000_refs_is_refused_with_nothing_published(memory_runtime, tmp_path):
    ingress = start(memory_runtime, tmp_path)
    body = many_refs(4000)
    answer = ingress.post(body, headers("bitbucket", "repo:push", body, secret=SECRET))
    assert answer.status_code == 413, answer.text
    assert "4000 refs" in answer.json["error"] and "at most 100" in answer.json["error"]
    assert ingress.published_bodies() == []


def test_a_push_of_4000_refs_publishes_bytes_linear_in_its_size(memory_runtime, tmp_path):
    # Given an ingress that takes that many refs from one delivery
    ingress = start(memory_runtime, tmp_path, max_events_per_delivery=5000)
    # When a push of 4000 refs arrives
    body = many_refs(4000)
    answer = ingress.post(body, headers("bitbucket", "repo:push", body, secret=SECRET))
    assert answer.status_code == 202 and answer.json["events"] == 4000, answer.text
    # Then each event carries its own ref only, and what was published grows with the delivery:
    # each event is at most the delivery without its refs, its own ref and a little of its own
    published = ingress.published_bodies()
    assert len(published) == 4000
    rest = len(many_refs(0))
    assert sum(len(b) for _, _, b in published) < 4000 * (rest + 1500) < 20 * len(body)
    first = decode(published[0][2], Event)
    assert [c["new"]["name"] for c in first.payload["push"]["changes"]] == ["b0"]


# --- properties: never a 500, never a publish on invalid input -----------------------------------

header_values = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)


def expect_no_500_and_publishes_only_when_accepted(ingress: Ingress, body: bytes, head: dict[str, str]) -> None:
    answer = ingress.post(body, head)
    assert answer.status_code in (200, 202, 400, 401, 404, 413, 415), (answer.status_code, answer.text)
    published = ingress.published()
    if answer.status_code == 202 and answer.json["status"] == "accepted":
        assert len(published) == answer.json["events"] >= 1
    else:
        assert published == [], answer.text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.dictionaries(header_names, header_values), body=st.binary(max_size=200))
def test_arbitrary_bytes_and_headers_never_make_a_500_or_a_publish(ingress, head, body):
    expect_no_500_and_publishes_only_when_accepted(ingress, body, head)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(sorted(FIXTURES)),
    path=paths,
    value=json_values,
    secret=st.sampled_from(["", SECRET, "wrong"]),
)
def test_deliveries_with_any_part_replaced_never_make_a_500_or_a_bad_publish(ingress, which, path, value, secret):
    host, name = which
    body = json.dumps(replaced(fixture(host, name), path, value)).encode()
    expect_no_500_and_publishes_only_when_accepted(ingress, body, headers(host, FIXTURES[which], body, secret=secret))
