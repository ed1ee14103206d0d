"""FileStore passes the store contract; plus what only a filesystem can get wrong."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from liquid.errors import InvalidInput, ObjectNotFound
from liquid.stores import open_store, read_bytes, write_bytes
from liquid.stores.files import TEMP_PREFIX, FileStore

from .store_contract import StoreContract, StoreFactory


@pytest.fixture
def store_factory(tmp_path: Path) -> Iterator[StoreFactory]:
    made = iter(range(1000))
    # fsync off: the contract is about semantics, and fsync on tmpfs-less CI disks is slow.
    yield lambda: FileStore(tmp_path / f"store{next(made)}", fsync=False)


class TestFileStore(StoreContract):
    pass


def test_fsync_on_by_default_and_url_round_trip(tmp_path: Path) -> None:
    store = open_store((tmp_path / "cold").as_uri())
    assert isinstance(store, FileStore)
    assert store.fsync is True
    assert store.url == (tmp_path / "cold").as_uri()
    write_bytes(store, "a/b", b"durable")
    assert read_bytes(store, "a/b") == b"durable"


def test_symlink_escaping_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"top secret")
    store = FileStore(tmp_path / "root")
    os.symlink(outside, store.root / "evil")
    with pytest.raises(InvalidInput, match="outside"):
        store.open("evil/secret")
    with pytest.raises(InvalidInput, match="outside"):
        store.put("evil/new", [b"x"])
    assert not (outside / "new").exists()
    assert [s.locator for s in store.list()] == []


def test_temp_files_are_not_listed_and_reserved(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "root")
    (store.root / f"{TEMP_PREFIX}crashed").write_bytes(b"half")
    assert list(store.list()) == []
    with pytest.raises(InvalidInput, match="reserved"):
        store.put(f"{TEMP_PREFIX}x", [b"x"])


def test_delete_prunes_empty_directories(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "root")
    write_bytes(store, "a/b/c", b"x")
    assert store.delete("a/b/c")
    assert list(store.root.iterdir()) == []
    with pytest.raises(ObjectNotFound):
        store.head("a/b")


@pytest.mark.parametrize(
    "url", ["file://relative/dir", "file://host/abs", "file:///x?fsync=maybe", "file:///x?bogus=1"]
)
def test_bad_file_urls(url: str) -> None:
    with pytest.raises(InvalidInput):
        open_store(url)
