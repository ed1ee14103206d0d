"""API fixtures: one runtime and one uvicorn server (free loopback port) per session, a fresh tenant per test.

Tenants isolate tests from each other as they isolate customers, so the catalog is shared.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from liquid.api.server import ApiServer
from liquid.bootstrap import Runtime, open_runtime
from liquid.client import Client
from liquid.config import load_settings
from liquid.service import LiquidService

SIGNING_SECRET = "test-signing-secret"


@pytest.fixture(scope="session")
def shm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shm")


@pytest.fixture(scope="session")
def api_settings(
    pg_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory, shm_dir: Path
) -> dict[str, Any]:
    cold = tmp_path_factory.mktemp("api-cold")
    return {
        "catalog_url": pg_url,
        "stores": {"hot": redis_url, "warm": pg_url, "cold": f"file://{cold}"},
        "node_id": "test-node",
        "api": {"signing_secret": SIGNING_SECRET, "auth_cache_ttl": 0},
        "shm": {"dir": str(shm_dir), "max_bytes": 64 * 1024 * 1024, "min_size": 1024},
    }


@pytest.fixture(scope="session")
def api_runtime(api_settings: dict[str, Any]) -> Iterator[Runtime]:
    rt = open_runtime(load_settings(**api_settings))
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def api_service(api_runtime: Runtime) -> LiquidService:
    return api_runtime.service


@pytest.fixture(scope="session")
def api_server(api_service: LiquidService) -> Iterator[ApiServer]:
    server = ApiServer(api_service)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def base_url(api_server: ApiServer) -> str:
    return api_server.base_url


@dataclass
class TenantKey:
    tenant: str
    key: str


@pytest.fixture
def make_tenant(api_service: LiquidService) -> Callable[[], TenantKey]:
    def factory() -> TenantKey:
        name = f"t-{uuid.uuid4().hex[:12]}"
        api_service.tenancy.create_tenant(name)
        return TenantKey(name, api_service.tenancy.create_api_key(name))

    return factory


@pytest.fixture
def tk(make_tenant: Callable[[], TenantKey]) -> TenantKey:
    return make_tenant()


@pytest.fixture(scope="session")
def admin_key(api_service: LiquidService) -> str:
    return api_service.tenancy.create_api_key(None, admin=True, name="tests")


@pytest.fixture
def client(base_url: str, tk: TenantKey, shm_dir: Path) -> Iterator[Client]:
    with Client(base_url, api_key=tk.key, node_id="test-node", shm_dirs=[shm_dir], retries=1) as c:
        yield c


@pytest.fixture
def auth(tk: TenantKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {tk.key}"}
