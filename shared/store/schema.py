"""The store's schema: one numbered list of migrations for both backends.

Version N means the same tables and columns on SQLite and on PostgreSQL. Each migration is SQL
shared by both dialects (`sql`, with `{text}`, `{blob}` and `{now}` standing for the types and
defaults that differ) followed by what only one dialect needs (`sqlite`, `postgresql`): JSON
functions, rebuilding a table (SQLite cannot add a key to one in place), identity columns.
A migration is never edited once released; a change of schema is a new entry at the end.

Conventions both backends keep, so that one query fits both:
- Times are text (`records.stamp`: ISO 8601 in UTC), compared byte by byte: PostgreSQL's text
  columns are declared `COLLATE "C"` (a locale's collation would ignore the punctuation).
- Flags are integers 0/1, not booleans (SQLite has none; PostgreSQL will not mix the two).
- Each record is kept whole as JSON text in `record`, beside the columns that queries filter,
  sort or lock on.
- Upserts are `INSERT ... ON CONFLICT`, which both understand.

`apply` runs the migrations in the caller's transaction; taking the lock that concurrent
starters wait on, reading the version and recording it are the backends' part (`sqlite.py`:
`PRAGMA user_version`; `postgresql.py`: a `tasuki_schema` table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tasuki.shared.errors import StoreError
from tasuki.shared.registry import normalise
from tasuki.shared.store import sealed

Dialect = Literal["sqlite", "postgresql"]

TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"text": "TEXT", "blob": "BLOB", "now": "(datetime('now'))"},
    "postgresql": {
        "text": 'TEXT COLLATE "C"',
        "blob": "BYTEA",
        "now": "(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'))",
    },
}


@dataclass(frozen=True)
class Migration:
    summary: str
    sql: str = ""  # both dialects; {text} {blob} {now} are filled in from TYPES
    sqlite: str = ""  # then SQLite only, as written
    postgresql: str = ""  # then PostgreSQL only, as written
    # Then, for a change SQL cannot make (encrypting values), a function of the migration's
    # transaction (`tx.execute(sql, params)`, `?` placeholders) and the store key (asked for only
    # when needed): the same for both dialects.
    rewrite: Callable[[Any, sealed.Key], None] | None = None

    def statements(self, dialect: Dialect) -> list[str]:
        shared = self.sql.format_map(TYPES[dialect])
        own = self.sqlite if dialect == "sqlite" else self.postgresql
        return [s.strip() for s in (*shared.split(";"), *own.split(";")) if s.strip()]


def key_repository_names(tx: Any, _key: sealed.Key) -> None:
    """Migration 11: each registered repository's name as lookups compare it."""
    for (full_name,) in tx.execute("SELECT full_name FROM repositories").fetchall():
        tx.execute("UPDATE repositories SET name_key = ? WHERE full_name = ?", (normalise(full_name), full_name))


MIGRATIONS: list[Migration] = [
    Migration(
        "runs, jobs, logs, delivery keys, executor results",
        sql="""
        CREATE TABLE deliveries (key {text} PRIMARY KEY, seen_at {text} NOT NULL DEFAULT {now});
        CREATE TABLE runs (
            id {text} PRIMARY KEY,
            repository {text} NOT NULL,
            status {text} NOT NULL,
            created_at {text} NOT NULL,
            record TEXT NOT NULL
        );
        CREATE INDEX runs_by_time ON runs (created_at DESC);
        CREATE INDEX runs_by_repository ON runs (repository, created_at DESC);
        CREATE TABLE jobs (
            run_id {text} NOT NULL,
            name {text} NOT NULL,
            record TEXT NOT NULL,
            PRIMARY KEY (run_id, name)
        );
        CREATE TABLE logs (
            run_id {text} NOT NULL,
            job {text} NOT NULL,
            seq INTEGER NOT NULL,
            data {blob} NOT NULL,
            PRIMARY KEY (run_id, job, seq)
        );
        CREATE TABLE results (
            run_id {text} NOT NULL,
            job {text} NOT NULL,
            result {blob} NOT NULL,
            PRIMARY KEY (run_id, job)
        );
        """,
    ),
    Migration(
        "trigger rules; runs admitted under a rule's concurrency limit (every older run already was)",
        sql="""
        CREATE TABLE rules (id {text} PRIMARY KEY, source {text} NOT NULL, record TEXT NOT NULL);
        ALTER TABLE runs ADD COLUMN admitted INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX runs_unfinished ON runs (repository, status);
        """,
        sqlite="UPDATE runs SET admitted = 1, record = json_set(record, '$.admitted', json('true'))",
        postgresql="UPDATE runs SET admitted = 1, record = jsonb_set(record::jsonb, '{admitted}', 'true')::text",
    ),
    Migration(
        "notes on a run from processes other than the dispatcher (e.g. the host refused a status)",
        sql="""
        CREATE TABLE notes (
            run_id {text} NOT NULL,
            source {text} NOT NULL,
            message {text} NOT NULL,
            at {text} NOT NULL DEFAULT {now},
            PRIMARY KEY (run_id, source, message)
        );
        """,
    ),
    Migration(
        "repositories registered from the web page or the API (beside the registry file)",
        sql="CREATE TABLE repositories (full_name {text} PRIMARY KEY, record TEXT NOT NULL)",
    ),
    Migration(
        "retention (when a run finished, when a delivery was seen, by index); rules and notes keep "
        "the order they were added in a `seq` column (PostgreSQL has no rowid)",
        sql="""
        ALTER TABLE runs ADD COLUMN finished_at {text};
        CREATE INDEX runs_by_finish ON runs (finished_at);
        UPDATE deliveries SET seen_at = replace(seen_at, ' ', 'T') || '+00:00' WHERE seen_at NOT LIKE '%T%';
        CREATE INDEX deliveries_by_time ON deliveries (seen_at);
        """,
        sqlite="""
        UPDATE runs SET finished_at = replace(json_extract(record, '$.finished_at'), 'Z', '+00:00');
        CREATE TABLE rules_new (
            seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, source TEXT NOT NULL, record TEXT NOT NULL
        );
        INSERT INTO rules_new (seq, id, source, record) SELECT rowid, id, source, record FROM rules ORDER BY rowid;
        DROP TABLE rules;
        ALTER TABLE rules_new RENAME TO rules;
        CREATE TABLE notes_new (
            seq INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            source TEXT NOT NULL,
            message TEXT NOT NULL,
            at TEXT NOT NULL,
            UNIQUE (run_id, source, message)
        );
        INSERT INTO notes_new (run_id, source, message, at)
            SELECT run_id, source, message, replace(at, ' ', 'T') || '+00:00' FROM notes ORDER BY at, rowid;
        DROP TABLE notes;
        ALTER TABLE notes_new RENAME TO notes;
        """,
        postgresql="""
        UPDATE runs SET finished_at = replace(record::jsonb ->> 'finished_at', 'Z', '+00:00');
        ALTER TABLE rules ADD COLUMN seq BIGINT GENERATED BY DEFAULT AS IDENTITY;
        ALTER TABLE notes ADD COLUMN seq BIGINT GENERATED BY DEFAULT AS IDENTITY;
        UPDATE notes SET at = replace(at, ' ', 'T') || '+00:00' WHERE at NOT LIKE '%T%';
        """,
    ),
    Migration(
        "web sessions ended by signing out, kept until they would have expired",
        sql="CREATE TABLE ended_sessions (id {text} PRIMARY KEY, expires {text} NOT NULL)",
    ),
    Migration(
        "job leases (attempt, lease expiry), logs by attempt, the dispatcher's outbox, chores done "
        "at most so often (retention); executors no longer record results (the claim keeps a job "
        "from running twice)",
        sql="""
        ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE jobs ADD COLUMN lease_expires {text};
        CREATE INDEX jobs_by_lease ON jobs (lease_expires);
        CREATE TABLE logs_by_attempt (
            run_id {text} NOT NULL,
            job {text} NOT NULL,
            attempt INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            data {blob} NOT NULL,
            PRIMARY KEY (run_id, job, attempt, seq)
        );
        INSERT INTO logs_by_attempt (run_id, job, attempt, seq, data) SELECT run_id, job, 0, seq, data FROM logs;
        DROP TABLE logs;
        ALTER TABLE logs_by_attempt RENAME TO logs;
        DROP TABLE results;
        CREATE TABLE chores (name {text} PRIMARY KEY, at {text} NOT NULL);
        """,
        # The outbox keeps the order its messages were recorded in (`seq`).
        sqlite="""
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL UNIQUE,
            run_id TEXT NOT NULL,
            type TEXT NOT NULL,
            body BLOB NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX outbox_by_run ON outbox (run_id, seq);
        CREATE INDEX outbox_by_time ON outbox (at)
        """,
        postgresql="""
        CREATE TABLE outbox (
            seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            message_id TEXT COLLATE "C" NOT NULL UNIQUE,
            run_id TEXT COLLATE "C" NOT NULL,
            type TEXT COLLATE "C" NOT NULL,
            body BYTEA NOT NULL,
            at TEXT COLLATE "C" NOT NULL
        );
        CREATE INDEX outbox_by_run ON outbox (run_id, seq);
        CREATE INDEX outbox_by_time ON outbox (at)
        """,
    ),
    Migration(
        "the story of every delivery (a step per function that handled it) and the schedule "
        "clock's last claimed minute (issue 16)",
        sql="""
        CREATE TABLE delivery_steps (
            delivery_id {text} NOT NULL,
            step {text} NOT NULL,
            at {text} NOT NULL,
            record TEXT NOT NULL,
            PRIMARY KEY (delivery_id, step)
        );
        CREATE INDEX delivery_steps_by_time ON delivery_steps (at);
        CREATE TABLE clocks (name {text} PRIMARY KEY, minute {text} NOT NULL);
        """,
    ),
    Migration(
        "webhook secrets and API credentials of registered repositories encrypted with the store key "
        "(TASUKI_STORE_KEY), as every newer Tasuki writes them",
        rewrite=sealed.seal_stored_repositories,
    ),
    Migration(
        "job secrets (issue 14): named values per repository and global ones (scope '*'), each "
        "encrypted with TASUKI_STORE_KEY (only the ciphertext is in the database)",
        sql="""
        CREATE TABLE secrets (
            scope {text} NOT NULL,
            name {text} NOT NULL,
            sealed TEXT NOT NULL,
            updated_at {text} NOT NULL,
            PRIMARY KEY (scope, name)
        );
        """,
    ),
    Migration(
        "registered repositories found by their normalised name (no surrounding spaces or slashes, "
        "case folded), one row read instead of every repository opened, at each push a function handles",
        sql="""
        ALTER TABLE repositories ADD COLUMN name_key {text} NOT NULL DEFAULT '';
        CREATE INDEX repositories_by_name_key ON repositories (name_key)
        """,
        rewrite=key_repository_names,
    ),
]

LATEST = len(MIGRATIONS)


def apply(
    tx: Any,
    dialect: Dialect,
    before: int,
    target: int,
    key: sealed.Key,
    record: Callable[[Any, int, Migration], None],
    where: str,
) -> tuple[int, int]:
    """Apply migrations `before`+1 .. `target` in transaction `tx` (`tx.execute(sql, params)`),
    `record(tx, number, migration)` noting each version as it is applied: (version before, after).
    A store newer than this Tasuki (at `where`) is refused, saying what to do."""
    if before > LATEST:
        raise StoreError(
            f"the store at {where} has schema version {before}, newer than this Tasuki knows ({LATEST}): upgrade Tasuki"
        )
    for number in range(before + 1, target + 1):
        migration = MIGRATIONS[number - 1]
        for statement in migration.statements(dialect):
            tx.execute(statement)
        if migration.rewrite is not None:
            migration.rewrite(tx, key)
        record(tx, number, migration)
    return before, max(before, target)
