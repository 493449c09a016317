"""Object storage: files that outlive a job (artifacts, caches), behind one small interface.

One setting, TASUKI_OBJECTS_URL, picks the backend:

    file:///ABSOLUTE/PATH     a folder (the default: <data dir>/objects); one machine, or a shared mount
    s3://BUCKET/PREFIX        any S3-compatible store through boto3: AWS S3, MinIO, GCS's
                              interoperability endpoint (TASUKI_OBJECTS_ENDPOINT_URL, _REGION,
                              _ACCESS_KEY_ID, _SECRET_ACCESS_KEY; unset: boto3's own chain)

Executors use it directly; the store keeps only metadata (names and sizes). Every transfer
streams: `put` reads its source in chunks, `get` writes into a file object in chunks, so memory
stays flat whatever the size. Keys are `/`-separated words (`key()` builds one from untrusted
parts); a key that could leave its prefix (`..`, an absolute path, an empty part) is refused.
Errors: anything the backend raises becomes `ObjectsError` (`ObjectMissing` for an absent key).
tests/integration/test_objects_contract.py holds both backends to this interface.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import quote, unquote, urlsplit

from tasuki.shared.errors import ConfigError, ObjectMissing, ObjectsError
from tasuki.shared.settings import Settings

CHUNK = 1024 * 1024
MAX_KEY = 1024  # S3's own limit, in bytes


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime


class Objects(Protocol):
    def put(self, key: str, source: BinaryIO) -> int:
        """Store what `source` holds under `key` (replacing it), read in chunks; the bytes stored."""
        ...

    def get(self, key: str, target: BinaryIO) -> int:
        """Write the object into `target` in chunks; the bytes written (ObjectMissing: none)."""
        ...

    def chunks(self, key: str) -> Iterator[bytes]:
        """The object's bytes in chunks, for a response body (ObjectMissing: none)."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size, None when there is none."""
        ...

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with `prefix` (a folder: end it with /), sorted by key."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object (nothing if there is none)."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix`; how many."""
        ...


def key(*parts: str) -> str:
    """A key from parts a sender may control (a repository, a branch): each part becomes one
    word, `/` and all, so no part can add a level or climb out."""
    words = [quote(p, safe="") for p in parts]
    return check_key("/".join(w.replace(".", "%2E") if w in (".", "..") else w for w in words))


def check_key(value: str) -> str:
    words = value.split("/")
    if not value or value.startswith("/") or any(w in ("", ".", "..") for w in words) or "\x00" in value:
        raise ObjectsError(f"expected an object key of non-empty words without '..', found {value!r}")
    if len(value.encode()) > MAX_KEY:
        raise ObjectsError(f"object key longer than {MAX_KEY} bytes: {value[:80]!r}...")
    return value


def _check_prefix(prefix: str) -> str:
    if prefix:
        check_key(prefix.rstrip("/") or "/")
    return prefix


# --- a folder --------------------------------------------------------------------------------------


class FolderObjects:
    """Objects as files under `root`; a put writes a temporary file and renames it into place,
    so a reader never sees half an object."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FolderObjects({str(self.root)!r})"

    def _path(self, name: str) -> Path:
        return self.root / check_key(name)

    def put(self, key: str, source: BinaryIO) -> int:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
            try:
                with open(tmp, "wb") as out:
                    written = _copy(source, out)
                os.replace(tmp, path)
            finally:
                with suppress(FileNotFoundError):
                    tmp.unlink()
        except OSError as exc:
            raise ObjectsError(f"cannot write object {key} under {self.root}: {exc}") from None
        return written

    def get(self, key: str, target: BinaryIO) -> int:
        try:
            with open(self._path(key), "rb") as source:
                return _copy(source, target)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(f"no object {key} under {self.root}") from None
        except OSError as exc:
            raise ObjectsError(f"cannot read object {key} under {self.root}: {exc}") from None

    def chunks(self, key: str) -> Iterator[bytes]:
        try:
            source = open(self._path(key), "rb")  # noqa: SIM115  closed by the generator
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(f"no object {key} under {self.root}") from None
        except OSError as exc:
            raise ObjectsError(f"cannot read object {key} under {self.root}: {exc}") from None
        return _file_chunks(source)

    def size(self, key: str) -> int | None:
        try:
            path = self._path(key)
            return path.stat().st_size if path.is_file() else None
        except OSError:
            return None

    def list(self, prefix: str) -> list[ObjectInfo]:
        _check_prefix(prefix)
        # Walk only the folder the prefix names (the rest of its last word is matched below).
        start = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        found = []
        for folder, dirs, files in os.walk(start):
            dirs.sort()
            for name in files:
                if name.startswith(".") and name.endswith(".part"):
                    continue
                path = Path(folder, name)
                name_key = path.relative_to(self.root).as_posix()
                if name_key.startswith(prefix):
                    with suppress(FileNotFoundError):  # removed meanwhile
                        st = path.stat()
                        found.append(ObjectInfo(name_key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
        return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ObjectsError(f"cannot delete object {key} under {self.root}: {exc}") from None
        self._prune_folders(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        objects = self.list(prefix)
        for info in objects:
            self.delete(info.key)
        return len(objects)

    def _prune_folders(self, folder: Path) -> None:
        """Remove folders left empty, up to the root."""
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent


# --- S3 ---------------------------------------------------------------------------------------------


class S3Objects:
    """Objects in an S3 bucket under a prefix, through boto3 (imported on first use). Uploads
    are multipart in `CHUNK`-sized parts, a few at a time; downloads read the body in chunks."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str = "",
        region: str = "",
        access_key_id: str = "",
        secret_access_key: str = "",
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._options = {
            "endpoint_url": endpoint_url or None,
            "region_name": region or None,
            "aws_access_key_id": access_key_id or None,
            "aws_secret_access_key": secret_access_key or None,
        }
        self._client: Any = None

    def __repr__(self) -> str:
        return f"S3Objects('s3://{self.bucket}/{self.prefix}')"

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3", config=Config(retries={"mode": "standard", "max_attempts": 5}), **self._options
            )
        return self._client

    def _transfer(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        # A stream that cannot seek is read part by part into memory: at most two parts read
        # ahead and two in flight (boto3 reads ten ahead by default), whatever the object's size.
        config = TransferConfig(multipart_threshold=8 * CHUNK, multipart_chunksize=8 * CHUNK, max_concurrency=2)
        config.max_in_memory_upload_chunks = 2  # s3transfer's setting, which boto3's constructor lacks
        return config

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _error(self, doing: str, key: str, exc: Exception) -> ObjectsError:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return ObjectMissing(f"no object {key} in s3://{self.bucket}/{self.prefix}")
        return ObjectsError(f"cannot {doing} object {key} in s3://{self.bucket}/{self.prefix}: {exc}")

    def put(self, key: str, source: BinaryIO) -> int:
        counted = _Counting(source)
        try:
            self.client.upload_fileobj(counted, self.bucket, self._name(key), Config=self._transfer())
        except Exception as exc:  # botocore's and boto3's errors, and the transport's
            raise self._error("write", key, exc) from None
        return counted.count

    def get(self, key: str, target: BinaryIO) -> int:
        written = 0
        for chunk in self.chunks(key):
            target.write(chunk)
            written += len(chunk)
        return written

    def chunks(self, key: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
        except Exception as exc:
            raise self._error("read", key, exc) from None
        return self._body_chunks(key, body)

    def _body_chunks(self, key: str, body: Any) -> Iterator[bytes]:
        try:
            while chunk := body.read(CHUNK):
                yield chunk
        except Exception as exc:
            raise self._error("read", key, exc) from None
        finally:
            body.close()

    def size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._name(key))["ContentLength"])
        except Exception as exc:
            error = self._error("look at", key, exc)
            if isinstance(error, ObjectMissing):
                return None
            raise error from None

    def list(self, prefix: str) -> list[ObjectInfo]:
        _check_prefix(prefix)
        found = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found.append(ObjectInfo(item["Key"][len(self.prefix) :], int(item["Size"]), item["LastModified"]))
        except Exception as exc:
            raise self._error("list", prefix or "/", exc) from None
        return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as exc:
            raise self._error("delete", key, exc) from None

    def delete_prefix(self, prefix: str) -> int:
        keys = [self.prefix + o.key for o in self.list(prefix)]
        for start in range(0, len(keys), 1000):  # S3 deletes at most 1000 keys per request
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except Exception as exc:
                raise self._error("delete", prefix, exc) from None
        return len(keys)


# --- where Tasuki keeps what ------------------------------------------------------------------------


def run_prefix(run_id: str) -> str:
    """Everything of one run (its artifacts): deleted with the run by retention."""
    return key("runs", run_id) + "/"


def prune_runs(store: Objects, before: datetime, known: Callable[[str], bool]) -> int:
    """Retention: delete what runs/<id>/ holds for the runs the store no longer has (`known` is
    False), written before `before` (a run being written now is left alone); how many runs."""
    runs: dict[str, datetime] = {}
    for info in store.list("runs/"):
        run = info.key.split("/")[1]
        runs[run] = max(runs.get(run, info.modified), info.modified)
    gone = [run for run, newest in runs.items() if newest < before and not known(unquote(run))]
    for run in gone:
        store.delete_prefix(f"runs/{run}/")
    return len(gone)


def artifacts_prefix(run_id: str, job: str) -> str:
    return key("runs", run_id, "artifacts", job) + "/"


def artifact_key(run_id: str, job: str, path: str) -> str:
    """A job's artifact at `path` under its workspace (a relative path with `/`)."""
    return check_key(artifacts_prefix(run_id, job) + path)


def cache_prefix(repository: str, branch: str = "") -> str:
    """A repository's caches, or those of one of its branches."""
    return key("caches", repository, branch) + "/" if branch else key("caches", repository) + "/"


# --- choosing one -----------------------------------------------------------------------------------


def new_objects(settings: Settings) -> Objects:
    """The object storage TASUKI_OBJECTS_URL names (nothing connects before first use)."""
    url = settings.objects_url
    if not url:
        return FolderObjects(settings.data_dir.resolve() / "objects")
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"TASUKI_OBJECTS_URL: expected file:///ABSOLUTE/PATH, found {url!r}")
        return FolderObjects(Path(parts.path))
    if parts.scheme == "s3":
        if not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"TASUKI_OBJECTS_URL: expected s3://BUCKET or s3://BUCKET/PREFIX, found {url!r}")
        return S3Objects(
            parts.netloc,
            parts.path,
            endpoint_url=settings.objects_endpoint_url,
            region=settings.objects_region,
            access_key_id=settings.objects_access_key_id,
            secret_access_key=settings.objects_secret_access_key,
        )
    raise ConfigError(f"TASUKI_OBJECTS_URL: expected file:///PATH or s3://BUCKET/PREFIX, found {url!r}")


@cache
def open_objects(settings: Settings) -> Objects:
    """The process's object storage, built once per settings."""
    return new_objects(settings)


# --- streaming helpers --------------------------------------------------------------------------------


def _copy(source: BinaryIO, target: BinaryIO) -> int:
    written = 0
    while chunk := source.read(CHUNK):
        target.write(chunk)
        written += len(chunk)
    return written


def _file_chunks(source: BinaryIO) -> Iterator[bytes]:
    with source:
        while chunk := source.read(CHUNK):
            yield chunk


class _Counting:
    """A read-only file object that counts what was read through it."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.count += len(data)
        return data
