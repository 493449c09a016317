"""Settings: one pydantic model, read once from an explicit mapping (normally `os.environ`).

Every field is set by the variable `TASUKI_` + its name in capitals (`job_timeout`: `TASUKI_JOB_TIMEOUT`). Nothing else in Tasuki reads the
environment for configuration: processes call `Settings.from_env(os.environ)` once, tests pass
a dict. An invalid value raises `ConfigError` naming the variable, what was expected and what
was found.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasuki.shared import cloneurls, datadir, sizes
from tasuki.shared.errors import ConfigError, first_problem

PREFIX = "TASUKI_"
LOOPBACK = ("127.0.0.1", "localhost", "::1")

# The smallest body limit of a push request (`Settings.max_push_bytes`).
MIN_PUSH_BYTES = 8 * 1024 * 1024
# The smallest per-job log limit (TASUKI_JOB_LOG_LIMIT): room for a few chunks of output.
MIN_LOG_LIMIT = 64 * 1024
# Room the store keeps beyond the log limit for Tasuki's own lines in a job's log.
LOG_MARGIN = 4 * 1024
# Where each function listens when Tasuki runs on one machine (`make local`).
DEFAULT_PORTS = {"web": 8000, "ingress": 8080, "router": 8081, "dispatcher": 8082, "reporter": 8083, "logs": 8084}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # RabbitMQ
    amqp_url: str = "amqp://guest:guest@localhost:5672/"
    # Where the SQLite store, the mirror cache and generated keys live.
    data_dir: Path = Path(".tasuki")
    # The store (shared/store/location.py): sqlite:///ABSOLUTE/PATH, sqlite:RELATIVE/PATH or
    # postgresql://USER:PASSWORD@HOST:PORT/DATABASE. Empty: the SQLite file <data_dir>/tasuki.db.
    store_url: str = Field("", repr=False)
    # Retention (`tasuki store prune`): finished runs with their jobs, logs and notes, and the
    # delivery keys that make a redelivered webhook a duplicate, are deleted after this many
    # days; 0 keeps them for ever.
    retention_runs_days: int = Field(90, ge=0)
    retention_deliveries_days: int = Field(7, ge=0)
    # Trigger rules loaded at start, and the repository registry (full name -> clone URL, secret).
    rules_file: Path | None = None
    repositories_file: Path | None = None

    # The Pub/Sub project name used in subscription paths (projects/<project>/subscriptions/<name>).
    project: str = "tasuki"
    # Key that signs and verifies the bridge's push tokens (HS256). Empty: a key generated once
    # and kept in <data_dir>/push.key, shared by every process on this machine.
    push_key: str = ""
    # Where the bridge pushes to. Empty: http://127.0.0.1:<port>/ with the port below.
    host: str = "127.0.0.1"
    web_port: int = Field(DEFAULT_PORTS["web"], ge=1, le=65535)
    ingress_port: int = Field(DEFAULT_PORTS["ingress"], ge=1, le=65535)
    router_port: int = Field(DEFAULT_PORTS["router"], ge=1, le=65535)
    dispatcher_port: int = Field(DEFAULT_PORTS["dispatcher"], ge=1, le=65535)
    reporter_port: int = Field(DEFAULT_PORTS["reporter"], ge=1, le=65535)
    logs_port: int = Field(DEFAULT_PORTS["logs"], ge=1, le=65535)
    router_url: str = ""
    dispatcher_url: str = ""
    reporter_url: str = ""
    logs_url: str = ""
    # Google-signed OIDC push tokens (shared/oidc.py: Cloud Scheduler, a real Pub/Sub push
    # subscription), accepted beside the bridge's own when the service account is set: signed by a
    # key published at the certificates URL, issued by Google, for the audience (empty: the
    # function's endpoint URL, as Google sends by default), to this verified service account.
    push_oidc_service_account: str = ""
    push_oidc_audience: str = ""
    push_oidc_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    # The address people use to reach the web page (links in commit statuses).
    public_url: str = ""
    # The webhook URL to paste into the git host. Empty: http://<host>:<ingress port>/.
    webhook_url: str = ""
    # Token or password for the web page and the API. Required unless host is 127.0.0.1,
    # localhost or ::1.
    web_token: str = Field("", repr=False)
    # More names the web page answers to (comma-separated), beside TASUKI_HOST, the host of
    # TASUKI_PUBLIC_URL and localhost; any other Host header is refused (DNS rebinding).
    allowed_hosts: str = ""
    # Believe X-Forwarded-Proto from the proxy in front of the web page (sessions are then
    # Secure cookies when the proxy says https). Only behind a proxy that sets it.
    trust_proxy: bool = False
    # How long a web session lasts before signing in again.
    session_hours: int = Field(12, ge=1, le=24 * 30)
    # Status badges (GET /badge/<repo>.svg) answer without signing in (README images); off:
    # they need the session or the token like every page.
    public_badges: bool = False

    # The git hosts' APIs, for commit statuses, where they are not the host's public API (its
    # `api_url` in shared/hosts/): Bitbucket Data Center, GitHub Enterprise, self-hosted GitLab.
    bitbucket_api_url: str = ""
    github_api_url: str = ""
    gitlab_api_url: str = ""

    # RabbitMQ's consumer_timeout (seconds; 1800 unless the broker's configuration changes it). The
    # bridge never keeps a delivery unacknowledged that long: it re-queues it before (local/bridge/).
    consumer_timeout: float = Field(1800.0, ge=60)

    # Ingress
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    # Deliveries of repositories not in the registry: refused with 404, unless "accept" (then
    # routed, but never built: clone URLs come from the registry only).
    unknown_repositories: Literal["accept", "reject"] = "reject"
    # At most this many events (pushed refs) from one delivery; a delivery with more is refused.
    max_events_per_delivery: int = Field(100, ge=1, le=100_000)
    # The clone URL schemes a repository may be registered with and cloned from (shared/cloneurls.py).
    clone_schemes: str = cloneurls.DEFAULT

    # Key that seals what job orders carry for executors only (clone credentials): the functions
    # seal, the executors open, so every host needs the same one. Empty: a key generated once and
    # kept in <data_dir>/order.key (copy that file's content to TASUKI_ORDER_KEY on executor hosts).
    order_key: str = Field("", repr=False)
    # Key that encrypts secrets kept in the store (webhook secrets, API tokens, job secrets): it is
    # never in the database. Empty: a key generated once and kept in <data_dir>/store.key.
    store_key: str = Field("", repr=False)

    # Job leases: an executor claims a job before it runs it and renews the claim by heartbeats
    # (every quarter of this); a job whose executor stops renewing for this long is ordered again.
    job_lease_timeout: float = Field(60.0, ge=1, le=3600, description="seconds")

    # Executor
    executor_concurrency: int = Field(2, ge=1, le=64)
    executor_pool: str = "default"
    # Names this executor's containers (label tasuki.executor) so that it can find and remove
    # what it left behind after a crash. Empty: <hostname>.<pool>. Unique per executor process.
    executor_id: str = Field("", pattern=r"^[A-Za-z0-9_.\-]*$", max_length=200)
    # The Docker engine jobs run on, like unix:///var/run/docker.sock or tcp://host:2375.
    # Empty: DOCKER_HOST, or the engine's default socket.
    docker_host: str = ""
    job_memory: str = "1g"
    job_cpus: float = Field(1.0, gt=0)
    job_pids: int = Field(512, ge=16)
    job_timeout: int = Field(3600, ge=1, description="seconds, when the flow file sets none")
    # The longest `timeout` a flow file may ask for; a longer one makes the run an error.
    job_timeout_max: int = Field(6 * 3600, ge=1)
    # The user job containers run as (`uid`, `uid:gid` or a name the image knows). Empty: the
    # image's own user (often root: builds install packages).
    job_user: str = Field("", pattern=r"^[A-Za-z0-9_.-]*(:[A-Za-z0-9_.-]+)?$")
    # The most output one job may write (shared/sizes.py: bytes, or 512k, 32m, 32MiB, 1g): past it
    # the log is cut with a line saying so, the container is stopped and the job fails with
    # reason `log-limit`; the logs function stores no more than this (and a line) of any job.
    job_log_limit: str = "32MiB"
    stop_grace: int = Field(30, ge=0, description="seconds running jobs get after SIGTERM")
    # The executor's mirror cache is kept under this size: least recently used mirrors go first.
    mirror_cache_bytes: int = Field(10 * 1024**3, ge=0)
    # Object storage for artifacts and caches (shared/objects.py): file:///ABSOLUTE/PATH or
    # s3://BUCKET/PREFIX. Empty: the folder <data_dir>/objects. For S3: the endpoint of an
    # S3-compatible store (MinIO, GCS interoperability; empty: AWS), its region and keys (empty:
    # boto3's own chain: AWS_* variables, ~/.aws, an instance role).
    objects_url: str = ""
    objects_endpoint_url: str = ""
    objects_region: str = ""
    objects_access_key_id: str = Field("", repr=False)
    objects_secret_access_key: str = Field("", repr=False)
    # The most bytes one job may keep as artifacts; a job over it fails, saying so.
    artifacts_max_bytes: int = Field(2 * 1024**3, ge=0)
    # The most bytes of caches one repository keeps; the least recently used go first.
    cache_max_bytes: int = Field(5 * 1024**3, ge=0)
    # More values masked in every job log, comma-separated (a job's own secrets, shared/vault.py,
    # are masked without being listed here).
    secrets: str = ""

    # Log lines (shared.logs): json, text (readable), color (readable, coloured), or auto (color
    # on a terminal, json anywhere else); the lowest level written.
    log_format: Literal["auto", "json", "text", "color"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Threads serving the functions when they share one process (`tasuki local`, `tasuki functions`).
    server_threads: int = Field(16, ge=1, le=256)

    @field_validator("job_log_limit")
    @classmethod
    def _log_limit(cls, value: str) -> str:
        if sizes.parse(value, "TASUKI_JOB_LOG_LIMIT") < MIN_LOG_LIMIT:
            raise ValueError(f"at least {sizes.show(MIN_LOG_LIMIT)}")
        return value

    @field_validator("clone_schemes")
    @classmethod
    def _schemes(cls, value: str) -> str:
        return ",".join(cloneurls.parse_schemes(value))

    @model_validator(mode="after")
    def _timeouts(self) -> Settings:
        if self.job_timeout > self.job_timeout_max:
            raise ValueError(
                f"TASUKI_JOB_TIMEOUT ({self.job_timeout}) is more than TASUKI_JOB_TIMEOUT_MAX ({self.job_timeout_max})"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("push_oidc_service_account")
    @classmethod
    def _an_email(cls, email: str) -> str:
        if email and not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
            raise ValueError("expected a service-account email like tasuki-push@PROJECT.iam.gserviceaccount.com")
        return email

    @field_validator("bitbucket_api_url", "github_api_url", "gitlab_api_url")
    @classmethod
    def _an_api(cls, url: str) -> str:
        """A host's API root, told at start rather than by every commit status failing later."""
        if not url:
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(
                "expected the API's root as an http:// or https:// URL, such as https://ghe.example.com/api/v3"
            )
        return url

    @field_validator("push_oidc_certs_url")
    @classmethod
    def _certificates_over_https(cls, url: str) -> str:
        """Signing keys fetched in clear could be swapped on the way: https, or this machine."""
        parts = urlsplit(url)
        if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
            return url
        raise ValueError("expected an https:// URL (or http:// on this machine)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        values = {}
        for name in cls.model_fields:
            key = PREFIX + name.upper()
            if key in environ:
                values[name] = environ[key]
        unknown = sorted(
            k for k in environ if k.startswith(PREFIX) and k[len(PREFIX) :].lower() not in cls.model_fields
        )
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]}; known: {', '.join(cls.variables())}")
        try:
            return cls(**values)
        except ValidationError as exc:
            where, problem = first_problem(exc)
            if not where:  # a rule across settings: the message names them
                raise ConfigError(problem) from None
            field = where.split(".")[0]
            found = values.get(field, "<unset>")
            raise ConfigError(f"{PREFIX}{field.upper()}: {problem}; found {found!r}") from None

    @classmethod
    def variables(cls) -> list[str]:
        return [PREFIX + name.upper() for name in cls.model_fields]

    # Derived values -------------------------------------------------------------------------

    def endpoint(self, function: str) -> str:
        """The URL the bridge pushes to for a function (`router`, `dispatcher`, `reporter`)."""
        explicit = getattr(self, f"{function}_url", "")
        if explicit:
            return explicit
        return f"http://{self.host}:{getattr(self, f'{function}_port')}/"

    def api_url(self, host: str) -> str:
        """TASUKI_<HOST>_API_URL; "" when it is unset or there is no such setting (then
        statuses go to the host's public API)."""
        return getattr(self, f"{host}_api_url", "")

    @property
    def web_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.web_port}").rstrip("/")

    @property
    def public_webhook_url(self) -> str:
        return self.webhook_url or f"http://{self.host}:{self.ingress_port}/"

    @property
    def store_path(self) -> Path:
        """The SQLite file used when TASUKI_STORE_URL is not set."""
        return self.data_dir / "tasuki.db"

    def retention_cutoffs(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """(runs finished before, deliveries seen before) this are pruned; None: kept for ever."""
        runs, deliveries = self.retention_runs_days, self.retention_deliveries_days
        return (
            now - timedelta(days=runs) if runs else None,
            now - timedelta(days=deliveries) if deliveries else None,
        )

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def workspace_dir(self) -> Path:
        return self.data_dir / "workspaces"

    @property
    def allowed_clone_schemes(self) -> tuple[str, ...]:
        return cloneurls.parse_schemes(self.clone_schemes)

    @property
    def job_log_limit_bytes(self) -> int:
        return sizes.parse(self.job_log_limit, "TASUKI_JOB_LOG_LIMIT")

    @property
    def job_log_store_limit(self) -> int:
        """The most of one job attempt's log the store keeps: the limit, and room for the lines
        Tasuki adds (the line that says the log was cut, an attempt's or a timeout's line)."""
        return self.job_log_limit_bytes + LOG_MARGIN

    @property
    def max_push_bytes(self) -> int:
        """The largest push request a pushed-to function reads: an event carries its webhook's
        JSON (at most TASUKI_MAX_BODY_BYTES) about twice over, base64 adds a third."""
        return max(MIN_PUSH_BYTES, 4 * self.max_body_bytes)

    def secret_values(self) -> list[str]:
        return [s for s in (part.strip() for part in self.secrets.split(",")) if s]

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between an executor's heartbeats for a running job."""
        return self.job_lease_timeout / 4

    @property
    def tick_interval(self) -> float:
        """Seconds between the ticks that find run-out leases (and what the outbox still holds)."""
        return max(0.5, min(15.0, self.job_lease_timeout / 4))

    def signing_key(self) -> str:
        """The push-token key: the configured one, or one generated once under the data dir."""
        return self.push_key or self._generated_key("push.key", lambda: secrets.token_urlsafe(32))

    def order_key_value(self) -> str:
        """The key that seals order contents: the configured one, or one generated once under
        the data dir (`order.key`)."""
        from tasuki.shared import sealing

        key = self.order_key or self._generated_key("order.key", sealing.new_key)
        sealing.check_key(key)
        return key

    def store_key_value(self) -> str:
        """The key that encrypts secrets at rest: the configured one, or one generated once under
        the data dir (`store.key`). Encrypt with `sealing.seal(settings.store_key_value(), ...)`."""
        from tasuki.shared import sealing

        key = self.store_key or self._generated_key("store.key", sealing.new_key)
        sealing.check_key(key, setting="TASUKI_STORE_KEY")
        return key

    def _generated_key(self, name: str, make: Callable[[], str]) -> str:
        """The key kept in <data_dir>/<name>, made on first use; every process of this data dir
        reads the same one."""
        path = self.data_dir / name
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        datadir.private_dir(self.data_dir)
        key = make()
        tmp = path.with_name(f"{name}.{secrets.token_hex(4)}")
        datadir.private_file(tmp)  # 0600 before the key is in it
        tmp.write_text(key)
        try:
            os.link(tmp, path)  # atomic: the first writer wins, everyone else reads its key
        except FileExistsError:
            key = path.read_text().strip()
        finally:
            tmp.unlink()
        return key
