"""Classification rules: a restricted object never lands in, nor is planned into, an unencrypted store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from liquid.config import Settings
from liquid.errors import ClassificationRefused, ObjectNotFound
from liquid.policy.evaluate import ObjectFacts
from liquid.policy.loader import load_policy_text
from liquid.refs import ResultRef
from liquid.service import LiquidService
from liquid.stores.envelope import MAGIC
from liquid.tiering.apply import CatalogApplier
from liquid.tiering.plan import Change, Plan
from liquid.tiering.planner import Planner
from liquid.tiering.rows import ColumnBatch, Row
from tests.security.conftest import ServiceFactory, new_key

SMALL = b"account 4111-1111: limit raised" * 3  # small: an unclassified copy is born warm


def _files(cold_dir: Path, tenant: str) -> list[Path]:
    root = cold_dir / tenant
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _object_id(svc: LiquidService, ref: ResultRef) -> int:
    with svc.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT id FROM objects WHERE tenant_id = :t AND namespace = :n AND key = :k"),
                {"t": ref.tenant, "n": ref.namespace, "k": ref.key},
            ).scalar_one()
        )


def test_restricted_is_refused_where_no_store_encrypts(
    make_service: ServiceFactory, tenant: str, cold_dir: Path
) -> None:
    svc = make_service()
    svc.tenancy.create_tenant(tenant)
    with pytest.raises(
        ClassificationRefused, match=r"'restricted' may live only in encrypted tiers"
    ) as caught:
        svc.put(tenant, "docs", "secret", SMALL * 100, classification="restricted")
    assert "encryption.envelope" in caught.value.detail
    # No partial state: no row, no bytes.
    with pytest.raises(ObjectNotFound):
        svc.head(tenant, f"liquid://{tenant}/docs/secret@1")
    assert _files(cold_dir, tenant) == []
    # The same bytes without the classification are stored as usual.
    assert svc.head(tenant, svc.put(tenant, "docs", "plain", SMALL).ref).home_tier == "warm"


def test_restricted_is_born_in_the_encrypted_tier_and_never_hot(
    make_service: ServiceFactory, tenant: str, cold_dir: Path
) -> None:
    svc = make_service(encryption={"envelope": True, "master_keys": new_key("k1")}, hot={"enabled": True})
    svc.tenancy.create_tenant(tenant)
    secret = svc.put(tenant, "docs", "secret", SMALL, classification="restricted")
    plain = svc.put(tenant, "docs", "plain", SMALL)
    assert svc.head(tenant, secret.ref).home_tier == "cold"  # warm (PostgreSQL) is not encrypted here
    assert svc.head(tenant, plain.ref).home_tier == "warm"
    (path,) = _files(cold_dir, tenant)
    assert path.read_bytes().startswith(MAGIC) and SMALL not in path.read_bytes()
    assert svc.get(tenant, secret.ref) == SMALL
    assert svc.fill_hot(secret.ref, _object_id(svc, secret.ref)) is False
    assert svc.fill_hot(plain.ref, _object_id(svc, plain.ref)) is True


def test_an_operator_can_declare_a_store_encrypted_at_rest(make_service: ServiceFactory, tenant: str) -> None:
    svc = make_service(classification={"encrypted_stores": ["warm"]})
    svc.tenancy.create_tenant(tenant)
    info = svc.put(tenant, "docs", "secret", SMALL, classification="restricted")
    assert svc.head(tenant, info.ref).home_tier == "warm"


def test_apply_refuses_a_move_into_an_unencrypted_tier(
    make_service: ServiceFactory, tenant: str, tmp_path: Path
) -> None:
    # Whatever planned it (a policy, a budget's displacement, a hand-made plan): never queued.
    svc = make_service(
        stores={
            "warm": "catalog",
            "cold": (tmp_path / "enc").as_uri(),
            "archive": (tmp_path / "plain").as_uri(),
        },
        tiers={"hot": None, "archive": "archive"},
        encryption={"envelope": True, "master_keys": new_key("k1"), "tiers": ["cold"]},
    )
    svc.tenancy.create_tenant(tenant)
    secret = svc.put(tenant, "docs", "secret", SMALL * 100, classification="restricted")
    plain = svc.put(tenant, "docs", "plain", SMALL * 100)
    now = datetime.now(UTC)
    changes = [
        Change(_object_id(svc, i.ref), i.ref.uri, 3000, "move", "cold", "archive", "p", "r", "test")
        for i in (secret, plain)
    ]
    try:
        report = CatalogApplier(svc, svc.settings).apply(Plan(at=now, policy_version=None, changes=changes))
        assert report.moves_queued == 1
        ((_, uri, why),) = report.skipped
        assert uri == secret.ref.uri and "'restricted' may not live in archive" in why
    finally:
        # The catalog is shared: a queued move left behind would be claimed by other tests' movers.
        with svc.engine.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM move_journal WHERE object_id = ANY(:ids)"),
                {"ids": [c.object_id for c in changes]},
            )


POLICY = """
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {name: docs}
spec:
  rules:
    - {tier: hot, demoteAfter: 1h}
    - {tier: cold, demoteAfter: 1d}
    - {tier: archive}
"""
NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def _row(oid: int, home: str, idle: timedelta, classification: str | None) -> Row:
    facts = ObjectFacts(
        tenant="acme", namespace="docs", key=f"k{oid}", size=1000, created_at=NOW - timedelta(days=30),
        home_tier=home, last_access_at=NOW - idle, access_score=100.0 if idle < timedelta(hours=1) else 0.0,
        home_since=NOW - timedelta(days=20), classification=classification,
    )  # fmt: skip
    return Row(object_id=oid, version=1, facts=facts, home_store=home, stored_size=1000)


def test_planner_never_plans_a_restricted_object_into_an_unencrypted_tier() -> None:
    settings = Settings(
        stores={"hot": "redis://127.0.0.1:1/0", "cold": "file:///c", "archive": "file:///a"},
        tiers={"warm": "catalog", "archive": "archive"},
        encryption={"envelope": True, "master_keys": new_key("k1"), "tiers": ["cold"]},
    )
    rows = [
        _row(1, "cold", timedelta(days=5), "restricted"),  # the policy wants archive: unencrypted
        _row(2, "cold", timedelta(days=5), None),  # control: moves
        _row(3, "cold", timedelta(minutes=1), "restricted"),  # the policy wants a hot copy
        _row(4, "cold", timedelta(minutes=1), None),  # control: gets one
    ]
    planner = Planner(settings)
    plan = planner.rebuild(load_policy_text(POLICY), [ColumnBatch.of_rows(rows)], NOW)[1]
    by_object: dict[int, list[tuple[str, str | None]]] = {}
    for c in plan.changes:
        by_object.setdefault(c.object_id, []).append((c.action, c.to_tier))
    assert ("move", "archive") in by_object[2]
    assert by_object[1] == [("hold", "cold")]
    (hold,) = [c for c in plan.changes if c.object_id == 1]
    assert "classification 'restricted' may not live in archive" in hold.reason
    assert ("hot-admit", "hot") in by_object[4]
    assert all(action != "hot-admit" for action, _ in by_object.get(3, []))
    assert not any(c.to_tier in ("archive", "hot") for c in plan.changes if c.object_id in (1, 3))
