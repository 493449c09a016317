"""The embedded store: one SQLite file in WAL mode, shared by every local process.

Connections are opened lazily, one per thread. The schema is versioned with
`PRAGMA user_version` and migrated forward on first use; each migration runs once, in a
transaction. sqlite3 errors are translated into `StoreError`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.errors import StoreError
from shared.store import JobRecord, RunRecord

MIGRATIONS: list[str] = [
    # 1: runs, jobs, logs, delivery keys, executor results
    """
    CREATE TABLE deliveries (key TEXT PRIMARY KEY, seen_at TEXT NOT NULL DEFAULT (datetime('now')));
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        repository TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX runs_by_time ON runs (created_at DESC);
    CREATE INDEX runs_by_repository ON runs (repository, created_at DESC);
    CREATE TABLE jobs (
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE logs (
        run_id TEXT NOT NULL,
        job TEXT NOT NULL,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (run_id, job, seq)
    );
    CREATE TABLE results (
        run_id TEXT NOT NULL,
        job TEXT NOT NULL,
        result BLOB NOT NULL,
        PRIMARY KEY (run_id, job)
    );
    """,
]


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._migrated = False
        self._lock = threading.Lock()

    # -- connection --------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"cannot open the store at {self.path}: {exc}") from None
            self._local.conn = conn
            with self._lock:
                if not self._migrated:
                    self._migrate(conn)
                    self._migrated = True
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StoreError(f"cannot migrate the store at {self.path}: {exc}") from None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"store write failed ({self.path}): {exc}") from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"store read failed ({self.path}): {exc}") from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- deliveries ----------------------------------------------------------------------------------

    def remember_delivery(self, key: str) -> bool:
        # One statement is its own transaction: no BEGIN/COMMIT round trips on the ingress's path.
        try:
            cur = self._connection().execute("INSERT OR IGNORE INTO deliveries (key) VALUES (?)", (key,))
        except sqlite3.Error as exc:
            raise StoreError(f"store write failed ({self.path}): {exc}") from None
        return cur.rowcount == 1

    def forget_delivery(self, key: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM deliveries WHERE key = ?", (key,))

    def seen_delivery(self, key: str) -> bool:
        return bool(self._query("SELECT 1 FROM deliveries WHERE key = ?", (key,)))

    # -- runs ----------------------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> bool:
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO runs (id, repository, status, created_at, record) VALUES (?, ?, ?, ?, ?)",
                (run.id, run.repository, run.status, run.created_at.isoformat(), run.model_dump_json()),
            )
            return cur.rowcount == 1

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._query("SELECT record FROM runs WHERE id = ?", (run_id,))
        return RunRecord.model_validate_json(rows[0][0]) if rows else None

    def list_runs(
        self, *, repository: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        sql, params = "SELECT record FROM runs WHERE 1=1", []
        if repository:
            sql += " AND repository = ?"
            params.append(repository)
        if status:
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY created_at DESC LIMIT ?"
        params.append(limit)
        return [RunRecord.model_validate_json(r[0]) for r in self._query(sql, tuple(params))]

    def update_run(self, run: RunRecord) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE runs SET status = ?, record = ? WHERE id = ?",
                (run.status, run.model_dump_json(), run.id),
            )

    # -- jobs ----------------------------------------------------------------------------------------

    def put_job(self, job: JobRecord) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO jobs (run_id, name, record) VALUES (?, ?, ?)",
                (job.run_id, job.name, job.model_dump_json()),
            )

    def get_jobs(self, run_id: str) -> list[JobRecord]:
        rows = self._query("SELECT record FROM jobs WHERE run_id = ? ORDER BY name", (run_id,))
        return [JobRecord.model_validate_json(r[0]) for r in rows]

    # -- logs ----------------------------------------------------------------------------------------

    def append_log(self, run_id: str, job: str, seq: int, data: bytes) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO logs (run_id, job, seq, data) VALUES (?, ?, ?, ?)",
                (run_id, job, seq, data),
            )

    def read_log(self, run_id: str, job: str, after: int = -1) -> list[tuple[int, bytes]]:
        rows = self._query(
            "SELECT seq, data FROM logs WHERE run_id = ? AND job = ? AND seq > ? ORDER BY seq",
            (run_id, job, after),
        )
        return [(seq, bytes(data)) for seq, data in rows]

    def clear_log(self, run_id: str, job: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM logs WHERE run_id = ? AND job = ?", (run_id, job))

    # -- executor results ----------------------------------------------------------------------------

    def put_result(self, run_id: str, job: str, result: bytes) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO results (run_id, job, result) VALUES (?, ?, ?)", (run_id, job, result)
            )

    def get_result(self, run_id: str, job: str) -> bytes | None:
        rows = self._query("SELECT result FROM results WHERE run_id = ? AND job = ?", (run_id, job))
        return bytes(rows[0][0]) if rows else None
