"""The redaction hook: text payloads are stored redacted in every tier; others are untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from liquid.config import Settings
from liquid.errors import ConfigError, InvalidInput, TooLarge
from liquid.redaction import PatternRedactor
from tests.security.conftest import ServiceFactory

TEXT = (
    "From: ana@example.org\n"
    "aws AKIAIOSFODNN7EXAMPLE\n"
    'config {"password": "hunter2", "region": "eu"}\n'
    "curl -H 'Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345'\n"
    "token=ghp_abcdefghijklmnopqrstuvwxyz0123456789\n"
)


def test_default_patterns_mask_emails_and_credentials() -> None:
    out = PatternRedactor().redact(TEXT)
    for secret in (
        "ana@example.org",
        "AKIAIOSFODNN7EXAMPLE",
        "hunter2",
        "abcdefghijklmnopqrstuvwxyz012345",
        "ghp_",
    ):
        assert secret not in out
    assert '"region": "eu"' in out and "[email]" in out and '"password": "[redacted]"' in out


def test_text_is_stored_redacted_in_every_tier(
    make_service: ServiceFactory, tenant: str, cold_dir: Path
) -> None:
    svc = make_service(redaction={"enabled": True})
    svc.tenancy.create_tenant(tenant)
    small = svc.put(tenant, "notes", "a.txt", TEXT.encode(), content_type="text/plain; charset=utf-8")
    big_text = (TEXT * 50).encode()
    big = svc.put(tenant, "notes", "b.txt", big_text, content_type="text/plain", size_hint=len(big_text))
    binary = svc.put(tenant, "notes", "c.bin", TEXT.encode() * 50, content_type="application/octet-stream")
    for info in (small, big):
        stored = svc.get(tenant, info.ref).decode()
        assert "hunter2" not in stored and "ana@example.org" not in stored and "[redacted]" in stored
        assert svc.head(tenant, info.ref).size == len(stored.encode())
    assert svc.head(tenant, big.ref).home_tier == "cold"
    on_disk = b"".join(p.read_bytes() for p in (cold_dir / tenant).rglob("*") if p.is_file())
    assert b"hunter2" in on_disk  # the binary object, untouched ...
    assert svc.get(tenant, binary.ref) == TEXT.encode() * 50
    assert on_disk.count(b"hunter2") == 50  # ... and nothing from the redacted ones


def test_redaction_limits_and_bad_input(make_service: ServiceFactory, tenant: str) -> None:
    svc = make_service(redaction={"enabled": True, "max_size": 100})
    svc.tenancy.create_tenant(tenant)
    with pytest.raises(TooLarge, match=r"redaction\.max_size"):
        svc.put(tenant, "n", "big.txt", b"x" * 101, content_type="text/plain")
    with pytest.raises(InvalidInput, match="UTF-8"):
        svc.put(tenant, "n", "bad.txt", b"\xff\xfe", content_type="text/plain")
    with pytest.raises(ConfigError, match=r"redaction\.hook"):
        make_service(redaction={"enabled": True, "hook": "no.such.module:f"})


def shout(settings: Settings) -> PatternRedactor:
    """A custom hook for the test below."""
    return PatternRedactor(((r"secret", "[gone]"),))


def test_a_custom_hook_replaces_the_default(make_service: ServiceFactory, tenant: str) -> None:
    svc = make_service(redaction={"enabled": True, "hook": f"{__name__}:shout"})
    svc.tenancy.create_tenant(tenant)
    info = svc.put(tenant, "n", "x.json", b'{"v": "secret", "m": "a@b.io"}', content_type="application/json")
    assert svc.get(tenant, info.ref) == b'{"v": "[gone]", "m": "a@b.io"}'
