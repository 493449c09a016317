"""The embedded store: one SQLite file in WAL mode, shared by every process on the machine.

A transaction is `BEGIN IMMEDIATE`: it takes SQLite's single writer lock at once, so a
read-decide-write step (`locked_run`, `admit_run`, `sync_rules`) is atomic across threads and
processes, and `_lock_run`/`_serialize` have nothing left to do. One statement alone runs in
autocommit mode (no BEGIN/COMMIT round trips on the hot paths: delivery keys, log chunks).

Connections are opened lazily, one per thread. The schema version is `PRAGMA user_version`;
migrations run on first use, or by `migrate()`, in one transaction. The database file is
created 0600 in a folder created 0700 (`shared.datadir`). sqlite3 errors are
translated into `StoreError`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from tasuki.shared import datadir
from tasuki.shared.errors import StoreError
from tasuki.shared.store import schema
from tasuki.shared.store.schema import LATEST, Migration
from tasuki.shared.store.sealed import Key
from tasuki.shared.store.sql import SQLStore, Tx

BUSY_SECONDS = 30  # how long a statement waits for another connection's lock


def _write_ahead_log(conn: sqlite3.Connection) -> None:
    """Switch the database to WAL (kept in the file: a no-op once done). Several connections
    opening a new database at once can find it locked for the switch without SQLite waiting
    (its busy handler is not called there), so the switch is tried again until BUSY_SECONDS."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


class SQLiteStore(SQLStore):
    def __init__(self, path: Path | str, *, schema: int = LATEST, key: Key | None = None) -> None:
        super().__init__(key)
        self.path = Path(path)
        self.schema = schema  # the version first use migrates to (older only in tests)
        self._local = threading.local()
        self._migrated = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- connection ------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                # 0600 from creation (SQLite gives its -wal and -shm files the database's mode).
                datadir.private_dir(self.path.parent)
                datadir.private_file(self.path)
                for suffix in ("-wal", "-shm"):
                    datadir.narrow_if_there(self.path.with_name(self.path.name + suffix))
                conn = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
                _write_ahead_log(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"cannot open the store at {self.path}: {exc}") from None
            self._local.conn = conn
        return conn

    def _ready(self) -> sqlite3.Connection:
        """This thread's connection, the schema migrated (once per store)."""
        conn = self._connection()
        if not self._migrated:
            with self._lock:
                if not self._migrated:
                    self.migrate(self.schema)
                    self._migrated = True
        return conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection, what: str) -> Iterator[sqlite3.Connection]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"{what} failed ({self.path}): {exc}") from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _tx(self) -> AbstractContextManager[Tx]:
        return self._transaction(self._ready(), "store write")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._ready().execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"store read failed ({self.path}): {exc}") from None

    def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return self._ready().execute(sql, tuple(params)).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"store write failed ({self.path}): {exc}") from None

    def _lock_run(self, tx: Any, run_id: str) -> None:
        pass  # BEGIN IMMEDIATE holds the only writer lock

    def _serialize(self, tx: Any, kind: str, name: str) -> None:
        pass  # BEGIN IMMEDIATE holds the only writer lock

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- schema ----------------------------------------------------------------------------------

    def schema_version(self) -> int:
        try:
            return self._connection().execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the schema version of {self.path}: {exc}") from None

    def migrate(self, target: int = LATEST) -> tuple[int, int]:
        """Apply the migrations up to `target`, in one transaction: (version before, after)."""
        with self._transaction(self._connection(), "migrating the schema") as conn:
            before = conn.execute("PRAGMA user_version").fetchone()[0]
            return schema.apply(conn, "sqlite", before, target, self._key, _record_version, str(self.path))


def _record_version(conn: sqlite3.Connection, number: int, _migration: Migration) -> None:
    conn.execute(f"PRAGMA user_version = {int(number)}")
