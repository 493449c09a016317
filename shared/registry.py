"""The repository registry: which repositories Tasuki knows, where to clone them, their secrets.

Read from the YAML file named by `TASUKI_REPOSITORIES_FILE`:

    repositories:
      acme/api:
        clone_url: https://bitbucket.org/acme/api.git   # or a local path to a bare repository
        secret: s3cret                                  # webhook secret (HMAC / token)
        token: …                                        # API token, for commit statuses

The dispatcher reads it to address work orders (clone URL, sealed clone credentials); executors
never read it. A repository that is not listed is cloned from the URL its webhook names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasuki.shared.errors import ConfigError, first_problem


class RepositoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clone_url: str = ""
    secret: str = Field("", repr=False)
    # Credentials for the host's API (commit statuses): a Bitbucket access token, a GitHub token
    # or a GitLab token; or, for Bitbucket, a username with an app password. Never logged.
    token: str = Field("", repr=False)
    username: str = ""
    app_password: str = Field("", repr=False)


class Registry(BaseModel):
    model_config = ConfigDict(frozen=True)

    repositories: dict[str, RepositoryConfig] = Field(default_factory=dict)

    def get(self, full_name: str) -> RepositoryConfig | None:
        return self.repositories.get(full_name)


class Repositories:
    """The registry file and the repositories registered at run time (kept in the store), as one.
    A repository registered at run time wins over the file's entry of the same name."""

    def __init__(self, file: Registry, store: Any) -> None:
        self.file = file
        self.store = store

    def get(self, full_name: str) -> RepositoryConfig | None:
        return self.store.get_repository(full_name) or self.file.get(full_name)

    def all(self) -> dict[str, tuple[RepositoryConfig, str]]:
        """Every repository with where it is registered ("file" or "store")."""
        out = {name: (config, "file") for name, config in self.file.repositories.items()}
        out.update({name: (config, "store") for name, config in self.store.list_repositories().items()})
        return dict(sorted(out.items()))


def load_registry(path: Path | None) -> Registry:
    if path is None:
        return Registry()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"TASUKI_REPOSITORIES_FILE: no file at {path}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"TASUKI_REPOSITORIES_FILE: cannot read {path}: {exc}") from None
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        where, problem = first_problem(exc)
        raise ConfigError(f"{path}: {where}: {problem}") from None
