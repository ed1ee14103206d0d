"""The core service on real PostgreSQL, Valkey and a local cold store."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from liquid.catalog.models import Event, Object
from liquid.errors import (
    Forbidden,
    IntegrityError,
    InvalidInput,
    InvalidRef,
    ObjectGone,
    ObjectNotFound,
    TooLarge,
)
from liquid.hotcache import hot_key
from liquid.refs import RefInfo, ResultRef
from liquid.service import HASH_ASIDE, LiquidService
from liquid.stores.s3 import S3Store

from ..conftest import S3Server
from .conftest import ServiceFactory

MiB = 1024 * 1024


def _row(service: LiquidService, ref: ResultRef) -> Object:
    from sqlalchemy.orm import Session

    with Session(service.engine) as s:
        obj = s.scalars(
            select(Object).where(
                Object.tenant_id == ref.tenant,
                Object.namespace == ref.namespace,
                Object.key == ref.key,
                Object.version == ref.version,
            )
        ).one()
        s.expunge(obj)
        return obj


def _events(service: LiquidService, tenant: str) -> list[str]:
    with service.engine.connect() as conn:
        return list(conn.scalars(select(Event.kind).where(Event.tenant_id == tenant).order_by(Event.id)))


def _pattern(n: int, seed: int = 0) -> Iterator[bytes]:
    """n deterministic pseudo-random bytes in odd-sized chunks, never all in memory."""
    block = hashlib.sha256(str(seed).encode()).digest() * 8191  # 262112 bytes, not a power of two
    sent = 0
    while sent < n:
        piece = block[: min(len(block), n - sent)]
        sent += len(piece)
        yield piece


def _sha_of(chunks: Iterator[bytes]) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for c in chunks:
        h.update(c)
        n += len(c)
    return n, h.hexdigest()


# ---------------------------------------------------------------- sizes and tiers


@pytest.mark.parametrize("size", [0, 1, 4095])
def test_values_under_the_inline_threshold_come_back_inline(
    service: LiquidService, tenant: str, size: int
) -> None:
    data = os.urandom(size)
    info = service.put(tenant, "results", f"inline-{size}", data)
    assert info.inline == data
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.to_json()["size"] == size
    head = service.head(tenant, info.ref)
    assert (head.home_tier, head.home_store) == ("warm", "catalog")
    assert service.get(tenant, info.ref) == data
    # The ref JSON alone resolves the value without touching any store.
    assert service.open(tenant, RefInfo.from_json(info.to_json())).source == "inline"


@pytest.mark.parametrize(
    ("size", "store"), [(4096, "catalog"), (4097, "catalog"), (64 * 1024, "catalog"), (64 * 1024 + 1, "warm")]
)
def test_warm_values_not_inline_live_in_their_row_or_the_warm_store(
    service: LiquidService, tenant: str, size: int, store: str
) -> None:
    data = os.urandom(size)
    for hint in (None, size):
        info = service.put(tenant, "results", f"warm-{size}-{hint}", data, size_hint=hint)
        assert info.inline is None
        assert "inline" not in info.to_json()
        head = service.head(tenant, info.ref)
        assert (head.home_tier, head.home_store) == ("warm", store)
        assert service.get(tenant, info.ref) == data


def test_large_objects_are_born_cold_with_and_without_size_hint(service: LiquidService, tenant: str) -> None:
    data = os.urandom(2 * MiB)
    hinted = service.put(tenant, "artifacts", "hinted", data, size_hint=len(data))
    streamed = service.put(tenant, "artifacts", "streamed", iter([data[:100], data[100:]]))
    for info in (hinted, streamed):
        assert service.head(tenant, info.ref).home_tier == "cold"
        assert service.get(tenant, info.ref) == data


def test_50_mib_streamed_round_trip(service: LiquidService, tenant: str) -> None:
    n = 50 * MiB
    size, sha = _sha_of(_pattern(n, seed=50))
    info = service.put(tenant, "big", "fifty", _pattern(n, seed=50))
    assert (info.size, info.sha256) == (size, sha)
    reader = service.open(tenant, info.ref)
    assert reader.source == "cold"
    assert _sha_of(iter(reader)) == (size, sha)


@pytest.mark.slow
def test_1_gib_streamed_round_trip(service: LiquidService, tenant: str) -> None:
    n = 1024 * MiB
    size, sha = _sha_of(_pattern(n, seed=1))
    info = service.put(tenant, "big", "one-gib", _pattern(n, seed=1))
    assert (info.size, info.sha256) == (size, sha)
    assert _sha_of(iter(service.open(tenant, info.ref))) == (size, sha)


def test_file_objects_are_read_in_chunks(service: LiquidService, tenant: str, tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(3 * MiB + 5))
    with path.open("rb") as fh:
        info = service.put(tenant, "files", "blob", fh)
    assert service.get(tenant, info.ref) == path.read_bytes()


# ---------------------------------------------------------------- ranges


@pytest.mark.parametrize("key,size", [("inline", 100), ("row", 10_000), ("warm", 200_000), ("cold", 3 * MiB)])
def test_ranges(service: LiquidService, tenant: str, key: str, size: int) -> None:
    data = os.urandom(size)
    info = service.put(tenant, "ranges", key, data)
    for start, end in [
        (0, 1),
        (5, 50),
        (size - 10, size),
        (size - 10, size + 100),
        (size, None),
        (size + 5, None),
    ]:
        reader = service.open(tenant, info.ref, start=start, end=end)
        assert reader.read() == data[start:end], (start, end)
    with pytest.raises(InvalidInput, match="invalid range"):
        service.open(tenant, info.ref, start=10, end=5)


# ---------------------------------------------------------------- keys and input


@pytest.mark.parametrize("key", ["données/日本語/ключ 🚀.json", "a@b", "100%/x y", "k" * 1000])
def test_unicode_and_odd_keys_round_trip(service: LiquidService, tenant: str, key: str) -> None:
    info = service.put(tenant, "keys", key, b"v")
    assert ResultRef.parse(info.uri) == info.ref
    assert service.get(tenant, info.uri) == b"v"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("../escape", "'..' segment"),
        ("a/../../b", "'..' segment"),
        ("nul\x00byte", "U+0000"),
        ("k" * 2048, "2048 bytes"),
        ("/abs", "starts with '/'"),
    ],
)
def test_hostile_keys_are_refused_and_leave_nothing(
    service: LiquidService, tenant: str, key: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        service.put(tenant, "keys", key, b"x" * 10_000)
    with service.engine.connect() as conn:
        assert conn.scalar(select(Object.id).where(Object.tenant_id == tenant)) is None
    assert _events(service, tenant) == ["tenant.created"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"content_type": ""}, "content_type"),
        ({"tags": {"k": "v\x00"}}, "tags"),
        ({"trace_id": "a\x00b"}, "trace_id"),
        ({"ttl": -5}, "ttl"),
        ({"expires_at": datetime(2030, 1, 1)}, "expires_at"),
    ],
)
def test_bad_options_name_the_field(service: LiquidService, tenant: str, kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        service.put(tenant, "ns", "k", b"x", **kwargs)
    assert exc.value.field == field


def test_unknown_tenant_is_a_clear_error(service: LiquidService) -> None:
    """The write statement looks the tenant up itself (no foreign keys): nothing may be left behind."""
    with pytest.raises(InvalidInput, match="tenant 'no-such-tenant' does not exist"):
        service.put("no-such-tenant", "ns", "k", b"x")
    with pytest.raises(InvalidInput, match="tenant 'no-such-tenant' does not exist"):
        service.put("no-such-tenant", "ns", "k", b"x" * 100_000)  # born in a store: its bytes removed
    with service.engine.connect() as conn:
        for table in ("key_heads", "objects", "events"):
            n = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE tenant_id = 'no-such-tenant'")
            ).scalar()
            assert n == 0, f"{table} kept a row of a put that failed"


def test_max_object_size_enforced_while_streaming(
    make_service: ServiceFactory, tenant: str, cold_dir: Path
) -> None:
    svc = make_service(max_object_size=3 * MiB, inline_threshold=1024)
    before = {p for p in cold_dir.rglob("*") if p.is_file()}
    with pytest.raises(TooLarge, match="maximum size of 3145728"):
        svc.put(tenant, "ns", "too-big", _pattern(10 * MiB))
    with pytest.raises(TooLarge):
        svc.put(tenant, "ns", "too-big", b"x", size_hint=4 * MiB)
    assert {p for p in cold_dir.rglob("*") if p.is_file()} == before, "no partial bytes may remain"
    with pytest.raises(ObjectNotFound):
        svc.latest(tenant, "ns", "too-big")


@pytest.mark.parametrize("cold", ["file", "s3"])
def test_a_large_buffer_is_stored_whole_and_hashed_beside_its_upload(
    make_service: ServiceFactory,
    base_settings: dict[str, Any],
    tenant: str,
    s3_server: S3Server,
    shared_bucket: str,
    cold: str,
) -> None:
    stores = dict(base_settings["stores"])
    if cold == "s3":
        stores["cold"] = s3_server.store_url(shared_bucket, f"whole-{uuid.uuid4().hex[:8]}")
    svc = make_service(stores=stores, inline_threshold=0, warm_max_object_size=0)
    for n in (HASH_ASIDE, HASH_ASIDE + 12345, 9 * MiB + 1):  # the last one: an S3 multipart upload
        data = os.urandom(n)
        info = svc.put(tenant, "whole", f"k{n}", data, size_hint=n)
        assert (info.size, info.sha256) == (n, hashlib.sha256(data).hexdigest())
        row = _row(svc, info.ref)
        assert (row.home_tier, row.sha256, row.size) == ("cold", info.sha256, n)
        assert svc.get(tenant, info.ref) == data


def test_a_large_buffer_too_large_or_of_another_length_leaves_nothing(
    make_service: ServiceFactory, tenant: str, cold_dir: Path
) -> None:
    svc = make_service(max_object_size=3 * MiB, inline_threshold=0, warm_max_object_size=0)
    before = {p for p in cold_dir.rglob("*") if p.is_file()}
    with pytest.raises(TooLarge, match="maximum size of 3145728"):
        svc.put(tenant, "whole", "too-big", os.urandom(3 * MiB + 1))
    with pytest.raises(InvalidInput, match="declared length is 2097153"):
        svc.put(tenant, "whole", "liar", os.urandom(2 * MiB), size_hint=2 * MiB + 1)
    assert {p for p in cold_dir.rglob("*") if p.is_file()} == before, "no bytes may remain"
    for key in ("too-big", "liar"):
        with pytest.raises(ObjectNotFound):
            svc.latest(tenant, "whole", key)


def test_declared_length_mismatch_is_refused(service: LiquidService, tenant: str) -> None:
    with pytest.raises(InvalidInput, match="declared length is 9000"):
        service.put(tenant, "ns", "liar", b"y" * 8000, size_hint=9000)


# ---------------------------------------------------------------- versions


def test_versions_are_immutable_and_increasing(service: LiquidService, tenant: str) -> None:
    refs = [service.put(tenant, "ns", "k", f"v{i}".encode()).ref for i in range(3)]
    assert [r.version for r in refs] == [1, 2, 3]
    assert [service.get(tenant, r) for r in refs] == [b"v0", b"v1", b"v2"]
    assert service.latest(tenant, "ns", "k") == refs[-1]


def test_concurrent_writers_of_one_key_get_distinct_versions(service: LiquidService, tenant: str) -> None:
    n = 24
    barrier = threading.Barrier(8)

    def write(i: int) -> tuple[int, bytes]:
        if i < 8:
            barrier.wait()
        body = f"writer-{i}".encode() * (1 + (i % 3) * 3000)  # inline, warm and mixed sizes
        return service.put(tenant, "race", "same-key", body).ref.version, body

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(write, range(n)))
    versions = sorted(v for v, _ in results)
    assert versions == list(range(1, n + 1))
    for version, body in results:
        assert service.get(tenant, ResultRef(tenant, "race", "same-key", version)) == body


# ---------------------------------------------------------------- integrity


def test_corrupted_cold_bytes_raise_integrity_error(
    service: LiquidService, tenant: str, cold_dir: Path
) -> None:
    data = os.urandom(2 * MiB)
    info = service.put(tenant, "ns", "victim", data)
    row = _row(service, info.ref)
    path = cold_dir / row.locator
    raw = bytearray(path.read_bytes())
    raw[12345] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="do not match the catalog"):
        service.get(tenant, info.ref)
    # Streaming readers never see the final chunk of a corrupt object.
    seen = 0
    with pytest.raises(IntegrityError):
        for chunk in service.open(tenant, info.ref):
            seen += len(chunk)
    assert seen < len(data)


def test_cold_s3_bytes_altered_in_the_server_fail_the_read(
    make_service: ServiceFactory,
    base_settings: dict[str, Any],
    tenant: str,
    s3_server: S3Server,
    shared_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"tamper-{uuid.uuid4().hex[:8]}"
    cold = s3_server.store_url(shared_bucket, prefix)
    svc = make_service(
        stores={**base_settings["stores"], "cold": cold}, inline_threshold=0, warm_max_object_size=0
    )
    data = os.urandom(3 * MiB + 123)  # the last step of the read is a short one
    info = svc.put(tenant, "ns", "victim", data)
    row = _row(svc, info.ref)
    assert (row.home_tier, row.home_store) == ("cold", "cold")
    key = f"{prefix}/{row.locator}"
    server = s3_server.client()
    assert svc.get(tenant, info.ref) == data

    def no_stream(self: S3Store, locator: str, **_: Any) -> Iterator[bytes]:
        raise AssertionError("get must read the whole object into one buffer, not stream it")

    with monkeypatch.context() as m:
        m.setattr(S3Store, "open", no_stream)
        assert svc.get(tenant, info.ref) == data
        # One flipped bit in the first step, in the middle, and the very last byte (the last step).
        for offset in (10, len(data) // 2, len(data) - 1):
            altered = bytearray(data)
            altered[offset] ^= 0x01
            server.put_object(Bucket=shared_bucket, Key=key, Body=bytes(altered))
            with pytest.raises(IntegrityError, match="do not match the catalog"):
                svc.get(tenant, info.ref)
        # A shorter object is refused before its bytes are read.
        server.put_object(Bucket=shared_bucket, Key=key, Body=data[:-1])
        with pytest.raises(IntegrityError, match="catalog says"):
            svc.get(tenant, info.ref)
    # The streamed read (the API's) refuses it too, and never releases its last chunk.
    server.put_object(Bucket=shared_bucket, Key=key, Body=bytes(altered))
    seen = 0
    with pytest.raises(IntegrityError):
        for chunk in svc.open(tenant, info.ref):
            seen += len(chunk)
    assert 0 < seen < len(data)
    server.put_object(Bucket=shared_bucket, Key=key, Body=data)
    assert svc.get(tenant, info.ref) == data
    # Gone from the server: a clear not-found, through the streamed read's own check.
    server.delete_object(Bucket=shared_bucket, Key=key)
    with pytest.raises(ObjectNotFound):
        svc.get(tenant, info.ref)


def test_truncated_warm_bytes_raise_integrity_error(service: LiquidService, tenant: str) -> None:
    info = service.put(tenant, "ns", "victim", os.urandom(100_000))
    locator = _row(service, info.ref).locator
    with service.engine.begin() as conn:
        conn.execute(
            text("UPDATE liquid_blob_chunks SET data = substring(data from 1 for 10) WHERE locator = :l"),
            {"l": locator},
        )
    with pytest.raises(IntegrityError):
        service.get(tenant, info.ref)


def test_corrupted_inline_row_raises_integrity_error(service: LiquidService, tenant: str) -> None:
    info = service.put(tenant, "ns", "tiny", b"original")
    with service.engine.begin() as conn:
        conn.execute(
            text("UPDATE objects SET inline_data = 'tampered' WHERE tenant_id = :t AND key = 'tiny'"),
            {"t": tenant},
        )
    with pytest.raises(IntegrityError, match="inline bytes"):
        service.get(tenant, info.ref)
    # A client holding the original ref JSON still gets its own, verified inline bytes.
    assert service.get(tenant, info) == b"original"


def test_corrupted_hot_copy_is_bypassed_and_dropped(service: LiquidService, tenant: str) -> None:
    data = os.urandom(50_000)
    info = service.put(tenant, "ns", "cached", data)
    r = info.ref
    oid = service.fast.find(r.tenant, r.namespace, r.key, r.version).id
    assert service.open(tenant, r).source == "warm"
    assert service.get(tenant, r) == data
    assert service.open(tenant, r).source == "warm"  # reads never fill the hot tier themselves
    assert service.fill_hot(r, oid)  # the tiering engine's fill
    assert service.open(tenant, r).source == "hot"
    hot = service.hot
    assert hot is not None
    raw = bytearray(hot.client.get(hot_key(r)))  # type: ignore[arg-type]
    raw[-1] ^= 0x01
    hot.client.set(hot_key(r), bytes(raw))
    reader = service.open(tenant, r)
    assert reader.source == "warm"
    assert reader.read() == data
    assert hot.client.get(hot_key(r)) is None  # dropped, never served
    assert service.fill_hot(r, oid)
    assert service.open(tenant, r).source == "hot"  # refilled with good bytes


def test_reads_work_without_redis(make_service: ServiceFactory, base_settings: dict, tenant: str) -> None:
    # Port 1 on loopback: nothing listens, so every Redis call fails fast.
    svc = make_service(stores={**base_settings["stores"], "hot": "redis://127.0.0.1:1/0"})
    data = os.urandom(20_000)
    info = svc.put(tenant, "ns", "k", data)
    assert svc.get(tenant, info.ref) == data
    assert svc.get(tenant, info.ref) == data
    assert svc.hot is not None and svc.hot.errors >= 2 and svc.hot.hits == 0


# ---------------------------------------------------------------- compression


def test_zstd_namespaces_store_compressed_and_read_plain(
    make_service: ServiceFactory, tenant: str, cold_dir: Path
) -> None:
    svc = make_service(compression={"docs": "zstd"})
    text_body = b"the quick brown fox jumps over the lazy dog\n" * 60_000  # ~2.6 MB: cold
    warm_body = b"lorem ipsum " * 20_000  # 240 kB: warm store, not the row
    cold = svc.put(tenant, "docs", "big.txt", text_body, content_type="text/plain")
    warm = svc.put(tenant, "docs", "small.txt", warm_body)
    plain = svc.put(tenant, "other", "big.txt", text_body)
    for info, body in ((cold, text_body), (warm, warm_body)):
        head = svc.head(tenant, info.ref)
        assert head.compression == "zstd"
        assert head.size == len(body)
        assert head.stored_size < len(body) // 10
        assert svc.get(tenant, info.ref) == body
        assert svc.get(tenant, info.ref, start=1000, end=1100) == body[1000:1100]
    assert (cold_dir / _row(svc, cold.ref).locator).stat().st_size == svc.head(tenant, cold.ref).stored_size
    assert svc.head(tenant, plain.ref).compression == "none"


# ---------------------------------------------------------------- delete, list, events


def test_delete_tombstones_purges_and_answers_gone(
    service: LiquidService, tenant: str, cold_dir: Path
) -> None:
    info = service.put(tenant, "ns", "doomed", os.urandom(2 * MiB))
    service.get(tenant, info.ref)
    locator = _row(service, info.ref).locator
    assert (cold_dir / locator).exists()
    deleted = service.delete(tenant, info.ref, actor="test")
    assert deleted.state == "deleted"
    with pytest.raises(ObjectGone, match="was purged"):
        service.get(tenant, info.ref)
    with pytest.raises(ObjectGone):
        service.head(tenant, info.ref)
    assert not (cold_dir / locator).exists()
    assert service.hot is not None and service.hot.client.get(hot_key(info.ref)) is None
    assert _events(service, tenant)[-3:] == ["object.created", "object.deleted", "object.purged"]
    service.delete(tenant, info.ref)  # idempotent
    assert _events(service, tenant)[-1] == "object.purged"


def test_legal_hold_blocks_delete(service: LiquidService, tenant: str) -> None:
    info = service.put(tenant, "audit", "payload", b"evidence", legal_hold=True)
    with pytest.raises(Forbidden, match="legal hold"):
        service.delete(tenant, info.ref)
    assert service.get(tenant, info.ref) == b"evidence"


def test_list_latest_versions_with_prefix_and_pages(service: LiquidService, tenant: str) -> None:
    for key in ["a/1", "a/2", "a/3", "b/1", "a_x"]:
        service.put(tenant, "ns", key, key.encode())
    service.put(tenant, "ns", "a/2", b"second version")
    service.delete(tenant, service.put(tenant, "ns", "a/gone", b"x").ref)
    page = service.list(tenant, "ns", prefix="a/", limit=2)
    assert [str(i.ref.key) for i in page.items] == ["a/1", "a/2"]
    assert page.items[1].ref.version == 2
    rest = service.list(tenant, "ns", prefix="a/", after=page.next_cursor)
    assert [i.ref.key for i in rest.items] == ["a/3"]
    assert rest.next_cursor is None
    # '_' in a prefix is literal, not a LIKE wildcard.
    assert [i.ref.key for i in service.list(tenant, "ns", prefix="a_").items] == ["a_x"]
    versions = service.list(tenant, "ns", prefix="a/2", all_versions=True, limit=1)
    assert [i.ref.version for i in versions.items] == [2]
    assert [
        i.ref.version
        for i in service.list(tenant, "ns", prefix="a/2", all_versions=True, after=versions.next_cursor).items
    ] == [1]
    with pytest.raises(InvalidInput, match="cursor"):
        service.list(tenant, "ns", after="garbage")


def test_metadata_is_recorded(service: LiquidService, tenant: str) -> None:
    expires = datetime(2031, 1, 1, tzinfo=UTC)
    info = service.put(
        tenant,
        "ns",
        "meta",
        b"m" * 5000,
        content_type="application/json",
        tags={"team": "ml"},
        classification="internal",
        trace_id="tr-1",
        correlation_id="co-1",
        execution_id="ex-1",
        expires_at=expires,
    )
    head = service.head(tenant, info.ref)
    assert head.tags == {"team": "ml"}
    assert (head.classification, head.trace_id, head.correlation_id, head.execution_id) == (
        "internal",
        "tr-1",
        "co-1",
        "ex-1",
    )
    assert head.expires_at == expires
    assert head.content_type == "application/json"


def test_ttl_uses_the_injected_clock(make_service: ServiceFactory, tenant: str) -> None:
    now = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    svc = make_service()
    svc.clock = lambda: now
    info = svc.put(tenant, "ns", "short-lived", b"x", ttl=timedelta(minutes=5))
    head = svc.head(tenant, info.ref)
    assert head.created_at == now
    assert head.expires_at == now + timedelta(minutes=5)


def test_event_log_is_append_only(service: LiquidService, tenant: str) -> None:
    service.put(tenant, "ns", "k", b"x")
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError, match="append-only"), service.engine.begin() as conn:
        conn.execute(text("UPDATE events SET kind = 'forged' WHERE tenant_id = :t"), {"t": tenant})
    with pytest.raises(DBAPIError, match="append-only"), service.engine.begin() as conn:
        conn.execute(text("DELETE FROM events WHERE tenant_id = :t"), {"t": tenant})


# ---------------------------------------------------------------- tenancy


def test_other_tenants_objects_are_indistinguishable_from_missing(
    service: LiquidService, tenant: str, other_tenant: str
) -> None:
    info = service.put(tenant, "secret", "plans", os.urandom(10_000))
    missing = ResultRef(tenant, "secret", "nothing-here", 1)
    with pytest.raises(ObjectNotFound) as theirs:
        service.get(other_tenant, info.ref)
    with pytest.raises(ObjectNotFound) as absent:
        service.get(other_tenant, missing)
    assert str(theirs.value).replace("plans", "X") == str(absent.value).replace("nothing-here", "X")
    for call in (service.head, service.delete):
        with pytest.raises(ObjectNotFound):
            call(other_tenant, info.ref)
    assert service.list(other_tenant, "secret").items == []
    assert service.get(tenant, info.ref)  # still there


def test_api_keys_are_hashed_and_revocable(service: LiquidService, tenant: str) -> None:
    key = service.tenancy.create_api_key(tenant, name="worker")
    principal = service.tenancy.authenticate(key)
    assert (principal.tenant, principal.role) == (tenant, "tenant")
    with service.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT string_agg(secret_sha256 || prefix || name, ',') FROM api_keys")
        ).scalar()
    assert key.split("_", 2)[2] not in stored
    from liquid.errors import Unauthorized

    for bad in (key + "x", key[:-1], "lq_nope_nope", "", "Bearer " + key):
        with pytest.raises(Unauthorized):
            service.tenancy.authenticate(bad)
    service.tenancy.revoke_api_key(principal.key_prefix)
    with pytest.raises(Unauthorized):
        service.tenancy.authenticate(key)
    admin = service.tenancy.authenticate(service.tenancy.create_api_key(None, admin=True))
    assert admin.is_admin and admin.tenant is None


def test_duplicate_tenant_conflicts(service: LiquidService, tenant: str) -> None:
    from liquid.errors import Conflict

    with pytest.raises(Conflict, match="already exists"):
        service.tenancy.create_tenant(tenant)
    with pytest.raises(InvalidInput, match="not a valid name"):
        service.tenancy.create_tenant("Bad Name")


def test_malformed_ref_strings_are_invalid_not_missing(service: LiquidService, tenant: str) -> None:
    with pytest.raises(InvalidRef):
        service.get(tenant, "liquid://nope")


def test_scope_is_recorded_and_validated(service: LiquidService, tenant: str) -> None:
    info = service.put(tenant, "wf", "step-out", b"x", scope="step", execution_id="ex-9")
    assert service.head(tenant, info.ref).scope == "step"
    with pytest.raises(InvalidInput, match="scope must be one of") as exc:
        service.put(tenant, "wf", "k", b"x", scope="forever")
    assert exc.value.field == "scope"
    with pytest.raises(InvalidInput, match="needs an execution_id"):
        service.put(tenant, "wf", "k", b"x", scope="execution")


def test_finish_execution_is_idempotent_and_logged(make_service: ServiceFactory, tenant: str) -> None:
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    svc = make_service()
    svc.clock = lambda: t0
    assert svc.finish_execution(tenant, "ex-1", actor="worker") == t0
    assert svc.finish_execution(tenant, "ex-1", at=t0 + timedelta(hours=1)) == t0
    assert _events(svc, tenant).count("execution.finished") == 1


def test_prefetch_keeps_order_propagates_errors_and_stops_early() -> None:
    from liquid.service import _prefetched

    assert list(_prefetched(iter([b"a", b"b", b"c"]))) == [b"a", b"b", b"c"]

    def failing() -> Iterator[bytes]:
        yield b"ok"
        raise IntegrityError("store broke mid-read")

    got = []
    with pytest.raises(IntegrityError, match="mid-read"):
        for chunk in _prefetched(failing()):
            got.append(chunk)
    assert got == [b"ok"]

    closed = threading.Event()

    def endless() -> Iterator[bytes]:
        try:
            while True:
                yield b"x" * 10
        finally:
            closed.set()

    stream = _prefetched(endless())
    assert next(stream) == b"x" * 10
    stream.close()  # the consumer gives up: the reader thread stops and the source is closed
    assert closed.wait(5)


def test_prefetch_does_not_stall_or_leak_when_a_reader_stops_during_a_slow_read() -> None:
    """A store read hung when the consumer left: the consumer returns at once, the source is
    closed when the read ends (the old code waited 5 s, then leaked the source)."""
    from liquid.service import _prefetched

    reading, unblock, closed = threading.Event(), threading.Event(), threading.Event()

    def hung_store() -> Iterator[bytes]:
        try:
            yield b"first"
            reading.set()
            unblock.wait(30)  # a socket read the store's timeout will end
            yield b"late"
        finally:
            closed.set()

    stream = _prefetched(hung_store())
    assert next(stream) == b"first"
    assert reading.wait(5)
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 0.5
    assert not closed.is_set()
    unblock.set()
    assert closed.wait(5), "the source of an abandoned read was never closed"
    deadline = time.monotonic() + 5
    while any(t.name == "liquid-prefetch" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "liquid-prefetch" for t in threading.enumerate())
