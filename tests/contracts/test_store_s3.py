"""S3Store (boto3) passes the store contract against a real S3 server (SeaweedFS)."""

from __future__ import annotations

import io
import os
import re
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from liquid.errors import IntegrityError, InvalidInput, ObjectNotFound, StoreError
from liquid.stores import delete_prefix, open_store, read_bytes, write_bytes
from liquid.stores.base import BufferReadStore
from liquid.stores.guard import Guard, GuardedStore
from liquid.stores.s3 import S3Store, _socket_reader
from liquid.stores.traced import TracedStore

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


def _read_into(store: Any, locator: str, size: int) -> tuple[bytes, list[int]]:
    buf = bytearray(size)
    with memoryview(buf) as view:
        steps = list(store.read_into(locator, view))
    return bytes(buf), steps


@pytest.mark.parametrize("presigned", [True, False], ids=["presigned-get", "sdk-get"])
def test_read_into_fills_the_buffer_in_steps(store_factory: Any, presigned: bool, monkeypatch: Any) -> None:
    store = store_factory()
    if not presigned:
        monkeypatch.setattr(S3Store, "_presigned_get", lambda self, key: None)
    assert isinstance(store, BufferReadStore)
    data = os.urandom(3 * MiB + 5)
    write_bytes(store, "big", data)
    got, steps = _read_into(store, "big", len(data))
    assert got == data
    assert steps[-1] == len(data) and steps == sorted(steps) and len(steps) >= 4  # at most 1 MiB a step
    write_bytes(store, "empty", b"")
    assert _read_into(store, "empty", 0) == (b"", [])
    with pytest.raises(ObjectNotFound):
        store.read_into("absent", memoryview(bytearray(1)))
    with pytest.raises(IntegrityError, match="catalog says 10"):
        store.read_into("big", memoryview(bytearray(10)))


def test_read_into_reuses_the_connection_and_drops_an_abandoned_one(store_factory: Any) -> None:
    store = store_factory()
    data = os.urandom(2 * MiB)
    write_bytes(store, "k", data)
    opened = _count_calls(store, "GetObject")  # only the SDK's get_object emits before-call
    for _ in range(3):
        assert _read_into(store, "k", len(data))[0] == data
    assert opened == []  # every read took the presigned GET
    steps = store.read_into("k", memoryview(bytearray(len(data))))
    next(steps)
    steps.close()  # the rest of the body is never read: that connection must not be reused
    assert _read_into(store, "k", len(data))[0] == data
    assert read_bytes(store, "k") == data


def test_read_into_through_the_guard_holds_a_slot_per_step(store_factory: Any, tmp_path: Any) -> None:
    store = store_factory()
    write_bytes(store, "k", b"x" * (2 * MiB))
    guard = Guard("store:test", what="the test tier", concurrency=1, queue_wait=0.05)
    guarded = GuardedStore(store, guard)
    assert isinstance(guarded, BufferReadStore)
    buf = bytearray(2 * MiB)
    with memoryview(buf) as view:
        steps = guarded.read_into("k", view)
        assert next(steps) > 0
        # Between steps the slot is free again (as between open's chunks).
        assert guarded.head("k").size == 2 * MiB
        assert list(steps)[-1] == 2 * MiB
    assert bytes(buf) == b"x" * (2 * MiB)
    assert not hasattr(GuardedStore(open_store(f"file://{tmp_path}"), guard), "read_into")


def test_read_into_is_one_span_for_the_whole_transfer(store_factory: Any) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from liquid.config import TracingSettings
    from liquid.tracing import Tracing

    spans = InMemorySpanExporter()
    tracing = Tracing.from_settings(TracingSettings(), exporter=spans)
    traced = TracedStore(store_factory(), tracing, name="cold")
    data = os.urandom(MiB + 1)
    write_bytes(traced, "k", data)
    spans.clear()
    assert _read_into(traced, "k", len(data))[0] == data
    (span,) = spans.get_finished_spans()
    assert span.name == "store.open" and span.attributes is not None
    assert span.attributes["liquid.store.op"] == "read_into" and span.attributes["liquid.bytes"] == len(data)


def test_a_body_without_the_usual_http_response_is_copied_in() -> None:
    body = io.BytesIO(b"abcdef")
    readinto, release = _socket_reader(body)
    buf = bytearray(4)
    with memoryview(buf) as view:
        assert readinto(view) == 4
    assert buf == b"abcd"
    release()


def test_a_body_given_as_one_buffer_goes_up_as_it_is(store_factory: Any, monkeypatch: Any) -> None:
    """One ``bytes`` chunk no larger than a part is sent without a copy; anything else is regrouped."""
    store = store_factory(multipart_threshold="6MiB", part_size="5MiB")
    sent: list[Any] = []
    put_object = store.client.put_object

    def spy(**kwargs: Any) -> Any:
        sent.append(kwargs["Body"])
        return put_object(**kwargs)

    monkeypatch.setattr(store.client, "put_object", spy)
    data = os.urandom(3 * MiB + 7)
    assert store.put("one", [data]) == len(data)
    assert sent[-1] is data
    assert read_bytes(store, "one") == data
    pieces = [data[: MiB + 1], data[MiB + 1 :]]  # two chunks: joined into the one part
    assert store.put("two", pieces) == len(data)
    assert sent[-1] == data and sent[-1] is not data
    assert read_bytes(store, "two") == data
    big = os.urandom(11 * MiB)  # one chunk larger than a part: multipart, 5 + 5 + 1 MiB
    parts = _count_calls(store, "UploadPart")
    assert store.put("big", [big]) == len(big)
    assert len(parts) == 3
    assert read_bytes(store, "big") == big
