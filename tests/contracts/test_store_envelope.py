"""EnvelopeStore (client-side encryption) over a FileStore and over S3 passes the store contract."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from liquid.catalog import db
from liquid.keyring import DataKeys, MasterKeys
from liquid.stores import open_store
from liquid.stores.envelope import EnvelopeStore, plain_size, stored_size
from liquid.stores.files import FileStore
from tests.conftest import S3Server

from .store_contract import StoreContract, StoreFactory


@pytest.fixture(scope="module")
def data_keys(pg_url: str) -> Iterator[DataKeys]:
    engine = db.make_engine(pg_url)
    db.upgrade(engine)
    yield DataKeys(engine, MasterKeys({"test": os.urandom(32)}))
    engine.dispose()


class TestEnvelopeOverFiles(StoreContract):
    @pytest.fixture
    def store_factory(self, tmp_path: Path, data_keys: DataKeys) -> Iterator[StoreFactory]:
        made = iter(range(1000))
        yield lambda: EnvelopeStore(FileStore(tmp_path / f"store{next(made)}", fsync=False), data_keys)


@pytest.fixture(scope="module")
def bucket(shared_bucket: str) -> str:
    return shared_bucket


class TestEnvelopeOverS3(StoreContract):
    @pytest.fixture
    def store_factory(self, s3_server: S3Server, bucket: str, data_keys: DataKeys) -> Iterator[StoreFactory]:
        yield lambda: EnvelopeStore(
            open_store(s3_server.store_url(bucket, f"p/{uuid.uuid4().hex}", part_size="5MiB")), data_keys
        )


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 3 * 65536, 1_000_000])
def test_sizes_round_trip(size: int) -> None:
    assert plain_size(stored_size(size)) == size


def test_no_presign_through_the_envelope(s3_server: S3Server, bucket: str, data_keys: DataKeys) -> None:
    inner = open_store(s3_server.store_url(bucket, "presign"))
    store = EnvelopeStore(inner, data_keys)
    assert not hasattr(store, "presign_get") and not hasattr(store, "presign")
    # A whole read into a buffer would hand over ciphertext: reads go through open, which decrypts.
    assert hasattr(inner, "read_into") and not hasattr(store, "read_into")
