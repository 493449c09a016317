"""The store at rest: the SQLite files are the user's alone, and hold no secret in plain text."""

from __future__ import annotations

import os
import stat

from tasuki.shared import datadir
from tasuki.shared.registry import RepositoryConfig
from tasuki.shared.settings import Settings
from tasuki.shared.store import new_store

SECRET, TOKEN, PASSWORD = b"whsec-Zq8mN3vR5tP1", b"glpat-Xk2Lm9Qw7Er4", b"app-pw-Hj6Tn0Yb3"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_no_secret_is_in_the_database_files_bytes_only_ciphertext(tmp_path):
    # Given a store with a repository registered with a webhook secret and API credentials
    data = tmp_path / "data"
    store = new_store(Settings(data_dir=data))
    config = RepositoryConfig(
        clone_url="https://example.com/api.git",
        secret=SECRET.decode(),
        token=TOKEN.decode(),
        username="ci",
        app_password=PASSWORD.decode(),
    )
    store.put_repository("acme/api", config)
    store.put_repository("acme/api", config)  # written again (a second version of the page)
    assert store.get_repository("acme/api") == config
    # When its files are read as they are on the disk (the database, the WAL before and after a
    # checkpoint)
    files = [data / "tasuki.db", data / "tasuki.db-wal"]
    before = b"".join(f.read_bytes() for f in files if f.exists())
    store._write("PRAGMA wal_checkpoint(TRUNCATE)")
    after = b"".join(f.read_bytes() for f in files if f.exists())
    store.close()
    # Then no secret is in them; the key that opens them is beside, not inside
    assert b"ci" in after and b"example.com/api.git" in before + after  # the bytes were read
    for secret in (SECRET, TOKEN, PASSWORD):
        assert secret not in before and secret not in after
    key = (data / "store.key").read_bytes().strip()
    assert key not in before and key not in after


def test_the_data_dir_is_0700_and_the_database_0600_from_creation(tmp_path, monkeypatch):
    # A permissive umask: what Tasuki makes must not depend on it
    old = os.umask(0o000)
    try:
        data = tmp_path / "deep" / "data"
        store = new_store(Settings(data_dir=data))
        store.put_repository("acme/api", RepositoryConfig(secret="s"))
        assert mode(tmp_path / "deep") == 0o700 and mode(data) == 0o700
        for name in ("tasuki.db", "tasuki.db-wal", "tasuki.db-shm", "store.key"):
            assert mode(data / name) == 0o600, name
        store.close()
    finally:
        os.umask(old)


def test_a_database_an_older_tasuki_left_readable_is_narrowed_when_opened(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("tasuki.db", "tasuki.db-wal"):
        (data / name).touch()
        (data / name).chmod(0o644)
    store = new_store(Settings(data_dir=data, store_key="x" * 43 + "="))
    store.get_run("r")
    assert mode(data / "tasuki.db") == 0o600 and mode(data / "tasuki.db-wal") == 0o600
    store.close()


def test_private_file_is_never_more_open_than_0600(tmp_path):
    old = os.umask(0o000)
    try:
        made = datadir.private_file(tmp_path / "f")
        assert mode(made) == 0o600 and made.read_bytes() == b""
        made.write_bytes(b"kept")
        datadir.private_file(made)  # again: the content stays
        assert made.read_bytes() == b"kept"
    finally:
        os.umask(old)


def test_registered_secrets_are_never_shown_back_by_the_api_or_the_page(memory_runtime):
    from tests.unit.conftest import function_client

    token = "correct horse battery staple"
    memory_runtime(web_token=token)
    client = function_client("web")
    auth = {"Authorization": f"Bearer {token}"}
    made = client.post(
        "/api/repositories",
        json={
            "full_name": "acme/api",
            "clone_url": "https://example.com/api.git",
            "secret": SECRET.decode(),
            "token": TOKEN.decode(),
        },
        headers=auth,
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    listed = client.get("/api/repositories", headers=auth)
    [entry] = listed.get_json()["repositories"]
    assert (entry["full_name"], entry["secret"], entry["token"]) == ("acme/api", True, True)
    client.post("/login", data={"token": token, "next": "/repositories"})
    page = client.get("/repositories").get_data()
    assert b"acme/api" in page
    for shown in (listed.get_data(), page):
        assert SECRET not in shown and TOKEN not in shown
