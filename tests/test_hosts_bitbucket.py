from shared.hosts import bitbucket
from tests.conftest import WEBHOOKS, first_push_headers, webhook


def test_the_captured_first_push_parses_field_by_field():
    body = (WEBHOOKS / "bitbucket" / "first-push.json").read_bytes()
    delivery = bitbucket.delivery_id(first_push_headers(), body)
    [event] = bitbucket.parse("repo:push", webhook("bitbucket", "first-push.json"), delivery)
    assert event.routing_key == "bitbucket.repo.push"
    assert (event.host, event.event, event.kind) == ("bitbucket", "repo.push", "push")
    assert delivery.startswith("bitbucket:50ac74f5-e8d8-4b6a-82ce-02f433d4816c:")
    assert event.repository.full_name == "takitake/mysidia"
    assert event.repository.web_url == "https://bitbucket.org/takitake/mysidia"
    assert event.repository.clone_url == "https://bitbucket.org/takitake/mysidia.git"
    assert (event.ref.kind, event.ref.name) == ("branch", "master")
    assert event.before == "" and event.after == "8fb0eefc6a340d57598ca553a07fade1a10f2c30"
    assert event.actor == "takitake"
    assert [c.message for c in event.commits] == ["Initial commit with contributors\n"]
    assert event.commits[0].author == "TakiTake <TakiTake.create@gmail.com>"
    assert event.attributes() == {"host": "bitbucket", "event": "repo.push", "repo": "takitake/mysidia", "ref": "master"}
