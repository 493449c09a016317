"""The embedded store: one SQLite file in WAL mode, shared by every local process.

Every write is one `BEGIN IMMEDIATE` transaction, so that read-then-write steps such as
`admit_run` (count a repository's running runs, then admit one) are atomic across processes.

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

from tasuki.shared.errors import StoreError
from tasuki.shared.messages import RUN_FINAL
from tasuki.shared.recipes import Rule
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.store import JobRecord, RulesSync, RunRecord

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
    # 2: trigger rules; runs admitted under a rule's concurrency limit (every older run already was)
    """
    CREATE TABLE rules (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        record TEXT NOT NULL
    );
    ALTER TABLE runs ADD COLUMN admitted INTEGER NOT NULL DEFAULT 0;
    UPDATE runs SET admitted = 1, record = json_set(record, '$.admitted', json('true'));
    CREATE INDEX runs_unfinished ON runs (repository, status);
    """,
    # 3: notes on a run from processes other than the dispatcher (e.g. the host refused a status)
    """
    CREATE TABLE notes (
        run_id TEXT NOT NULL,
        source TEXT NOT NULL,
        message TEXT NOT NULL,
        at TEXT NOT NULL DEFAULT (datetime('now')),
        PRIMARY KEY (run_id, source, message)
    );
    """,
    # 4: repositories registered from the web page or the API (beside the registry file)
    """
    CREATE TABLE repositories (full_name TEXT PRIMARY KEY, record TEXT NOT NULL);
    """,
]

# The statuses of a run that is over, as an SQL list.
_FINAL = "(" + ", ".join(f"'{status}'" for status in sorted(RUN_FINAL)) + ")"
FROM_FILE, FROM_PERSON = "file", "cli"


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

    def seen_delivery(self, key: str) -> bool:
        return bool(self._query("SELECT 1 FROM deliveries WHERE key = ?", (key,)))

    # -- runs ----------------------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> bool:
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO runs (id, repository, status, created_at, admitted, record)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run.id, run.repository, run.status, run.created_at.isoformat(), run.admitted, run.model_dump_json()),
            )
            return cur.rowcount == 1

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._query("SELECT record FROM runs WHERE id = ?", (run_id,))
        return RunRecord.model_validate_json(rows[0][0]) if rows else None

    def list_runs(
        self, *, repository: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        sql = "SELECT record FROM runs WHERE 1=1"
        params: list[str | int] = []
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
                "UPDATE runs SET status = ?, admitted = ?, record = ? WHERE id = ?",
                (run.status, run.admitted, run.model_dump_json(), run.id),
            )

    def unfinished_runs(self, repository: str) -> list[RunRecord]:
        rows = self._query(
            f"SELECT record FROM runs WHERE repository = ? AND status NOT IN {_FINAL} ORDER BY created_at, id",
            (repository,),
        )
        return [RunRecord.model_validate_json(r[0]) for r in rows]

    def admit_run(self, run_id: str, limit: int | None) -> bool:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT repository, status, admitted, created_at FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if row is None or row[1] in RUN_FINAL:
                return False
            repository, _, admitted, created_at = row
            if admitted:
                return True
            if limit is not None:
                going, older_waiting = conn.execute(
                    f"""SELECT COALESCE(SUM(admitted), 0),
                               COALESCE(SUM(NOT admitted AND (created_at < ? OR (created_at = ? AND id < ?))), 0)
                        FROM runs WHERE repository = ? AND status NOT IN {_FINAL} AND id != ?""",
                    (created_at, created_at, run_id, repository, run_id),
                ).fetchone()
                if going >= limit or older_waiting:
                    return False
            conn.execute(
                "UPDATE runs SET admitted = 1, record = json_set(record, '$.admitted', json('true')) WHERE id = ?",
                (run_id,),
            )
            return True

    # -- rules ---------------------------------------------------------------------------------------

    def list_rules(self) -> list[Rule]:
        return [Rule.model_validate_json(r[0]) for r in self._query("SELECT record FROM rules ORDER BY rowid")]

    def get_rule(self, rule_id: str) -> Rule | None:
        rows = self._query("SELECT record FROM rules WHERE id = ?", (rule_id,))
        return Rule.model_validate_json(rows[0][0]) if rows else None

    def add_rule(self, rule: Rule) -> bool:
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO rules (id, source, record) VALUES (?, ?, ?)",
                (rule.id, FROM_PERSON, rule.model_dump_json()),
            )
            return cur.rowcount == 1

    def update_rule(self, rule: Rule) -> bool:
        with self._tx() as conn:
            cur = conn.execute("UPDATE rules SET record = ? WHERE id = ?", (rule.model_dump_json(), rule.id))
            return cur.rowcount == 1

    def delete_rule(self, rule_id: str) -> bool:
        with self._tx() as conn:
            return conn.execute("DELETE FROM rules WHERE id = ?", (rule_id,)).rowcount == 1

    def sync_rules(self, rules: list[Rule]) -> RulesSync:
        added, updated, removed = [], [], []
        with self._tx() as conn:
            stored = {
                rid: (source, Rule.model_validate_json(record))
                for rid, source, record in conn.execute("SELECT id, source, record FROM rules")
            }
            for rule in rules:
                if rule.id not in stored:
                    conn.execute(
                        "INSERT INTO rules (id, source, record) VALUES (?, ?, ?)",
                        (rule.id, FROM_FILE, rule.model_dump_json()),
                    )
                    added.append(rule.id)
                    continue
                source, current = stored[rule.id]
                rule = rule.model_copy(update={"enabled": current.enabled})  # a person's choice stays
                if rule != current or source != FROM_FILE:
                    conn.execute(
                        "UPDATE rules SET source = ?, record = ? WHERE id = ?",
                        (FROM_FILE, rule.model_dump_json(), rule.id),
                    )
                    updated.append(rule.id)
            wanted = {rule.id for rule in rules}
            for rid, (source, _) in stored.items():
                if source == FROM_FILE and rid not in wanted:
                    conn.execute("DELETE FROM rules WHERE id = ?", (rid,))
                    removed.append(rid)
        return RulesSync(added, updated, removed)

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

    # -- notes ---------------------------------------------------------------------------------------

    def add_note(self, run_id: str, source: str, message: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO notes (run_id, source, message) VALUES (?, ?, ?)", (run_id, source, message)
            )

    def get_notes(self, run_id: str) -> list[tuple[str, str]]:
        rows = self._query("SELECT source, message FROM notes WHERE run_id = ? ORDER BY at, rowid", (run_id,))
        return [(source, message) for source, message in rows]

    # -- repositories ----------------------------------------------------------------------------------

    def put_repository(self, full_name: str, config: RepositoryConfig) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO repositories (full_name, record) VALUES (?, ?)",
                (full_name, config.model_dump_json()),
            )

    def get_repository(self, full_name: str) -> RepositoryConfig | None:
        rows = self._query("SELECT record FROM repositories WHERE full_name = ?", (full_name,))
        return RepositoryConfig.model_validate_json(rows[0][0]) if rows else None

    def list_repositories(self) -> dict[str, RepositoryConfig]:
        rows = self._query("SELECT full_name, record FROM repositories ORDER BY full_name")
        return {name: RepositoryConfig.model_validate_json(record) for name, record in rows}

    def delete_repository(self, full_name: str) -> bool:
        with self._tx() as conn:
            return conn.execute("DELETE FROM repositories WHERE full_name = ?", (full_name,)).rowcount == 1

    # -- executor results ----------------------------------------------------------------------------

    def put_result(self, run_id: str, job: str, result: bytes) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO results (run_id, job, result) VALUES (?, ?, ?)", (run_id, job, result))

    def get_result(self, run_id: str, job: str) -> bytes | None:
        rows = self._query("SELECT result FROM results WHERE run_id = ? AND job = ?", (run_id, job))
        return bytes(rows[0][0]) if rows else None
