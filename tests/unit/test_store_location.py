"""TASUKI_STORE_URL: which backend, where, and errors that name the setting and never the password."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tasuki.local.cli import main as cli
from tasuki.shared.errors import ConfigError, StoreError
from tasuki.shared.settings import Settings
from tasuki.shared.store import new_store, open_store
from tasuki.shared.store.location import parse, redact
from tasuki.shared.store.postgresql import PostgresStore
from tasuki.shared.store.sqlite import SQLiteStore

DATA = Path("/srv/tasuki")


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("", DATA / "tasuki.db"),
        ("sqlite:///var/lib/tasuki/ci.db", Path("/var/lib/tasuki/ci.db")),
        ("sqlite:////var/lib/tasuki/ci.db", Path("/var/lib/tasuki/ci.db")),  # SQLAlchemy's spelling
        ("sqlite:ci.db", Path("ci.db")),
        ("sqlite:state/ci%20db.sqlite", Path("state/ci db.sqlite")),
        ("SQLite:///x.db", Path("/x.db")),
    ],
)
def test_sqlite_urls_name_a_file(url, path):
    where = parse(url, DATA)
    assert (where.backend, where.path) == ("sqlite", path)


def test_a_postgresql_url_goes_to_libpq_as_given_and_is_shown_without_its_password():
    url = "postgresql://ci:p%40ss%3Aword@db.internal:6432/tasuki?sslmode=require"
    where = parse(url, DATA)
    assert (where.backend, where.url) == ("postgresql", url)
    assert where.redacted == str(where) == "postgresql://ci:***@db.internal:6432/tasuki"
    assert "p@ss" not in repr(where)
    # a driver's message that quotes the connection string loses the password, however written
    assert where.scrub("bad token in 'p%40ss%3Aword' (p@ss:word)") == "bad token in '***' (***)"
    assert parse("postgres:///tasuki", DATA).redacted == "postgresql://localhost:5432/tasuki"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://ci:hunter2@db/tasuki", "unknown scheme 'mysql'"),
        ("/var/lib/tasuki.db", "expected sqlite:PATH or postgresql://"),
        ("sqlite://otherhost/ci.db", "not a host"),
        ("sqlite:", "names no file"),
        ("sqlite:///", "names no file"),
        ("sqlite:///var/lib/", "a folder"),
        ("sqlite:///ci.db?mode=ro", "no query"),
        ("postgresql://ci:hunter2@db:54x2/tasuki", "malformed PostgreSQL URL"),
        ("postgresql://ci:hunter2@db:5432/tasuki/more", "expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"),
        ("postgresql://ci:hunter2@db/tasuki#frag", "no #fragment"),
    ],
)
def test_a_bad_url_is_a_config_error_naming_the_setting_and_not_the_password(url, problem):
    with pytest.raises(ConfigError) as caught:
        parse(url, DATA)
    message = str(caught.value)
    assert message.startswith("TASUKI_STORE_URL: ") and problem in message
    assert "hunter2" not in message


def test_redact_hides_the_password_even_of_a_malformed_url():
    assert redact("postgresql://ci:hunter2@db:54x2/tasuki") == "postgresql://ci:***@db:54x2/tasuki"
    assert redact("postgresql://ci@db/tasuki") == "postgresql://ci@db/tasuki"
    assert redact("sqlite:ci.db") == "sqlite:ci.db"


def test_open_store_picks_the_backend_by_scheme_and_connects_to_nothing(tmp_path):
    assert isinstance(open_store(Settings(data_dir=tmp_path)), SQLiteStore)
    assert open_store(Settings(data_dir=tmp_path)) is open_store(Settings(data_dir=tmp_path))  # once per process
    assert not (tmp_path / "tasuki.db").exists()  # lazy: the file appears on first use
    # Nothing listens on port 1: constructing the store must not try
    started = time.monotonic()
    store = new_store(Settings(store_url="postgresql://ci:hunter2@127.0.0.1:1/tasuki"))
    assert isinstance(store, PostgresStore) and time.monotonic() - started < 5
    # first use fails as a StoreError (503 for a handler), saying where, without the password
    with pytest.raises(StoreError) as caught:
        store.get_run("r")
    assert "postgresql://ci:***@127.0.0.1:1/tasuki" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    store.close()


def test_the_command_line_names_a_bad_store_url_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("TASUKI_STORE_URL", "redis://:hunter2@cache/0")
    assert cli(["store", "migrate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tasuki: TASUKI_STORE_URL: unknown scheme 'redis'") and "hunter2" not in err


def test_retention_settings_have_their_defaults_and_zero_keeps_for_ever():
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 6, 1, tzinfo=UTC)
    settings = Settings.from_env({})
    assert (settings.retention_runs_days, settings.retention_deliveries_days) == (90, 7)
    assert settings.retention_cutoffs(now) == (now - timedelta(days=90), now - timedelta(days=7))
    kept = Settings.from_env({"TASUKI_RETENTION_RUNS_DAYS": "0", "TASUKI_RETENTION_DELIVERIES_DAYS": "1"})
    assert kept.retention_cutoffs(now) == (None, now - timedelta(days=1))
    with pytest.raises(ConfigError, match="TASUKI_RETENTION_RUNS_DAYS"):
        Settings.from_env({"TASUKI_RETENTION_RUNS_DAYS": "-1"})
    assert "hunter2" not in repr(Settings(store_url="postgresql://ci:hunter2@db/tasuki"))
