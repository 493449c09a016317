"""The store's queries, written once for both backends.

`SQLStore` implements every `Store` method with SQL that SQLite and PostgreSQL both understand,
written with `?` placeholders (the PostgreSQL backend turns them into `%s`). A backend
(`sqlite.py`, `postgresql.py`) supplies only what differs: connections and transactions, how a
run or a name is locked, and where the schema version is kept.

    with self._tx() as tx:            one write transaction; tx.execute(sql, params) -> cursor
    self._query(sql, params)          one read, outside any transaction
    self._write(sql, params)          one statement that writes, atomic by itself -> rowcount
    self._serialize(tx, kind, name)   hold a lock on `name` until the transaction ends
                                      (SQLite: its one writer lock already does)

To add a store method: declare it on `Store` (shared/store/__init__.py), implement it here once
with `_tx`/`_query`/`_write` (a new table or column is a new entry at the end of `schema.MIGRATIONS`), and
add its test to tests/integration/test_store_contract.py, which runs it on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any, Protocol

from tasuki.shared import schedules
from tasuki.shared.errors import StoreError
from tasuki.shared.messages import RUN_FINAL, utcnow
from tasuki.shared.recipes import Rule
from tasuki.shared.registry import RepositoryConfig, normalise
from tasuki.shared.store import sealed
from tasuki.shared.store.records import JobRecord, OutboxEntry, Position, Pruned, RulesSync, RunRecord, Step, stamp
from tasuki.shared.store.schema import LATEST
from tasuki.shared.store.sealed import Key

# The statuses of a run that is over, as an SQL list.
FINAL = "(" + ", ".join(f"'{status}'" for status in sorted(RUN_FINAL)) + ")"
FROM_FILE, FROM_PERSON = "file", "cli"
# PostgreSQL cannot index a key longer than about 2.7 KB: a note (a host's error message, which
# the host controls) is cut to this many characters.
NOTE_CHARS = 500
PRUNE_BATCH = 500
# Delivery ids and step names are cut to this many characters (a sender names the delivery).
MAX_KEY = 300
# The bytes of one attempt's log (both backends' LENGTH of a blob reads only its size).
LOG_BYTES = "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM logs WHERE run_id = ? AND job = ? AND attempt = ?"


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor: ...


class HeldRun:
    """A run held for one read-decide-write step (see `Store.locked_run`)."""

    def __init__(self, store: SQLStore, tx: Tx, run_id: str) -> None:
        self._store, self._tx, self.run_id = store, tx, run_id
        row = tx.execute("SELECT record FROM runs WHERE id = ?", (run_id,)).fetchone()
        self.run: RunRecord | None = RunRecord.model_validate_json(row[0]) if row else None
        rows = tx.execute("SELECT record FROM jobs WHERE run_id = ? ORDER BY name", (run_id,)).fetchall()
        self.jobs: dict[str, JobRecord] = {j.name: j for j in (JobRecord.model_validate_json(r[0]) for r in rows)}

    def save(self, run: RunRecord) -> None:
        """Record the run (inserted the first time)."""
        if run.id != self.run_id:
            raise ValueError(f"holding run {self.run_id}, asked to save run {run.id}")
        self._tx.execute(*(_insert_run(run) if self.run is None else _update_run(run)))
        self.run = run

    def put_job(self, job: JobRecord) -> None:
        if job.run_id != self.run_id:
            raise ValueError(f"holding run {self.run_id}, asked to put a job of run {job.run_id}")
        self._tx.execute(*_put_job(job))
        self.jobs[job.name] = job

    def send(self, entries: list[OutboxEntry]) -> None:
        """Add messages to the outbox, in this transaction (published once it committed)."""
        now = stamp(utcnow())
        for e in entries:
            if e.run_id != self.run_id:
                raise ValueError(f"holding run {self.run_id}, asked to send a message of run {e.run_id}")
            self._tx.execute(
                "INSERT INTO outbox (message_id, run_id, type, body, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (e.message_id, e.run_id, e.type, e.body, now),
            )

    def admit(self, limit: int | None) -> bool:
        """Give the run a place among its repository's unfinished runs: True if it has one (now
        or before), False while `limit` admitted runs are unfinished or an older run of the
        repository waits for a place (first come, first served; a run waiting for approval does
        not wait for a place yet)."""
        run = self.run
        if run is None or run.status in RUN_FINAL:
            return False
        if run.admitted:
            return True
        self._store._serialize(self._tx, "admit", run.repository)
        if limit is not None:
            created = stamp(run.created_at)
            going, older_waiting = self._tx.execute(
                f"""SELECT COALESCE(SUM(admitted), 0),
                           COALESCE(SUM(CASE WHEN admitted = 0 AND (created_at < ? OR (created_at = ? AND id < ?))
                                             THEN 1 ELSE 0 END), 0)
                    FROM runs WHERE repository = ? AND status NOT IN {FINAL} AND status != 'approval' AND id != ?""",
                (created, created, run.id, run.repository, run.id),
            ).fetchone()
            if going >= limit or older_waiting:
                return False
        self.save(run.model_copy(update={"admitted": True}))
        return True


class SQLStore:
    """Every store method, in SQL both backends understand. Subclasses provide the hooks below.
    `key` gives the store key (TASUKI_STORE_KEY) that seals secrets at rest (`sealed.py`); it is
    asked for only when a secret is written or read."""

    def __init__(self, key: Key | None = None) -> None:
        self._given_key = key

    def _key(self) -> str:
        if self._given_key is None:
            raise StoreError("this store was opened without a store key (TASUKI_STORE_KEY): it cannot keep secrets")
        return self._given_key()

    # -- what a backend provides -------------------------------------------------------------

    def _tx(self) -> AbstractContextManager[Tx]:
        """One write transaction (the schema migrated first); commits at the end of the block."""
        raise NotImplementedError

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one read (the schema migrated first)."""
        raise NotImplementedError

    def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement that writes, atomic by itself (the schema migrated first): its rowcount."""
        raise NotImplementedError

    def _lock_run(self, tx: Tx, run_id: str) -> None:
        """Hold the run (existing or not yet) until the transaction ends."""
        raise NotImplementedError

    def _serialize(self, tx: Tx, kind: str, name: str) -> None:
        """Hold a lock on (kind, name) until the transaction ends."""
        raise NotImplementedError

    def schema_version(self) -> int:
        raise NotImplementedError

    def migrate(self, target: int = LATEST) -> tuple[int, int]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- deliveries ------------------------------------------------------------------------------

    def remember_delivery(self, key: str) -> bool:
        sql = "INSERT INTO deliveries (key, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING"
        return self._write(sql, (key, stamp(utcnow()))) == 1

    def seen_delivery(self, key: str) -> bool:
        return bool(self._query("SELECT 1 FROM deliveries WHERE key = ?", (key,)))

    # -- the story of each delivery (issue 16) ------------------------------------------------------

    def tell(self, delivery_id: str, step: str, record: dict[str, Any], at: datetime | None = None) -> None:
        self._write(
            "INSERT INTO delivery_steps (delivery_id, step, at, record) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (delivery_id, step) DO UPDATE SET record = excluded.record",
            (delivery_id[:MAX_KEY], step[:MAX_KEY], stamp(at or utcnow()), json.dumps(record, default=str)),
        )

    def story(self, delivery_id: str) -> list[Step]:
        rows = self._query(
            "SELECT step, at, record FROM delivery_steps WHERE delivery_id = ? ORDER BY at, step", (delivery_id,)
        )
        return [(step, datetime.fromisoformat(at), json.loads(record)) for step, at, record in rows]

    def stories(self, *, limit: int = 50, before: Position | None = None) -> list[tuple[str, list[Step]]]:
        where, params = "", []
        if before:
            where = "HAVING MIN(at) < ? OR (MIN(at) = ? AND delivery_id < ?)"
            params = [stamp(before[0]), stamp(before[0]), before[1]]
        ids = self._query(
            f"SELECT delivery_id, MIN(at) AS first FROM delivery_steps GROUP BY delivery_id {where}"
            " ORDER BY first DESC, delivery_id DESC LIMIT ?",
            (*params, max(0, limit)),
        )
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        rows = self._query(
            f"SELECT delivery_id, step, at, record FROM delivery_steps WHERE delivery_id IN ({marks}) ORDER BY at, step",
            [row[0] for row in ids],
        )
        steps: dict[str, list[Step]] = {row[0]: [] for row in ids}
        for delivery_id, step, at, record in rows:
            steps[delivery_id].append((step, datetime.fromisoformat(at), json.loads(record)))
        return list(steps.items())

    def claim_minutes(self, clock: str, now: datetime) -> tuple[datetime, datetime] | None:
        # Most ticks come within a minute already claimed: a read says so, no write lock taken.
        rows = self._query("SELECT minute FROM clocks WHERE name = ?", (clock,))
        if rows and schedules.window(datetime.fromisoformat(rows[0][0]), now) is None:
            return None
        with self._tx() as tx:
            self._serialize(tx, "clock", clock)
            row = tx.execute("SELECT minute FROM clocks WHERE name = ?", (clock,)).fetchone()
            claimed = schedules.window(datetime.fromisoformat(row[0]) if row else None, now)
            if claimed is not None:
                tx.execute(
                    "INSERT INTO clocks (name, minute) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET minute = excluded.minute",
                    (clock, stamp(claimed[1])),
                )
            return claimed

    def unclaim_minutes(self, clock: str, claimed: tuple[datetime, datetime]) -> None:
        self._write(
            "UPDATE clocks SET minute = ? WHERE name = ? AND minute = ?",
            (stamp(claimed[0]), clock, stamp(claimed[1])),
        )

    # -- runs ------------------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> bool:
        return self._write(*_insert_run(run)) == 1

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._query("SELECT record FROM runs WHERE id = ?", (run_id,))
        return RunRecord.model_validate_json(rows[0][0]) if rows else None

    def list_runs(
        self,
        *,
        repository: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: Position | None = None,
    ) -> list[RunRecord]:
        sql = "SELECT record FROM runs WHERE 1=1"
        params: list[str | int] = []
        if before:
            sql += " AND (created_at < ? OR (created_at = ? AND id < ?))"
            params.extend((stamp(before[0]), stamp(before[0]), before[1]))
        if repository:
            sql += " AND repository = ?"
            params.append(repository)
        if status:
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(max(0, limit))
        return [RunRecord.model_validate_json(r[0]) for r in self._query(sql, params)]

    def update_run(self, run: RunRecord) -> None:
        self._write(*_update_run(run))

    @contextmanager
    def locked_run(self, run_id: str) -> Iterator[HeldRun]:
        with self._tx() as tx:
            self._lock_run(tx, run_id)
            yield HeldRun(self, tx, run_id)

    def unfinished_runs(self, repository: str) -> list[RunRecord]:
        rows = self._query(
            f"SELECT record FROM runs WHERE repository = ? AND status NOT IN {FINAL} ORDER BY created_at, id",
            (repository,),
        )
        return [RunRecord.model_validate_json(r[0]) for r in rows]

    def admit_run(self, run_id: str, limit: int | None) -> bool:
        with self.locked_run(run_id) as held:
            return held.admit(limit)

    # -- jobs ------------------------------------------------------------------------------------

    def put_job(self, job: JobRecord) -> None:
        self._write(*_put_job(job))

    def get_jobs(self, run_id: str) -> list[JobRecord]:
        rows = self._query("SELECT record FROM jobs WHERE run_id = ? ORDER BY name", (run_id,))
        return [JobRecord.model_validate_json(r[0]) for r in rows]

    # -- rules -----------------------------------------------------------------------------------

    def list_rules(self) -> list[Rule]:
        return [Rule.model_validate_json(r[0]) for r in self._query("SELECT record FROM rules ORDER BY seq")]

    def get_rule(self, rule_id: str) -> Rule | None:
        rows = self._query("SELECT record FROM rules WHERE id = ?", (rule_id,))
        return Rule.model_validate_json(rows[0][0]) if rows else None

    def add_rule(self, rule: Rule) -> bool:
        sql = "INSERT INTO rules (id, source, record) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
        return self._write(sql, (rule.id, FROM_PERSON, rule.model_dump_json())) == 1

    def update_rule(self, rule: Rule) -> bool:
        return self._write("UPDATE rules SET record = ? WHERE id = ?", (rule.model_dump_json(), rule.id)) == 1

    def delete_rule(self, rule_id: str) -> bool:
        return self._write("DELETE FROM rules WHERE id = ?", (rule_id,)) == 1

    def sync_rules(self, rules: list[Rule]) -> RulesSync:
        added, updated, removed = [], [], []
        with self._tx() as tx:
            self._serialize(tx, "rules", "sync")
            stored = {
                rid: (source, Rule.model_validate_json(record))
                for rid, source, record in tx.execute("SELECT id, source, record FROM rules ORDER BY seq").fetchall()
            }
            for rule in rules:
                if rule.id not in stored:
                    tx.execute(
                        "INSERT INTO rules (id, source, record) VALUES (?, ?, ?)",
                        (rule.id, FROM_FILE, rule.model_dump_json()),
                    )
                    added.append(rule.id)
                    continue
                source, current = stored[rule.id]
                rule = rule.model_copy(update={"enabled": current.enabled})  # a person's choice stays
                if rule != current or source != FROM_FILE:
                    tx.execute(
                        "UPDATE rules SET source = ?, record = ? WHERE id = ?",
                        (FROM_FILE, rule.model_dump_json(), rule.id),
                    )
                    updated.append(rule.id)
            wanted = {rule.id for rule in rules}
            for rid, (source, _) in stored.items():
                if source == FROM_FILE and rid not in wanted:
                    tx.execute("DELETE FROM rules WHERE id = ?", (rid,))
                    removed.append(rid)
        return RulesSync(added, updated, removed)

    # -- logs ------------------------------------------------------------------------------------

    def append_log(
        self, run_id: str, job: str, seq: int, data: bytes, *, attempt: int = 1, limit: int | None = None
    ) -> bool:
        with self._tx() as tx:
            row = tx.execute("SELECT attempt, record FROM jobs WHERE run_id = ? AND name = ?", (run_id, job)).fetchone()
            if row is None:
                return False
            # An earlier attempt that ran to its end (then was retried) may still be sending its log.
            if row[0] != attempt and not JobRecord.model_validate_json(row[1]).ran(attempt):
                return False
            if limit is not None:
                self._serialize(tx, "logs", f"{run_id}:{job}:{attempt}")  # two chunks at once cannot both fit
                stored = tx.execute(LOG_BYTES, (run_id, job, attempt)).fetchone()[0]
                if stored + len(data) > limit:
                    return False
            tx.execute(
                "INSERT INTO logs (run_id, job, attempt, seq, data) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (run_id, job, attempt, seq, data),
            )
            return True

    def read_log(
        self, run_id: str, job: str, after: int = -1, *, attempt: int | None = None, limit: int | None = None
    ) -> list[tuple[int, bytes]]:
        page = " LIMIT ?" if limit is not None else ""
        rows_limit = (max(0, limit),) if limit is not None else ()
        if attempt is None:
            rows = self._query(
                "SELECT seq, data FROM logs WHERE run_id = ? AND job = ? AND seq > ? AND attempt ="
                " COALESCE((SELECT attempt FROM jobs WHERE run_id = ? AND name = ?), 0) ORDER BY seq" + page,
                (run_id, job, after, run_id, job, *rows_limit),
            )
        else:
            rows = self._query(
                "SELECT seq, data FROM logs WHERE run_id = ? AND job = ? AND attempt = ? AND seq > ? ORDER BY seq"
                + page,
                (run_id, job, attempt, after, *rows_limit),
            )
        return [(seq, bytes(data)) for seq, data in rows]

    def log_bytes(self, run_id: str, job: str, attempt: int) -> int:
        return int(self._query(LOG_BYTES, (run_id, job, attempt))[0][0])

    # -- the outbox, leases, chores --------------------------------------------------------------

    def outbox(
        self, *, run_id: str | None = None, before: datetime | None = None, limit: int = 500
    ) -> list[OutboxEntry]:
        sql, params = "SELECT message_id, run_id, type, body FROM outbox WHERE 1=1", []
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        if before is not None:
            sql += " AND at < ?"
            params.append(stamp(before))
        sql += " ORDER BY seq LIMIT ?"
        rows = self._query(sql, (*params, max(0, limit)))
        return [OutboxEntry(message_id, run, kind, bytes(body)) for message_id, run, kind, body in rows]

    def clear_outbox(self, message_ids: list[str]) -> None:
        if message_ids:
            marks = ", ".join("?" * len(message_ids))
            self._write(f"DELETE FROM outbox WHERE message_id IN ({marks})", message_ids)

    def expired_leases(self, now: datetime, limit: int = 500) -> list[tuple[str, str, int]]:
        rows = self._query(
            "SELECT run_id, name, attempt FROM jobs WHERE lease_expires IS NOT NULL AND lease_expires < ?"
            " ORDER BY lease_expires LIMIT ?",
            (stamp(now), max(0, limit)),
        )
        return [(run_id, name, attempt) for run_id, name, attempt in rows]

    def due(self, chore: str, now: datetime, *, every: timedelta) -> bool:
        """True (and the chore marked done now) if `chore` was not done in the last `every`: of
        several processes asking at once, one is told yes."""
        return (
            self._write(
                "INSERT INTO chores (name, at) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET at = excluded.at WHERE chores.at < ?",
                (chore, stamp(now), stamp(now - every)),
            )
            == 1
        )

    # -- notes -----------------------------------------------------------------------------------

    def add_note(self, run_id: str, source: str, message: str) -> None:
        if len(message) > NOTE_CHARS:
            message = message[: NOTE_CHARS - 1] + "…"
        self._write(
            "INSERT INTO notes (run_id, source, message, at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (run_id, source, message, stamp(utcnow())),
        )

    def get_notes(self, run_id: str) -> list[tuple[str, str]]:
        rows = self._query("SELECT source, message FROM notes WHERE run_id = ? ORDER BY seq", (run_id,))
        return [(source, message) for source, message in rows]

    # -- repositories ----------------------------------------------------------------------------

    # A repository's webhook secret and API credentials are kept sealed with the store key.

    def put_repository(self, full_name: str, config: RepositoryConfig) -> None:
        self._write(
            "INSERT INTO repositories (full_name, name_key, record) VALUES (?, ?, ?)"
            " ON CONFLICT (full_name) DO UPDATE SET record = excluded.record",
            (full_name, normalise(full_name), sealed.seal_json(self._key, config.model_dump())),
        )

    def get_repository(self, full_name: str) -> RepositoryConfig | None:
        rows = self._query("SELECT record FROM repositories WHERE full_name = ?", (full_name,))
        return self._repository(rows[0][0]) if rows else None

    def find_repository(self, full_name: str) -> tuple[str, RepositoryConfig] | None:
        rows = self._query(
            "SELECT full_name, record FROM repositories WHERE name_key = ? ORDER BY full_name", (normalise(full_name),)
        )
        if not rows:
            return None
        name, record = rows[-1]  # (two that normalise alike are refused; an older store's last wins, as in a list)
        return name, self._repository(record)

    def list_repositories(self) -> dict[str, RepositoryConfig]:
        rows = self._query("SELECT full_name, record FROM repositories ORDER BY full_name")
        return {name: self._repository(record) for name, record in rows}

    def _repository(self, record: str) -> RepositoryConfig:
        """The stored record, its secrets opened (SealError, naming TASUKI_STORE_KEY, with another key)."""
        return RepositoryConfig.model_validate(sealed.open_json(self._key, record))

    def delete_repository(self, full_name: str) -> bool:
        return self._write("DELETE FROM repositories WHERE full_name = ?", (full_name,)) == 1

    # -- job secrets (ciphertext only: shared/vault.py seals and opens them) ---------------------

    def put_secret(self, scope: str, name: str, sealed: str) -> None:
        self._write(
            "INSERT INTO secrets (scope, name, sealed, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (scope, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
            (scope, name, sealed, stamp(utcnow())),
        )

    def delete_secret(self, scope: str, name: str) -> bool:
        return self._write("DELETE FROM secrets WHERE scope = ? AND name = ?", (scope, name)) == 1

    def secret_names(self, scope: str) -> list[str]:
        return [r[0] for r in self._query("SELECT name FROM secrets WHERE scope = ? ORDER BY name", (scope,))]

    def sealed_secrets(self, scope: str, names: Sequence[str]) -> dict[str, str]:
        if not names:
            return {}
        marks = ", ".join("?" * len(names))
        rows = self._query(f"SELECT name, sealed FROM secrets WHERE scope = ? AND name IN ({marks})", (scope, *names))
        return {name: sealed for name, sealed in rows}

    # -- web sessions ----------------------------------------------------------------------------

    def end_session(self, session_id: str, expires: datetime) -> None:
        with self._tx() as tx:
            tx.execute("DELETE FROM ended_sessions WHERE expires < ?", (stamp(utcnow()),))
            tx.execute(
                "INSERT INTO ended_sessions (id, expires) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                (session_id, stamp(expires)),
            )

    def session_ended(self, session_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM ended_sessions WHERE id = ?", (session_id,)))

    # -- retention -------------------------------------------------------------------------------

    def prune(
        self, *, runs_before: datetime | None, deliveries_before: datetime | None, batch: int = PRUNE_BATCH
    ) -> Pruned:
        """Delete the runs that finished before `runs_before` (with their jobs, logs, notes and
        outbox leftovers) and the delivery keys seen before `deliveries_before` (None: keep them), `batch`
        at a time, each batch its own transaction: a large backlog never holds a lock for long."""
        batch = max(1, batch)
        runs = deliveries = 0
        while runs_before is not None:
            with self._tx() as tx:
                rows = tx.execute(
                    f"SELECT id FROM runs WHERE finished_at < ? AND status IN {FINAL} ORDER BY finished_at LIMIT ?",
                    (stamp(runs_before), batch),
                ).fetchall()
                ids = [row[0] for row in rows]
                if ids:  # the runs first: a held run is locked in the same order (run, then its jobs)
                    marks = ", ".join("?" * len(ids))
                    tx.execute(f"DELETE FROM runs WHERE id IN ({marks})", ids)
                    for table in ("jobs", "logs", "notes", "outbox"):
                        tx.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", ids)
            runs += len(ids)
            if len(ids) < batch:
                break
        while deliveries_before is not None:
            gone = self._write(
                "DELETE FROM deliveries WHERE key IN (SELECT key FROM deliveries WHERE seen_at < ? LIMIT ?)",
                (stamp(deliveries_before), batch),
            )
            deliveries += gone
            if gone < batch:
                break
        while deliveries_before is not None:  # the deliveries' stories, kept as long as their keys
            gone = self._write(
                "DELETE FROM delivery_steps WHERE (delivery_id, step) IN"
                " (SELECT delivery_id, step FROM delivery_steps WHERE at < ? LIMIT ?)",
                (stamp(deliveries_before), batch),
            )
            if gone < batch:
                break
        return Pruned(runs, deliveries)


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else stamp(moment)


# Statements used both alone and inside a held run's transaction: (sql, params).


def _insert_run(run: RunRecord) -> tuple[str, tuple]:
    return (
        "INSERT INTO runs (id, repository, status, created_at, admitted, finished_at, record)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            run.id,
            run.repository,
            run.status,
            stamp(run.created_at),
            int(run.admitted),
            _stamp(run.finished_at),
            run.model_dump_json(),
        ),
    )


def _update_run(run: RunRecord) -> tuple[str, tuple]:
    return (
        "UPDATE runs SET status = ?, admitted = ?, finished_at = ?, record = ? WHERE id = ?",
        (run.status, int(run.admitted), _stamp(run.finished_at), run.model_dump_json(), run.id),
    )


def _put_job(job: JobRecord) -> tuple[str, tuple]:
    return (
        "INSERT INTO jobs (run_id, name, attempt, lease_expires, record) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (run_id, name) DO UPDATE SET attempt = excluded.attempt,"
        " lease_expires = excluded.lease_expires, record = excluded.record",
        (job.run_id, job.name, job.attempt, _stamp(job.lease_expires), job.model_dump_json()),
    )
