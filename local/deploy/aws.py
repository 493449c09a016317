"""AWS Lambda behind Function URLs: `tasuki deploy aws` (infra/aws/README.md says how to use it).

From the bundles (`tasuki deploy bundle`), in one region, each made when missing and changed only
when it differs, so a second run with the same bundles and settings changes nothing:

    S3 bucket --bucket          bundles/<function>-<sha256>.zip (the bundle as built) and
                                layers/dependencies-<sha256>.zip; issue 15's artifacts and caches
                                get prefixes of their own in the same bucket
    IAM role <prefix>functions  assumed by Lambda, with AWSLambdaBasicExecutionRole (logs only)
    Lambda layer <prefix>dependencies   the bundles' requirements.txt installed for Lambda's
                                platform (Lambda installs nothing itself); a version per content
    Lambda function <prefix><function>  runtime python<the bundles' version>, handler
                                main.lambda_handler (shared/lambda_url.py), the layer, and the
                                settings: the --env-file, validated as Tasuki would, plus what
                                follows from the URLs (each TASUKI_<FUNCTION>_URL, the webhook and
                                public URLs), TASUKI_DATA_DIR in /tmp and TASUKI_HOST 0.0.0.0 (so
                                the web function refuses to start without TASUKI_WEB_TOKEN)
    Function URL                auth NONE: Tasuki checks the push tokens and webhook signatures
                                itself, and git hosts cannot sign AWS requests; with the two
                                permissions that let anyone invoke the function through its URL

It prints every URL and the bridge's settings that point at them. Errors from AWS are one line.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from tasuki.local.deploy.bundle import pushed_functions
from tasuki.local.deploy.layer import PLATFORM, build_layer
from tasuki.shared.errors import ConfigError, DeployError
from tasuki.shared.settings import Settings

HANDLER = "main.lambda_handler"
LOGS_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
URL_PERMISSIONS = (
    ("tasuki-function-url", {"Action": "lambda:InvokeFunctionUrl", "FunctionUrlAuthType": "NONE"}),
    ("tasuki-function-url-invoke", {"Action": "lambda:InvokeFunction", "InvokedViaFunctionUrl": True}),
)


@dataclass(frozen=True)
class Target:
    bucket: str
    region: str
    prefix: str = "tasuki-"
    settings: Mapping[str, str] = field(default_factory=dict)  # TASUKI_* for every function
    memory: int = 512
    timeout: int = 60


@dataclass
class Deployed:
    urls: dict[str, str] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)  # what this run created or changed

    def bridge_settings(self) -> dict[str, str]:
        """The bridge's settings that point it at the deployed functions."""
        return {f"TASUKI_{name.upper()}_URL": self.urls[name] for name in pushed_functions() if name in self.urls}


def read_env_file(path: Path | None) -> dict[str, str]:
    """TASUKI_*=value lines (blank lines and # comments skipped), checked as Tasuki checks its settings."""
    values: dict[str, str] = {}
    if path is not None:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, sep, value = line.partition("=")
            if not sep or not name.strip().startswith("TASUKI_"):
                raise ConfigError(f"{path}:{number}: expected TASUKI_NAME=value, found {line.strip()[:60]!r}")
            values[name.strip()] = value.strip()
    Settings.from_env(values)
    return values


def function_settings(target: Target, urls: Mapping[str, str]) -> dict[str, str]:
    """Every function's environment: what follows from the URLs, then the operator's settings."""
    derived = {
        "TASUKI_DATA_DIR": "/tmp/tasuki",
        "TASUKI_HOST": "0.0.0.0",
        **{f"TASUKI_{name.upper()}_URL": urls[name] for name in pushed_functions() if name in urls},
    }
    if "ingress" in urls:
        derived["TASUKI_WEBHOOK_URL"] = urls["ingress"]
    if "web" in urls:
        derived["TASUKI_PUBLIC_URL"] = urls["web"].rstrip("/")
    environment = {**derived, **target.settings}
    Settings.from_env(environment)
    return environment


def code_sha256(path: Path) -> str:
    """A zip's hash as Lambda reports it (CodeSha256: base64 of the SHA-256 digest)."""
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


class Deployer:
    def __init__(self, target: Target, bundles: Path, session: Any = None, say: Callable[[str], None] = print) -> None:
        self.target = target
        self.bundles = bundles
        self.manifest = json.loads((bundles / "manifest.json").read_text())
        session = session or boto3.session.Session(region_name=target.region)
        self.s3 = session.client("s3", region_name=target.region)
        self.iam = session.client("iam", region_name=target.region)
        self.lam = session.client("lambda", region_name=target.region)
        self.say = say
        self.done = Deployed()

    def change(self, what: str) -> None:
        self.done.changes.append(what)
        self.say(f"  {what}")

    @property
    def runtime(self) -> str:
        return f"python{self.manifest['python']}"

    def run(self) -> Deployed:
        self.ensure_bucket()
        role = self.ensure_role()
        layer = self.ensure_layer()
        functions = self.manifest["functions"]
        for name, bundle in sorted(functions.items()):
            key = self.upload(self.bundles / bundle["zip"], f"bundles/{name}-{bundle['sha256'][:16]}.zip")
            self.ensure_function(name, key, role, layer)
            self.done.urls[name] = self.ensure_url(name)
        environment = function_settings(self.target, self.done.urls)
        for name in sorted(functions):
            self.ensure_configuration(name, role, layer, environment)
        return self.done

    # S3 ------------------------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        try:
            self.s3.head_bucket(Bucket=self.target.bucket)
            return
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
                raise
        extra = {}
        if self.target.region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self.target.region}
        self.s3.create_bucket(Bucket=self.target.bucket, **extra)
        self.s3.put_public_access_block(
            Bucket=self.target.bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        self.change(f"created bucket s3://{self.target.bucket} (no public access)")

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.target.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def upload(self, path: Path, key: str) -> str:
        """Put a file under a key named by its content, once."""
        if not self.exists(key):
            self.s3.upload_file(str(path), self.target.bucket, key)
            self.change(f"uploaded s3://{self.target.bucket}/{key}")
        return key

    # IAM -----------------------------------------------------------------------------------

    def ensure_role(self) -> str:
        name = f"{self.target.prefix}functions"
        try:
            role = self.iam.get_role(RoleName=name)["Role"]
            if role["AssumeRolePolicyDocument"] != TRUST:
                self.iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(TRUST))
                self.change(f"updated the trust policy of role {name}")
        except self.iam.exceptions.NoSuchEntityException:
            role = self.iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(TRUST),
                Description="Tasuki's functions on AWS Lambda (tasuki deploy aws)",
            )["Role"]
            self.change(f"created role {name}")
        attached = self.iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
        if LOGS_POLICY not in {p["PolicyArn"] for p in attached}:
            self.iam.attach_role_policy(RoleName=name, PolicyArn=LOGS_POLICY)
            self.change(f"attached AWSLambdaBasicExecutionRole to role {name}")
        return role["Arn"]

    # Lambda --------------------------------------------------------------------------------

    def ensure_layer(self) -> str:
        """The dependencies layer for these requirements: an existing version, or a new one."""
        name = f"{self.target.prefix}dependencies"
        requirements = (self.bundles / next(iter(self.manifest["functions"])) / "requirements.txt").read_text()
        digest = hashlib.sha256(f"{requirements}\n{self.runtime}\n{PLATFORM}".encode()).hexdigest()[:16]
        description = f"tasuki dependencies {digest}"
        for page in self.lam.get_paginator("list_layer_versions").paginate(LayerName=name):
            for version in page.get("LayerVersions", []):
                if version.get("Description") == description:
                    return version["LayerVersionArn"]
        key = f"layers/dependencies-{digest}.zip"
        if not self.exists(key):
            with tempfile.TemporaryDirectory() as tmp:
                archive = build_layer(requirements, self.manifest["python"], Path(tmp))
                self.upload(archive, key)
        arn = self.lam.publish_layer_version(
            LayerName=name,
            Description=description,
            Content={"S3Bucket": self.target.bucket, "S3Key": key},
            CompatibleRuntimes=[self.runtime],
            CompatibleArchitectures=[PLATFORM[1]],
        )["LayerVersionArn"]
        self.change(f"published layer {arn}")
        return arn

    def function_name(self, name: str) -> str:
        return f"{self.target.prefix}{name}"

    def ensure_function(self, name: str, key: str, role: str, layer: str) -> None:
        function = self.function_name(name)
        zip_path = self.bundles / self.manifest["functions"][name]["zip"]
        try:
            current = self.lam.get_function_configuration(FunctionName=function)
        except self.lam.exceptions.ResourceNotFoundException:
            retry_while_role_propagates(
                lambda: self.lam.create_function(
                    FunctionName=function,
                    Runtime=self.runtime,
                    Role=role,
                    Handler=HANDLER,
                    Code={"S3Bucket": self.target.bucket, "S3Key": key},
                    Layers=[layer],
                    Timeout=self.target.timeout,
                    MemorySize=self.target.memory,
                    Architectures=[PLATFORM[1]],
                    Description=f"Tasuki's {name} function",
                    Environment={"Variables": function_settings(self.target, {})},
                )
            )
            self.lam.get_waiter("function_active_v2").wait(FunctionName=function)
            self.change(f"created function {function}")
            return
        if current.get("CodeSha256") != code_sha256(zip_path):
            self.lam.update_function_code(FunctionName=function, S3Bucket=self.target.bucket, S3Key=key)
            self.lam.get_waiter("function_updated_v2").wait(FunctionName=function)
            self.change(f"updated the code of {function}")

    def ensure_configuration(self, name: str, role: str, layer: str, environment: dict[str, str]) -> None:
        function = self.function_name(name)
        current = self.lam.get_function_configuration(FunctionName=function)
        wanted = {
            "Runtime": self.runtime,
            "Role": role,
            "Handler": HANDLER,
            "Timeout": self.target.timeout,
            "MemorySize": self.target.memory,
            "Layers": [layer],
            "Environment": {"Variables": environment},
        }
        found = {
            **{k: current.get(k) for k in ("Runtime", "Role", "Handler", "Timeout", "MemorySize")},
            "Layers": [layer["Arn"] for layer in current.get("Layers", [])],
            "Environment": {"Variables": current.get("Environment", {}).get("Variables", {})},
        }
        differs = sorted(k for k in wanted if wanted[k] != found[k])
        if differs:
            self.lam.update_function_configuration(FunctionName=function, **wanted)
            self.lam.get_waiter("function_updated_v2").wait(FunctionName=function)
            self.change(f"updated the configuration of {function} ({', '.join(differs)})")

    def ensure_url(self, name: str) -> str:
        function = self.function_name(name)
        try:
            url = self.lam.get_function_url_config(FunctionName=function)
            if url["AuthType"] != "NONE":
                url = self.lam.update_function_url_config(FunctionName=function, AuthType="NONE")
                self.change(f"set the Function URL of {function} to auth NONE")
        except self.lam.exceptions.ResourceNotFoundException:
            url = self.lam.create_function_url_config(FunctionName=function, AuthType="NONE", InvokeMode="BUFFERED")
            self.change(f"created the Function URL of {function}")
        try:
            statements = {
                s["Sid"] for s in json.loads(self.lam.get_policy(FunctionName=function)["Policy"])["Statement"]
            }
        except self.lam.exceptions.ResourceNotFoundException:
            statements = set()
        for sid, permission in URL_PERMISSIONS:
            if sid not in statements:
                self.lam.add_permission(FunctionName=function, StatementId=sid, Principal="*", **permission)
                self.change(f"allowed {permission['Action']} through the URL of {function}")
        return url["FunctionUrl"]


def retry_while_role_propagates(call: Callable[[], Any], tries: int = 10, wait: float = 3.0) -> Any:
    """IAM is eventually consistent: Lambda may not be able to assume a new role for some seconds."""
    for attempt in range(tries):
        try:
            return call()
        except ClientError as exc:
            if "cannot be assumed" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(wait)
    raise AssertionError("unreachable")


def deploy(target: Target, bundles: Path, session: Any = None, say: Callable[[str], None] = print) -> Deployed:
    try:
        return Deployer(target, bundles, session, say).run()
    except (ClientError, BotoCoreError) as exc:
        raise DeployError(f"AWS: {exc}") from None


def target_from(args: argparse.Namespace) -> Target:
    """The deploy's target from `tasuki deploy aws`'s options, checked before anything is built."""
    if not args.bucket:
        raise ConfigError("tasuki deploy aws needs --bucket: the S3 bucket for the bundles (made if missing)")
    region = args.region or boto3.session.Session().region_name
    if not region:
        raise ConfigError("tasuki deploy aws needs a region: --region, AWS_REGION or the AWS configuration")
    return Target(
        bucket=args.bucket,
        region=region,
        prefix=args.prefix,
        settings=read_env_file(Path(args.env_file) if args.env_file else None),
        memory=args.memory,
        timeout=args.timeout,
    )


def report(done: Deployed) -> None:
    print("nothing to change" if not done.changes else f"{len(done.changes)} changes", flush=True)
    for name, url in sorted(done.urls.items()):
        print(f"{name:<12} {url}")
    print("the bridge's settings:")
    for name, value in done.bridge_settings().items():
        print(f"  {name}={value}")
