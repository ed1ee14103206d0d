"""Daemon-part fixtures: a catalog with a PostgreSQL warm store and a SeaweedFS S3 cold store.

Stores and catalog are shared by the session; every test gets a fresh tenant, and
everything a test checks (store listings, gc) is scoped to that tenant's prefix.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from liquid.bootstrap import Runtime, open_runtime
from liquid.config import MoverSettings, Settings
from liquid.service import LiquidService
from tests.conftest import S3Server
from tests.fakes import FakeClock


@pytest.fixture(scope="session")
def daemon_settings(pg_url: str, redis_url: str, s3_server: S3Server) -> dict[str, Any]:
    bucket = s3_server.make_bucket()
    return {
        "catalog_url": pg_url,
        "stores": {"hot": redis_url, "warm": pg_url, "cold": s3_server.store_url(bucket, "cold")},
        # Namespaces starting with "z" store zstd bytes: moves must copy them as they are.
        "compression": {"z*": "zstd"},
    }


@pytest.fixture(scope="session")
def runtime(daemon_settings: dict[str, Any]) -> Iterator[Runtime]:
    rt = open_runtime(Settings(**daemon_settings))
    yield rt
    rt.close()


@pytest.fixture
def service(runtime: Runtime) -> LiquidService:
    return runtime.service


@pytest.fixture
def make_runtime(daemon_settings: dict[str, Any], runtime: Runtime) -> Iterator[Callable[..., Runtime]]:
    """Another runtime on the same catalog and stores, with some settings changed."""
    made: list[Runtime] = []

    def factory(**overrides: Any) -> Runtime:
        rt = open_runtime(Settings(**{**daemon_settings, **overrides}), migrate=False)
        made.append(rt)
        return rt

    yield factory
    for rt in made:
        rt.close()


@pytest.fixture
def tenant(service: LiquidService) -> Iterator[str]:
    """A fresh tenant; its journal rows still open at the end are closed, so movers of later tests
    (which claim across tenants, as a daemon does) never see them."""
    name = f"d-{uuid.uuid4().hex[:12]}"
    service.tenancy.create_tenant(name)
    yield name
    with service.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE move_journal SET step = 'failed', error = 'closed by test teardown',"
                " claimed_by = NULL"
                " WHERE tenant_id = :t AND step NOT IN ('done', 'failed')"
            ),
            {"t": name},
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))


@pytest.fixture
def mover_settings() -> MoverSettings:
    return MoverSettings(
        concurrency=4, grace_period=60, lease=30, max_attempts=3, backoff=10, step_retries=2, gc_grace=3600
    )
