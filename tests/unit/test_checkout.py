"""Clone credentials reach git only through its environment, and never show in messages. Clones,
mirrors and working copies with real git are tests/integration/test_checkout.py."""

from __future__ import annotations

import base64

from tasuki.local.executor.checkout import auth_env, git_environment, redact
from tasuki.shared.hosts import HOSTS
from tasuki.shared.registry import RepositoryConfig


def test_credentials_reach_git_only_through_its_environment():
    def basic(env: dict[str, str]) -> str:
        assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
        return base64.b64decode(env["GIT_CONFIG_VALUE_0"].removeprefix("Authorization: Basic ")).decode()

    bitbucket, github, gitlab = HOSTS["bitbucket"], HOSTS["github"], HOSTS["gitlab"]
    assert basic(auth_env(RepositoryConfig(username="bob", app_password="p@ss"), bitbucket)) == "bob:p@ss"
    assert basic(auth_env(RepositoryConfig(token="t1"), bitbucket)) == "x-token-auth:t1"
    assert basic(auth_env(RepositoryConfig(token="t1"), github)) == "x-access-token:t1"
    assert basic(auth_env(RepositoryConfig(token="t1"), gitlab)) == "oauth2:t1"
    assert basic(auth_env(RepositoryConfig(token="t1", username="ci"), gitlab)) == "ci:t1"
    assert auth_env(None, github) == {} and auth_env(RepositoryConfig(clone_url="x"), github) == {}
    assert auth_env(RepositoryConfig(token="t1"), None) == {}  # no host known: no guessing
    assert (
        redact("fatal: https://bob:hunter2@host/r.git failed", ("hunter2",)) == "fatal: https://***@host/r.git failed"
    )


def test_git_gets_none_of_tasukis_settings_and_never_prompts():
    environ = {"PATH": "/usr/bin", "HOME": "/home/ci", "TASUKI_ORDER_KEY": "k", "TASUKI_SECRETS": "s", "TASUKI_X": ""}
    assert git_environment(environ) == {
        "PATH": "/usr/bin",
        "HOME": "/home/ci",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "LC_ALL": "C",
    }
