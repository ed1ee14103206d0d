"""The shared-memory tier: same-node hits, and silent fallback for every kind of bad hint."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from liquid import shm as shm_mod
from liquid.client import Client
from liquid.errors import ConfigError
from liquid.refs import IpcHint, RefInfo, ResultRef
from liquid.shm import ShmCache, ShmReader, default_shm_dir, read_ipc

ARROW = "application/vnd.apache.arrow.stream"


def make_table(rows: int = 20_000) -> pa.Table:
    return pa.table({"id": pa.array(range(rows), pa.int64()), "x": pa.array([i * 0.5 for i in range(rows)])})


def wait_for(path: str) -> None:
    """The API writes a copy after the last byte of a GET is sent: give it a moment."""
    deadline = time.monotonic() + 5
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_same_node_hit_is_zero_copy(client: Client, shm_dir: Path) -> None:
    table = make_table()
    ref = client.put_table("tables", "t1", table)
    assert ref.ipc is not None
    assert ref.ipc.node == "test-node" and Path(ref.ipc.path).parent == shm_dir
    assert ref.ipc.checksum == ref.sha256 and ref.ipc.expires_at > datetime.now(UTC)
    before = pa.total_allocated_bytes()
    got = client.get_table(ref)
    assert got.equals(table)
    assert pa.total_allocated_bytes() - before < 4096  # mapped, not copied into Arrow's pool
    assert client.stats.shm == 1 and client.stats.http == 0
    # the JSON form carries the hint, checksum included
    assert RefInfo.from_json(ref.to_json()) == ref


def test_evicted_hint_falls_back(client: Client, shm_dir: Path) -> None:
    table = make_table()
    ref = client.put_table("tables", "t2", table)
    assert ref.ipc is not None
    report = ShmCache(shm_dir, node_id="test-node", max_bytes=0, ttl=900).sweep()  # a cap of 0 evicts all
    assert report.evicted >= 1 and not Path(ref.ipc.path).exists()
    assert client.get_table(ref).equals(table)
    assert client.stats.http == 1 and client.local.shm.fallbacks["missing"] == 1


def test_expired_hint_falls_back(client: Client, shm_dir: Path) -> None:
    table = make_table()
    ref = client.put_table("tables", "t3", table)
    assert ref.ipc is not None
    stale = dataclasses.replace(
        ref, ipc=dataclasses.replace(ref.ipc, expires_at=datetime.now(UTC) - timedelta(1))
    )
    assert client.get_table(stale).equals(table)
    assert client.local.shm.fallbacks["expired"] == 1
    # the sweeper removes copies past their TTL
    later = FakeClock()
    later.now = datetime.now(UTC) + timedelta(hours=1)
    assert (
        ShmCache(shm_dir, node_id="test-node", max_bytes=1 << 30, ttl=900, clock=later).sweep().expired >= 1
    )
    assert not Path(ref.ipc.path).exists()


def test_foreign_node_hint_falls_back(client: Client) -> None:
    table = make_table()
    ref = client.put_table("tables", "t4", table)
    assert ref.ipc is not None
    foreign = dataclasses.replace(ref, ipc=dataclasses.replace(ref.ipc, node="another-node"))
    assert client.get_table(foreign).equals(table)
    assert client.local.shm.fallbacks["foreign-node"] == 1 and client.stats.shm == 0
    assert Path(ref.ipc.path).exists()  # someone else's hint is left alone


def test_corrupted_file_is_detected_and_bypassed(client: Client) -> None:
    table = make_table()
    ref = client.put_table("tables", "t5", table)
    assert ref.ipc is not None
    with open(ref.ipc.path, "r+b") as f:
        f.seek(ref.size // 2)
        byte = f.read(1)
        f.seek(ref.size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert client.get_table(ref).equals(table)
    assert client.local.shm.fallbacks["corrupt"] == 1 and client.stats.shm == 0
    # the bad copy was dropped; the fallback read through the API wrote an intact one
    wait_for(ref.ipc.path)
    assert hashlib.sha256(Path(ref.ipc.path).read_bytes()).hexdigest() == ref.sha256
    assert client.get_table(ref).equals(table) and client.stats.shm == 1


def test_truncated_file_and_verified_once_cache(client: Client, shm_dir: Path) -> None:
    table = make_table()
    ref = client.put_table("tables", "t6", table)
    assert ref.ipc is not None
    assert client.get_table(ref).equals(table)
    assert client.get_table(ref).equals(table)  # second read uses the verified identity
    assert client.stats.shm == 2
    os.truncate(ref.ipc.path, ref.size - 10)
    assert client.get_table(ref).equals(table)
    assert client.local.shm.fallbacks["corrupt"] == 1


def test_untrusted_or_mismatched_hints_fall_back(client: Client, tmp_path: Path) -> None:
    table = make_table(5)
    ref = client.put_table("tables", "t7", table)
    assert ref.ipc is None  # smaller than shm.min_size: no copy
    ref = client.put_table("tables", "t8", make_table())
    assert ref.ipc is not None
    elsewhere = tmp_path / Path(ref.ipc.path).name
    elsewhere.write_bytes(Path(ref.ipc.path).read_bytes())
    for hint, reason in (
        (dataclasses.replace(ref.ipc, path=str(elsewhere)), "untrusted-path"),
        (dataclasses.replace(ref.ipc, path="/etc/passwd"), "untrusted-path"),
        (dataclasses.replace(ref.ipc, checksum="0" * 64), "checksum-mismatch"),
    ):
        assert client.get_table(dataclasses.replace(ref, ipc=hint)).equals(make_table())
        assert client.local.shm.fallbacks[reason] >= 1


def test_get_and_resolve_populate_copies(client: Client, shm_dir: Path) -> None:
    table = make_table()
    ref = client.put_table("tables", "t9", table)
    assert ref.ipc is not None
    os.unlink(ref.ipc.path)
    plain = RefInfo(ref=ref.ref, size=ref.size, sha256=ref.sha256, content_type=ref.content_type)
    assert client.get_table(plain).equals(table)  # a GET through the API writes a fresh copy
    wait_for(ref.ipc.path)
    [resolved] = client.resolve_many([ref.ref])
    assert resolved.ref is not None and resolved.ref.ipc is not None
    assert resolved.ref.ipc.path == ref.ipc.path and Path(ref.ipc.path).exists()
    assert client.get_table(resolved.ref).equals(table)
    assert client.stats.shm == 1


def test_non_arrow_blobs_get_no_copy(client: Client) -> None:
    ref = client.put("blobs", "b", os.urandom(100_000))
    assert ref.ipc is None


# ------------------------------------------------------------------ units


def test_cache_cap_evicts_oldest_first(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = ShmCache(tmp_path, node_id="n", max_bytes=2500, ttl=60, clock=clock)
    hints = []
    for i in range(3):
        data = bytes([i]) * 1000
        sha = hashlib.sha256(data).hexdigest()
        hints.append(cache.put(ResultRef("t", "ns", f"k{i}", 1), [data], sha256=sha))
        clock.now += timedelta(seconds=1)
    assert all(h is not None for h in hints)
    assert not Path(hints[0].path).exists()  # type: ignore[union-attr]
    assert Path(hints[1].path).exists() and Path(hints[2].path).exists()  # type: ignore[union-attr]
    # too big for the cap: no copy; wrong checksum: no copy
    assert cache.put(ResultRef("t", "ns", "big", 1), [b"x" * 3000], sha256="0" * 64) is None
    assert cache.put(ResultRef("t", "ns", "bad", 1), [b"abc"], sha256="0" * 64) is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    clock.now += timedelta(seconds=120)
    assert cache.hint(ResultRef("t", "ns", "k2", 1), "0" * 64) is None
    assert cache.sweep().expired == 2


def test_reader_refuses_symlinks_and_reads_ipc_files(tmp_path: Path) -> None:
    table = make_table(10)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    assert read_ipc(sink.getvalue()).equals(table)
    data = sink.getvalue().to_pybytes()
    sha = hashlib.sha256(data).hexdigest()
    name = shm_mod.file_name(ResultRef("t", "ns", "k", 1), sha)
    target = tmp_path / "real"
    target.write_bytes(data)
    (tmp_path / name).symlink_to(target)
    reader = ShmReader(node_id="n", dirs=[tmp_path])
    hint = IpcHint(
        node="n", path=str(tmp_path / name), expires_at=datetime.now(UTC) + timedelta(1), checksum=sha
    )
    assert reader.read_table(hint, sha256=sha, size=len(data)) is None
    (tmp_path / name).unlink()
    (tmp_path / name).write_bytes(data)
    got = reader.read_table(hint, sha256=sha, size=len(data))
    assert got is not None and got.equals(table)


def test_default_dir_falls_back_without_dev_shm(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_shm_dir().name.startswith("liquid")
    monkeypatch.setattr(shm_mod.os, "access", lambda *a, **k: False)
    assert "liquid-shm-" in default_shm_dir().name
    assert not str(default_shm_dir()).startswith("/dev/shm")


def test_a_pre_existing_loose_directory_is_tightened_and_a_foreign_one_refused(tmp_path: Path) -> None:
    """Copies are tenants' bytes: a 0777 directory left by someone is closed to 0700 before use."""
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    ShmCache(loose, node_id="n", max_bytes=1 << 20, ttl=60)
    assert loose.stat().st_mode & 0o777 == 0o700

    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="symlink") as err:
        ShmCache(link, node_id="n", max_bytes=1 << 20, ttl=60)
    assert err.value.field == "shm.dir"

    if os.geteuid() == 0:  # as root, a directory of another user can be made to test the refusal
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        with pytest.raises(ConfigError, match="uid 65534"):
            ShmCache(foreign, node_id="n", max_bytes=1 << 20, ttl=60)
