"""MinioStore (minio SDK) passes the store contract against a real S3 server (SeaweedFS)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from liquid.errors import StoreError
from liquid.stores import delete_prefix, open_store, write_bytes
from liquid.stores.minio import MinioStore

from ..conftest import S3Server
from .store_contract import StoreContract, StoreFactory


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    return s3_server.make_bucket()


@pytest.fixture
def store_factory(s3_server: S3Server, bucket: str) -> Iterator[StoreFactory]:
    made: list[MinioStore] = []

    def make() -> MinioStore:
        url = s3_server.store_url(bucket, f"t/{uuid.uuid4().hex[:12]}", scheme="minio")
        store = MinioStore(url)
        made.append(store)
        return store

    yield make
    for store in made:
        delete_prefix(store, "")
        store.close()


class TestMinioStore(StoreContract):
    pass


def test_credentials_from_environment(
    s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("MINIO_ACCESS_KEY", s3_server.access_key)
    monkeypatch.setenv("MINIO_SECRET_KEY", s3_server.secret_key)
    store = open_store(f"minio://{bucket}/env?endpoint={s3_server.endpoint}&secure=false&region=us-east-1")
    store.ping()
    write_bytes(store, "k", b"v")
    assert store.delete("k")


def test_wrong_credentials_are_refused(s3_server: S3Server, bucket: str) -> None:
    store = MinioStore(
        f"minio://{bucket}/x?endpoint={s3_server.endpoint}&secure=false&region=us-east-1"
        "&access_key=wrong&secret_key=wrong-secret"
    )
    assert "wrong-secret" not in store.url
    with pytest.raises(StoreError, match=f"minio://{bucket}/x/"):
        store.ping()
    with pytest.raises(StoreError):
        write_bytes(store, "k", b"v")
