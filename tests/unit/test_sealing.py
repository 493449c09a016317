"""Sealed values: what only the functions and the executors may read (clone credentials in orders)."""

from __future__ import annotations

import pytest

from tasuki.shared import codec, sealing
from tasuki.shared.errors import SealError
from tasuki.shared.flowfile import Job
from tasuki.shared.messages import Event, JobOrder, Repository
from tasuki.shared.settings import Settings


def test_a_sealed_value_opens_with_its_key_only_and_shows_nothing():
    key, other = sealing.new_key(), sealing.new_key()
    sealed = sealing.seal_json(key, {"token": "hunter2-secret"})
    assert sealing.unseal_json(key, sealed) == {"token": "hunter2-secret"}
    assert "hunter2" not in sealed.token and str(sealed) == repr(sealed) == "Sealed(***)"
    with pytest.raises(SealError, match="another TASUKI_ORDER_KEY"):
        sealing.unseal(other, sealed)


def test_a_changed_sealed_value_is_refused():
    key = sealing.new_key()
    sealed = sealing.seal(key, b"credentials")
    forged = sealing.Sealed(token=sealed.token[:-6] + ("A" if sealed.token[-6] != "A" else "B") + sealed.token[-5:])
    with pytest.raises(SealError):
        sealing.unseal(key, forged)


def test_an_order_carries_credentials_sealed_through_the_codec_and_in_no_repr():
    key = sealing.new_key()
    event = Event(host="h", event="e", kind="push", delivery_id="d", repository=Repository(full_name="a/b"))
    order = JobOrder(
        run_id="r",
        event=event,
        job=Job(name="j", image="i", run="ci/x"),
        clone_url="https://example.com/a/b.git",
        credentials=sealing.seal_json(key, {"token": "hunter2-secret"}),
    )
    body = codec.encode(order)
    assert b"hunter2" not in body and "hunter2" not in repr(order) and "hunter2" not in str(order)
    back = codec.decode(body, JobOrder)
    assert sealing.unseal_json(key, back.credentials) == {"token": "hunter2-secret"}


def test_the_order_key_is_generated_once_per_data_dir_or_must_be_a_real_key(tmp_path):
    settings = Settings(data_dir=tmp_path)
    key = settings.order_key_value()
    assert key == Settings(data_dir=tmp_path).order_key_value() == (tmp_path / "order.key").read_text()
    assert (tmp_path / "order.key").stat().st_mode & 0o077 == 0
    assert Settings(data_dir=tmp_path, order_key=key).order_key_value() == key
    with pytest.raises(SealError, match="TASUKI_ORDER_KEY: expected a key of 32 bytes"):
        Settings(data_dir=tmp_path, order_key="too-short").order_key_value()
    assert key not in repr(Settings(order_key=key))


def test_the_store_key_is_its_own_key_generated_once_per_data_dir(tmp_path):
    settings = Settings(data_dir=tmp_path)
    key = settings.store_key_value()
    assert key == Settings(data_dir=tmp_path).store_key_value() == (tmp_path / "store.key").read_text()
    assert (tmp_path / "store.key").stat().st_mode & 0o077 == 0
    assert key != settings.order_key_value()
    token = sealing.seal(key, b"webhook-secret")
    assert sealing.unseal(key, token) == b"webhook-secret"
    with pytest.raises(SealError, match="TASUKI_STORE_KEY: expected a key of 32 bytes"):
        Settings(data_dir=tmp_path, store_key="too-short").store_key_value()
    assert key not in repr(Settings(store_key=key))
