"""Secrets (S3 keys in store URLs, master keys, the signing secret) never reach logs, reprs or errors."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from liquid.config import load_settings
from liquid.doctor import run_doctor
from liquid.errors import ConfigError
from tests.conftest import S3Server
from tests.security.conftest import ServiceFactory, new_key


@pytest.fixture(scope="module")
def bucket(shared_bucket: str) -> str:
    return shared_bucket


def test_no_secret_in_debug_logs_reprs_or_doctor(
    make_service: ServiceFactory,
    s3_server: S3Server,
    bucket: str,
    tenant: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    master = new_key("k1")
    signing = "signing-secret-never-shown"
    cold = s3_server.store_url(bucket, f"secrets-{tenant}")
    overrides: dict[str, Any] = {
        "encryption": {"envelope": True, "master_keys": master},
        "api": {"signing_secret": signing},
    }
    with caplog.at_level(logging.DEBUG):
        svc = make_service(**overrides, stores={"warm": "catalog", "cold": cold}, tiers={"hot": None})
        svc.tenancy.create_tenant(tenant)
        info = svc.put(tenant, "docs", "a", b"x" * 5000)
        assert svc.get(tenant, info.ref) == b"x" * 5000
        checks = run_doctor(svc.settings)
    text = caplog.text + repr(svc.settings) + repr(svc.stores) + "\n".join(c.line() for c in checks)
    for secret in (s3_server.secret_key, master.split(":", 1)[1], signing):
        at = text.find(secret)
        assert at < 0, text[max(0, at - 300) : at + 50]
    assert caplog.records, "debug logging was on: the check above looked at real log lines"


def test_config_errors_do_not_echo_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            catalog_url="postgresql://u:hunter2@db/x",
            stores={"cold": "s3://b?secret_key=hunter3"},
            inline_threshold=-5,
        )
    assert "hunter2" not in str(caught.value) and "hunter3" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_settings(catalog_url="postgresql://u:hunter2@db/x", tiers={"cold": "nope"}, stores={"warm": "x"})
    assert "hunter2" not in str(caught.value)
