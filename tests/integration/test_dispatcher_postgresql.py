"""The dispatcher's tests (tests/unit/test_dispatcher.py) again with the store on PostgreSQL:
the same handler, the in-memory broker, every run's step a transaction on a real server."""

from __future__ import annotations

import pytest

from tasuki.shared.store.postgresql import PostgresStore
from tests.unit.conftest import Functions, memory_runtime  # noqa: F401  (memory_runtime: a fixture used below)
from tests.unit.test_dispatcher import *  # noqa: F403  (the dispatcher's tests)


@pytest.fixture
def functions(memory_runtime, postgres_url) -> Functions:  # noqa: F811
    rt = memory_runtime(store_url=postgres_url)
    assert isinstance(rt.store, PostgresStore)
    return Functions(rt)
