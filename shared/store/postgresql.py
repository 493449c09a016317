"""The shared store: PostgreSQL through psycopg 3 and a psycopg_pool connection pool.

For Tasuki on many machines: every function on every host (or FaaS instance) reads and writes
one database. Nothing connects at import or construction; the pool opens on first use.
Connections are in autocommit mode: one statement alone is atomic by itself, and a transaction
is an explicit `BEGIN ... COMMIT` (`_tx`).

Where SQLite has one writer lock for everything, PostgreSQL locks what a step needs:
- `locked_run`: a transaction-scoped advisory lock on the run's id (which also covers a run
  that is being created) and `SELECT ... FOR UPDATE` on its row (which plain `UPDATE`s of the
  row wait for), held until the read-decide-write step commits;
- `admit_run` and `sync_rules`: an advisory lock on the repository, on the rules, so that two
  counts and inserts never interleave;
- migrations: an advisory lock that a second starter waits on, then finds the work done.

The schema version is the highest row of `tasuki_schema` (version, summary, applied_at).
psycopg's errors are translated into `StoreError`, without the password.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from tasuki.shared.errors import StoreError
from tasuki.shared.messages import utcnow
from tasuki.shared.store import schema
from tasuki.shared.store.location import Location
from tasuki.shared.store.records import stamp
from tasuki.shared.store.schema import LATEST, Migration
from tasuki.shared.store.sealed import Key
from tasuki.shared.store.sql import SQLStore, Tx

# Advisory lock keys: (TASUKI + kind, hashtext(name)); the constant keeps them apart from the
# locks of other programs sharing the database.
TASUKI = 0x54534B00
LOCK_KINDS = {"migrate": 0, "run": 1, "admit": 2, "rules": 3, "clock": 4, "logs": 5}
POOL_MAX = 10  # connections per process; a request holds at most one at a time
CONNECT_TIMEOUT = 10.0  # seconds to wait for a connection before answering "unavailable"


@lru_cache(maxsize=512)
def placeholders(sql: str) -> str:
    """A statement written with `?` placeholders, in psycopg's `%s` style."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Tx:
    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> psycopg.Cursor:
        return self.conn.execute(placeholders(sql), params) if params else self.conn.execute(sql)


class PostgresStore(SQLStore):
    def __init__(self, location: Location, *, schema: int = LATEST, key: Key | None = None) -> None:
        super().__init__(key)
        if location.backend != "postgresql":
            raise ValueError(f"not a PostgreSQL location: {location}")
        self.location = location
        self.schema = schema  # the version first use migrates to (older only in tests)
        self._pool: ConnectionPool | None = None
        self._migrated = False
        self._pool_lock = threading.Lock()
        self._migrate_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresStore({self.location.redacted!r})"

    # -- connections -----------------------------------------------------------------------------

    def _connections(self) -> ConnectionPool:
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = self._open_pool()
                pool = self._pool
        return pool

    def _open_pool(self) -> ConnectionPool:
        # One direct connection first: a server that is down or refuses the credentials is
        # reported at once, in libpq's words, instead of after the pool's retries.
        try:
            psycopg.connect(self.location.url, connect_timeout=int(CONNECT_TIMEOUT)).close()
        except psycopg.Error as exc:
            raise self._unreachable(exc) from None
        pool = ConnectionPool(
            self.location.url,
            min_size=1,
            max_size=POOL_MAX,
            timeout=CONNECT_TIMEOUT,
            kwargs={"autocommit": True},
            name="tasuki-store",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:  # PoolTimeout among them
            pool.close()
            raise self._unreachable(exc) from None
        return pool

    def _unreachable(self, exc: BaseException) -> StoreError:
        reason = " ".join(str(exc).split())
        return StoreError(self.location.scrub(f"cannot reach PostgreSQL at {self.location.redacted}: {reason}"))

    def _failed(self, what: str, exc: BaseException) -> StoreError:
        detail = " ".join(str(exc).split())
        return StoreError(self.location.scrub(f"{what} failed (PostgreSQL at {self.location.redacted}): {detail}"))

    @contextmanager
    def _connection(self, what: str) -> Iterator[psycopg.Connection]:
        try:
            with self._connections().connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise self._unreachable(exc) from None
        except psycopg.Error as exc:
            raise self._failed(what, exc) from None

    @contextmanager
    def _transaction(self, what: str) -> Iterator[Tx]:
        with self._connection(what) as conn, conn.transaction():
            yield _Tx(conn)

    def _ready(self) -> None:
        if not self._migrated:
            with self._migrate_lock:
                if not self._migrated:
                    self.migrate(self.schema)
                    self._migrated = True

    def _tx(self) -> AbstractContextManager[Tx]:
        self._ready()
        return self._transaction("store write")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._ready()
        with self._connection("store read") as conn:
            return _Tx(conn).execute(sql, params).fetchall()

    def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._ready()
        with self._connection("store write") as conn:
            return _Tx(conn).execute(sql, params).rowcount

    def _lock_run(self, tx: Tx, run_id: str) -> None:
        self._serialize(tx, "run", run_id)
        tx.execute("SELECT 1 FROM runs WHERE id = ? FOR UPDATE", (run_id,))

    def _serialize(self, tx: Tx, kind: str, name: str) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?::integer, hashtext(?))", (TASUKI + LOCK_KINDS[kind], name))

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # -- schema ----------------------------------------------------------------------------------

    def schema_version(self) -> int:
        with self._connection("reading the schema version") as conn:
            return _version(_Tx(conn))

    def migrate(self, target: int = LATEST) -> tuple[int, int]:
        """Apply the migrations up to `target`, in one transaction: (version before, after)."""
        with self._transaction("migrating the schema") as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?::integer, 0)", (TASUKI + LOCK_KINDS["migrate"],))
            tx.execute(
                "CREATE TABLE IF NOT EXISTS tasuki_schema"
                " (version INTEGER PRIMARY KEY, summary TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            before = _version(tx)
            return schema.apply(tx, "postgresql", before, target, self._key, _record_version, self.location.redacted)


def _record_version(tx: Tx, number: int, migration: Migration) -> None:
    tx.execute(
        "INSERT INTO tasuki_schema (version, summary, applied_at) VALUES (?, ?, ?)",
        (number, migration.summary, stamp(utcnow())),
    )


def _version(tx: Tx) -> int:
    if not tx.execute("SELECT to_regclass('tasuki_schema') IS NOT NULL").fetchone()[0]:
        return 0
    return tx.execute("SELECT COALESCE(MAX(version), 0) FROM tasuki_schema").fetchone()[0]
