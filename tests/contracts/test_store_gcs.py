"""GCSStore passes the store contract against the GCS emulator."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from liquid.errors import InvalidInput, StoreError
from liquid.stores import delete_prefix, open_store, read_bytes
from liquid.stores.gcs import GCSStore

from .store_contract import StoreContract, StoreFactory


@pytest.fixture(scope="module")
def bucket(gcs_endpoint: str) -> str:
    name = f"liquid-test-{uuid.uuid4().hex[:12]}"
    client = storage.Client(
        project="liquid",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_endpoint},
    )
    client.create_bucket(name)
    return name


@pytest.fixture
def store_factory(gcs_endpoint: str, bucket: str) -> Iterator[StoreFactory]:
    made: list[GCSStore] = []

    def make() -> GCSStore:
        store = GCSStore(f"gs://{bucket}/t/{uuid.uuid4().hex[:12]}?endpoint={gcs_endpoint}&project=liquid")
        made.append(store)
        return store

    yield make
    for store in made:
        delete_prefix(store, "")
        store.close()


class TestGCSStore(StoreContract):
    pass


def test_missing_bucket_is_store_error(gcs_endpoint: str) -> None:
    store = open_store(f"gs://no-such-bucket-{uuid.uuid4().hex[:8]}/p?endpoint={gcs_endpoint}")
    with pytest.raises(StoreError, match="gs://no-such-bucket"):
        store.ping()


def test_unreachable_endpoint_is_store_error() -> None:
    store = GCSStore("gs://b/p?endpoint=http://127.0.0.1:1&timeout=2")
    with pytest.raises(StoreError, match=re.escape("127.0.0.1:1")):
        store.ping()


def test_chunk_size_must_be_a_multiple_of_256k() -> None:
    with pytest.raises(InvalidInput, match="256KiB"):
        open_store("gs://b/p?endpoint=http://127.0.0.1:1&chunk_size=1000")


def test_a_body_given_as_one_buffer_goes_up_as_it_is(store_factory: StoreFactory, monkeypatch: Any) -> None:
    """One ``bytes`` chunk no larger than a chunk of the upload is sent without a copy."""
    store = store_factory()
    sent: list[Any] = []
    upload = storage.Blob.upload_from_string

    def spy(self: storage.Blob, data: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(data)
        return upload(self, data, *args, **kwargs)

    monkeypatch.setattr(storage.Blob, "upload_from_string", spy)
    data = os.urandom(1024 * 1024 + 3)
    assert store.put("one", [data]) == len(data)
    assert sent[-1] is data
    assert read_bytes(store, "one") == data
    assert store.put("two", [data[:1000], data[1000:]]) == len(data)  # joined, then sent
    assert sent[-1] == data and sent[-1] is not data
    assert read_bytes(store, "two") == data
