"""The flow file's model: `Flow`, `Job` and `When`, validated by pydantic, and the checks of
their values (durations, executables, images). Pure: reading YAML is `reading`, planning `plan`."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError, to_jsonable_python

from tasuki.shared.flowfile.dag import dag_problem
from tasuki.shared.flowfile.params import Param, names_problem
from tasuki.shared.text import clip

FLOW_FILE = ".tasuki.yml"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_EXECUTABLE = re.compile(r"^[A-Za-z0-9_.@+-][A-Za-z0-9_.@+/-]*$")
_DURATION = re.compile(r"^\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHELL = re.compile(r"[;&|$`<>(){}*?!~'\"\\]")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$")
# Keys other CI services use for inline shell; named in the error, since Tasuki refuses them.
SCRIPT_KEYS = frozenset({"script", "scripts", "steps", "commands", "command", "shell", "cmd", "sh", "before_script"})


def parse_duration(value: Any) -> int:
    """Seconds from `90`, `"90s"`, `"10m"`, `"1h30m"`."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 10m or 90s, found {value!r}")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if not match or not any(match.groups()):
            raise ValueError(f"expected a duration like 10m, 1h30m or 90s, found {value!r}")
        h, m, s = (int(g or 0) for g in match.groups())
        seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise ValueError(f"a timeout must be positive, found {value!r}")
    return seconds


def duration(seconds: float) -> str:
    """`90` -> `1m30s`, `3600` -> `1h`, `0.4` -> `0.4s`."""
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return "".join(f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (s, "s")) if n) or "0s"


def check_executable(path: str) -> str:
    """A relative path to a file in the repository, with no `..` and nothing a shell would read."""
    if not path or not path.strip():
        raise ValueError("expected an executable file in the repository, like ci/test")
    if "\n" in path.strip():
        raise ValueError(
            "this is an inline script, and Tasuki runs no inline scripts: put the commands in an "
            "executable file in the repository (like ci/test) and name that file in run"
        )
    if path.startswith("/"):
        raise ValueError(f"expected a path relative to the repository root, found the absolute path {path!r}")
    first, _, rest = path.strip().partition(" ")
    if rest and _EXECUTABLE.match(first) and not _SHELL.search(path):
        raise ValueError(
            f"expected one executable file, found {path!r}; put its arguments in args, "
            f"like run: {first} and args: {rest.split()}"
        )
    if not _EXECUTABLE.match(path):
        raise ValueError(
            f"expected an executable file in the repository (like ci/test), not a shell "
            f"command: found {path!r}. Tasuki runs no inline scripts: put the commands in a "
            f"script in the repository, make it executable and name it here"
        )
    if ".." in path.split("/"):
        raise ValueError(f"expected a file inside the repository, found {path!r} with '..'")
    return path.removeprefix("./")


def check_image(value: str | None) -> str | None:
    """An image reference (`python:3.12-slim`, `ghcr.io/acme/tool@sha256:...`), nothing more."""
    if value and not _IMAGE.match(value):
        raise ValueError(f"expected an image name like python:3.12-slim, found {value!r}")
    return value


class When(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event: list[Literal["push", "tag", "pull_request", "manual", "schedule"]] = Field(default_factory=list)
    branch: list[str] = Field(default_factory=list)
    tag: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)

    @field_validator("event", "branch", "tag", "paths", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def matches(self, *, event: str, branch: str = "", tag: str = "", changed: Iterable[str] | None = None) -> bool:
        if self.event and event not in self.event:
            return False
        if self.branch and not (branch and any(fnmatch.fnmatchcase(branch, g) for g in self.branch)):
            return False
        if self.tag and not (tag and any(fnmatch.fnmatchcase(tag, g) for g in self.tag)):
            return False
        # Unknown changed paths (None: a new branch, a truncated push) run the job.
        return not (
            self.paths
            and changed is not None
            and not any(fnmatch.fnmatchcase(p, g) for p in changed for g in self.paths)
        )


# --- secrets (issue 14) ----------------------------------------------------------------------

MAX_SECRET_NAME = 128


def check_secret_name(name: Any) -> str:
    """A secret's name is an environment variable's name (DEPLOY_TOKEN), as a job receives it."""
    if not isinstance(name, str) or not _ENV_NAME.match(name) or len(name) > MAX_SECRET_NAME:
        raise ValueError(
            f"a secret's name is letters, digits and '_', not starting with a digit (like DEPLOY_TOKEN), "
            f"at most {MAX_SECRET_NAME} characters; found {clip(repr(name), 80)}"
        )
    if name.upper().startswith("TASUKI_"):
        raise ValueError(f"names starting with TASUKI_ are Tasuki's own variables; found {name!r}")
    return name


def is_from_secret(value: Any) -> bool:
    return isinstance(value, dict) and "from_secret" in value and len(value) == 1


def _holds_from_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return "from_secret" in value or any(_holds_from_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_from_secret(v) for v in value)
    return False


class SecretRef(BaseModel):
    """One secret a job receives: the secret `source` (`from:` in the flow file) as the variable
    `name`. `secrets: [DEPLOY_TOKEN]` is `{name: DEPLOY_TOKEN, from: DEPLOY_TOKEN}`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    source: str = Field("", alias="from")

    @model_validator(mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": check_secret_name(value), "from": value}
        if isinstance(value, dict) and not value.get("from") and not value.get("source"):
            return {**value, "from": value.get("name")}
        return value

    @field_validator("name", "source")
    @classmethod
    def _names(cls, value: str) -> str:
        return check_secret_name(value)


# ---------------------------------------------------------------------------------------------


class Job(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    image: str = ""
    run: str | None = None
    plugin: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    needs: list[str] = Field(default_factory=list)
    timeout: int | None = None  # seconds; None: the executor's default
    network: Literal["bridge", "none"] = "bridge"
    when: When = Field(default_factory=When)
    # -- secrets (issue 14): the secrets this job receives, each as a variable (`SecretRef`);
    #    plugin settings name theirs as {from_secret: NAME} (`setting_secrets`).
    secrets: list[SecretRef] = Field(default_factory=list)

    @field_validator("run")
    @classmethod
    def _run_is_a_file(cls, value: str | None) -> str | None:
        return None if value is None else check_executable(value)

    @field_validator("image", "plugin")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return check_image(value)

    @field_validator("settings")
    @classmethod
    def _settings_travel(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Settings travel in messages (msgpack): plain values only."""
        try:
            msgpack.packb(to_jsonable_python(value), use_bin_type=True)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(
                f"settings are text, numbers that fit in 64 bits, true or false, lists and maps ({clip(str(exc), 80)})"
            ) from None
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> int | None:
        return None if value is None else parse_duration(value)

    @field_validator("needs", mode="before")
    @classmethod
    def _needs(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("args", mode="before")
    @classmethod
    def _args(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("args must be a list of strings (each one argument, no shell)")
        return [str(a) if isinstance(a, int | float) and not isinstance(a, bool) else a for a in value]

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for key in value:
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                raise ValueError(f"env names must be like MODE or API_URL, found {key!r}")
        return {k: v if isinstance(v, str) else _scalar(v) for k, v in value.items()}

    # -- secrets (issue 14) --------------------------------------------------------------------

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("secrets is a list, like secrets: [DEPLOY_TOKEN] or [{name: TOKEN, from: DEPLOY_TOKEN}]")
        return value

    @field_validator("settings")
    @classmethod
    def _settings_from_secret(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, setting in value.items():
            if is_from_secret(setting):
                check_secret_name(setting["from_secret"])
            elif _holds_from_secret(setting):
                raise ValueError(
                    f"settings.{key}: from_secret names a whole setting, like settings: {{{key}: {{from_secret: NAME}}}}, "
                    "not a value inside a list or map"
                )
        return value

    @model_validator(mode="after")
    def _secret_variables(self) -> Job:
        seen: set[str] = set()
        for ref in self.secrets:
            problem = (
                f"the variable {ref.name} is given twice"
                if ref.name in seen
                else f"{ref.name} is also in env; a variable comes from one of them"
                if ref.name in self.env
                else ""
            )
            if problem:  # located on the job's `secrets`, so that `parse` names its line
                raise PydanticCustomError(
                    "located", "{message}", {"message": problem, "at": ("jobs", self.name, "secrets")}
                )
            seen.add(ref.name)
        return self

    def setting_secrets(self) -> dict[str, str]:
        """Setting name -> the secret it takes (`settings: {token: {from_secret: NAME}}`)."""
        return {key: value["from_secret"] for key, value in self.settings.items() if is_from_secret(value)}

    def secret_names(self) -> list[str]:
        """Every secret this job receives (the only ones it may be given), sorted."""
        return sorted({ref.source for ref in self.secrets} | set(self.setting_secrets().values()))

    # -------------------------------------------------------------------------------------------

    @model_validator(mode="after")
    def _run_or_plugin(self) -> Job:
        if self.run is not None and self.plugin is not None:
            raise ValueError("a job has run (an executable in the repository) or plugin (an image), not both")
        if self.run is None and self.plugin is None:
            raise ValueError("a job needs run (an executable in the repository, with image) or plugin (an image)")
        if self.run is not None and not self.image:
            raise ValueError(f"a job that runs {self.run} needs an image to run it in")
        if self.plugin is not None and self.image:
            raise ValueError("a plugin job names its image in plugin, not image")
        return self

    @property
    def container_image(self) -> str:
        return self.plugin or self.image


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(f"env values must be strings or numbers, found {value!r}")


class Flow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    jobs: dict[str, Job]
    # Manual runs (issue 16): what a person may set when starting a run by hand (`params.py`).
    params: dict[str, Param] = Field(default_factory=dict)

    @field_validator("params", mode="before")
    @classmethod
    def _param_names(cls, value: Any) -> Any:
        problem = names_problem(value) if isinstance(value, dict) else None
        if problem:
            name, message = problem
            at = ("params", name) if name else ("params",)
            raise PydanticCustomError("located", "{message}", {"message": message, "at": at})
        return value

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("jobs"), dict):
            jobs = {}
            for name, job in data["jobs"].items():
                if not isinstance(name, str) or not _NAME.match(name):
                    raise PydanticCustomError(
                        "located",
                        "job names are letters, digits, '-', '_' and '.', found {name}",
                        {"name": repr(name), "at": ("jobs", str(name))},
                    )
                jobs[name] = {**job, "name": name} if isinstance(job, dict) else job
            data = {**data, "jobs": jobs}
        return data

    @model_validator(mode="after")
    def _dag(self) -> Flow:
        problem = dag_problem({n: j.needs for n, j in self.jobs.items()})
        if problem:
            where, message = problem
            # The location travels in the error's context, so that `parse` can name its line.
            raise PydanticCustomError("located", "{message}", {"message": message, "at": where})
        return self
