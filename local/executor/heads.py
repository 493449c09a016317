"""A scheduled run's commit: the head of its branch, resolved by the executor that plans it.

The clock (functions/dispatcher.py) knows the rule and the time, not the commit: a scheduled run's
event names its branch with no commit (`Event.after` empty). The executor, which already clones
with the registry's URL and credentials from the order, asks the repository with
`git ls-remote` what the branch's head is now, plans that commit and answers it in
`run.planned` (`RunPlanned.commit`): the dispatcher records it on the run, and every job of the
run builds it. Executors still speak only RabbitMQ; functions alone touch the store.
"""

from __future__ import annotations

import re

from tasuki.local.executor.checkout import Checkouts, auth_env, git
from tasuki.shared import cloneurls
from tasuki.shared.errors import CheckoutFailed
from tasuki.shared.hosts import HOSTS
from tasuki.shared.hosts.common import is_commit_id
from tasuki.shared.messages import Event
from tasuki.shared.registry import RepositoryConfig

# A branch name as git allows it, never an option: it reaches git's argv as refs/heads/<name>.
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/\-+@]{1,200}(?<![./])$")


def needs_head(event: Event) -> bool:
    """A run whose event names a branch but no commit builds the branch's head."""
    return event.kind == "schedule" and not event.after and event.ref is not None


def resolve(checkouts: Checkouts, clone_url: str, branch: str, auth: RepositoryConfig | None, host: str) -> str:
    """The commit at the head of `branch` in the repository at `clone_url` (`CheckoutFailed`:
    no such branch, or the repository cannot be asked)."""
    if not _BRANCH.match(branch):
        raise CheckoutFailed(f"{branch[:80]!r} is not a branch name")
    wrong = cloneurls.problem(clone_url, checkouts.schemes)
    if wrong:
        raise CheckoutFailed(f"not asked: {wrong}")
    ref = f"refs/heads/{branch}"
    env = {**auth_env(auth, HOSTS.get(host)), "GIT_ALLOW_PROTOCOL": cloneurls.git_protocols(checkouts.schemes)}
    secrets = (auth.token, auth.app_password) if auth else ()
    out = git("ls-remote", "--", clone_url, ref, env=env, secrets=secrets, timeout=120)
    for line in out.splitlines():
        commit, _, name = line.partition("\t")
        if name == ref and is_commit_id(commit):
            return commit
    raise CheckoutFailed(f"branch {branch} is not in the repository (nothing to build)")
