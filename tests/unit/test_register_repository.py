"""Registering a repository on the page or through the API takes what the registry file takes:
a Bitbucket username with its app password (instead of an access token) and `trust_forks`.
What it does not know, or a half of a credential, is refused saying so, never dropped."""

from __future__ import annotations

import pytest

from tasuki.shared import approval
from tasuki.shared.messages import Event, PullRequest, Ref, Repository
from tasuki.shared.runtime import runtime
from tests.unit.conftest import function_client

TOKEN = "correct horse battery staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = "app-pw-Hj6Tn0Yb3"


@pytest.fixture
def web(memory_runtime):
    memory_runtime(web_token=TOKEN)
    return function_client("web")


def fork_pull_request(name: str) -> Event:
    return Event(
        host="bitbucket",
        event="pullrequest:created",
        kind="pull_request",
        delivery_id="d",
        repository=Repository(full_name=name),
        ref=Ref(kind="branch", name="feature"),
        after="a" * 40,
        pull_request=PullRequest(number=7, source_repository="someone/fork", target_branch="main"),
    )


def test_a_bitbucket_app_password_and_trusted_forks_are_registered_through_the_api(web):
    made = web.post(
        "/api/repositories",
        json={
            "full_name": "acme/api",
            "clone_url": "https://bitbucket.org/acme/api.git",
            "username": "ci-bot",
            "app_password": PASSWORD,
            "trust_forks": True,
        },
        headers=AUTH,
    )
    assert made.status_code == 201, made.get_json()
    config = runtime().registry.get("acme/api")
    assert (config.username, config.app_password, config.trust_forks) == ("ci-bot", PASSWORD, True)
    # a fork's pull request needs no approval there (it would without trust_forks)
    event = fork_pull_request("acme/api")
    assert event.from_fork and approval.needed(event, rule_trusts_forks=False, repository=None)
    assert not approval.needed(event, rule_trusts_forks=False, repository=config)
    listed = web.get("/api/repositories", headers=AUTH)
    [entry] = listed.get_json()["repositories"]
    assert (entry["token"], entry["trust_forks"]) == (True, True)
    assert PASSWORD not in listed.get_data(as_text=True)


def test_the_page_registers_them_too(web):
    web.post("/login", data={"token": TOKEN, "next": "/repositories"})
    page = web.get("/repositories").get_data(as_text=True)
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert 'name="app_password"' in page and 'name="trust_forks"' in page
    answer = web.post(
        "/repositories",
        data={
            "csrf": csrf,
            "full_name": "acme/web",
            "username": "ci-bot",
            "app_password": PASSWORD,
            "trust_forks": "true",
        },
    )
    assert answer.status_code == 303
    config = runtime().registry.get("acme/web")
    assert (config.username, config.app_password, config.trust_forks) == ("ci-bot", PASSWORD, True)
    page = web.get("/repositories").get_data(as_text=True)
    assert "forks trusted" in page and PASSWORD not in page
    # unticked, forks wait for approval
    web.post("/repositories", data={"csrf": csrf, "full_name": "acme/docs"})
    assert runtime().registry.get("acme/docs").trust_forks is False


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"username": "ci-bot"}, "goes with its username: give both"),
        ({"app_password": PASSWORD}, "goes with its username: give both"),
        ({"trust_forks": "yes"}, "trust_forks must be true or false"),
        ({"secert": "typo"}, "unknown field(s) secert; a repository takes full_name, clone_url, secret"),
    ],
)
def test_half_a_credential_a_wrong_type_or_an_unknown_field_is_refused_and_nothing_registered(web, body, says):
    answer = web.post("/api/repositories", json={"full_name": "acme/api", **body}, headers=AUTH)
    assert answer.status_code == 400 and says in answer.get_json()["error"]
    assert runtime().registry.get("acme/api") is None
