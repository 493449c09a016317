"""The secrets a job received, opened only here, just before its container starts.

The executor opens them from the order (sealed with TASUKI_ORDER_KEY by the dispatcher,
`from_order`); `tasuki run` takes them from the environment or a file the user names
(`from_environment`, `read_file`), never from the repository. Either way the job gets a
`Received`: the values its container's environment gets (`convert.secret_environment`) and the
log masks (with TASUKI_SECRETS), or why it gets none, and then it fails before its container
starts (`check`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tasuki.shared import sealing, vault
from tasuki.shared.errors import ConfigError, SealError
from tasuki.shared.flowfile import Job, check_secret_name
from tasuki.shared.messages import JobOrder

MAX_FILE = 1024 * 1024  # bytes of a --secrets-file


@dataclass(frozen=True)
class Received:
    values: dict[str, str] = field(default_factory=dict, repr=False)  # secret name -> value
    refused: str = ""  # why the job gets none: it fails before its container starts

    def check(self) -> None:
        if self.refused:
            raise vault.SecretsRefused(self.refused)

    def masked(self, extra: list[str]) -> list[str]:
        """Every value the job's log masks: its secrets and the operator's TASUKI_SECRETS."""
        return [*self.values.values(), *extra]


NONE = Received()


def from_order(order: JobOrder, key: str) -> Received:
    if order.secrets_refused:
        return Received(refused=order.secrets_refused)
    if order.secrets is None:
        return NONE
    try:
        values = sealing.unseal_json(key, order.secrets)
    except SealError as exc:
        return Received(refused=f"the job's secrets cannot be opened: {exc}")
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        return Received(refused="the order's sealed secrets are not name -> value")
    return Received(values={str(k): v for k, v in values.items()})


def from_environment(job: Job, source: Mapping[str, str], where: str) -> Received:
    """`tasuki run`: the secrets `job` lists, from `source` (the environment, or a file)."""
    try:
        return Received(values=vault.resolve(job, source, missing=f"not {where}"))
    except vault.SecretsRefused as exc:
        return Received(refused=str(exc))


def read_file(path: Path) -> dict[str, str]:
    """NAME=value lines (blank lines and # comments skipped; the value is the rest of the line,
    as written). ConfigError naming the file and line for anything else."""
    try:
        if path.stat().st_size > MAX_FILE:
            raise ConfigError(f"--secrets-file {path}: over {MAX_FILE} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--secrets-file {path}: cannot read it: {exc}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        try:
            if not sep:
                raise ValueError("expected NAME=value")
            check_secret_name(name.strip())
        except ValueError as exc:
            raise ConfigError(f"--secrets-file {path}:{number}: {exc}") from None
        values[name.strip()] = value
    return values
