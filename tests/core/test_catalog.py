"""Alembic migrations on a fresh database of the session's PostgreSQL server."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import Engine, inspect

from liquid.bootstrap import open_runtime
from liquid.catalog import db
from liquid.config import Settings


def test_upgrade_creates_schema_and_is_idempotent(fresh_engine: Engine) -> None:
    assert db.current_revision(fresh_engine) is None
    db.upgrade(fresh_engine)
    db.upgrade(fresh_engine)
    assert db.current_revision(fresh_engine) == db.head_revision()
    tables = set(inspect(fresh_engine).get_table_names())
    assert {
        "tenants",
        "api_keys",
        "objects",
        "key_heads",
        "access_stats",
        "events",
        "move_journal",
        "liquid_blobs",
        "liquid_blob_chunks",
    } <= tables


def test_tenant_id_leads_every_tenant_scoped_index(fresh_engine: Engine) -> None:
    db.upgrade(fresh_engine)
    insp = inspect(fresh_engine)
    for table in ("objects", "access_stats", "events", "api_keys"):
        for index in insp.get_indexes(table):
            if "tenant_id" in index["column_names"]:
                assert index["column_names"][0] == "tenant_id", (table, index)
    # objects is partitioned (migration 0012): its reference is unique in each partition.
    for part in ("objects_legacy", "objects_b01"):
        uniques = insp.get_unique_constraints(part)
        assert uniques[0]["column_names"][0] == "tenant_id"


def test_downgrade_to_base_and_back(fresh_engine: Engine) -> None:
    db.upgrade(fresh_engine)
    from alembic import command

    cfg = db.alembic_config(fresh_engine)
    command.downgrade(cfg, "base")
    assert not set(inspect(fresh_engine).get_table_names()) - {"alembic_version"}
    db.upgrade(fresh_engine)
    assert db.current_revision(fresh_engine) == db.head_revision()


def test_models_match_migrations(fresh_engine: Engine) -> None:
    """Alembic's autogenerate finds nothing to add: the models and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from liquid.catalog.models import Base

    db.upgrade(fresh_engine)
    with fresh_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)

    # The chunk store's two tables are created by its own DDL (liquid.stores.postgres.SCHEMA_SQL).
    # The event log's monthly partitions (and its default one) are made by its migration and by
    # liquid.events.retention, the objects table's bucket partitions by its migration (0012): not
    # declared as models.
    def made_elsewhere(d: tuple[Any, ...]) -> bool:
        table = d[1] if d[0] == "remove_table" else getattr(d[1], "table", None)
        return d[0] in ("remove_table", "remove_index") and str(getattr(table, "name", "")).startswith(
            ("liquid_blob", "events_", "objects_")
        )

    # A foreign key to a partitioned table shows in the catalog as one more per partition
    # (PostgreSQL's own, with a parent constraint): not declared either.
    def per_partition_fk(d: tuple[Any, ...]) -> bool:
        return d[0] == "remove_fk" and d[1].referred_table.name.startswith("objects_")

    diff = [d for d in diff if not made_elsewhere(d) and not per_partition_fk(d)]
    assert [d[:2] for d in diff] == []


def test_a_catalog_older_than_its_secrets_still_opens_then_upgrades_to_a_shared_hot_key(
    fresh_engine: Engine, base_settings: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # `liquid db upgrade` opens a runtime on the old catalog first: that must not fail.
    db.upgrade(fresh_engine, "0014")
    url = fresh_engine.url.render_as_string(hide_password=False)
    settings = {**base_settings, "catalog_url": url}
    with caplog.at_level(logging.WARNING, logger="liquid.catalog.db"):
        old = open_runtime(Settings(**settings), migrate=False)
    try:
        assert old.service.hot is not None and old.service.hot.key is None  # copies checked by SHA-256
        assert "run `liquid db upgrade`" in caplog.text and "0014" in caplog.text
        db.upgrade(old.service.engine)
    finally:
        old.close()
    key = db.secret(fresh_engine, "hot_copy_key")
    assert key is not None and len(key) == 32
    new = open_runtime(Settings(**settings), migrate=False)
    try:
        assert new.service.hot is not None and new.service.hot.key == key
    finally:
        new.close()
