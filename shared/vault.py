"""Job secrets: named values per repository and global ones, encrypted at rest, given only to the
jobs that list them.

    tasuki secrets set acme/api DEPLOY_TOKEN   (the page, PUT /api/repositories/acme/api/secrets/..)
        -> `put`: sealed with TASUKI_STORE_KEY, only the ciphertext goes to the store
    a job.order for a job with `secrets:` or `{from_secret: ...}` settings
        -> `for_job` (the dispatcher): the repository's value, else the global one, opened with
           the store key; the dispatcher seals them again with the order key for the executor
    -> the executor opens them into the container's environment and masks them in the log

A job gets exactly the secrets it lists. A run of a pull request from a fork gets none: a job of
it that lists secrets fails before its container starts, naming them and why (`SecretsRefused`),
rather than run without and fail somewhere less clear. A name no scope has fails the job the
same way. The store never holds a value in plain text, and nothing here returns a value to a
person: `names` lists names only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from tasuki.shared import registry, sealing
from tasuki.shared.errors import ActionError, ConfigError, JobError, SealError
from tasuki.shared.flowfile import Job, check_secret_name
from tasuki.shared.messages import Event
from tasuki.shared.store import Store

GLOBAL = "*"  # the scope of secrets every repository's jobs may list
MAX_VALUE = 16 * 1024  # bytes of one secret's value
# The most one job's secrets may hold together, as JSON: sealed, they fit in one order (MAX_SEALED).
MAX_JOB_TOTAL = 40 * 1024


class SecretsRefused(JobError):
    """A job lists secrets it cannot have (unknown names, or a fork's pull request): it fails
    before its container starts, with this message."""

    reason = "secrets-refused"


def scope(repository: str | None) -> str:
    """The scope of a repository's secrets (its name normalised), or GLOBAL for None."""
    if repository is None:
        return GLOBAL
    problem = registry.name_problem(repository.strip().strip("/"))
    if problem:
        raise ActionError(400, problem)
    return registry.normalise(repository)


def check_name(name: str) -> str:
    try:
        return check_secret_name(name)
    except ValueError as exc:
        raise ActionError(400, str(exc)) from None


def check_value(value: str) -> str:
    size = len(value.encode())
    if not size:
        raise ActionError(400, "a secret's value is empty; to remove the secret, delete it")
    if size > MAX_VALUE:
        raise ActionError(400, f"a secret's value is at most {MAX_VALUE} bytes, found {size}")
    return value


def put(store: Store, key: str, repository: str | None, name: str, value: str) -> str:
    """Set a secret (replacing its value); returns its scope."""
    where = scope(repository)
    store.put_secret(where, check_name(name), sealing.seal(key, check_value(value).encode()).token)
    return where


def delete(store: Store, repository: str | None, name: str) -> bool:
    return store.delete_secret(scope(repository), check_name(name))


def names(store: Store, repository: str | None) -> list[str]:
    return store.secret_names(scope(repository))


def lookup(store: Store, key: str, repository: str, wanted: list[str]) -> dict[str, str]:
    """The values of those of `wanted` that are set: the repository's own, else the global one."""
    found = {}
    for where in (GLOBAL, scope(repository)):  # the repository's own value wins
        for name, sealed in store.sealed_secrets(where, wanted).items():
            try:
                found[name] = sealing.unseal(key, sealing.Sealed(token=sealed)).decode()
            except SealError:
                raise ConfigError(
                    f"TASUKI_STORE_KEY: cannot open secret {name} of {where}: it was set under another key"
                ) from None
    return found


def resolve(job: Job, available: Mapping[str, str], *, missing: str) -> dict[str, str]:
    """Secret name -> value for every secret `job` lists, from `available`; `SecretsRefused`
    naming those that are not there (`missing` says where they were looked for)."""
    wanted = job.secret_names()
    absent = [name for name in wanted if name not in available]
    if absent:
        listed = ", ".join(absent)
        raise SecretsRefused(f"job {job.name!r} lists secret{'s' if len(absent) > 1 else ''} {listed}, {missing}")
    return {name: available[name] for name in wanted}


def for_job(store: Store, key: str, event: Event, job: Job) -> dict[str, str]:
    """The secrets a job of this event may have (see the module's docstring)."""
    wanted = job.secret_names()
    if not wanted:
        return {}
    repository = event.repository.full_name
    if event.from_fork:
        source = event.pull_request.source_repository if event.pull_request else ""
        raise SecretsRefused(
            f"job {job.name!r} lists secrets ({', '.join(wanted)}), and a pull request from a fork "
            f"({source or 'a deleted repository'}) gets no secrets of {repository}: its code is not yet reviewed"
        )
    values = resolve(
        job,
        lookup(store, key, repository, wanted),
        missing=f"not set for {repository} nor globally: set it with `tasuki secrets set {repository} NAME` "
        "or on the repository's secrets page",
    )
    total = len(json.dumps(values))
    if total > MAX_JOB_TOTAL:
        raise SecretsRefused(
            f"job {job.name!r} lists secrets of {total} bytes together; one job's secrets hold at most {MAX_JOB_TOTAL}"
        )
    return values
