"""The event log: one module writes it, kinds are registered, payloads have one shape, receipts."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

import liquid
from liquid.events import log as events
from liquid.purge import receipt
from liquid.service import LiquidService

ROOT = Path(liquid.__file__).parent


def test_no_module_but_the_log_inserts_into_events() -> None:
    """Every writer goes through liquid.events.log (migrations, which move rows, excepted)."""
    writers = []
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.parts or path == ROOT / "events" / "log.py":
            continue
        source = path.read_text()
        if re.search(r"insert\s+into\s+events\b", source, re.I) or re.search(
            r"\bEvent\b.*insert|insert\(Event\)", source
        ):
            writers.append(str(path.relative_to(ROOT)))
    assert writers == []
    # And every kind a module names in SQL or code is a registered one.
    named = set()
    for path in ROOT.rglob("*.py"):
        named |= set(re.findall(r"events\.([A-Z_]{4,})\b", path.read_text()))
    unknown = {n for n in named if not isinstance(getattr(events, n, None), events.EventKind)}
    assert unknown <= {"OBJECT_EXPRS", "COLUMNS", "KINDS", "EVENTS"}


def test_append_checks_the_payload_and_names_what_is_wrong(service: LiquidService, tenant: str) -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match=r"'object.expired'.*missing \['reason'\]"):
        events.NewEvent(events.EXPIRED, now, tenant_id=tenant, object_id=1).row()
    with pytest.raises(ValueError, match=r"unexpected \['colour'\]"):
        events.NewEvent(events.TENANT_CREATED, now, data={"colour": "red"}).row()
    with pytest.raises(ValueError, match="object_id is required"):
        events.NewEvent(events.DELETED, now, tenant_id=tenant).row()
    with pytest.raises(ValueError, match="timezone-aware"):
        events.NewEvent(events.TENANT_CREATED, datetime(2026, 1, 1)).row()
    with pytest.raises(ValueError, match=r"unknown event kind 'object\.exploded'; known: "):
        events.kind_of("object.exploded")
    with pytest.raises(ValueError, match="payload keys must be"):
        events.insert_from("t", events.EXPIRED, at=":now", data={})
    # Nothing was written by the refused appends.
    with service.engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM events WHERE tenant_id = :t"), {"t": tenant}).scalar()
    assert n == 1  # tenant.created


def test_kind_filters() -> None:
    assert events.kinds_matching(["move"]) == ["object.moved", "object.move_failed"]
    assert events.kinds_matching(["purge", "object.read"]) == [
        "object.purged",
        "object.purge_failed",
        "object.read",
    ]
    assert events.kinds_matching(["apikey.*"]) == ["apikey.created", "apikey.revoked"]
    with pytest.raises(ValueError, match="no event kind matches 'nope'"):
        events.kinds_matching(["nope"])


def test_every_event_of_a_put_carries_the_envelope(service: LiquidService, tenant: str) -> None:
    info = service.put(tenant, "ns", "k", os.urandom(300_000), trace_id="tr-1", execution_id="ex-1")
    with service.engine.connect() as conn:
        ev = conn.execute(
            text("SELECT * FROM events WHERE tenant_id = :t AND kind = 'object.created'"), {"t": tenant}
        ).one()
    assert (ev.namespace, ev.key, ev.version) == ("ns", "k", info.ref.version)
    assert (ev.trace_id, ev.execution_id, ev.tier) == ("tr-1", "ex-1", "warm")
    assert ev.bytes > 0 and ev.latency_ms is not None and ev.latency_ms >= 0
    assert ev.txid > 0
    assert set(ev.data) == set(events.CREATED.payload.fields)


@pytest.mark.parametrize("size", [100, 300_000])
def test_a_deleted_version_has_a_receipt_from_the_log(service: LiquidService, tenant: str, size: int) -> None:
    """Inline (catalog row) and store-held versions go through the one purge path alike."""
    data = os.urandom(size)
    info = service.put(tenant, "ns", "doomed", data)
    service.delete(tenant, info.ref, actor="alice")
    with service.engine.connect() as conn:
        oid = conn.execute(
            text("SELECT id, state FROM objects WHERE tenant_id = :t AND key = 'doomed'"), {"t": tenant}
        ).one()
        assert oid.state == "purged"
        r = receipt(conn, oid.id)
        kinds = (
            conn.execute(text("SELECT kind FROM events WHERE object_id = :id ORDER BY id"), {"id": oid.id})
            .scalars()
            .all()
        )
    assert kinds == ["object.created", "object.deleted", "object.purged"]
    assert r is not None
    assert r["ref"] == info.ref.uri and r["sha256"] == info.sha256
    assert r["reason"] == "deleted" and r["tombstone"] == "object.deleted" and r["actor"] == "alice"
    assert r["tombstoned_at"] is not None and r["purged_at"] is not None
    assert set(r) >= {"tier", "store", "locator", "size", "rule", "journal_id"}


def test_the_log_is_partitioned_by_month(service: LiquidService) -> None:
    with service.engine.connect() as conn:
        kind = conn.execute(text("SELECT relkind FROM pg_class WHERE relname = 'events'")).scalar()
        parts = (
            conn.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'"
                )
            )
            .scalars()
            .all()
        )
    assert kind == "p"
    now = datetime.now(UTC)
    assert "events_default" in parts and f"events_{now.year:04d}_{now.month:02d}" in parts
