"""S3Store (boto3) passes the store contract against a real S3 server (SeaweedFS)."""

from __future__ import annotations

import os
import re
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from liquid.errors import InvalidInput, StoreError
from liquid.stores import delete_prefix, open_store, read_bytes, write_bytes
from liquid.stores.s3 import S3Store

from ..conftest import S3Server
from .store_contract import StoreContract, StoreFactory

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    return s3_server.make_bucket()


@pytest.fixture
def store_factory(s3_server: S3Server, bucket: str) -> Iterator[StoreFactory]:
    made: list[S3Store] = []

    def make(**options: str) -> S3Store:
        store = S3Store(s3_server.store_url(bucket, f"t/{uuid.uuid4().hex[:12]}", **options))
        made.append(store)
        return store

    yield make
    for store in made:
        delete_prefix(store, "")
        store.close()


class TestS3Store(StoreContract):
    pass


def _count_calls(store: S3Store, operation: str) -> list[Any]:
    calls: list[Any] = []
    store.client.meta.events.register(f"before-call.s3.{operation}", lambda **kw: calls.append(kw))
    return calls


def test_multipart_used_above_threshold_only(store_factory: Any) -> None:
    store = store_factory(multipart_threshold="6MiB", part_size="5MiB")
    parts = _count_calls(store, "UploadPart")
    write_bytes(store, "small", os.urandom(6 * MiB - 1))
    assert parts == []
    data = os.urandom(12 * MiB + 5)
    assert store.put("large", [data[i : i + MiB] for i in range(0, len(data), MiB)]) == len(data)
    assert len(parts) == 3  # 5 + 5 + 2 MiB
    assert read_bytes(store, "large") == data


def test_failed_multipart_is_aborted(s3_server: S3Server, store_factory: Any, bucket: str) -> None:
    store = store_factory(part_size="5MiB")

    def broken() -> Iterator[bytes]:
        yield os.urandom(11 * MiB)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.put("aborted", broken())
    uploads = s3_server.client().list_multipart_uploads(Bucket=bucket, Prefix=store.prefix)
    assert uploads.get("Uploads", []) == []


def test_sse_and_storage_class_accepted(store_factory: Any) -> None:
    store = store_factory(sse="AES256")
    assert "sse=AES256" in store.url
    write_bytes(store, "enc", b"secret bytes")
    assert read_bytes(store, "enc") == b"secret bytes"


def test_wrong_credentials_are_refused(s3_server: S3Server, bucket: str) -> None:
    url = f"s3://{bucket}/x?endpoint={s3_server.endpoint}&region=us-east-1&access_key=wrong&secret_key=wrong-secret"
    store = S3Store(url)
    assert "wrong-secret" not in store.url
    with pytest.raises(StoreError, match=f"s3://{bucket}/x/") as err:
        store.ping()
    assert "wrong-secret" not in str(err.value)
    with pytest.raises(StoreError):
        write_bytes(store, "k", b"v")


def test_unreachable_endpoint_is_store_error() -> None:
    store = S3Store("s3://b/p?endpoint=http://127.0.0.1:1&access_key=a&secret_key=b&retries=1&timeout=2")
    with pytest.raises(StoreError, match=re.escape("127.0.0.1:1")):
        store.ping()


def test_presigned_get(store_factory: Any) -> None:
    store = store_factory()
    write_bytes(store, "shared", b"hello")
    with urllib.request.urlopen(store.presign_get("shared", expires=60)) as resp:
        assert resp.read() == b"hello"


def test_bad_options() -> None:
    with pytest.raises(InvalidInput, match="part_size"):
        open_store("s3://b/p?part_size=1MiB")
    with pytest.raises(InvalidInput, match="unknown s3 store option"):
        open_store("s3://b/p?regoin=us-east-1")
    with pytest.raises(InvalidInput, match="both access_key and secret_key"):
        open_store("s3://b/p?access_key=x")
