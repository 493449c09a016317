"""Job secrets through the API and the page: names listed, values set and deleted, never shown
back; a repository Tasuki does not know and a name that is not one are refused."""

from __future__ import annotations

import pytest

from tasuki.shared import sealing
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.runtime import runtime
from tests.unit.conftest import function_client

TOKEN = "correct horse battery staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VALUE = "s3cr3t-deploy-token"


@pytest.fixture
def client(memory_runtime):
    rt = memory_runtime(web_token=TOKEN)
    rt.store.put_repository("acme/api", RepositoryConfig(clone_url="https://git.example/acme/api.git"))
    return function_client("web")


def test_the_api_sets_lists_names_only_and_deletes_a_repository_s_and_global_secrets(client):
    assert (
        client.put("/api/repositories/acme/api/secrets/DEPLOY_TOKEN", json={"value": VALUE}, headers=AUTH).status_code
        == 204
    )
    assert client.put("/api/secrets/SHARED", json={"value": "global-value"}, headers=AUTH).status_code == 204
    listed = client.get("/api/repositories/Acme/API/secrets", headers=AUTH)
    assert listed.get_json() == {"secrets": ["DEPLOY_TOKEN"]} and VALUE not in listed.get_data(as_text=True)
    assert client.get("/api/secrets", headers=AUTH).get_json() == {"secrets": ["SHARED"]}
    # Stored sealed with the store key: the store holds no value in plain text
    store = runtime().store
    [sealed] = store.sealed_secrets("acme/api", ["DEPLOY_TOKEN"]).values()
    assert VALUE not in sealed
    assert sealing.unseal(runtime().settings.store_key_value(), sealing.Sealed(token=sealed)).decode() == VALUE
    # Deleting the secret leaves the repository registered
    assert client.delete("/api/repositories/acme/api/secrets/DEPLOY_TOKEN", headers=AUTH).status_code == 204
    assert client.get("/api/repositories/acme/api/secrets", headers=AUTH).get_json() == {"secrets": []}
    assert store.get_repository("acme/api") is not None
    assert client.delete("/api/repositories/acme/api/secrets/DEPLOY_TOKEN", headers=AUTH).status_code == 404
    assert client.delete("/api/secrets/SHARED", headers=AUTH).status_code == 204


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        ("/api/repositories/acme/nope/secrets/X", {"value": "v"}, 404, "is not a registered repository"),
        ("/api/repositories/acme/api/secrets/not-a-name", {"value": "v"}, 400, "a secret's name is"),
        ("/api/repositories/acme/api/secrets/X", {"value": 3}, 400, "expected"),
        ("/api/repositories/acme/api/secrets/X", {"value": ""}, 400, "empty"),
        ("/api/secrets/TASUKI_ORDER_KEY", {"value": "v"}, 400, "Tasuki's own"),
    ],
)
def test_the_api_refuses_what_is_not_a_secret(client, path, body, status, words):
    answer = client.put(path, json=body, headers=AUTH)
    assert answer.status_code == status and words in answer.get_json()["error"]


def test_the_api_wants_the_token(client):
    assert client.put("/api/secrets/X", json={"value": "v"}).status_code == 401
    assert client.get("/api/secrets").status_code == 401


def test_the_page_lists_names_sets_and_deletes_and_never_shows_a_value(client):
    client.post("/login", data={"token": TOKEN})
    page = client.get("/repositories").get_data(as_text=True)
    assert 'href="/repositories/acme/api/secrets"' in page
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    assert (
        client.post("/repositories/acme/api/secrets", data={"name": "DEPLOY_TOKEN", "value": VALUE}).status_code == 403
    )
    done = client.post("/repositories/acme/api/secrets", data={"name": "DEPLOY_TOKEN", "value": VALUE, "csrf": csrf})
    assert done.status_code == 303 and done.headers["Location"] == "/repositories/acme/api/secrets"
    page = client.get("/repositories/acme/api/secrets").get_data(as_text=True)
    assert '<td class="mono">DEPLOY_TOKEN</td>' in page and VALUE not in page
    gone = client.post("/repositories/acme/api/secrets/DEPLOY_TOKEN/delete", data={"csrf": csrf})
    page = client.get("/repositories/acme/api/secrets").get_data(as_text=True)
    assert gone.status_code == 303 and "Deleted DEPLOY_TOKEN" in page and '<td class="mono">DEPLOY_TOKEN' not in page
    assert client.post("/secrets", data={"name": "SHARED", "value": "v", "csrf": csrf}).status_code == 303
    assert "SHARED" in client.get("/secrets").get_data(as_text=True)


def test_the_description_names_the_secrets_paths(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert set(paths["/api/repositories/{full_name}/secrets/{name}"]) == {"put", "delete"}
    assert set(paths["/api/secrets"]) == {"get"}


def test_another_site_cannot_set_a_secret(client):
    client.post("/login", data={"token": TOKEN})  # a signed-in browser
    evil = {"Origin": "https://evil.example"}
    refused = client.put("/api/secrets/DEPLOY_TOKEN", json={"value": "theirs"}, headers=evil)
    assert refused.status_code == 403
    as_form = client.put("/api/secrets/DEPLOY_TOKEN", data="value=theirs", content_type="text/plain")
    assert as_form.status_code == 415
    assert client.get("/api/secrets", headers=AUTH).get_json() == {"secrets": []}
