"""Workflow scope, execution finish and explain, through HTTP and the client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from liquid.client import AsyncClient, Client
from liquid.policy.store import apply_policies
from liquid.service import LiquidService

from .conftest import TenantKey


def test_scope_finish_and_explain(client: Client, tk: TenantKey, api_service: LiquidService) -> None:
    info = client.put("wf", "exec-1/out.json", b'{"ok": 1}', scope="execution", execution_id="exec-1")
    assert api_service.head(tk.tenant, info.ref).scope == "execution"

    before = client.explain("wf", "exec-1/out.json")
    assert before["uri"] == info.uri and before["home_tier"] == "warm"

    policy = f"""
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: wf-{tk.tenant}}}
spec:
  selector: {{tenants: [{tk.tenant}], namespaces: [wf]}}
  rules: [{{tier: warm, demoteAfter: 10m}}, {{tier: cold}}]
  expireAfter: 1h
"""
    apply_policies(api_service.engine, {"wf.yaml": policy}, actor="test", clock=api_service.clock)
    waiting = client.explain("wf", "exec-1/out.json", version=1)
    assert waiting["policy"] == f"wf-{tk.tenant}"
    assert waiting["next_change_at"] is None  # the clock has not started: the execution is running

    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    finished = client.finish_execution("exec-1", at=two_hours_ago)
    assert finished == two_hours_ago
    assert client.finish_execution("exec-1") == finished  # idempotent: the first finish wins
    after = client.explain("wf", "exec-1/out.json")
    assert after["action"] == "expire"  # 2h since the finish > expireAfter 1h


def test_finish_and_explain_errors_are_problems(base_url: str, tk: TenantKey) -> None:
    auth = {"Authorization": f"Bearer {tk.key}"}
    r = httpx.post(f"{base_url}/v1/executions/e1:finish", json={"at": "2031-01-01T00:00:00"}, headers=auth)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == "at"
    r = httpx.post(f"{base_url}/v1/executions/e1:finish", json={"bogus": 1}, headers=auth)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    r = httpx.get(f"{base_url}/v1/explain/wf/missing-key", headers=auth)
    assert r.status_code == 404 and r.json()["type"] == "liquid:not-found"
    r = httpx.put(f"{base_url}/v1/objects/wf/k", content=b"x", headers={**auth, "X-Liquid-Scope": "forever"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"


def test_async_client_finish(base_url: str, tk: TenantKey) -> None:
    async def go() -> datetime:
        async with AsyncClient(base_url, api_key=tk.key, retries=0) as lq:
            return await lq.finish_execution("exec-async")

    assert asyncio.run(go()).tzinfo is not None
