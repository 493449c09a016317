"""Job secrets: kept sealed with the store key, resolved per job by the dispatcher (the
repository's value, else the global one; none for a fork's pull request; an unknown name
refused by name), sealed into the job order with the order key, and turned into exactly the
variables the job lists."""

from __future__ import annotations

import pytest

from tasuki.local.executor import convert
from tasuki.local.executor import secrets as job_secrets
from tasuki.shared import flowfile, sealing, vault
from tasuki.shared.errors import ActionError, ConfigError
from tasuki.shared.messages import Event, JobOrder, PullRequest, Ref, Repository, RunPlanned, RunRequested
from tasuki.shared.registry import RepositoryConfig

EXECUTOR = "tasuki.executor.default"
FLOW = flowfile.parse(
    """\
jobs:
  deploy: {image: alpine, run: ci/deploy, secrets: [DEPLOY_TOKEN, {name: KEY, from: SHARED_KEY}]}
  test: {image: alpine, run: ci/test}
  notify: {plugin: example/notify, settings: {channel: ci, webhook: {from_secret: HOOK}}}
"""
)


@pytest.fixture
def rt(functions):
    functions.rt.store.put_repository("acme/api", RepositoryConfig(clone_url="https://example.com/acme/api.git"))
    return functions.rt


def event(*, fork: str = "") -> Event:
    pr = PullRequest(number=7, source_branch="topic", source_repository=fork) if fork else None
    return Event(
        host="github",
        event="pull_request.opened" if fork else "push",
        kind="pull_request" if fork else "push",
        delivery_id="d1",
        repository=Repository(full_name="acme/api"),
        ref=Ref(kind="branch", name="topic" if fork else "main"),
        after="c" * 40,
        pull_request=pr,
    )


def orders(functions, ev: Event, jobs: dict) -> dict[str, JobOrder]:
    functions.push("dispatcher", RunRequested(run_id="r1", rule_id="rule", event=ev))
    functions.take(EXECUTOR)  # the plan order
    functions.push("dispatcher", RunPlanned(run_id="r1", jobs=jobs))
    return {m.job.name: m for m in functions.take(EXECUTOR) if isinstance(m, JobOrder)}


def opened(rt, order: JobOrder) -> dict[str, str] | None:
    return None if order.secrets is None else sealing.unseal_json(rt.order_key, order.secrets)


# --- at rest --------------------------------------------------------------------------------------


def test_a_secret_is_stored_sealed_with_the_store_key_and_listed_by_name_only(rt):
    key = rt.settings.store_key_value()
    assert vault.put(rt.store, key, "Acme/API", "DEPLOY_TOKEN", "tok-123456") == "acme/api"
    vault.put(rt.store, key, None, "SHARED_KEY", "global-value")
    [sealed] = rt.store.sealed_secrets("acme/api", ["DEPLOY_TOKEN"]).values()
    assert "tok-123456" not in sealed
    assert sealing.unseal(key, sealing.Sealed(token=sealed)) == b"tok-123456"
    assert vault.names(rt.store, "acme/api") == ["DEPLOY_TOKEN"] and vault.names(rt.store, None) == ["SHARED_KEY"]
    assert vault.delete(rt.store, "acme/api", "DEPLOY_TOKEN") and vault.names(rt.store, "acme/api") == []


@pytest.mark.parametrize(
    "repository, name, value, problem",
    [
        ("acme/api", "deploy-token", "v", "a secret's name is"),
        ("acme/api", "TASUKI_X", "v", "Tasuki's own"),
        ("acme/api", "OK", "", "empty"),
        ("acme/api", "OK", "x" * (vault.MAX_VALUE + 1), "at most"),
        ("../etc", "OK", "v", "workspace/repository"),
    ],
)
def test_names_values_and_repositories_are_checked(rt, repository, name, value, problem):
    with pytest.raises(ActionError, match=problem):
        vault.put(rt.store, rt.settings.store_key_value(), repository, name, value)


def test_a_secret_set_under_another_store_key_is_an_error_naming_the_setting(rt):
    vault.put(rt.store, sealing.new_key(), "acme/api", "DEPLOY_TOKEN", "v")
    with pytest.raises(ConfigError, match="TASUKI_STORE_KEY: cannot open secret DEPLOY_TOKEN"):
        vault.lookup(rt.store, rt.settings.store_key_value(), "acme/api", ["DEPLOY_TOKEN"])


# --- into job orders ------------------------------------------------------------------------------


def test_each_job_order_carries_exactly_the_secrets_its_job_lists_sealed_with_the_order_key(rt, functions):
    key = rt.settings.store_key_value()
    for repository, name, value in [
        ("acme/api", "DEPLOY_TOKEN", "repo-token"),
        (None, "DEPLOY_TOKEN", "global-token"),  # the repository's own wins
        (None, "SHARED_KEY", "global-key"),
        (None, "HOOK", "https://hooks.example/x"),
        ("acme/api", "UNLISTED", "never-sent"),
    ]:
        vault.put(rt.store, key, repository, name, value)
    found = orders(functions, event(), dict(FLOW.jobs))
    assert opened(rt, found["deploy"]) == {"DEPLOY_TOKEN": "repo-token", "SHARED_KEY": "global-key"}
    assert opened(rt, found["notify"]) == {"HOOK": "https://hooks.example/x"}
    assert found["test"].secrets is None and not any(o.secrets_refused for o in found.values())
    assert "repo-token" not in found["deploy"].model_dump_json()  # only ciphertext travels


def test_a_fork_pull_request_gets_no_secrets_and_the_job_that_lists_some_is_told_why(rt, functions):
    vault.put(rt.store, rt.settings.store_key_value(), "acme/api", "DEPLOY_TOKEN", "repo-token")
    vault.put(rt.store, rt.settings.store_key_value(), None, "SHARED_KEY", "global-key")
    found = orders(functions, event(fork="mallory/api"), dict(FLOW.jobs))
    assert all(o.secrets is None for o in found.values())
    refused = found["deploy"].secrets_refused
    assert "DEPLOY_TOKEN, SHARED_KEY" in refused and "fork (mallory/api)" in refused
    assert found["test"].secrets_refused == ""


def test_an_unknown_secret_is_refused_by_name(rt, functions):
    vault.put(rt.store, rt.settings.store_key_value(), "acme/api", "DEPLOY_TOKEN", "repo-token")
    found = orders(functions, event(), {"deploy": FLOW.jobs["deploy"]})
    assert found["deploy"].secrets is None
    assert found["deploy"].secrets_refused.startswith("job 'deploy' lists secret SHARED_KEY, not set for acme/api")


# --- in the executor ------------------------------------------------------------------------------


def test_the_container_gets_the_listed_secrets_as_their_variables_and_plugin_settings(rt):
    values = {"DEPLOY_TOKEN": "t", "SHARED_KEY": "k", "HOOK": "h"}
    deploy = convert.environment(FLOW.jobs["deploy"], convert.Context(), values)
    assert (deploy["DEPLOY_TOKEN"], deploy["KEY"]) == ("t", "k") and "SHARED_KEY" not in deploy
    notify = convert.environment(FLOW.jobs["notify"], convert.Context(), values)
    assert (notify["PLUGIN_WEBHOOK"], notify["PLUGIN_CHANNEL"]) == ("h", "ci")
    assert "DEPLOY_TOKEN" not in notify and "from_secret" not in str(notify)
    test = convert.environment(FLOW.jobs["test"], convert.Context(), values)
    assert not set(values.values()) & set(test.values())


def test_the_executor_opens_an_order_s_secrets_or_says_why_it_cannot(rt):
    order = JobOrder(run_id="r", event=event(), job=FLOW.jobs["deploy"])
    sealed = order.model_copy(update={"secrets": sealing.seal_json(rt.order_key, {"DEPLOY_TOKEN": "t"})})
    assert job_secrets.from_order(sealed, rt.order_key).values == {"DEPLOY_TOKEN": "t"}
    assert "cannot be opened" in job_secrets.from_order(sealed, sealing.new_key()).refused
    refused = order.model_copy(update={"secrets_refused": "job 'deploy' lists secret X, not set"})
    with pytest.raises(vault.SecretsRefused, match="lists secret X"):
        job_secrets.from_order(refused, rt.order_key).check()


def test_a_secrets_file_is_name_value_lines(tmp_path):
    path = tmp_path / "secrets"
    path.write_text("# for tasuki run\n\nDEPLOY_TOKEN=a=b c \nHOOK=\n")
    assert job_secrets.read_file(path) == {"DEPLOY_TOKEN": "a=b c ", "HOOK": ""}
    path.write_text("OK=1\nnot a line\n")
    with pytest.raises(ConfigError, match=r"secrets:2: expected NAME=value"):
        job_secrets.read_file(path)
    received = job_secrets.from_environment(FLOW.jobs["deploy"], {"DEPLOY_TOKEN": "t"}, "in FILE")
    assert received.refused == "job 'deploy' lists secret SHARED_KEY, not in FILE"
