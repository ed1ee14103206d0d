"""``liquid doctor`` against real servers: a working deployment, then broken ones."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from liquid.catalog import db
from liquid.cli import app
from liquid.config import load_settings
from liquid.doctor import PROBE_PREFIX, run_doctor
from liquid.policy.store import apply_policies
from tests.conftest import S3Server

POLICY = """
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: to-archive}
spec:
  rules:
    - {tier: warm, demoteAfter: 1d}
    - {tier: archive}
"""


@pytest.fixture(scope="module")
def catalog(pg_url: str) -> Iterator[str]:
    """A catalog database of its own, so the policies applied here are the only ones."""
    name = f"doctor_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    db.upgrade(engine)
    apply_policies(engine, {"p.yaml": POLICY}, actor="test", clock=lambda: datetime.now(UTC))
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def bucket(shared_bucket: str) -> str:
    return shared_bucket


@pytest.fixture
def config(catalog: str, redis_url: str, s3_server: S3Server, bucket: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "catalog_url": catalog,
        "stores": {
            "hot": redis_url,
            "warm": "catalog",
            "cold": s3_server.store_url(bucket, f"cold-{uuid.uuid4().hex[:8]}"),
            "archive": f"file://{tmp_path}/archive",
        },
        "tiers": {"hot": "hot", "warm": "warm", "cold": "cold", "archive": "archive"},
    }


def _by_name(checks: list[Any]) -> dict[str, Any]:
    return {c.name: c for c in checks}


def test_working_deployment_passes_every_check(
    config: dict[str, Any], s3_server: S3Server, bucket: str
) -> None:
    checks = run_doctor(load_settings(**config))
    failed = [c.line() for c in checks if c.status == "FAIL"]
    assert not failed, failed
    names = set(_by_name(checks))
    assert {"config", "catalog", "migrations", "clock", "policy tiers"} <= names
    assert {"store:hot", "store:warm", "store:cold", "store:archive"} <= names
    # The probes were deleted again.
    prefix = config["stores"]["cold"].split("/")[3].split("?")[0]
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{PROBE_PREFIX}")
    assert listed.get("KeyCount", 0) == 0


def test_cli_exit_codes_and_one_line_per_check(config: dict[str, Any], s3_server: S3Server) -> None:
    env = {"LIQUID_CATALOG_URL": config["catalog_url"], "LIQUID_STORES": json.dumps(config["stores"]),
           "LIQUID_TIERS": json.dumps(config["tiers"])}  # fmt: skip
    ok = CliRunner().invoke(app, ["doctor"], env=env, catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    lines = ok.output.strip().splitlines()
    assert all(line.split()[0] in ("ok", "warn") for line in lines), ok.output
    # The S3 credentials in the store URL never reach the output.
    assert s3_server.secret_key not in ok.output

    broken = {**config["stores"], "cold": s3_server.store_url("no-such-bucket-here", "x")}
    bad = CliRunner().invoke(app, ["doctor"], env={**env, "LIQUID_STORES": json.dumps(broken)})
    assert bad.exit_code == 1
    (line,) = [x for x in bad.output.splitlines() if "store:cold" in x]
    assert line.startswith("FAIL") and "->" in line
    assert s3_server.secret_key not in bad.output


def test_broken_deployment_names_each_failure(
    config: dict[str, Any], s3_server: S3Server, bucket: str
) -> None:
    stores = {
        **config["stores"],
        "hot": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        "cold": s3_server.store_url(bucket, "c", secret_key="wrong-secret"),
    }
    tiers = {**config["tiers"], "archive": None}  # the policy still archives
    ahead = lambda: datetime.now(UTC) + timedelta(minutes=5)  # noqa: E731
    checks = _by_name(run_doctor(load_settings(**{**config, "stores": stores, "tiers": tiers}), clock=ahead))
    assert checks["store:hot"].status == "FAIL" and "reach" in checks["store:hot"].detail
    assert checks["store:cold"].status == "FAIL"
    assert "wrong-secret" not in checks["store:cold"].line()
    assert checks["clock"].status == "FAIL" and "NTP" in checks["clock"].hint
    assert checks["policy tiers"].status == "FAIL" and "archive" in checks["policy tiers"].detail
    assert checks["store:warm"].status == "ok"  # one broken store does not hide the others


def test_unreachable_catalog_and_old_schema(catalog: str, pg_url: str, tmp_path: Path) -> None:
    stores = {"warm": "catalog", "cold": f"file://{tmp_path}/cold"}
    dead = make_url(catalog).set(host="127.0.0.1", port=1, query={}).render_as_string(hide_password=False)
    checks = _by_name(run_doctor(load_settings(catalog_url=dead, stores=stores, tiers={"hot": None})))
    assert checks["catalog"].status == "FAIL" and "LIQUID_CATALOG_URL" in checks["catalog"].hint
    assert "migrations" not in checks

    name = f"doctor_empty_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        empty = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
        checks = _by_name(run_doctor(load_settings(catalog_url=empty, stores=stores, tiers={"hot": None})))
        assert checks["migrations"].status == "FAIL" and "liquid db upgrade" in checks["migrations"].hint
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_invalid_config_is_one_failed_line(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(app, ["doctor"], env={"LIQUID_INLINE_THRESHOLD": "lots"})
    assert result.exit_code == 1
    assert result.output.startswith("FAIL  config") and "inline_threshold" in result.output


def test_encryption_checks(config: dict[str, Any], catalog: str) -> None:
    import base64
    import os

    from liquid.keyring import DataKeys, MasterKeys

    old = MasterKeys({"k1": os.urandom(32)})
    engine = db.make_engine(catalog)
    DataKeys(engine, old).active("doctor-tenant")
    engine.dispose()
    other = f"k2:{base64.b64encode(os.urandom(32)).decode()}"
    checks = _by_name(
        run_doctor(load_settings(**config, encryption={"envelope": True, "master_keys": other}))
    )
    assert checks["encryption"].status == "FAIL" and "k1 (1 keys)" in checks["encryption"].detail
    assert other.split(":")[1] not in checks["encryption"].line()
    bad = _by_name(
        run_doctor(load_settings(**config, encryption={"envelope": True, "master_keys": "k1:QUJD"}))
    )
    assert bad["encryption"].status == "FAIL" and "not 32" in bad["encryption"].detail
