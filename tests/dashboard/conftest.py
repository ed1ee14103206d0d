"""Dashboard fixtures: a catalog database of its own, the API on it, a seeded workload, an operator key.

The dashboard shows global numbers (every tenant's, the applied policy set, the move queue),
so it gets its own database in the session's PostgreSQL and its own Valkey database: the
numbers it shows are this workload's alone, and the policies it applies touch no other test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from liquid.api.server import ApiServer
from liquid.bootstrap import Runtime, open_runtime
from liquid.config import load_settings
from liquid.policy.store import apply_policies
from liquid.service import LiquidService

TENANT = "acme"
OTHER = "globex"
KiB = 1024

#: logs go cold at once (moves to show), results stay warm under a warm budget.
POLICY = f"""
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: logs-cold}}
spec:
  priority: 100
  selector: {{tenants: [{TENANT}], namespaces: [logs]}}
  rules: [{{tier: cold}}]
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: results-warm}}
spec:
  priority: 50
  selector: {{tenants: [{TENANT}, {OTHER}], namespaces: [results]}}
  rules: [{{tier: warm}}]
---
apiVersion: liquid/v1
kind: Budget
metadata: {{name: acme-cap}}
spec:
  tenant: {TENANT}
  tiers:
    warm: {{maxBytes: 1MiB}}
"""

#: A proposal for the Policies page's dry run: results go cold too.
PROPOSAL = POLICY.replace("rules: [{tier: warm}]", "rules: [{tier: cold}]")


@dataclass
class Dash:
    """The running API over the seeded catalog, and what the dashboard needs to read it."""

    base_url: str
    admin_key: str
    runtime: Runtime
    env: dict[str, str]

    @property
    def service(self) -> LiquidService:
        return self.runtime.service


def _own_database(pg_url: str) -> str:
    name = f"dash_{uuid.uuid4().hex[:10]}"
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    head, _, query = pg_url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


def _redis_db(redis_url: str, db: int) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{db}"


def _seed(rt: Runtime) -> None:
    """Two tenants' writes and reads, a policy version with a budget, and one daemon cycle's moves."""
    from daemon.tiering import TieringDaemon

    svc = rt.service
    for t in (TENANT, OTHER):
        svc.tenancy.create_tenant(t)
    refs = [svc.put(TENANT, "results", f"run-{i}/out.bin", os.urandom(40 * KiB + i)).ref for i in range(5)]
    refs += [svc.put(TENANT, "logs", f"day-{i}.log", os.urandom(64 * KiB + i)).ref for i in range(3)]
    refs.append(svc.put(OTHER, "results", "model.bin", os.urandom(300 * KiB)).ref)
    for i, ref in enumerate(refs):
        for _ in range(i % 4 + 1):
            svc.get(ref.tenant, ref)
    svc.delete(TENANT, refs[0])
    assert svc.access is not None
    clock = svc.access.clock
    later = clock() + timedelta(minutes=2)
    svc.access.clock = lambda: later  # finished minutes only: flush the reads as of later
    try:
        svc.access.flush(svc.engine)
    finally:
        svc.access.clock = clock
    apply_policies(svc.engine, {"dash.yaml": POLICY}, actor="tests", clock=svc.clock)
    daemon = TieringDaemon(rt)
    try:
        daemon.run_once(move=True)
    finally:
        daemon.resign()


@pytest.fixture(scope="session")
def dash(pg_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    db = _own_database(pg_url)
    cold = tmp_path_factory.mktemp("dash-cold")
    settings: dict[str, Any] = {
        "catalog_url": db,
        "stores": {"hot": _redis_db(redis_url, 7), "warm": db, "cold": f"file://{cold}"},
        "node_id": "dash-node",
        "api": {"auth_cache_ttl": 0},
    }
    rt = open_runtime(load_settings(**settings))
    try:
        _seed(rt)
        key = rt.service.tenancy.create_api_key(None, admin=True, name="dashboard")
        with ApiServer(rt.service) as server:
            env = {"LIQUID_DASHBOARD_API_URL": server.base_url, "LIQUID_DASHBOARD_API_KEY": key}
            yield Dash(server.base_url, key, rt, env)
    finally:
        rt.close()


@pytest.fixture
def dash_env(dash: Dash, monkeypatch: pytest.MonkeyPatch) -> Dash:
    """The dashboard's settings in this process's environment (AppTest runs the pages in-process)."""
    for k, v in dash.env.items():
        monkeypatch.setenv(k, v)
    return dash


@pytest.fixture
def cli_env(dash: Dash) -> dict[str, str]:
    """The CLI pointed at the dashboard's catalog (for `liquid policy plan`)."""
    import json

    s = dash.service.settings
    return {
        "LIQUID_CATALOG_URL": s.catalog_url or "",
        "LIQUID_STORES": json.dumps(dict(s.stores)),
        "LIQUID_NODE_ID": "dash-node",
        "LIQUID_TENANT": "",
    }


PAGES = Path(__file__).resolve().parents[2] / "dashboard" / "pages"
