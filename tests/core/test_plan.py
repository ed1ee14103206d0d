"""Planning against the live catalog, applied policy versions, and explain."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from liquid.cli import app
from liquid.errors import PolicyError
from liquid.policy.loader import load_policy_text
from liquid.policy.store import active_policies, apply_policies, history
from liquid.service import LiquidService
from liquid.tiering.engine import FixedPolicies, catalog_engine
from liquid.tiering.explain import explain
from liquid.tiering.plan import Plan
from liquid.tiering.planner import Planner
from liquid.tiering.rows import CatalogRows

from .conftest import ServiceFactory

T0 = datetime(2031, 1, 1, tzinfo=UTC)
KiB = 1024


def cli_env(base_settings: dict[str, Any]) -> dict[str, str]:
    """The environment that points the CLI at the session's catalog and stores."""
    return {
        "LIQUID_CATALOG_URL": base_settings["catalog_url"],
        "LIQUID_STORES": json.dumps(base_settings["stores"]),
    }


def policy(tenant: str) -> str:
    return f"""
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: results-{tenant}}}
spec:
  selector: {{tenants: [{tenant}], namespaces: [results]}}
  rules:
    - tier: warm
      demoteAfter: 30m
    - tier: cold
  expireAfter: 1d
---
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: audit-{tenant}}}
spec:
  priority: 10
  selector: {{tenants: [{tenant}], namespaces: [audit]}}
  rules: [{{tier: warm}}]
  expireAfter: 1h
  legalHold: true
---
apiVersion: liquid/v1
kind: Budget
metadata: {{name: cap-{tenant}}}
spec:
  tenant: {tenant}
  tiers:
    warm: {{maxBytes: 200KiB}}
"""


@pytest.fixture
def seeded(make_service: ServiceFactory, tenant: str) -> tuple[LiquidService, list[str]]:
    """Six objects written at T0; two of them read at T0+50m."""
    svc = make_service()
    svc.clock = lambda: T0
    assert svc.access is not None
    svc.access.clock = lambda: T0 + timedelta(minutes=50)
    refs = []
    for i, size in enumerate([100 * KiB, 100 * KiB, 100 * KiB, 50 * KiB]):
        refs.append(svc.put(tenant, "results", f"r{i}", os.urandom(size)).uri)
    refs.append(svc.put(tenant, "audit", "a0", os.urandom(10 * KiB)).uri)
    refs.append(svc.put(tenant, "other", "o0", os.urandom(10 * KiB)).uri)
    for uri in refs[:2]:
        svc.get(tenant, uri)
    svc.access.flush(svc.engine)
    return svc, refs


def test_plan_on_a_seeded_catalog(seeded: tuple[LiquidService, list[str]], tenant: str) -> None:
    svc, refs = seeded
    policies = load_policy_text(policy(tenant))

    def dry_run(at: datetime) -> Plan:
        engine = catalog_engine(svc, clock=lambda: at, policies=FixedPolicies(policies))
        return engine.dry_run(policies)

    plan = dry_run(T0 + timedelta(hours=1, minutes=10))
    mine = [c for c in plan.changes if c.uri.startswith(f"liquid://{tenant}/")]
    # r0, r1 were read 20 min ago: they stay warm; r2, r3 idle 70 min > 30m: cold. The audit
    # object is past expireAfter but held. The tenant's warm budget (200 KiB) then has r0, r1,
    # a0 and o0 (220 KiB): the two never-read 10 KiB objects have the least value per byte.
    assert sorted((c.uri, c.action, c.to_tier) for c in mine) == sorted(
        [
            (refs[2], "move", "cold"),
            (refs[3], "move", "cold"),
            (refs[4], "hold", "warm"),
            (refs[4], "move", "cold"),
            (refs[5], "move", "cold"),
        ]
    )
    assert next(c for c in mine if c.uri == refs[5]).reason.startswith("over budget")
    cap = next(b for b in plan.budgets if b.tenant == tenant)
    assert (cap.bytes_before, cap.bytes_after, cap.ok) == (370 * KiB, 200 * KiB, True)
    assert plan.bytes_after["cold"] - plan.bytes_before["cold"] >= 170 * KiB

    later = dry_run(T0 + timedelta(days=2))
    expired = sorted(
        c.uri for c in later.changes if c.action == "expire" and c.uri.startswith(f"liquid://{tenant}/")
    )
    assert expired == sorted(refs[:4])


def test_explain_names_policy_rule_score_and_next_change(
    seeded: tuple[LiquidService, list[str]], tenant: str
) -> None:
    svc, refs = seeded
    now = T0 + timedelta(hours=1)
    from liquid.refs import ResultRef

    row = CatalogRows(svc.engine, half_life=svc.settings.access.half_life).row(ResultRef.parse(refs[0]), now)
    assert row is not None
    out = explain(Planner(svc.settings), load_policy_text(policy(tenant)), row, now, hot=svc.hot)
    assert out["policy"] == f"results-{tenant}"
    assert out["home_tier"] == out["should_be"] == "warm"
    assert out["hits"] == 1 and out["access_rate_per_hour"] > 0
    # Read at T0+50m, demoteAfter 30m: it goes cold at T0+80m if nothing changes.
    assert out["next_change_at"] == (T0 + timedelta(minutes=80)).isoformat()
    assert out["hot"]["has_copy"] is False and out["hot"]["wanted"] is False


def test_apply_versions_policies_and_refuses_invalid_ones(service: LiquidService) -> None:
    good = {"p.yaml": policy("tenant-x")}
    first = apply_policies(service.engine, good, actor="alice", clock=lambda: T0)
    second = apply_policies(service.engine, good, actor="bob", clock=lambda: T0)
    assert second.version == first.version + 1
    active = active_policies(service.engine)
    assert active is not None and active.version == second.version and active.applied_by == "bob"
    assert [p.name for p in active.policies.tiering] == ["audit-tenant-x", "results-tenant-x"]
    with pytest.raises(PolicyError) as exc:
        apply_policies(
            service.engine, {"bad.yaml": "apiVersion: liquid/v1\nkind: Nope\n"}, actor="eve", clock=lambda: T0
        )
    assert "bad.yaml:2" in str(exc.value)
    assert history(service.engine, 1)[0][0] == second.version  # nothing stored for the bad one
    with service.engine.connect() as conn:
        kinds = conn.execute(text("SELECT count(*) FROM events WHERE kind = 'policy.applied'")).scalar_one()
    assert kinds >= 2


def test_cli_plan_json_and_apply(base_settings: dict, runtime: object, tmp_path: Path, tenant: str) -> None:
    env = cli_env(base_settings)
    f = tmp_path / "p.yaml"
    f.write_text(policy(tenant))
    out = CliRunner().invoke(
        app, ["policy", "plan", str(f), "--output", "json"], env=env, catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert {"moves", "expirations", "legal_holds", "tiers", "budgets", "changes"} <= set(doc)
    assert {f"TieringPolicy/audit-{tenant}", f"TieringPolicy/results-{tenant}"} <= set(
        doc["policy_diff"]["added"]
    )
    applied = CliRunner().invoke(
        app, ["policy", "apply", str(f), "--actor", "ci", "--yes"], env=env, catch_exceptions=False
    )
    assert applied.exit_code == 0 and "applied policy version" in applied.stdout


def test_apply_shows_the_difference_needs_confirmation_and_can_merge_show_diff_and_roll_back(
    base_settings: dict, runtime: object, tmp_path: Path, tenant: str
) -> None:
    env = cli_env(base_settings)

    class Out:
        def __init__(self, args: list[str]) -> None:
            r = CliRunner().invoke(app, args, env=env)
            # A LiquidError is one red line from liquid.cli.main; here it arrives as the exception.
            self.exit_code = (
                1 if r.exception is not None and not isinstance(r.exception, SystemExit) else r.exit_code
            )
            self.stdout = r.stdout
            self.output = r.output + (str(r.exception) if r.exception is not None else "")

    def cli(*args: str) -> Any:
        return Out(list(args))

    both = tmp_path / "both.yaml"
    both.write_text(policy(tenant))
    assert cli("policy", "apply", str(both), "--yes", "--actor", "ci").exit_code == 0
    base = json.loads(cli("policy", "plan", "-o", "json").stdout)["policy_version"]
    one = tmp_path / "one.yaml"
    one.write_text(
        f"apiVersion: liquid/v1\nkind: TieringPolicy\nmetadata: {{name: only-{tenant}}}\n"
        f"spec:\n  selector: {{tenants: [{tenant}]}}\n  rules:\n    - {{tier: warm}}\n"
    )
    # Applying one file replaces the set: the removals are shown and nothing happens unconfirmed.
    refused = cli("policy", "apply", str(one))
    assert refused.exit_code == 1
    assert f"- TieringPolicy/results-{tenant}  (removed)" in refused.output
    assert "refusing to apply without confirmation (removes" in refused.output
    assert json.loads(cli("policy", "plan", "-o", "json").stdout)["policy_version"] == base
    # --merge keeps the applied files and adds this one: nothing is removed.
    merged = cli("policy", "apply", str(one), "--merge")
    assert (
        merged.exit_code == 1
        and "(removed)" not in merged.output
        and f"+ TieringPolicy/only-{tenant}" in merged.output
    )
    assert cli("policy", "apply", str(one), "--merge", "--yes").exit_code == 0
    # A plan made against an older version is refused.
    stale = cli("policy", "apply", str(both), "--yes", "--expect-version", str(base))
    assert stale.exit_code == 1 and f"not {base} as planned" in stale.output
    diff = json.loads(cli("policy", "diff", str(base), "-o", "json").stdout)
    assert diff == {"added": [f"TieringPolicy/only-{tenant}"], "removed": [], "changed": []}
    shown = cli("policy", "show", str(base))
    assert shown.exit_code == 0 and f"name: results-{tenant}" in shown.output and "by ci" in shown.output
    back = cli("policy", "rollback", str(base), "--yes")
    assert back.exit_code == 0 and f"holds version {base}'s files" in back.output
    now = json.loads(cli("policy", "diff", str(base), "-o", "json").stdout)
    assert now == {"added": [], "removed": [], "changed": []}
    assert "no policy version 999999" in cli("policy", "show", "999999").output


def test_a_rule_whose_tier_has_no_store_is_refused_unless_allowed(
    base_settings: dict, runtime: object, tmp_path: Path, tenant: str
) -> None:
    env = cli_env(base_settings)
    f = tmp_path / "archive.yaml"
    f.write_text(
        f"apiVersion: liquid/v1\nkind: TieringPolicy\nmetadata: {{name: arch-{tenant}}}\n"
        f"spec:\n  selector: {{tenants: [{tenant}]}}\n  rules:\n    - {{tier: warm, demoteAfter: 1d}}\n"
        "    - {tier: archive}\n"
    )
    for command in (["plan", str(f)], ["apply", str(f), "--yes"]):
        out = CliRunner().invoke(app, ["policy", *command], env=env)
        assert out.exit_code == 1 and out.exception is not None
        text_ = str(out.exception)
        assert "archive.yaml:8:14: " in text_ and "tier 'archive' has no store" in text_, text_
        assert "--allow-unconfigured-tiers" in text_
    allowed = CliRunner().invoke(
        app, ["policy", "plan", str(f), "--allow-unconfigured-tiers", "-o", "json"], env=env
    )
    assert allowed.exit_code == 0, allowed.output


def test_plan_tells_no_changes_from_changes_already_queued() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    assert "No changes. Every object is where" in Plan(at=at, policy_version=1).render()
    busy = Plan(at=at, policy_version=1, queued={"move:planned": 3, "move:copied": 1, "purge:switched": 2})
    text_ = busy.render()
    assert "No new changes; 6 queued by earlier cycles, waiting or in flight" in text_
    assert "already queued: 4 moves, 2 purges (3 waiting, 3 in flight" in text_
    assert busy.to_json(changes=False)["queued"] == {"move:copied": 1, "move:planned": 3, "purge:switched": 2}


def test_cli_plan_and_tier_status_show_the_queue_and_failures(
    base_settings: dict, service: LiquidService, tenant: str, tmp_path: Path
) -> None:
    from liquid.tiering.journal import enqueue_move

    env = cli_env(base_settings)
    ref = service.put(tenant, "q", "waiting", b"x" * 100).ref
    gone = service.put(tenant, "q", "failing", b"y" * 100).ref
    ids = []
    for r in (ref, gone):
        found = service.fast.find(r.tenant, r.namespace, r.key, r.version)
        assert found is not None
        job = enqueue_move(service.engine, found.id, "cold", "cold", reason="test")
        assert job is not None
        ids.append(job)
    with service.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE move_journal SET step = 'failed', error = 'store said no', updated_at = now()"
                " WHERE id = :i"
            ),
            {"i": ids[1]},
        )
    try:
        f = tmp_path / "p.yaml"
        f.write_text(policy(tenant))
        plan = CliRunner().invoke(
            app, ["policy", "plan", str(f), "-o", "json"], env=env, catch_exceptions=False
        )
        assert plan.exit_code == 0, plan.output
        assert json.loads(plan.stdout)["queued"].get("move:planned", 0) >= 1
        status = CliRunner().invoke(app, ["tier", "status", "-o", "json"], env=env, catch_exceptions=False)
        assert status.exit_code == 0, status.output
        doc = json.loads(status.stdout)
        assert doc["queued"].get("move:planned", 0) >= 1
        mine = [f for f in doc["failed"] if f["id"] == ids[1]]
        assert mine and mine[0]["error"] == "store said no" and mine[0]["key"] == "failing"
        shown = CliRunner().invoke(
            app, ["tier", "status"], env={**env, "COLUMNS": "250"}, catch_exceptions=False
        )
        assert "move queue" in shown.stdout and "store said no" in shown.stdout
    finally:
        with service.engine.begin() as conn:
            conn.execute(text("DELETE FROM move_journal WHERE id = ANY(:ids)"), {"ids": ids})
