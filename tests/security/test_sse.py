"""S3 server-side encryption is on unless turned off, and the server receives the header."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from liquid.errors import InvalidInput
from liquid.stores import open_store, read_bytes, write_bytes
from liquid.stores.s3 import S3Store
from tests.conftest import S3Server

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def bucket(shared_bucket: str) -> str:
    return shared_bucket


def _recorded(store: S3Store) -> list[tuple[str, dict[str, str]]]:
    """(operation, headers) of every request the store's client sends from now on, as sent."""
    sent: list[tuple[str, dict[str, str]]] = []

    def record(request: Any, event_name: str, **_: Any) -> None:
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()
        }
        sent.append((event_name.split(".")[-1], headers))

    store.client.meta.events.register("before-send.s3", record)
    return sent


@pytest.mark.parametrize("size", [10, 12 * MiB])  # one PUT, and a multipart upload
def test_sse_is_on_by_default_and_reaches_the_server(s3_server: S3Server, bucket: str, size: int) -> None:
    prefix = f"sse-{size}-{uuid.uuid4().hex[:8]}"
    store = open_store(s3_server.store_url(bucket, prefix, part_size="5MiB", multipart_threshold="6MiB"))
    assert isinstance(store, S3Store) and store.sse == "AES256"
    sent = _recorded(store)
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    write_bytes(store, "obj", data)
    writes = [h for op, h in sent if op in ("PutObject", "CreateMultipartUpload")]
    assert writes and all(h.get("x-amz-server-side-encryption") == "AES256" for h in writes)
    # The server took it as an encrypted object and says so.
    head = s3_server.client().head_object(Bucket=bucket, Key=f"{prefix}/obj")
    assert head.get("ServerSideEncryption") == "AES256"
    assert read_bytes(store, "obj") == data


def test_sse_none_turns_it_off(s3_server: S3Server, bucket: str) -> None:
    store = open_store(s3_server.store_url(bucket, f"off-{uuid.uuid4().hex[:8]}", sse="none"))
    assert isinstance(store, S3Store) and store.sse is None
    sent = _recorded(store)
    write_bytes(store, "obj", b"plain")
    ((_, headers),) = [(op, h) for op, h in sent if op == "PutObject"]
    assert "x-amz-server-side-encryption" not in headers
    assert "sse=none" in store.url


def test_unknown_sse_mode_is_refused(s3_server: S3Server) -> None:
    with pytest.raises(InvalidInput, match="sse must be"):
        open_store(s3_server.store_url("b", "p", sse="rot13"))
