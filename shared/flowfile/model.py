"""The flow file's model: `Flow`, `Job` and `When`, validated by pydantic, and the checks of
their values (durations, executables, images). Pure: reading YAML is `reading`, planning `plan`."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

import msgpack
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
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


# --- artifacts and caches (issue 15): files kept after a job, in object storage ----------------------

MAX_FILE_PATTERNS = 50
_FILE_PATTERN = re.compile(r"^[A-Za-z0-9_.@+*?\[\]/ -]{1,200}$")
_CACHE_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
# `{{ hashFiles('requirements.txt', 'poetry.lock') }}` in a cache key: a digest of those files.
HASH_FILES = re.compile(r"\{\{\s*hashFiles\(\s*((?:'[^']*'\s*,?\s*)+)\)\s*\}\}")
_QUOTED = re.compile(r"'([^']*)'")


def check_file_pattern(pattern: str) -> str:
    """A path or glob inside the workspace (`dist/`, `reports/*.xml`, `**/junit.xml`)."""
    if not isinstance(pattern, str) or not _FILE_PATTERN.match(pattern):
        raise ValueError(f"expected a path or glob inside the workspace like dist/ or reports/*.xml, found {pattern!r}")
    if pattern.startswith("/") or ".." in pattern.split("/"):
        raise ValueError(f"expected a path inside the workspace, found {pattern!r} (no leading / and no ..)")
    return pattern.removeprefix("./")


def _patterns(value: Any) -> Any:
    value = [value] if isinstance(value, str) else value
    if isinstance(value, list) and len(value) > MAX_FILE_PATTERNS:
        raise ValueError(f"at most {MAX_FILE_PATTERNS} paths, found {len(value)}")
    return value


# One path or a list of them, each inside the workspace.
FilePatterns = Annotated[
    list[str],
    BeforeValidator(_patterns),
    AfterValidator(lambda value: [check_file_pattern(p) for p in value]),
    Field(min_length=1),
]


def cache_key_files(template: str) -> list[list[str]]:
    """The file globs of each `hashFiles(...)` in a cache key, in order."""
    return [_QUOTED.findall(m.group(1)) for m in HASH_FILES.finditer(template)]


def check_cache_key(template: str) -> str:
    """Letters, digits, `.`, `_`, `-` and `{{ hashFiles('glob', ...) }}`."""
    plain = HASH_FILES.sub("h", template)
    if not _CACHE_KEY.match(plain):
        raise ValueError(
            "expected a key of letters, digits, '.', '_', '-' and {{ hashFiles('file', ...) }}, "
            f"like pip-{{{{ hashFiles('requirements.txt') }}}}; found {template!r}"
        )
    for globs in cache_key_files(template):
        for glob in globs:
            check_file_pattern(glob)
    return template


class Artifacts(BaseModel):
    """`artifacts: [dist/, reports/*.xml]`, or `{paths: [...], when: success}`: files under the
    workspace kept after the job (always, or only when it succeeded) and put into the workspace
    of every job that needs it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    paths: FilePatterns
    when: Literal["always", "success"] = "always"

    @model_validator(mode="before")
    @classmethod
    def _list_alone(cls, value: Any) -> Any:
        return {"paths": value} if isinstance(value, list | str) else value


class Cache(BaseModel):
    """`cache: {key: "pip-{{ hashFiles('requirements.txt') }}", paths: [.cache/pip], restore_keys: [pip-]}`:
    the paths restored before the job from the cache saved under `key` (or else the newest whose
    key starts with one of `restore_keys`), and saved after a successful job when `key` had none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    paths: FilePatterns
    restore_keys: list[str] = Field(default_factory=list, max_length=10)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return check_cache_key(value)

    @field_validator("restore_keys", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("restore_keys")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not _CACHE_KEY.match(prefix):
                raise ValueError(f"a restore key is a key's beginning, like pip-; found {prefix!r}")
        return value

    @field_validator("paths")
    @classmethod
    def _no_globs(cls, value: list[str]) -> list[str]:
        for path in value:
            if any(c in path for c in "*?["):
                raise ValueError(f"cache paths are folders or files, not globs; found {path!r}")
        return [p.rstrip("/") for p in value]


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
    # Issue 15: files kept after the job (artifacts) and between runs (cache).
    artifacts: Artifacts | None = None
    cache: Cache | None = None

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
