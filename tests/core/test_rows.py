"""The catalog read three ways (rows, columns by id, a full scan of columns) gives the same facts."""

from __future__ import annotations

import dataclasses
import math
import os
from datetime import UTC, datetime, timedelta

import numpy as np

from liquid.policy.loader import load_policy_text
from liquid.service import LiquidService
from liquid.tiering.rows import _SCAN_COLUMNS, CatalogRows, ColumnBatch
from tests.fakes import FakeClock

from .conftest import ServiceFactory

T0 = datetime(2033, 3, 1, tzinfo=UTC)


def test_rows_and_columns_agree_on_every_fact(make_service: ServiceFactory, tenant: str) -> None:
    svc: LiquidService = make_service()
    clock = FakeClock(T0)
    svc.clock = clock
    assert svc.access is not None
    svc.access.clock = clock
    refs = []
    for i in range(12):
        scope = "execution" if i % 3 == 0 else None
        refs.append(
            svc.put(
                tenant,
                "ns",
                f"k{i % 5}",  # several versions of some keys: superseded_at
                os.urandom(100 + i),
                content_type="application/x-test" if i % 2 else "text/plain",
                tags={"team": "a"} if i % 4 == 0 else None,
                classification="pii" if i % 5 == 0 else None,
                legal_hold=i == 7,
                scope=scope,
                execution_id="run-1" if scope else None,
            ).ref
        )
        clock.advance(minutes=1)
    svc.finish_execution(tenant, "run-1", at=T0 + timedelta(minutes=5))
    for r in refs[::2]:
        svc.get(tenant, r)
    svc.access.flush(svc.engine)
    ids = [int(svc.fast.find(r.tenant, r.namespace, r.key, r.version).id) for r in refs]
    source = CatalogRows(svc.engine, half_life=3600)
    now = clock.advance(hours=1)
    from_rows = ColumnBatch.of_rows(source.rows(ids, now))
    by_id = source.columns(ids * 200, now)  # enough ids for the columnar read (duplicates are harmless)
    scanned = ColumnBatch.concat([b for b in source.scan_columns(now)])
    for batch in (by_id, scanned):
        keep = np.isin(batch.ids, ids)
        order = np.argsort(batch.ids[keep])
        got = batch.facts.take(np.nonzero(keep)[0][order])
        assert sorted(batch.ids[keep].tolist()) == sorted(ids)
        want = from_rows.facts.take(np.argsort(from_rows.ids))
        for name in ("tenant", "namespace", "key", "content_type", "classification", "scope", "tags"):
            assert list(getattr(got, name)) == list(getattr(want, name)), name
        for name in ("size", "home", "legal_hold"):
            assert getattr(got, name).tolist() == getattr(want, name).tolist(), name
        for name in ("created", "last_access", "home_since", "finished", "superseded", "score"):
            a, b = getattr(got, name), getattr(want, name)
            assert np.allclose(a, b, equal_nan=True, rtol=0, atol=1e-6), (name, a, b)
    assert any(not math.isnan(x) for x in from_rows.facts.superseded)
    assert any(not math.isnan(x) for x in from_rows.facts.finished)
    assert any(x > 0 for x in from_rows.facts.score)
    # Rows rebuilt from columns carry the same facts the row reader gives.
    direct = {r.object_id: r.facts for r in source.rows(ids, now)}
    for r in by_id.rows(range(len(by_id))):
        for field in dataclasses.fields(r.facts):
            a, b = getattr(r.facts, field.name), getattr(direct[r.object_id], field.name)
            if field.name in ("access_score",):
                assert math.isclose(a, b, abs_tol=1e-9)
            elif field.name != "hits":  # hits are not planning facts: the columns leave them out
                assert a == b, (field.name, a, b)


def test_a_scan_skips_the_columns_no_policy_reads(service: LiquidService) -> None:
    source = CatalogRows(service.engine, half_life=3600)
    plain = load_policy_text(
        "apiVersion: liquid/v1\nkind: TieringPolicy\nmetadata: {name: p}\nspec:\n  rules: [{tier: warm}]\n"
    )
    by_version = load_policy_text(
        "apiVersion: liquid/v1\nkind: TieringPolicy\nmetadata: {name: p}\nspec:\n"
        "  selector: {versions: noncurrent, tags: {a: b}}\n  rules: [{tier: warm}]\n"
    )
    lean, full = source._lean(_SCAN_COLUMNS, plain), source._lean(_SCAN_COLUMNS, by_version)
    assert "LEFT JOIN objects n" not in lean and "o.tags" not in lean
    assert "LEFT JOIN objects n" in full and "o.tags" in full
