"""Google-signed OIDC push tokens (shared/oidc.py), as Cloud Scheduler and a real Pub/Sub push
send them: accepted by every pushed-to function, through functions-framework's test client,
with the right audience and service account; refused otherwise. The signing keys are a local key
set served on loopback (tests/google_keys.py), found through TASUKI_PUSH_OIDC_CERTS_URL."""

from __future__ import annotations

import pytest

from tasuki.shared import oidc, tokens, topics
from tasuki.shared.errors import AuthError
from tasuki.shared.runtime import runtime
from tasuki.shared.settings import Settings
from tests.google_keys import KeySet, SigningKey
from tests.unit.test_push_auth import body, client

KEY = "handler-test-key-of-at-least-32-bytes"
ACCOUNT = "tasuki-push@acme-ci.iam.gserviceaccount.com"
PUSHED = sorted({sub.endpoint for sub in topics.SUBSCRIPTIONS})  # every function the bridge pushes to


@pytest.fixture(scope="module")
def keys():
    with KeySet() as published:
        yield published


@pytest.fixture
def configure(monkeypatch, tmp_path, keys):
    """Set the functions' environment (OIDC on by default); the Settings they read."""

    def configure(**extra: str) -> Settings:
        for key, value in {
            "TASUKI_PUSH_KEY": KEY,
            "TASUKI_DATA_DIR": str(tmp_path),
            "TASUKI_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",  # nothing may get that far
            "TASUKI_PUSH_OIDC_SERVICE_ACCOUNT": ACCOUNT,
            "TASUKI_PUSH_OIDC_CERTS_URL": keys.url,
            **extra,
        }.items():
            if value:
                monkeypatch.setenv(key, value)
            else:
                monkeypatch.delenv(key, raising=False)
        runtime.cache_clear()
        return runtime().settings

    yield configure
    runtime.cache_clear()


def post(function: str, token: str):
    """Push an undecodable message (400 once authenticated) with this token, as the bridge would."""
    return client(function).post("/", json=body(), headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("function", PUSHED)
def test_a_google_token_for_the_endpoint_and_the_account_gets_past_authentication(configure, keys, function):
    settings = configure()
    answer = post(function, keys.token(audience=settings.endpoint(function), email=ACCOUNT))
    assert answer.status_code == 400, answer.get_data(as_text=True)  # the body is refused, not the caller


@pytest.mark.parametrize("function", PUSHED)
@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("another audience", "not for this endpoint"),
        ("another account", "expected the verified service account"),
        ("unverified email", "expected the verified service account"),
        ("expired", "expired"),
        ("an unpublished key", "not found"),
        ("a wrong key under a published key id", "Could not verify token signature"),
        ("another issuer", "invalid push token"),
    ],
)
def test_a_google_token_that_does_not_fit_is_refused_with_401(configure, keys, function, case, says):
    url = configure().endpoint(function)
    impostor = SigningKey()
    if case == "a wrong key under a published key id":
        impostor.kid = keys.keys[1].kid
    token = {
        "another audience": lambda: keys.token(audience="https://elsewhere.example/router", email=ACCOUNT),
        "another account": lambda: keys.token(audience=url, email="intruder@other.iam.gserviceaccount.com"),
        "unverified email": lambda: keys.token(audience=url, email=ACCOUNT, email_verified=False),
        "expired": lambda: keys.token(audience=url, email=ACCOUNT, issued_ago=7200, lifetime=3600),
        "an unpublished key": lambda: keys.token(audience=url, email=ACCOUNT, key=impostor),
        "a wrong key under a published key id": lambda: keys.token(audience=url, email=ACCOUNT, key=impostor),
        "another issuer": lambda: keys.token(audience=url, email=ACCOUNT, issuer="https://evil.example"),
    }[case]()
    answer = post(function, token)
    assert answer.status_code == 401, answer.get_data(as_text=True)
    assert says in answer.get_json()["error"]


def test_the_configured_audience_replaces_the_endpoint_url(configure, keys):
    settings = configure(TASUKI_PUSH_OIDC_AUDIENCE="tasuki-push")
    assert post("router", keys.token(audience="tasuki-push", email=ACCOUNT)).status_code == 400
    refused = post("router", keys.token(audience=settings.endpoint("router"), email=ACCOUNT))
    assert refused.status_code == 401 and "expected audience tasuki-push" in refused.get_json()["error"]


def test_without_the_service_account_setting_google_tokens_are_refused(configure, keys):
    settings = configure(TASUKI_PUSH_OIDC_SERVICE_ACCOUNT="")
    answer = post("router", keys.token(audience=settings.endpoint("router"), email=ACCOUNT))
    assert answer.status_code == 401, answer.get_data(as_text=True)


def test_the_bridge_tokens_are_still_accepted_beside_google_ones(configure):
    settings = configure()
    assert post("dispatcher", tokens.sign(KEY, settings.endpoint("dispatcher"))).status_code == 400
    assert (
        post(
            "dispatcher", tokens.sign("another-key-of-at-least-32-bytes-long", settings.endpoint("dispatcher"))
        ).status_code
        == 401
    )


def test_the_certificates_are_fetched_once_and_again_after_their_max_age(keys):
    now = [0.0]
    certificates = oidc.Certificates(keys.url, clock=lambda: now[0])
    verifier = oidc.GoogleTokens(ACCOUNT, certificates)
    before = keys.fetches
    for _ in range(3):
        verifier.verify(keys.token(audience="https://f/", email=ACCOUNT), "https://f/")
    assert keys.fetches == before + 1
    now[0] = keys.max_age + 1
    verifier.verify(keys.token(audience="https://f/", email=ACCOUNT), "https://f/")
    assert keys.fetches == before + 2


def test_unreachable_certificates_refuse_the_push_and_say_where_they_were_looked_for():
    verifier = oidc.GoogleTokens(ACCOUNT, oidc.Certificates("http://127.0.0.1:1/certs"))
    with pytest.raises(AuthError, match=r"cannot fetch the OIDC signing certificates from http://127.0.0.1:1/certs"):
        verifier.verify("a.b.c", "https://f/")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("public, max-age=20000, must-revalidate", 20000), ("max-age=5", 60), ("no-cache", 60), ("max-age=999999", 21600)],
)
def test_the_certificates_are_kept_for_their_max_age_within_bounds(header, seconds):
    assert oidc.max_age(header) == seconds


def test_the_settings_refuse_certificates_in_clear_beyond_this_machine_and_a_service_account_that_is_no_email():
    with pytest.raises(Exception, match="TASUKI_PUSH_OIDC_CERTS_URL: expected an https:// URL"):
        Settings.from_env({"TASUKI_PUSH_OIDC_CERTS_URL": "http://keys.example/certs"})
    with pytest.raises(Exception, match="TASUKI_PUSH_OIDC_SERVICE_ACCOUNT: expected a service-account email"):
        Settings.from_env({"TASUKI_PUSH_OIDC_SERVICE_ACCOUNT": "tasuki-push"})
