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

from tasuki.shared.flowfile import matrix as matrices
from tasuki.shared.flowfile.dag import dag_problem
from tasuki.shared.flowfile.matrix import Matrix
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


# --- issue 14 (i14-jobs): retries and service containers -------------------------------------------
MAX_RETRIES = 10
MAX_SERVICES = 5
MAX_READY = 600  # seconds a service may take to be ready
_SERVICE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
RetryOn = Literal["failure", "timeout", "error"]
RETRY_DEFAULT: tuple[RetryOn, ...] = ("failure", "timeout")


class Retry(BaseModel):
    """`retry: 2`, or `retry: {max: 2, on: [failure, timeout]}`: an attempt that ended in one of
    `on` is run again, at most `max` times (a cancelled job never is)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: int = Field(0, ge=0, le=MAX_RETRIES)
    on: list[RetryOn] = Field(default_factory=lambda: list(RETRY_DEFAULT))

    @model_validator(mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"retry is a number of retries (0 to {MAX_RETRIES}) or {{max: N, on: [...]}}")
        if isinstance(value, dict) and True in value:  # YAML 1.1 reads the key `on` as true
            value = {("on" if k is True else k): v for k, v in value.items()}
        return {"max": value} if isinstance(value, int) else value

    @field_validator("on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def again(self, status: str, attempts: int) -> bool:
        """Whether a job whose `attempts`-th attempt ended in `status` runs once more."""
        return status in self.on and attempts <= self.max

    def why(self, tries: int, attempt: int, status: str, exit_code: int | None, message: str = "") -> str:
        """What the next attempt's log and the job say: `retry 1 of 2: attempt 1 ended in failure (exit code 1)`."""
        how = f" (exit code {exit_code})" if exit_code not in (None, 0) else f": {message}" * bool(message)
        return f"retry {tries} of {self.max}: attempt {attempt} ended in {status}{how}"


class Ready(BaseModel):
    """A service is ready once `exec` (run inside it, no shell) exits 0; tried each second."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exec: list[str] = Field(min_length=1, max_length=64)
    timeout: int = 60

    @field_validator("exec", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("ready.exec is a list of arguments (no shell), like [pg_isready, -h, localhost]")
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> int:
        seconds = parse_duration(value)
        if seconds > MAX_READY:
            raise ValueError(f"a service gets at most {duration(MAX_READY)} to be ready, found {value!r}")
        return seconds


class Service(BaseModel):
    """A container beside the job, reachable by its name on a network of the job's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str
    env: dict[str, str] = Field(default_factory=dict)
    command: list[str] = Field(default_factory=list, max_length=256)
    ready: Ready | None = None

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value:
            raise ValueError("a service names its image, like postgres:16")
        return check_image(value) or value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return check_env(value)

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        return check_argv(
            value, "command is a list of arguments given to the image (no shell), like [postgres, -c, fsync=off]"
        )


def check_service_names(value: Any) -> Any:
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str) or not _SERVICE.match(key):
                raise ValueError(f"service names are host names: lower-case letters, digits and '-', found {key!r}")
    return value


# --- end of issue 14 (i14-jobs) ---------------------------------------------------------------------


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
    # --- issue 14 (i14-jobs): matrix, retries, service containers; checks in `_jobs_extras` ---
    matrix: Matrix | None = None  # expanded by `parse` (shared.flowfile.matrix): a run never sees it
    retry: Retry = Field(default_factory=lambda: Retry())
    services: dict[str, Service] = Field(default_factory=dict)
    # --- end of issue 14 (i14-jobs) ---
    # Issue 15: files kept after the job (artifacts) and between runs (cache).
    artifacts: Artifacts | None = None
    cache: Cache | None = None
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
        check_image(matrices.blank(value) if value else value)  # ${{ matrix.x }} is filled in later
        return value

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

    @field_validator("services", mode="before")
    @classmethod
    def _service_names(cls, value: Any) -> Any:
        return check_service_names(value)

    @field_validator("args", mode="before")
    @classmethod
    def _args(cls, value: Any) -> Any:
        return check_argv(value, "args must be a list of strings (each one argument, no shell)")

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return check_env(value)

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

    @model_validator(mode="after")
    def _jobs_extras(self) -> Job:
        """Issue 14 (i14-jobs): placeholders name the matrix's axes, and each combination's image is
        an image; services want a network; at most `MAX_SERVICES` of them."""
        texts: dict[tuple[Any, ...], str] = {("image",): self.image, ("plugin",): self.plugin or ""}
        texts.update({("args", i): a for i, a in enumerate(self.args)})
        texts.update({("env", k): v for k, v in self.env.items()})
        matrices.check_placeholders(self.name, texts, self.matrix)

        def located(field: str, message: str) -> PydanticCustomError:
            return PydanticCustomError("located", "{message}", {"message": message, "at": ("jobs", self.name, field)})

        if self.matrix is not None:
            combinations = self.matrix.combinations()
            if not combinations:
                raise located("matrix", "the matrix has no combination left once its exclude entries are taken out")
            for combination in combinations:
                for field in ("image", "plugin"):
                    found = matrices.substitute(getattr(self, field) or "", combination)
                    if found and not _IMAGE.match(found):
                        raise located(field, f"for {combination} this is {found!r}, not an image name")
        if self.services and self.network == "none":
            raise located("network", "a job with services needs a network: drop network: none")
        if len(self.services) > MAX_SERVICES:
            raise located("services", f"{len(self.services)} services; a job has at most {MAX_SERVICES}")
        return self

    @property
    def container_image(self) -> str:
        return self.plugin or self.image


def check_argv(value: Any, refusal: str) -> Any:
    """A list of arguments (numbers read as text); one string is refused with `refusal`: it
    would need a shell to be split."""
    if isinstance(value, str):
        raise ValueError(refusal)
    if not isinstance(value, list):
        return value
    return [str(a) if isinstance(a, int | float) and not isinstance(a, bool) else a for a in value]


def check_env(value: Any) -> Any:
    """Environment variables: names like MODE or API_URL, values text (numbers and booleans as text)."""
    if not isinstance(value, dict):
        return value
    for key in value:
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise ValueError(f"env names must be like MODE or API_URL, found {key!r}")
    return {k: v if isinstance(v, str) else _scalar(v) for k, v in value.items()}


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

    # --- issue 14 (i14-jobs) ---
    @model_validator(mode="after")
    def _matrix_size(self) -> Flow:
        total = sum(len(j.matrix.combinations()) if j.matrix else 1 for j in self.jobs.values())
        if total > matrices.MAX_JOBS:
            raise ValueError(f"its matrices make {total} jobs; a flow has at most {matrices.MAX_JOBS}")
        return self

    def expanded(self) -> Flow:
        """The run's jobs: each matrix job replaced by its combinations (`shared.flowfile.matrix`)."""
        return Flow.model_construct(jobs=matrices.expand(self.jobs), params=self.params)
