"""Several connections opening a new SQLite store at once: each gets its connection (the switch
to WAL, which SQLite does not wait for, is tried again), none fails with "database is locked"."""

from __future__ import annotations

import threading
from pathlib import Path

from tasuki.shared.store.sqlite import SQLiteStore


def _open_at_once(path: Path, count: int) -> list[BaseException]:
    """`count` stores of `path`, each opening its connection in its own thread at the same moment:
    what they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def open_it() -> None:
        start.wait()
        try:
            conn = SQLiteStore(path)._connection()
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        except BaseException as exc:  # collected, asserted by the caller
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_four_threads_opening_a_new_store_at_once_all_get_a_connection(tmp_path):
    for attempt in range(100):  # without the retry, about 1 in 20 of these rounds failed
        assert _open_at_once(tmp_path / f"store{attempt}" / "tasuki.db", 4) == [], f"round {attempt}"
