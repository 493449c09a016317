"""Clone credentials reach git only through its environment, and never show in messages. Clones,
mirrors and working copies with real git are tests/integration/test_checkout.py."""

from __future__ import annotations

import base64

from tasuki.local.executor.checkout import auth_env, redact
from tasuki.shared.registry import RepositoryConfig


def test_credentials_reach_git_only_through_its_environment():
    def basic(env: dict[str, str]) -> str:
        assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
        return base64.b64decode(env["GIT_CONFIG_VALUE_0"].removeprefix("Authorization: Basic ")).decode()

    assert basic(auth_env(RepositoryConfig(username="bob", app_password="p@ss"))) == "bob:p@ss"
    assert basic(auth_env(RepositoryConfig(token="t1"), "https://bitbucket.org/a/b.git")) == "x-token-auth:t1"
    assert basic(auth_env(RepositoryConfig(token="t1"), "https://github.com/a/b.git")) == "x-access-token:t1"
    assert basic(auth_env(RepositoryConfig(token="t1"), "https://gitlab.com/a/b.git")) == "oauth2:t1"
    assert basic(auth_env(RepositoryConfig(token="t1", username="ci"), "https://gitlab.com/a/b.git")) == "ci:t1"
    assert auth_env(None) == {} and auth_env(RepositoryConfig(clone_url="x")) == {}
    assert (
        redact("fatal: https://bob:hunter2@host/r.git failed", ("hunter2",)) == "fatal: https://***@host/r.git failed"
    )
