"""Core-service fixtures: one migrated catalog per session, a fresh tenant per test.

Tenants isolate tests from each other the same way they isolate customers, so the
catalog is shared and never truncated.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, make_url, text

from liquid.bootstrap import Runtime, open_runtime
from liquid.catalog import db
from liquid.config import Settings, load_settings
from liquid.service import LiquidService

ServiceFactory = Callable[..., LiquidService]


@pytest.fixture(scope="session")
def cold_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cold")


@pytest.fixture(scope="session")
def base_settings(pg_url: str, redis_url: str, cold_dir: Path) -> dict[str, Any]:
    return {
        "catalog_url": pg_url,
        "stores": {"hot": redis_url, "warm": pg_url, "cold": f"file://{cold_dir}"},
    }


@pytest.fixture(scope="session")
def runtime(base_settings: dict[str, Any]) -> Iterator[Runtime]:
    rt = open_runtime(load_settings(**base_settings))
    yield rt
    rt.close()


@pytest.fixture
def service(runtime: Runtime) -> LiquidService:
    return runtime.service


@pytest.fixture
def make_service(runtime: Runtime, base_settings: dict[str, Any]) -> Iterator[ServiceFactory]:
    """A service with some settings changed, sharing the session's catalog engine."""
    made: list[Runtime] = []

    def factory(**overrides: Any) -> LiquidService:
        merged = {**base_settings, **overrides}
        rt = open_runtime(Settings(**merged), migrate=False)
        made.append(rt)
        return rt.service

    yield factory
    for rt in made:
        rt.close()


@pytest.fixture
def tenant(service: LiquidService) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    service.tenancy.create_tenant(name)
    return name


@pytest.fixture
def other_tenant(service: LiquidService) -> str:
    name = f"o-{uuid.uuid4().hex[:12]}"
    service.tenancy.create_tenant(name)
    return name


@pytest.fixture
def fresh_engine(pg_url: str) -> Iterator[Engine]:
    """An engine on a new empty database of the test server (dropped afterwards): for migrations."""
    name = f"fresh_{uuid.uuid4().hex[:10]}"
    admin = db.make_engine(pg_url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = db.make_engine(make_url(pg_url).set(database=name).render_as_string(hide_password=False))
    yield engine
    engine.dispose()
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
