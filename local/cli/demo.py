"""`tasuki demo` (make demo): a green run on the page within a minute, offline.

With `make local` running, it makes a sample repository with a four-job `.tasuki.yml` (build,
then test and lint together, then package) in the data directory (a file clone URL, which
`make local` and `make demo` allow: TASUKI_CLONE_SCHEMES=https,file), registers it with a webhook
secret, adds the rule "if push to demo/hello on main then run .tasuki.yml", and sends a signed
Bitbucket push to the ingress, exactly as Bitbucket would. The jobs run in `tasuki/busybox`, the
image `make local` builds from scratch, so nothing is pulled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import subprocess
import uuid
from pathlib import Path

import requests

from tasuki.local.executor.checkout import git
from tasuki.shared import cloneurls
from tasuki.shared.errors import ConfigError
from tasuki.shared.recipes import Rule
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.runtime import Runtime

REPOSITORY = "demo/hello"
IMAGE = "tasuki/busybox"
FLOW = f"""\
# The demo flow: build first, then test and lint side by side, then package.
jobs:
  build:   {{image: {IMAGE}, run: ci/build}}
  test:    {{image: {IMAGE}, run: ci/test, needs: [build]}}
  lint:    {{image: {IMAGE}, run: ci/lint, needs: [build]}}
  package: {{image: {IMAGE}, run: ci/package, needs: [test, lint]}}
"""
SCRIPTS = {
    "ci/build": 'echo "building $TASUKI_REPO at $TASUKI_COMMIT"\nfor step in fetch compile link; do echo "  $step"; sleep 1; done\necho built\n',
    "ci/test": 'for t in parser scheduler store; do echo "test $t ... ok"; sleep 1; done\necho "3 passed"\n',
    "ci/lint": 'echo "checking style"; sleep 2; echo "no problems"\n',
    "ci/package": 'echo "packaging hello-$(date +%Y%m%d).tar"; sleep 1; echo done\n',
}


def make_repository(root: Path) -> tuple[Path, str, str]:
    """A bare repository with the demo flow; a new commit on every call. (bare, commit, before)"""
    work, bare = root / "work", root / "hello.git"
    if not (work / ".git").exists():
        work.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "-b", "main", cwd=work)
    for name, body in {".tasuki.yml": FLOW, **{k: "#!/bin/sh\nset -e\n" + v for k, v in SCRIPTS.items()}}.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        if name.startswith("ci/"):
            path.chmod(0o755)
    (work / "README").write_text(f"Tasuki demo, pushed {uuid.uuid4().hex[:8]}\n")
    ident = ["-c", "user.name=Tasuki Demo", "-c", "user.email=demo@tasuki.invalid"]
    before = _head(work)
    git(*ident, "add", "-A", cwd=work)
    git(*ident, "commit", "-q", "-m", "Demo: a change to build", cwd=work)
    if not bare.exists():
        git("clone", "-q", "--bare", str(work), str(bare))
    git("push", "-q", "--force", str(bare), "main", cwd=work)
    return bare, _head(work), before


def _head(work: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def push_payload(commit: str, before: str, repository: str = REPOSITORY, branch: str = "main") -> dict:
    """A Bitbucket Cloud repo:push delivery, shaped as Bitbucket sends it."""
    link = f"https://bitbucket.org/{repository}"
    target = {
        "type": "commit",
        "hash": commit,
        "message": "Demo: a change to build\n",
        "author": {"raw": "Tasuki Demo <demo@tasuki.invalid>"},
    }
    return {
        "actor": {"display_name": "Tasuki Demo", "nickname": "tasuki-demo", "type": "user"},
        "repository": {
            "full_name": repository,
            "name": repository.rsplit("/", 1)[-1],
            "type": "repository",
            "scm": "git",
            "links": {"html": {"href": link}},
        },
        "push": {
            "changes": [
                {
                    "old": {"type": "branch", "name": branch, "target": {"type": "commit", "hash": before}}
                    if before
                    else None,
                    "new": {"type": "branch", "name": branch, "target": target},
                    "created": not before,
                    "closed": False,
                    "forced": False,
                    "truncated": False,
                    "commits": [target],
                }
            ]
        },
    }


def run(rt: Runtime) -> str:
    settings = rt.settings
    ingress = f"http://{settings.host}:{settings.ingress_port}/"
    try:
        requests.get(ingress, timeout=3)
    except requests.RequestException:
        raise ConfigError(
            f"nothing answers at {ingress}: start Tasuki first with `make local`, then run `make demo`"
        ) from None
    existing = rt.store.get_repository(REPOSITORY)
    secret = existing.secret if existing and existing.secret else secrets.token_urlsafe(16)
    bare, commit, before = make_repository(Path(settings.data_dir).resolve() / "demo")
    refused = cloneurls.problem(str(bare), settings.allowed_clone_schemes)
    if refused:
        raise ConfigError(
            f"the demo's repository is a folder on this machine ({refused}): run `make local` and `make demo`, "
            f"which allow file clone URLs, or set TASUKI_CLONE_SCHEMES=https,file for both"
        )
    rt.store.put_repository(REPOSITORY, RepositoryConfig(clone_url=str(bare), secret=secret))
    rule = Rule(event="push", repository=REPOSITORY, branch="main")
    rt.store.add_rule(rule)
    print(f"repository {REPOSITORY} at {bare}, commit {commit[:12]}")
    print(f"rule {rule.id}: {rule.sentence()}")
    body = json.dumps(push_payload(commit, before)).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    answer = requests.post(
        ingress,
        data=body,
        timeout=10,
        headers={
            "Content-Type": "application/json",
            "X-Event-Key": "repo:push",
            "X-Request-UUID": str(uuid.uuid4()),
            "X-Hook-UUID": str(uuid.uuid5(uuid.NAMESPACE_URL, REPOSITORY)),
            "X-Hub-Signature": signature,
            "User-Agent": "Bitbucket-Webhooks/2.0",
        },
    )
    if answer.status_code >= 300:
        raise ConfigError(f"the ingress refused the demo push ({answer.status_code}): {answer.text}")
    print(f"sent a signed Bitbucket push: {answer.status_code} {answer.json().get('status')}")
    print(f"watch it run: {settings.web_url}/runs?repo={REPOSITORY}")
    return commit
