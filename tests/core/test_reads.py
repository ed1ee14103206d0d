"""Reads on the request path open no transaction: no BEGIN before them, no ROLLBACK after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, event

from liquid.catalog import db
from liquid.events import history
from liquid.events.history import EventQuery
from liquid.events.stats import PostgresStats, StatsFilter
from liquid.policy import store
from liquid.service import LiquidService


@contextmanager
def _statuses(engine: Engine) -> Iterator[list[tuple[str, TransactionStatus]]]:
    """Each statement run on ``engine`` meanwhile, with its connection's transaction status after it."""
    seen: list[tuple[str, TransactionStatus]] = []

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append((statement, conn.connection.dbapi_connection.info.transaction_status))

    event.listen(engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(engine, "after_cursor_execute", after)


def _reads(service: LiquidService, tenant: str, key: str) -> dict[str, Callable[[], object]]:
    engine = service.engine
    stats = PostgresStats(engine, policies=lambda: None)
    everything = StatsFilter(tenant=tenant)
    return {
        "list": lambda: service.list(tenant, "reads"),
        "tenant_exists": lambda: service.tenancy.tenant_exists(tenant),
        "list_tenants": service.tenancy.list_tenants,
        "authenticate": lambda: service.tenancy.authenticate(key),
        "events page": lambda: history.read_page(engine, EventQuery(tenant=tenant)),
        "events tail": lambda: history.tail(engine, EventQuery(tenant=tenant)),
        "stats usage": lambda: stats.usage(everything),
        "stats top objects": lambda: stats.top_objects(everything, 5),
        "active policies": lambda: store.active_policies(engine),
        "policy history": lambda: store.history(engine),
    }


#: Every read :func:`_reads` makes, by name.
READS = (
    "list",
    "tenant_exists",
    "list_tenants",
    "authenticate",
    "events page",
    "events tail",
    "stats usage",
    "stats top objects",
    "active policies",
    "policy history",
)


@pytest.mark.parametrize("name", READS)
def test_request_path_reads_leave_no_transaction_open(service: LiquidService, tenant: str, name: str) -> None:
    service.put(tenant, "reads", "a", b"one")
    key = service.tenancy.create_api_key(tenant)
    reads = _reads(service, tenant, key)
    assert set(reads) == set(READS)
    read = reads[name]
    with _statuses(service.engine) as seen:
        read()
    assert seen, f"{name} ran no statement on the engine"
    # In a transaction the status after a statement is INTRANS: psycopg sent BEGIN first, and the
    # pool will send ROLLBACK when the connection comes back. Autocommit leaves it IDLE.
    assert [(s, status) for s, status in seen if status != TransactionStatus.IDLE] == []


def test_reading_connections_go_back_to_the_pool_in_transactions_again(service: LiquidService) -> None:
    """``db.reading`` sets autocommit for its own use only: the next ``begin`` is atomic again."""
    engine = service.engine
    with db.reading(engine) as conn:
        conn.exec_driver_sql("SELECT 1")
    with _statuses(engine) as seen, engine.begin() as conn:
        conn.exec_driver_sql("SELECT 1")
    assert [status for _, status in seen] == [TransactionStatus.INTRANS]
