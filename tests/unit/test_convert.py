"""Pure conversion of a job to the Docker Engine API body: no daemon needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasuki.local.executor import convert
from tasuki.shared.errors import ConfigError
from tasuki.shared.flowfile import Job
from tasuki.shared.settings import Settings

CTX = convert.Context(
    repository="acme/api",
    ref="refs/heads/main",
    branch="$(touch /tmp/pwned)",
    commit="abc123",
    run_id="run-1",
    job="test",
    event="push",
    host="bitbucket",
    actor="alice",
)


def env_of(config: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in config["Env"])


def test_a_run_job_executes_its_file_in_the_workspace_with_args_as_argv(tmp_path: Path):
    job = Job(name="test", image="python:3.12", run="ci/test", args=["--fast", "a b"])
    config = convert.container_config(job, CTX, tmp_path, convert.Limits(), "exec-1")
    assert config["Image"] == "python:3.12"
    assert config["Entrypoint"] == ["/workspace/ci/test"] and config["Cmd"] == ["--fast", "a b"]
    assert config["WorkingDir"] == "/workspace"
    assert config["Labels"] == {
        "tasuki.run": "run-1",
        "tasuki.job": "test",
        "tasuki.executor": "exec-1",
        "tasuki.attempt": "0",
    }


def test_event_data_is_only_environment_and_tasuki_variables_win(tmp_path: Path):
    job = Job(name="test", image="busybox", run="ci/test", env={"MODE": "fast", "TASUKI_COMMIT": "forged", "CI": "no"})
    env = env_of(convert.container_config(job, CTX, tmp_path, convert.Limits()))
    assert env["MODE"] == "fast"
    assert env["CI"] == "true" and env["TASUKI_COMMIT"] == "abc123"
    assert env["TASUKI_BRANCH"] == "$(touch /tmp/pwned)"  # a value, never a command line
    assert {"TASUKI_REPO", "TASUKI_REF", "TASUKI_RUN_ID", "TASUKI_JOB", "TASUKI_EVENT"} <= set(env)


def test_the_container_is_confined(tmp_path: Path):
    job = Job(name="test", image="busybox", run="ci/test")
    host = convert.container_config(job, CTX, tmp_path, convert.Limits("512m", 1.5, 100))["HostConfig"]
    assert host["Privileged"] is False
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Binds"] == [f"{tmp_path.resolve()}:/workspace:rw"]  # the only mount: no docker.sock
    assert (host["Memory"], host["MemorySwap"]) == (512 * 1024**2, 512 * 1024**2)
    assert host["NanoCpus"] == 1_500_000_000 and host["PidsLimit"] == 100
    assert host["NetworkMode"] == "bridge"
    # every capability dropped, a root build's few given back
    assert host["CapDrop"] == ["ALL"]
    assert host["CapAdd"] == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID"]
    assert not {"NET_RAW", "MKNOD", "SYS_ADMIN", "SYS_CHROOT", "SETFCAP", "NET_ADMIN"} & set(host["CapAdd"])


def test_the_image_user_stays_unless_the_operator_names_one(tmp_path: Path):
    job = Job(name="test", image="busybox", run="ci/test")
    assert "User" not in convert.container_config(job, CTX, tmp_path, convert.Limits())
    named = convert.Limits.of(Settings.from_env({"TASUKI_JOB_USER": "1000:1000"}))
    assert convert.container_config(job, CTX, tmp_path, named)["User"] == "1000:1000"


def test_a_job_may_have_no_network(tmp_path: Path):
    job = Job(name="test", image="busybox", run="ci/test", network="none")
    assert convert.container_config(job, CTX, tmp_path, convert.Limits())["HostConfig"]["NetworkMode"] == "none"


def test_a_plugin_runs_its_own_entrypoint_with_plugin_variables(tmp_path: Path):
    job = Job(
        name="notify",
        plugin="acme/notify:1",
        settings={"channel": "ci", "tags": ["a", "b"], "dry-run": True, "extra": {"k": 1}},
    )
    config = convert.container_config(job, CTX, tmp_path, convert.Limits())
    env = env_of(config)
    assert "Entrypoint" not in config and config["Image"] == "acme/notify:1"
    assert env["PLUGIN_CHANNEL"] == "ci" and env["PLUGIN_TAGS"] == "a,b"
    assert env["PLUGIN_DRY_RUN"] == "true" and env["PLUGIN_EXTRA"] == '{"k": 1}'
    assert env["DRONE_COMMIT_SHA"] == "abc123" and env["CI_COMMIT_BRANCH"] == "$(touch /tmp/pwned)"


@pytest.mark.parametrize(
    ("text", "size"),
    [("512m", 512 * 1024**2), ("1g", 1024**3), ("1.5G", 1536 * 1024**2), ("2GiB", 2 * 1024**3), ("8388608", 8388608)],
)
def test_memory_sizes(text: str, size: int):
    assert convert.memory_bytes(text) == size


@pytest.mark.parametrize("text", ["lots", "1x", "", "1k"])
def test_a_bad_memory_size_names_the_setting(text: str):
    with pytest.raises(ConfigError, match="TASUKI_JOB_MEMORY"):
        convert.memory_bytes(text)
