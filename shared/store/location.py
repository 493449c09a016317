"""Where the store lives: `TASUKI_STORE_URL`, read into a `Location` (pure, no I/O).

    (unset)                                   the SQLite file <TASUKI_DATA_DIR>/tasuki.db
    sqlite:///var/lib/tasuki/tasuki.db        a SQLite file, by absolute path
    sqlite:tasuki.db                          a SQLite file, relative to the working directory
    postgresql://user:pass@host:5432/tasuki   PostgreSQL (also postgres://; libpq's query
                                              parameters such as ?sslmode=require pass through)

An unknown scheme or a malformed URL is a `ConfigError` naming TASUKI_STORE_URL. The password
never leaves this module except inside `Location.url`, which goes to libpq and nowhere else:
messages use `Location.redacted`, and `Location.scrub` removes the password from any text (a
driver's error message may quote the connection string).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from tasuki.shared.errors import ConfigError

VARIABLE = "TASUKI_STORE_URL"
Backend = Literal["sqlite", "postgresql"]
POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class Location:
    backend: Backend
    path: Path | None = None  # sqlite: the database file
    url: str = field(default="", repr=False)  # postgresql: the URL as given, for libpq only
    redacted: str = ""  # for messages and logs
    secrets: tuple[str, ...] = field(default=(), repr=False)  # the password, as written and decoded

    def scrub(self, text: str) -> str:
        """`text` with the password replaced by ***."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def __str__(self) -> str:
        return self.redacted


def parse(url: str, data_dir: Path) -> Location:
    """The store at `url` (TASUKI_STORE_URL); empty: the SQLite file under the data dir."""
    url = url.strip()
    if not url:
        path = data_dir / "tasuki.db"
        return Location("sqlite", path=path, redacted=f"sqlite:{path}")
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if not colon:
        raise _invalid(f"expected sqlite:PATH or postgresql://…, found {redact(url)!r}")
    if scheme == "sqlite":
        return _sqlite(url, rest)
    if scheme in POSTGRES_SCHEMES:
        return _postgresql(url)
    raise _invalid(f"unknown scheme {scheme!r}: expected sqlite:PATH or postgresql://…, found {redact(url)!r}")


def redact(url: str) -> str:
    """The URL with its password replaced by *** (also when the URL is malformed)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hosts}{slash}{tail}"


def _invalid(problem: str) -> ConfigError:
    return ConfigError(f"{VARIABLE}: {problem}")


def _sqlite(url: str, rest: str) -> Location:
    if rest.startswith("//"):
        authority, _, path = rest[2:].partition("/")
        if authority:
            raise _invalid(
                f"a SQLite URL names a file on this machine, not a host ({authority!r}): sqlite:///ABSOLUTE/PATH"
            )
        path = "/" + path.lstrip("/")  # sqlite:///abs and SQLAlchemy's sqlite:////abs alike
    else:
        path = rest
    if "?" in path or "#" in path:
        raise _invalid(f"a SQLite URL takes no query or fragment, found {url!r}")
    path = unquote(path)
    if not path.strip("/"):
        raise _invalid(f"the URL names no file: sqlite:///ABSOLUTE/PATH or sqlite:RELATIVE/PATH, found {url!r}")
    if path.endswith("/"):
        raise _invalid(f"the URL names a folder, not a file, found {url!r}")
    if "\x00" in path:
        raise _invalid("the path contains a NUL character")
    return Location("sqlite", path=Path(path), redacted=f"sqlite:{path}")


def _postgresql(url: str) -> Location:
    shown = redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when not a number in 0-65535
    except ValueError as exc:
        raise _invalid(f"malformed PostgreSQL URL {shown!r}: {exc}") from None
    if parts.fragment:
        raise _invalid(f"a PostgreSQL URL takes no #fragment, found {shown!r}")
    database = unquote(parts.path.lstrip("/"))
    if "/" in database:
        raise _invalid(f"expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE, found {shown!r}")
    written = parts.password or ""
    password = unquote(written)
    user = unquote(parts.username or "")
    where = f"{parts.hostname or 'localhost'}:{port or 5432}"
    redacted = f"postgresql://{user + (':***' if password else '') + '@' if user else ''}{where}/{database}"
    secrets = tuple(s for s in {written, password, quote(password, safe="")} if s)
    return Location("postgresql", url=url, redacted=redacted, secrets=secrets)
