"""Envelope encryption of cold objects, end to end through the service on real servers."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from liquid.errors import ConfigError, IntegrityError, KeyUnavailable
from liquid.stores.envelope import MAGIC, EnvelopeStore
from tests.security.conftest import ServiceFactory, new_key

PLAIN = (b"patient record: Jane Roe, diagnosis confidential. " * 4000)[:150_000]


def _enc(keys: str) -> dict[str, object]:
    return {"encryption": {"envelope": True, "master_keys": keys}}


def _stored_files(cold_dir: Path, tenant: str) -> list[Path]:
    return [p for p in (cold_dir / tenant).rglob("*") if p.is_file()]


def test_cold_bytes_are_ciphertext_and_reads_return_plaintext(
    make_service: ServiceFactory, tenant: str, cold_dir: Path
) -> None:
    svc = make_service(**_enc(new_key("k1")))
    svc.tenancy.create_tenant(tenant)
    assert isinstance(svc.stores["cold"].store, EnvelopeStore)  # type: ignore[attr-defined]
    info = svc.put(tenant, "docs", "a.txt", PLAIN)
    assert svc.head(tenant, info.ref).home_store == "cold"
    (path,) = _stored_files(cold_dir, tenant)
    raw = path.read_bytes()
    assert raw.startswith(MAGIC)
    assert PLAIN[:64] not in raw and b"Jane Roe" not in raw
    assert svc.get(tenant, info.ref) == PLAIN
    assert svc.get(tenant, info.ref, start=70_000, end=70_100) == PLAIN[70_000:70_100]
    assert svc.get(tenant, info.ref, start=149_990) == PLAIN[149_990:]


def test_without_envelope_the_cold_store_holds_plaintext(
    make_service: ServiceFactory, tenant: str, cold_dir: Path
) -> None:
    # The control for the test above: the same write with encryption off is readable on disk.
    svc = make_service()
    svc.tenancy.create_tenant(tenant)
    svc.put(tenant, "docs", "a.txt", PLAIN)
    (path,) = _stored_files(cold_dir, tenant)
    assert path.read_bytes() == PLAIN


def test_wrong_master_key_fails_clearly(make_service: ServiceFactory, tenant: str) -> None:
    writer = make_service(**_enc(new_key("k1")))
    writer.tenancy.create_tenant(tenant)
    info = writer.put(tenant, "docs", "a.txt", PLAIN)
    impostor = make_service(**_enc(new_key("k1")))  # same id, other key material
    with pytest.raises(KeyUnavailable, match=r"master key 'k1' does not unwrap data key v1 of tenant"):
        impostor.get(tenant, info.ref)
    stranger = make_service(**_enc(new_key("k9")))
    with pytest.raises(KeyUnavailable, match=r"wrapped by master key 'k1', which is not configured"):
        stranger.get(tenant, info.ref)


def test_master_key_rotation_rewraps_and_the_old_key_can_go(
    make_service: ServiceFactory, tenant: str
) -> None:
    old, new = new_key("k1"), new_key("k2")
    first = make_service(**_enc(old))
    first.tenancy.create_tenant(tenant)
    info = first.put(tenant, "docs", "a.txt", PLAIN)

    both = make_service(**_enc(f"{new},{old}"))  # the new key first: it is active
    keys = both.stores["cold"].store.keys  # type: ignore[attr-defined]
    assert keys.rotate_master(tenant=tenant) == (1, [])
    assert keys.count_by_master(tenant=tenant) == {"k2": 1}

    only_new = make_service(**_enc(new))
    assert only_new.get(tenant, info.ref) == PLAIN
    written_after = only_new.put(tenant, "docs", "b.txt", PLAIN[::-1])
    # The rotated-away key reads nothing any more, and says which key it would need.
    only_old = make_service(**_enc(old))
    for ref in (info.ref, written_after.ref):
        with pytest.raises(KeyUnavailable, match="'k2', which is not configured"):
            only_old.get(tenant, ref)


def test_tenant_data_key_rotation_keeps_old_objects_readable(
    make_service: ServiceFactory, tenant: str, cold_dir: Path
) -> None:
    svc = make_service(**_enc(new_key("k1")))
    svc.tenancy.create_tenant(tenant)
    before = svc.put(tenant, "docs", "a.txt", PLAIN)
    keys = svc.stores["cold"].store.keys  # type: ignore[attr-defined]
    assert keys.rotate(tenant) == 2
    after = svc.put(tenant, "docs", "b.txt", PLAIN)
    versions = sorted(int.from_bytes(p.read_bytes()[4:8], "big") for p in _stored_files(cold_dir, tenant))
    assert versions == [1, 2]
    assert svc.get(tenant, before.ref) == svc.get(tenant, after.ref) == PLAIN


def test_tampered_or_truncated_ciphertext_is_refused(
    make_service: ServiceFactory, tenant: str, cold_dir: Path
) -> None:
    svc = make_service(**_enc(new_key("k1")))
    svc.tenancy.create_tenant(tenant)
    info = svc.put(tenant, "docs", "a.txt", PLAIN)
    (path,) = _stored_files(cold_dir, tenant)
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[100] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(IntegrityError, match="does not decrypt"):
        svc.get(tenant, info.ref)
    path.write_bytes(good[: 16 + 65536 + 16])  # cut at a frame boundary: looks whole, is not
    with pytest.raises(IntegrityError):
        svc.get(tenant, info.ref)


def test_every_way_a_read_ends_lets_go_of_the_inner_stream(
    make_service: ServiceFactory, tenant: str, cold_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The inner store's stream holds a file here, a pooled connection on S3: a read that stops
    # early or fails must close it at once, not when the garbage collector gets to the traceback.
    svc = make_service(**_enc(new_key("k1")))
    svc.tenancy.create_tenant(tenant)
    svc.put(tenant, "docs", "a.txt", PLAIN)
    store = svc.stores["cold"].store  # type: ignore[attr-defined]
    assert isinstance(store, EnvelopeStore)
    (stat,) = store.list()
    locator = stat.locator
    opened: list[Iterator[bytes]] = []
    real_open = store.inner.open

    def recording_open(loc: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        stream = real_open(loc, start=start, end=end)
        opened.append(stream)
        return stream

    monkeypatch.setattr(store.inner, "open", recording_open)

    def all_closed() -> bool:
        return bool(opened) and all(inspect.getgeneratorstate(g) == "GEN_CLOSED" for g in opened)  # type: ignore[arg-type]

    reader = store.open(locator)
    assert next(reader) == PLAIN[:65536]
    reader.close()  # a reader that stopped after the first frame
    assert all_closed()
    opened.clear()
    assert b"".join(store.open(locator, start=10, end=20)) == PLAIN[10:20]  # a range ends early
    assert all_closed()
    (path,) = _stored_files(cold_dir, tenant)
    good = path.read_bytes()
    # Flip a bit rather than write a fixed byte: a random byte already is b"x" one time in 256.
    flipped = good[:16] + bytes([good[16] ^ 0x01]) + good[17:]
    for bad, says in ((flipped, "does not decrypt"), (b"plain" * 10, "no LQE1 header")):
        opened.clear()
        path.write_bytes(bad)
        with pytest.raises(IntegrityError, match=says):
            b"".join(store.open(locator))
        assert all_closed()


def test_master_key_config_errors_name_the_problem(make_service: ServiceFactory, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of"):
        make_service(encryption={"envelope": True})
    with pytest.raises(ConfigError, match="bytes, not 32"):
        make_service(**_enc("k1:" + "QUJD"))
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=r"cannot read encryption\.master_keys_file"):
        make_service(encryption={"envelope": True, "master_keys_file": str(missing)})
    keyfile = tmp_path / "keys"
    keyfile.write_text("# active first\n" + new_key("k2").replace(":", "  ") + "\n" + new_key("k1") + "\n")
    os.chmod(keyfile, 0o600)
    make_service(encryption={"envelope": True, "master_keys_file": str(keyfile)})


def test_master_keys_never_appear_in_reprs_or_errors(make_service: ServiceFactory) -> None:
    key = new_key("k1")
    svc = make_service(**_enc(key))
    secret = key.split(":", 1)[1]
    assert secret not in repr(svc.settings) and secret not in repr(svc.stores["cold"].store.keys)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as caught:
        make_service(**_enc("k1:" + secret + "!!"))
    assert secret not in str(caught.value)


def test_cli_rotation(make_service: ServiceFactory, tenant: str, pg_url: str) -> None:
    from typer.testing import CliRunner

    from liquid.cli import app

    old, new = new_key("k1"), new_key("k2")
    svc = make_service(**_enc(old))
    svc.tenancy.create_tenant(tenant)
    info = svc.put(tenant, "docs", "a.txt", PLAIN)
    env = {"LIQUID_CATALOG_URL": pg_url, "LIQUID_ENCRYPTION__ENVELOPE": "true"}
    rotated = CliRunner().invoke(
        app,
        ["encryption", "rotate-tenant", "--tenant", tenant],
        env={**env, "LIQUID_ENCRYPTION__MASTER_KEYS": old},
    )
    assert rotated.exit_code == 0 and "v2" in rotated.output, rotated.output
    # Other tests' tenants in the shared catalog have master keys this run does not hold: the
    # command rewraps what it can, names the rest, and exits 1.
    result = CliRunner().invoke(
        app, ["encryption", "rotate-master"], env={**env, "LIQUID_ENCRYPTION__MASTER_KEYS": f"{new},{old}"}
    )
    assert "rewrapped" in result.output and "with master key 'k2'" in result.output
    assert old.split(":")[1] not in result.output and new.split(":")[1] not in result.output
    assert make_service(**_enc(new)).get(tenant, info.ref) == PLAIN
    off = CliRunner().invoke(app, ["encryption", "status"], env={"LIQUID_CATALOG_URL": pg_url})
    assert off.exit_code == 1
