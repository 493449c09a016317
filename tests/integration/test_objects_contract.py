"""Both object storage backends hold to one contract: a folder, and S3 served by moto's server
mode over real HTTP."""

from __future__ import annotations

import io
import os

import pytest

from tasuki.shared import objects
from tasuki.shared.errors import ConfigError, ObjectMissing, ObjectsError
from tasuki.shared.settings import Settings
from tests.objectstores import moto_endpoint, objects_settings  # noqa: F401  fixtures


@pytest.fixture
def store(objects_settings: Settings) -> objects.Objects:  # noqa: F811
    return objects.new_objects(objects_settings)


def test_put_then_get_returns_the_same_bytes(store) -> None:
    data = os.urandom(3 * objects.CHUNK + 17)
    assert store.put("runs/r1/artifacts/build/dist/app.bin", io.BytesIO(data)) == len(data)
    out = io.BytesIO()
    assert store.get("runs/r1/artifacts/build/dist/app.bin", out) == len(data)
    assert out.getvalue() == data
    assert b"".join(store.chunks("runs/r1/artifacts/build/dist/app.bin")) == data
    assert store.size("runs/r1/artifacts/build/dist/app.bin") == len(data)


def test_a_large_object_goes_up_in_parts(store) -> None:
    data = os.urandom(20 * objects.CHUNK)  # over the multipart threshold
    assert store.put("big", io.BytesIO(data)) == len(data)
    assert store.size("big") == len(data)
    out = io.BytesIO()
    store.get("big", out)
    assert out.getvalue() == data


def test_put_replaces(store) -> None:
    store.put("a/b", io.BytesIO(b"one"))
    store.put("a/b", io.BytesIO(b"two!"))
    out = io.BytesIO()
    store.get("a/b", out)
    assert out.getvalue() == b"two!"
    assert [o.key for o in store.list("a/")] == ["a/b"]


def test_missing_objects(store) -> None:
    with pytest.raises(ObjectMissing):
        store.get("nothing/here", io.BytesIO())
    with pytest.raises(ObjectMissing):
        list(store.chunks("nothing/here"))
    assert store.size("nothing/here") is None
    store.delete("nothing/here")  # no error
    assert store.list("nothing/") == []


def test_list_by_prefix_with_sizes(store) -> None:
    for name, size in (("r/1/x", 1), ("r/1/y/z", 2), ("r/10/x", 3), ("s/1", 4)):
        store.put(name, io.BytesIO(b"." * size))
    assert [(o.key, o.size) for o in store.list("r/1/")] == [("r/1/x", 1), ("r/1/y/z", 2)]
    assert [o.key for o in store.list("r/1")] == ["r/1/x", "r/1/y/z", "r/10/x"]
    assert len(store.list("")) == 4
    assert all(o.modified.tzinfo is not None for o in store.list(""))


def test_delete_and_delete_prefix(store) -> None:
    for name in ("p/a", "p/b/c", "q/a"):
        store.put(name, io.BytesIO(b"x"))
    store.delete("q/a")
    assert store.size("q/a") is None
    assert store.delete_prefix("p/") == 2
    assert store.list("") == []


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "a/../b", "../x", "a//b", "a/./b", "a\x00b"])
def test_keys_that_could_leave_their_place_are_refused(store, bad) -> None:
    with pytest.raises(ObjectsError):
        store.put(bad, io.BytesIO(b"x"))
    with pytest.raises(ObjectsError):
        store.get(bad, io.BytesIO())


def test_key_makes_one_word_of_each_untrusted_part() -> None:
    assert objects.key("caches", "acme/api", "feature/x", "..") == "caches/acme%2Fapi/feature%2Fx/%2E%2E"
    with pytest.raises(ObjectsError):
        objects.key("caches", "")


def test_settings_choose_the_backend(tmp_path) -> None:
    assert isinstance(objects.new_objects(Settings(data_dir=tmp_path)), objects.FolderObjects)
    assert objects.new_objects(Settings(data_dir=tmp_path)).root == tmp_path.resolve() / "objects"
    s3 = objects.new_objects(Settings(objects_url="s3://bucket/some/prefix"))
    assert isinstance(s3, objects.S3Objects) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix/")
    for bad in ("ftp://x/y", "file://relative", "s3://", "s3://b/p?x=1"):
        with pytest.raises(ConfigError, match="TASUKI_OBJECTS_URL"):
            objects.new_objects(Settings(objects_url=bad))


def test_an_unreachable_s3_is_an_objects_error(tmp_path) -> None:
    from tests.conftest import free_port

    store = objects.new_objects(
        Settings(
            objects_url="s3://bucket",
            objects_endpoint_url=f"http://127.0.0.1:{free_port()}",
            objects_access_key_id="k",
            objects_secret_access_key="s",
            objects_region="us-east-1",
        )
    )
    store.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(ObjectsError, match="cannot write object a in s3://bucket/"):
        store.put("a", io.BytesIO(b"x"))
