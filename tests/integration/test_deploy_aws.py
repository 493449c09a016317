"""`tasuki deploy aws` against moto's AWS (mock_aws): the bucket, the bundles and the layer in
it, the role, the functions and their Function URLs exist as they should (handler, runtime,
layer, every function's settings and the URLs of the others); a second run changes nothing; a
changed setting changes the configurations and nothing else, a changed bundle its function's
code. The layer's requirements are really installed for Lambda's platform (pip, from its cache
or the index), once for these tests."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile

import boto3
import pytest
from moto import mock_aws

from tasuki import functions as tasuki_functions
from tasuki.local.deploy import aws, bundle, layer
from tasuki.shared.errors import ConfigError

REGION = "eu-west-1"
BUCKET = "acme-tasuki"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles")
    bundle.build(out)
    return out


@pytest.fixture(scope="module")
def layer_zip(bundles, tmp_path_factory):
    """The dependencies layer, really installed for Lambda's platform, once for the module."""
    manifest = json.loads((bundles / "manifest.json").read_text())
    requirements = (bundles / "router" / "requirements.txt").read_text()
    archive = layer.build_layer(requirements, manifest["python"], tmp_path_factory.mktemp("layer"))
    with zipfile.ZipFile(archive) as built:
        names = built.namelist()
    assert "python/pydantic_core/__init__.py" in names and "python/google/auth/__init__.py" in names
    assert any(n.startswith("python/pydantic_core/_pydantic_core.cpython-") and "x86_64-linux" in n for n in names)
    return archive


@pytest.fixture
def session(monkeypatch, layer_zip):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(aws, "build_layer", lambda *args: layer_zip)
    with mock_aws(config={"iam": {"load_aws_managed_policies": True}}):  # as AWS has them
        yield boto3.session.Session(region_name=REGION)


def target(**settings: str) -> aws.Target:
    return aws.Target(
        bucket=BUCKET,
        region=REGION,
        settings={"TASUKI_AMQP_URL": "amqps://tasuki:pw@mq.example:5671/ci", "TASUKI_PUSH_KEY": "k" * 40, **settings},
    )


def test_the_functions_are_deployed_behind_function_urls_and_a_second_run_changes_nothing(session, bundles):
    first = aws.deploy(target(), bundles, session, say=lambda _: None)
    s3, iam, lam = (session.client(n) for n in ("s3", "iam", "lambda"))
    manifest = json.loads((bundles / "manifest.json").read_text())

    # The bucket holds every bundle, named by its content, and the dependencies layer.
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {f"bundles/{n}-{f['sha256'][:16]}.zip" for n, f in manifest["functions"].items()} <= keys
    assert (
        len([k for k in keys if k.startswith("layers/dependencies-")]) == 1
        and len(keys) == len(manifest["functions"]) + 1
    )
    assert s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True

    # The role is Lambda's, with the logs policy only.
    role = iam.get_role(RoleName="tasuki-functions")["Role"]
    assert role["AssumeRolePolicyDocument"] == aws.TRUST
    assert [
        p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName="tasuki-functions")["AttachedPolicies"]
    ] == [aws.LOGS_POLICY]

    # One function per bundle, each with its URL, and the settings that tie them together.
    assert sorted(first.urls) == sorted(tasuki_functions.NAMES)
    for name in tasuki_functions.NAMES:
        config = lam.get_function_configuration(FunctionName=f"tasuki-{name}")
        assert (config["Handler"], config["Runtime"], config["Role"]) == (
            "main.lambda_handler",
            f"python{manifest['python']}",
            role["Arn"],
        )
        assert [layer["Arn"].split(":")[-2] for layer in config["Layers"]] == ["tasuki-dependencies"]
        assert config["CodeSha256"] == aws.code_sha256(bundles / f"{name}.zip")
        variables = config["Environment"]["Variables"]
        assert variables["TASUKI_AMQP_URL"] == "amqps://tasuki:pw@mq.example:5671/ci"
        assert (variables["TASUKI_DATA_DIR"], variables["TASUKI_HOST"]) == ("/tmp/tasuki", "0.0.0.0")
        assert variables["TASUKI_WEBHOOK_URL"] == first.urls["ingress"]
        for pushed in ("router", "dispatcher", "reporter", "logs"):
            assert variables[f"TASUKI_{pushed.upper()}_URL"] == first.urls[pushed]
        url = lam.get_function_url_config(FunctionName=f"tasuki-{name}")
        assert (url["FunctionUrl"], url["AuthType"]) == (first.urls[name], "NONE")
        policy = json.loads(lam.get_policy(FunctionName=f"tasuki-{name}")["Policy"])
        assert {s["Sid"] for s in policy["Statement"]} == {sid for sid, _ in aws.URL_PERMISSIONS}
    assert first.bridge_settings() == {
        f"TASUKI_{n.upper()}_URL": first.urls[n] for n in ("dispatcher", "logs", "reporter", "router")
    }

    # Again with the same bundles and settings: nothing changes.
    before = configurations(lam)
    second = aws.deploy(target(), bundles, session, say=lambda _: None)
    assert second.changes == [] and second.urls == first.urls
    assert configurations(lam) == before
    assert len(lam.list_layer_versions(LayerName="tasuki-dependencies")["LayerVersions"]) == 1

    # A changed setting changes every configuration, and nothing else.
    third = aws.deploy(target(TASUKI_MAX_BODY_BYTES="2097152"), bundles, session, say=lambda _: None)
    assert sorted(third.changes) == sorted(
        f"updated the configuration of tasuki-{n} (Environment)" for n in tasuki_functions.NAMES
    )


def test_a_changed_bundle_changes_that_function_s_code_only(session, bundles, tmp_path):
    aws.deploy(target(), bundles, session, say=lambda _: None)
    changed = tmp_path / "bundles"
    shutil.copytree(bundles, changed)
    bundle.write_zip(changed / "router.zip", {"main.py": b"# a new version\n"})
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["functions"]["router"]["sha256"] = hashlib.sha256((changed / "router.zip").read_bytes()).hexdigest()
    (changed / "manifest.json").write_text(json.dumps(manifest))
    done = aws.deploy(target(), changed, session, say=lambda _: None)
    sha = manifest["functions"]["router"]["sha256"][:16]
    assert done.changes == [f"uploaded s3://{BUCKET}/bundles/router-{sha}.zip", "updated the code of tasuki-router"]
    lam = session.client("lambda")
    assert lam.get_function_configuration(FunctionName="tasuki-router")["CodeSha256"] == aws.code_sha256(
        changed / "router.zip"
    )


def configurations(lam) -> dict:
    """Every function's configuration as Lambda reports it (with LastModified and CodeSha256)."""
    return {
        f["FunctionName"]: {
            k: v
            for k, v in lam.get_function_configuration(FunctionName=f["FunctionName"]).items()
            if k != "ResponseMetadata"
        }
        for f in lam.list_functions()["Functions"]
    }


def test_settings_are_checked_before_anything_is_deployed(tmp_path):
    env = tmp_path / "functions.env"
    env.write_text("# the functions' settings\nTASUKI_AMQP_URL=amqps://mq.example/\n\nTASUKI_AMQP_ULR=typo\n")
    with pytest.raises(ConfigError, match="unknown setting TASUKI_AMQP_ULR"):
        aws.read_env_file(env)
    env.write_text("AMQP_URL=amqps://mq.example/\n")
    with pytest.raises(ConfigError, match=r"functions.env:1: expected TASUKI_NAME=value"):
        aws.read_env_file(env)


def test_tasuki_deploy_aws_builds_deploys_and_prints_the_bridge_settings(session, tmp_path, capsys):
    from tasuki.local.cli import commands

    env = tmp_path / "functions.env"
    env.write_text("TASUKI_AMQP_URL=amqps://mq.example/\nTASUKI_PUSH_KEY=" + "k" * 40 + "\n")
    argv = [
        "deploy",
        "aws",
        "--bucket",
        BUCKET,
        "--region",
        REGION,
        "--env-file",
        str(env),
        "--out",
        str(tmp_path / "b"),
    ]
    assert commands.main(argv) == 0
    first = capsys.readouterr().out
    assert "changes\n" in first and "the bridge's settings:\n  TASUKI_DISPATCHER_URL=https://" in first
    assert commands.main(argv) == 0
    assert "nothing to change" in capsys.readouterr().out
