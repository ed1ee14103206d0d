"""The operator routes the dashboard reads: policies, the dry-run plan, the tiering status."""

from __future__ import annotations

import json
from typing import Any

import httpx
from typer.testing import CliRunner

from liquid.cli import app as cli
from tests.dashboard.conftest import TENANT, Dash


def call(dash: Dash, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or dash.admin_key}"}
    return httpx.request(method, f"{dash.base_url}{path}", headers=headers, timeout=60, **kwargs)


def test_tenant_keys_are_refused(dash: Dash) -> None:
    key = dash.service.tenancy.create_api_key(TENANT, name="not-an-operator")
    for method, path in (
        ("GET", "/v1/policies"),
        ("POST", "/v1/policies:plan"),
        ("GET", "/v1/tiering/status"),
    ):
        r = call(dash, method, path, key)
        assert r.status_code == 403, (path, r.text)
        assert "operator keys" in r.json()["detail"]
    assert httpx.get(f"{dash.base_url}/v1/policies").status_code == 401


def test_the_applied_set_with_who_when_and_the_diff(dash: Dash) -> None:
    body = call(dash, "GET", "/v1/policies").json()
    assert body["version"] == 1 and body["applied_by"] == "tests"
    assert body["previous_version"] is None
    assert body["diff"]["added"] == [
        "Budget/acme-cap",
        "TieringPolicy/logs-cold",
        "TieringPolicy/results-warm",
    ]
    assert "logs-cold" in body["sources"]["dash.yaml"]
    assert [h["version"] for h in body["history"]] == [1]


def test_the_plan_of_the_applied_set_is_the_clis(dash: Dash, cli_env: dict[str, str]) -> None:
    api = call(dash, "POST", "/v1/policies:plan", json={}).json()
    out = CliRunner().invoke(cli, ["policy", "plan", "--output", "json"], env=cli_env)
    assert out.exit_code == 0, out.output
    plan = json.loads(out.stdout)
    for field in ("policy_version", "objects", "moves", "expirations", "tiers", "budgets", "warnings"):
        assert api[field] == plan[field], field
    assert api["policy_version"] == 1 and api["skipped"] == []


def test_bad_policies_are_400s_that_say_where(dash: Dash) -> None:
    r = call(
        dash, "POST", "/v1/policies:plan", json={"sources": {"p.yaml": "kind: TieringPolicy\nspec: [\n"}}
    )
    assert r.status_code == 400, r.text
    assert "p.yaml" in r.json()["detail"]
    r = call(dash, "POST", "/v1/policies:plan", json={"sources": {}})
    assert r.status_code == 400 and r.json()["field"] == "sources"
    r = call(dash, "POST", "/v1/policies:plan", json={"sources": {"big.yaml": "#" * (256 * 1024 + 1)}})
    assert r.status_code == 400 and "big.yaml" in r.json()["detail"]


def test_rules_whose_tier_has_no_store_are_reported_as_skipped(dash: Dash) -> None:
    proposal = (
        "apiVersion: liquid/v1\nkind: TieringPolicy\nmetadata: {name: deep}\n"
        f"spec:\n  selector: {{tenants: [{TENANT}]}}\n  rules: [{{tier: archive}}]\n"
    )
    r = call(dash, "POST", "/v1/policies:plan", json={"sources": {"deep.yaml": proposal}})
    assert r.status_code == 200, r.text
    (line,) = r.json()["skipped"]
    assert "deep.yaml" in line and "'archive' has no store" in line
    assert r.json()["policy_diff"]["against_version"] == 1


def test_the_tiering_status(dash: Dash) -> None:
    body = call(dash, "GET", "/v1/tiering/status", params={"limit": 2}).json()
    assert body["queue_depth"] == sum(body["queue"].values())
    assert len(body["pending"]) == min(2, body["queue_depth"])
    assert all(p["step"] not in ("done", "failed") for p in body["pending"])
    assert isinstance(body["movers"], list) and isinstance(body["export"], list)
