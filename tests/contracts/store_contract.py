"""The contract every :class:`liquid.stores.base.Store` backend passes.

A backend's test module supplies one fixture, ``store_factory``: a callable returning a
fresh, empty store (own bucket prefix, schema, key prefix or directory) that the fixture
cleans up afterwards. Then ``class TestXStore(StoreContract): pass`` runs everything.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from liquid.errors import InvalidInput, ObjectNotFound, StoreError
from liquid.stores import ObjectStat, Store, copy, read_bytes, write_bytes
from liquid.stores.base import CHUNK_SIZE, delete_many

StoreFactory = Callable[[], Store]
MiB = 1024 * 1024

HOSTILE_LOCATORS = [
    "../x",
    "a/../../b",
    "a/./b",
    "a\x00b",
    "x" * 2048,
    "/abs/path",
    "a//b",
    "a\\b",
    "",
]


def random_stream(total: int, digest: hashlib._Hash, piece: int = MiB + 7) -> Iterator[bytes]:
    """``total`` random bytes in odd-sized pieces, hashed on the fly (never all in memory)."""
    left = total
    while left:
        chunk = os.urandom(min(piece, left))
        digest.update(chunk)
        left -= len(chunk)
        yield chunk


def stream_sha(store: Store, locator: str) -> tuple[int, str]:
    digest, n = hashlib.sha256(), 0
    for chunk in store.open(locator):
        digest.update(chunk)
        n += len(chunk)
    return n, digest.hexdigest()


def names(stats: Iterator[ObjectStat]) -> list[str]:
    return [s.locator for s in stats]


class StoreContract:
    """Inherit and provide a ``store_factory`` fixture."""

    @pytest.fixture
    def store(self, store_factory: StoreFactory) -> Store:
        return store_factory()

    def test_is_a_store_with_a_url(self, store: Store) -> None:
        assert isinstance(store, Store)
        assert "://" in store.url
        assert "secret" not in store.url

    def test_ping(self, store: Store) -> None:
        store.ping()

    @pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097])
    def test_round_trip_small(self, store: Store, size: int) -> None:
        data = os.urandom(size)
        assert write_bytes(store, f"obj/{size}", data) == size
        assert read_bytes(store, f"obj/{size}") == data
        assert store.head(f"obj/{size}").size == size

    def test_multi_chunk_object_from_odd_chunks(self, store: Store) -> None:
        data = os.urandom(5 * MiB + 3)
        sizes = [1, 7, 65537, 1_000_003, 3 * MiB]
        pieces, pos, i = [], 0, 0
        while pos < len(data):
            n = sizes[i % len(sizes)]
            pieces.append(data[pos : pos + n])
            pos += n
            i += 1
        assert store.put("multi", iter(pieces)) == len(data)
        got = list(store.open("multi"))
        assert b"".join(got) == data
        assert all(len(c) <= 16 * MiB for c in got), "open must stream in bounded chunks"

    def test_50_mib_streamed_in_bounded_memory(self, store: Store) -> None:
        total = 50 * MiB
        sent = hashlib.sha256()
        tracemalloc.start()
        try:
            assert store.put("big/50", random_stream(total, sent), size_hint=total) == total
            _, peak_put = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            assert stream_sha(store, "big/50") == (total, sent.hexdigest())
            _, peak_get = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # Neither direction may hold the object: a few parts/chunks at most.
        assert peak_put < 40 * MiB, f"put peaked at {peak_put / MiB:.1f} MiB"
        assert peak_get < 40 * MiB, f"open peaked at {peak_get / MiB:.1f} MiB"
        assert store.head("big/50").size == total

    @pytest.mark.slow
    def test_1_gib_streamed(self, store: Store) -> None:
        total = 1024 * MiB
        sent = hashlib.sha256()
        assert store.put("big/1g", random_stream(total, sent, piece=4 * MiB), size_hint=total) == total
        assert stream_sha(store, "big/1g") == (total, sent.hexdigest())
        assert len(read_bytes(store, "big/1g", start=total - 10, end=total + 10)) == 10
        assert store.delete("big/1g")

    def test_ranges(self, store: Store) -> None:
        size = 2 * CHUNK_SIZE + 123  # crosses chunk boundaries of the chunked backends
        data = os.urandom(size)
        write_bytes(store, "r", data)
        windows: list[tuple[int, int | None]] = [
            (0, None),
            (0, 1),
            (0, 10),
            (100, 200),
            (CHUNK_SIZE - 5, CHUNK_SIZE + 5),
            (CHUNK_SIZE, 2 * CHUNK_SIZE),
            (1, size - 1),
            (size - 10, None),
            (size - 10, size + 100),  # past the end: clamped
            (0, size * 2),
            (7, 7),  # empty
            (size - 1, None),
            (size, None),  # start == size
            (size + 10, None),  # start > size
            (size + 10, size + 20),
        ]
        for start, end in windows:
            got = read_bytes(store, "r", start=start, end=end)
            assert got == data[start:end], f"window [{start}, {end})"

    def test_ranges_of_an_empty_object(self, store: Store) -> None:
        write_bytes(store, "empty", b"")
        assert read_bytes(store, "empty") == b""
        assert read_bytes(store, "empty", start=0, end=10) == b""
        assert read_bytes(store, "empty", start=5) == b""

    def test_bad_range_is_invalid_input(self, store: Store) -> None:
        write_bytes(store, "r", b"abc")
        with pytest.raises(InvalidInput):
            store.open("r", start=-1)
        with pytest.raises(InvalidInput):
            store.open("r", start=5, end=2)

    def test_head(self, store: Store) -> None:
        write_bytes(store, "h/x", b"12345")
        stat = store.head("h/x")
        assert stat.locator == "h/x"
        assert stat.size == 5
        if stat.modified is not None:
            assert isinstance(stat.modified, datetime)
            assert stat.modified.tzinfo is not None

    def test_head_of_missing_raises(self, store: Store) -> None:
        with pytest.raises(ObjectNotFound):
            store.head("nope")

    def test_overwrite_replaces(self, store: Store) -> None:
        write_bytes(store, "o", os.urandom(3 * MiB))
        write_bytes(store, "o", b"short")
        assert read_bytes(store, "o") == b"short"
        assert store.head("o").size == 5
        write_bytes(store, "o", b"")
        assert read_bytes(store, "o") == b""
        assert names(store.list()) == ["o"]

    def test_failed_put_leaves_the_old_version(self, store: Store) -> None:
        old = os.urandom(100_000)
        write_bytes(store, "f", old)

        def broken() -> Iterator[bytes]:
            for _ in range(12):
                yield os.urandom(MiB)
            raise RuntimeError("producer died")

        with pytest.raises(RuntimeError, match="producer died"):
            store.put("f", broken())
        with pytest.raises(RuntimeError, match="producer died"):
            store.put("g", broken())
        assert read_bytes(store, "f") == old
        with pytest.raises(ObjectNotFound):
            store.head("g")
        assert names(store.list()) == ["f"]

    def test_readers_see_old_or_new_never_a_mix(self, store: Store) -> None:
        a, b = b"a" * (2 * MiB + 1), b"b" * (MiB // 2)
        write_bytes(store, "flip", a)
        stop = threading.Event()

        # Gaps of varying length between writes: the short ones make reads race a
        # replacement, the long ones let a read finish even on a loaded machine.
        gaps = (0.005, 0.005, 0.05, 0.25)

        def writer() -> None:
            i = 0
            while not stop.is_set():
                write_bytes(store, "flip", b if i % 2 == 0 else a)
                stop.wait(gaps[i % len(gaps)])
                i += 1

        seen, refused = set(), 0
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(writer)
            try:
                deadline = time.monotonic() + 30
                reads = 0
                while reads < 200 and time.monotonic() < deadline and (reads < 30 or not seen):
                    reads += 1
                    try:
                        got = read_bytes(store, "flip")
                    except StoreError:
                        refused += 1  # a backend may refuse a read whose version vanished; never mix
                        continue
                    assert got in (a, b), f"mixed read of {len(got)} bytes"
                    seen.add(got[:1])
            finally:
                stop.set()
            fut.result()
        assert seen, f"every one of {reads} reads was refused ({refused}); none completed"
        assert read_bytes(store, "flip") in (a, b)

    def test_delete_is_idempotent(self, store: Store) -> None:
        write_bytes(store, "d/1", b"x")
        assert store.delete("d/1") is True
        assert store.delete("d/1") is False
        assert store.delete("never/was") is False
        with pytest.raises(ObjectNotFound):
            store.open("d/1")
        with pytest.raises(ObjectNotFound):
            store.head("d/1")
        assert names(store.list()) == []

    def test_delete_many_removes_what_is_there_and_ignores_the_rest(self, store: Store) -> None:
        keys = [f"dm/{i}" for i in range(5)]
        for key in keys:
            write_bytes(store, key, key.encode())
        delete_many(store, [*keys[:3], "dm/absent"])  # in bulk where the backend can
        delete_many(store, [])
        assert names(store.list("dm/")) == keys[3:]
        delete_many(store, keys)
        assert names(store.list("dm/")) == []

    def test_open_of_missing_raises_before_iteration(self, store: Store) -> None:
        with pytest.raises(ObjectNotFound):
            store.open("missing/obj")  # no next(): the error must come from open() itself
        with pytest.raises(ObjectNotFound):
            store.open("missing/obj", start=3, end=3)
        with pytest.raises(FileNotFoundError):  # the built-in base works for non-Liquid callers
            store.open("missing/obj", start=10)

    def test_list_by_prefix_is_sorted_and_scoped(self, store: Store) -> None:
        locs = ["a/2", "a/10", "a/1", "ab", "a-b", "b/1", "a/sub/x", "aa/z"]
        for i, loc in enumerate(locs):
            write_bytes(store, loc, b"x" * i)
        assert names(store.list()) == sorted(locs)
        assert names(store.list("a/")) == ["a/1", "a/10", "a/2", "a/sub/x"]
        assert names(store.list("a")) == sorted(x for x in locs if x.startswith("a"))
        assert names(store.list("a/s")) == ["a/sub/x"]
        assert names(store.list("zz")) == []
        sizes = {s.locator: s.size for s in store.list()}
        assert sizes == {loc: i for i, loc in enumerate(locs)}

    def test_stores_do_not_see_each_other(self, store_factory: StoreFactory) -> None:
        one, two = store_factory(), store_factory()
        write_bytes(one, "shared/name", b"one")
        write_bytes(two, "shared/other", b"two")
        assert names(one.list()) == ["shared/name"]
        assert names(two.list()) == ["shared/other"]
        with pytest.raises(ObjectNotFound):
            two.head("shared/name")

    def test_unicode_locators(self, store: Store) -> None:
        loc = "données/日本語/ключ"
        write_bytes(store, loc, "ü".encode())
        assert read_bytes(store, loc) == "ü".encode()
        assert names(store.list("données/")) == [loc]
        assert store.head(loc).size == 2
        assert store.delete(loc)

    @pytest.mark.parametrize("locator", HOSTILE_LOCATORS, ids=repr)
    def test_hostile_locators_are_refused(self, store: Store, locator: str) -> None:
        with pytest.raises(InvalidInput):
            store.put(locator, [b"evil"])
        with pytest.raises(InvalidInput):
            store.open(locator)
        with pytest.raises(InvalidInput):
            store.head(locator)
        with pytest.raises(InvalidInput):
            store.delete(locator)
        assert names(store.list()) == []

    def test_concurrent_puts_of_different_locators(self, store: Store) -> None:
        payloads = {f"c/{i:02d}": os.urandom(1000 * i + i) for i in range(16)}
        with ThreadPoolExecutor(8) as pool:
            counts = list(pool.map(lambda kv: write_bytes(store, *kv), payloads.items()))
        assert counts == [len(v) for v in payloads.values()]
        assert names(store.list("c/")) == sorted(payloads)
        with ThreadPoolExecutor(8) as pool:
            got = dict(zip(payloads, pool.map(lambda k: read_bytes(store, k), payloads), strict=True))
        assert got == payloads

    def test_copy_within_the_store(self, store: Store) -> None:
        data = os.urandom(CHUNK_SIZE + 5)
        write_bytes(store, "src", data)
        n, digest = copy(store, store, "src", dst_locator="dst")
        assert (n, digest) == (len(data), hashlib.sha256(data).hexdigest())
        assert read_bytes(store, "dst") == data
