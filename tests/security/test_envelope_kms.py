"""Envelope encryption with master keys in KMS, against a real KMS-API server on loopback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from liquid.errors import ConfigError, KeyUnavailable
from liquid.stores.envelope import MAGIC
from tests.security.conftest import KmsServer, ServiceFactory, new_key

PLAIN = (b"patient record: Jane Roe, diagnosis confidential. " * 4000)[:150_000]


def _stored(cold_dir: Path, tenant: str) -> list[bytes]:
    return [p.read_bytes() for p in (cold_dir / tenant).rglob("*") if p.is_file()]


def test_data_keys_are_wrapped_by_kms_and_reads_return_plaintext(
    make_service: ServiceFactory, kms_server: KmsServer, tenant: str, cold_dir: Path
) -> None:
    key = kms_server.new_key()
    svc = make_service(**kms_server.settings(key))
    svc.tenancy.create_tenant(tenant)
    info = svc.put(tenant, "docs", "a.txt", PLAIN)
    (raw,) = _stored(cold_dir, tenant)
    assert raw.startswith(MAGIC) and b"Jane Roe" not in raw
    keys = svc.stores["cold"].store.keys  # type: ignore[attr-defined]
    assert keys.count_by_master(tenant=tenant) == {f"kms:{key}": 1}
    # Another process (no cached data key) unwraps through KMS.
    fresh = make_service(**kms_server.settings(key))
    assert fresh.get(tenant, info.ref) == PLAIN


def test_a_wrong_or_missing_kms_key_fails_clearly(
    make_service: ServiceFactory, kms_server: KmsServer, tenant: str
) -> None:
    key, other = kms_server.new_key(), kms_server.new_key()
    writer = make_service(**kms_server.settings(key))
    writer.tenancy.create_tenant(tenant)
    info = writer.put(tenant, "docs", "a.txt", PLAIN)
    stranger = make_service(**kms_server.settings(other))
    with pytest.raises(KeyUnavailable, match=rf"wrapped by master key 'kms:{key}', which is not configured"):
        stranger.get(tenant, info.ref)
    # The alias now names another key: KMS itself refuses the blob.
    target = kms_server.client.describe_key(KeyId=other)["KeyMetadata"]["KeyId"]
    kms_server.client.update_alias(AliasName=key, TargetKeyId=target)
    impostor = make_service(**kms_server.settings(key))
    with pytest.raises(
        KeyUnavailable, match=rf"'kms:{key}' does not unwrap data key v1 of tenant .*KMS refused"
    ):
        impostor.get(tenant, info.ref)


def test_rotation_from_a_key_file_to_kms(
    make_service: ServiceFactory, kms_server: KmsServer, tenant: str
) -> None:
    local = new_key("k1")
    first = make_service(encryption={"envelope": True, "master_keys": local})
    first.tenancy.create_tenant(tenant)
    info = first.put(tenant, "docs", "a.txt", PLAIN)
    key = kms_server.new_key()
    both = make_service(**kms_server.settings(key, master_keys=local))
    keys = both.stores["cold"].store.keys  # type: ignore[attr-defined]
    assert keys.masters.active_id == f"kms:{key}"
    assert both.get(tenant, info.ref) == PLAIN  # the file key still opens what it wrapped
    assert keys.rotate_master(tenant=tenant) == (1, [])
    assert keys.count_by_master(tenant=tenant) == {f"kms:{key}": 1}
    only_kms = make_service(**kms_server.settings(key))
    assert only_kms.get(tenant, info.ref) == PLAIN
    only_file = make_service(encryption={"envelope": True, "master_keys": local})
    with pytest.raises(KeyUnavailable, match="which is not configured"):
        only_file.get(tenant, info.ref)


def test_kms_out_of_reach_fails_clearly(
    make_service: ServiceFactory, kms_server: KmsServer, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    svc = make_service(
        encryption={
            "envelope": True,
            "kms_keys": ["alias/x"],
            "kms_endpoint": f"http://127.0.0.1:{port}",
            "kms_region": "us-east-1",
        }
    )
    svc.tenancy.create_tenant(tenant)
    with pytest.raises(KeyUnavailable, match="could not reach KMS"):
        svc.put(tenant, "docs", "a.txt", PLAIN)


def test_kms_key_config_errors_name_the_problem(make_service: ServiceFactory, kms_server: KmsServer) -> None:
    with pytest.raises(ConfigError, match="blank or padded"):
        make_service(**kms_server.settings(" alias/x"))
