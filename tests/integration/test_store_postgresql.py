"""What only the PostgreSQL backend has: a server that can refuse, and a schema history table.
(Everything a store does is in test_store_contract.py, on both backends.)"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tasuki.shared.errors import StoreError
from tasuki.shared.settings import Settings
from tasuki.shared.store import LATEST, new_store
from tasuki.shared.store.schema import MIGRATIONS
from tests.postgres import PASSWORD


@pytest.mark.parametrize("password", ["wrong-hunter2", "bad%zzhunter2"])
def test_a_refused_connection_is_a_store_error_without_the_password(postgres, postgres_url, password):
    url = postgres_url.replace(quote(PASSWORD, safe=""), password)
    store = new_store(Settings(store_url=url))
    with pytest.raises(StoreError) as caught:
        store.list_runs()
    message = str(caught.value)
    assert message.startswith("cannot reach PostgreSQL at postgresql://tasuki:***@127.0.0.1:")
    assert "hunter2" not in message
    store.close()


def test_the_schema_history_says_which_migration_ran_when(postgres_url):
    store = new_store(Settings(store_url=postgres_url))
    assert store.migrate(2) == (0, 2)
    assert store.migrate() == (2, LATEST)
    with store._tx() as tx:
        rows = tx.execute("SELECT version, summary FROM tasuki_schema ORDER BY version").fetchall()
    assert rows == [(n + 1, m.summary) for n, m in enumerate(MIGRATIONS)]
    store.close()
