"""The store contract (tests/integration/test_store_contract.py) on SQLite alone, in the fast
tier: the same tests, with `backend_url` always a SQLite file."""

from __future__ import annotations

import pytest

from tests.integration.test_store_contract import *  # noqa: F403  (the contract's tests and fixtures)


@pytest.fixture
def backend_url(tmp_path) -> str:
    return f"sqlite://{tmp_path / 'store' / 'tasuki.db'}"
