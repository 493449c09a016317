"""The repository registry: which repositories Tasuki knows, where to clone them, their secrets.

Read from the YAML file named by `TASUKI_REPOSITORIES_FILE`, and from the repositories
registered on the web page or through the API (kept in the store):

    repositories:
      acme/api:
        clone_url: https://bitbucket.org/acme/api.git   # a scheme in TASUKI_CLONE_SCHEMES
        secret: s3cret                                  # webhook secret (HMAC / token)
        token: …                                        # API token, for commit statuses
        trust_forks: false                              # true: fork pull requests need no approval

Names are compared normalised (`normalise`: no surrounding spaces or slashes, any case), as the
hosts treat them, so that `ACME/api`, `acme/api ` and `acme/api/` are all `acme/api` and meet its
secret; two registered names that normalise alike are refused. The clone URL of a checkout always
comes from here (`Repositories.checkout`), never from a webhook's payload: a repository that
is not registered is never cloned. The dispatcher reads it to address work orders (clone URL,
sealed clone credentials); executors never read it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasuki.shared import cloneurls
from tasuki.shared.errors import ActionError, CheckoutFailed, ConfigError, first_problem
from tasuki.shared.text import clip

# A repository's full name: segments of letters, digits, '_', '.', '-' (not "." or ".."), as
# Bitbucket (workspace/slug), GitHub (owner/name) and GitLab (group/sub/project) spell them; at
# most 200 characters (the name is a key in the store, and PostgreSQL cannot index long keys).
FULL_NAME = re.compile(r"^(?=.{1,200}$)[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")


def normalise(full_name: str) -> str:
    """The name every lookup compares: no surrounding spaces or slashes, case folded."""
    return full_name.strip().strip("/").strip().casefold()


def name_problem(full_name: str) -> str | None:
    """Why `full_name` cannot be registered; None when it can."""
    if not FULL_NAME.match(full_name) or any(part in (".", "..") for part in full_name.split("/")):
        return (
            f"a repository is named like workspace/repository (letters, digits, '_', '.', '-'; at most 200 "
            f"characters), found {clip(full_name, 80)!r}"
        )
    return None


class RepositoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clone_url: str = ""
    secret: str = Field("", repr=False)
    # Credentials for the host's API (commit statuses): a Bitbucket access token, a GitHub token
    # or a GitLab token; or, for Bitbucket, a username with an app password. Never logged.
    token: str = Field("", repr=False)
    username: str = ""
    app_password: str = Field("", repr=False)
    # Pull requests from forks run without waiting for approval (shared/approval.py).
    trust_forks: bool = False


class Registry(BaseModel):
    """The registry file."""

    model_config = ConfigDict(frozen=True)

    repositories: dict[str, RepositoryConfig] = Field(default_factory=dict)

    @field_validator("repositories")
    @classmethod
    def _names(cls, repositories: dict[str, RepositoryConfig]) -> dict[str, RepositoryConfig]:
        seen: dict[str, str] = {}
        for name in repositories:
            wrong = name_problem(name)
            if wrong:
                raise ValueError(wrong)
            other = seen.setdefault(normalise(name), name)
            if other != name:
                raise ValueError(f"{name} and {other} are the same repository (names compare without case)")
        return repositories

    def find(self, full_name: str) -> tuple[str, RepositoryConfig] | None:
        """The registered name and entry of a repository, its name compared normalised."""
        return find_in(self.repositories.items(), full_name)


class Repositories:
    """The registry file and the repositories registered at run time (kept in the store), as one.
    A repository registered at run time wins over the file's entry of the same name. Clone URLs
    must use one of `schemes` (TASUKI_CLONE_SCHEMES)."""

    def __init__(
        self,
        file: Registry,
        store: Any = None,
        schemes: Collection[str] = (cloneurls.DEFAULT,),
    ) -> None:
        self.file = file
        self.store = store
        self.schemes = tuple(schemes)

    def find(self, full_name: str) -> tuple[str, RepositoryConfig] | None:
        """The registered name and entry of a repository, its name compared normalised (one
        registered at run time first: it wins over the file's entry of the same name)."""
        stored = self.store.find_repository(full_name) if self.store is not None else None
        return stored or find_in(self.file.repositories.items(), full_name)

    def get(self, full_name: str) -> RepositoryConfig | None:
        found = self.find(full_name)
        return found[1] if found else None

    def checkout(self, full_name: str) -> RepositoryConfig:
        """The entry of a repository to check out: its registered clone URL (never one a payload
        names) is where a checkout clones from, its scheme allowed. `CheckoutFailed` says what to
        do otherwise."""
        found = self.find(full_name)
        if found is None or not found[1].clone_url:
            what = "is not registered" if found is None else "is registered without a clone URL"
            raise CheckoutFailed(
                f"{full_name} {what}: Tasuki clones only from the repository registry; register it with its "
                f"clone URL (the page's Repositories, the API, or TASUKI_REPOSITORIES_FILE)"
            )
        name, config = found
        wrong = cloneurls.problem(config.clone_url, self.schemes)
        if wrong:
            raise CheckoutFailed(f"{name}: not cloned: {wrong}")
        return config

    def all(self) -> dict[str, tuple[RepositoryConfig, str]]:
        """Every repository with where it is registered ("file" or "store")."""
        out = {name: (config, "file") for name, config in self.file.repositories.items()}
        if self.store is not None:
            out.update({name: (config, "store") for name, config in self.store.list_repositories().items()})
        return dict(sorted(out.items()))

    def registrable(self, full_name: str, config: RepositoryConfig) -> str:
        """The name to register a repository under (spaces and slashes around it dropped), or
        `ActionError` saying why it cannot be: 400 for a name that is not one or a clone URL whose
        scheme is not allowed, 409 for a repository registered already (under any spelling)."""
        name = full_name.strip().strip("/").strip()
        wrong = name_problem(name)
        if wrong:
            raise ActionError(400, wrong)
        if config.clone_url:
            wrong = cloneurls.problem(config.clone_url, self.schemes)
            if wrong:
                raise ActionError(400, f"clone URL: {wrong}")
        found = self.find(name)
        if found is not None:
            where = " in the registry file (TASUKI_REPOSITORIES_FILE)" if found[0] in self.file.repositories else ""
            raise ActionError(409, f"{found[0]} is registered already{where}; remove it first to register it again")
        return name


def find_in(entries: Iterable[tuple[str, RepositoryConfig]], full_name: str) -> tuple[str, RepositoryConfig] | None:
    """The entry whose name normalises as `full_name` does (the last of several: the store's
    entries come after the file's and win)."""
    key = normalise(full_name)
    found = None
    for name, config in entries:
        if normalise(name) == key:
            found = (name, config)
    return found


def load_registry(path: Path | None, schemes: Collection[str] = (cloneurls.DEFAULT,)) -> Registry:
    """The registry file, each clone URL checked against `schemes`; `ConfigError` naming the
    file and the repository when something in it is wrong."""
    if path is None:
        return Registry()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"TASUKI_REPOSITORIES_FILE: no file at {path}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"TASUKI_REPOSITORIES_FILE: cannot read {path}: {exc}") from None
    try:
        registry = Registry.model_validate(data)
    except ValidationError as exc:
        where, problem = first_problem(exc)
        raise ConfigError(f"{path}: {where}: {problem}") from None
    for name, config in registry.repositories.items():
        wrong = config.clone_url and cloneurls.problem(config.clone_url, schemes)
        if wrong:
            raise ConfigError(f"{path}: repositories.{name}.clone_url: {wrong}")
    return registry
