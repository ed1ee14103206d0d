"""Export of the event log into ClickHouse: chDB in-process, or a server at LIQUID_TEST_CLICKHOUSE_URL."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from liquid.events.export import EventExporter, exported_ids
from liquid.events.sinks import ChDBSink, EventSink, SinkUnavailable, migrate, open_sink
from liquid.service import LiquidService


class Crash(BaseException):
    """Stands for the process dying at a protocol point (nothing after it runs)."""


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[EventSink]:
    url = os.environ.get("LIQUID_TEST_CLICKHOUSE_URL")
    if url:
        # A database of its own per test, on the server the variable names.
        s = open_sink(url.rstrip("/") + f"/liquid_test_{uuid.uuid4().hex[:8]}")
    else:
        s = ChDBSink(tmp_path / "ch")
    migrate(s)
    yield s
    if url:
        s.execute(f"DROP DATABASE IF EXISTS {s.database}")
    s.close()


def _all_ids(service: LiquidService, sink: EventSink) -> list[int]:
    """Ids of the log past where this test's sink started (the catalog is shared by the suite)."""
    t, i = _STARTS[sink.name]
    with service.engine.connect() as conn:
        return [
            int(i)
            for i in conn.execute(
                text("SELECT id FROM events WHERE (txid, id) > (:t, :i) ORDER BY id"),
                {"t": t, "i": i},
            ).scalars()
        ]


_STARTS: dict[str, tuple[int, int]] = {}


@pytest.fixture(autouse=True)
def _from_head(service: LiquidService, sink: EventSink) -> None:
    """Each test's sink starts at the log's head: it exports its own test's events, not the suite's."""
    _STARTS[sink.name] = EventExporter(service.engine, sink).start_at_head()


def _seed(service: LiquidService, tenant: str, n: int = 20) -> None:
    for i in range(n):
        info = service.put(tenant, "seed", f"k{i}", os.urandom(100 + i))
        if i % 4 == 0:
            service.delete(tenant, info.ref)


def test_migrations_are_idempotent(sink: EventSink) -> None:
    assert migrate(sink) == []
    tables = sink.query(f"SELECT name FROM system.tables WHERE database = '{sink.database}'")
    assert {"events", "usage_daily", "usage_daily_mv", "schema_migrations"} <= set(
        tables.column(0).to_pylist()
    )


def test_export_of_a_seeded_log(service: LiquidService, tenant: str, sink: EventSink) -> None:
    _seed(service, tenant)
    exporter = EventExporter(service.engine, sink, batch_size=7)
    seen: list[int] = []
    report = exporter.run_once(progress=seen.append)
    assert report.events == sum(seen) and report.batches == len(seen) > 1
    assert exported_ids(sink) == _all_ids(service, sink)
    assert exporter.lag().events == 0
    # Columns arrive as the log has them.
    row = sink.query(
        f"SELECT kind, tier, bytes, namespace FROM {sink.database}.events"
        f" WHERE tenant_id = '{tenant}' AND kind = 'object.created' ORDER BY id LIMIT 1"
    ).to_pylist()[0]
    assert row == {"kind": "object.created", "tier": "warm", "bytes": 100, "namespace": "seed"}
    # New events later go in the next run, and only they.
    _seed(service, tenant, 3)
    assert exporter.run_once().events == len(_all_ids(service, sink)) - report.events
    assert exported_ids(sink) == _all_ids(service, sink)


def test_a_crash_between_insert_and_watermark_gives_no_duplicates_and_no_gaps(
    service: LiquidService, tenant: str, sink: EventSink
) -> None:
    _seed(service, tenant)
    points: list[str] = []

    def die_on_second_batch(point: str) -> None:
        points.append(point)
        if len(points) == 2:
            raise Crash(point)

    with pytest.raises(Crash):
        EventExporter(service.engine, sink, batch_size=10, crash=die_on_second_batch).run_once()
    # The second batch is in ClickHouse, the watermark still before it.
    _, _, pending = EventExporter(service.engine, sink).watermark()
    assert pending is not None
    _seed(service, tenant, 5)  # the log moves on meanwhile
    again = EventExporter(service.engine, sink, batch_size=10).run_once()
    assert again.replayed == 1
    ids = exported_ids(sink)
    assert len(ids) == len(set(ids)), "duplicates"
    assert ids == _all_ids(service, sink), "gaps"
    # The rollup saw each event once too.
    assert _rollup_writes(sink, tenant) == _raw_writes(sink, tenant) == 25


def _rollup_writes(sink: EventSink, tenant: str) -> int:
    t = sink.query(f"SELECT sum(writes) FROM {sink.database}.usage_daily WHERE tenant_id = '{tenant}'")
    return int(t.column(0)[0].as_py())


def _raw_writes(sink: EventSink, tenant: str) -> int:
    t = sink.query(
        f"SELECT count() FROM {sink.database}.events WHERE tenant_id = '{tenant}' AND kind = 'object.created'"
    )
    return int(t.column(0)[0].as_py())


def test_rollups_equal_a_direct_aggregation_of_raw_events(
    service: LiquidService, tenant: str, sink: EventSink
) -> None:
    _seed(service, tenant, 12)
    EventExporter(service.engine, sink, batch_size=5).run_once()
    db = sink.database
    cols = "writes, bytes_written, reads, purges, bytes_purged, moves_in, bytes_moved_in, bytes_in, bytes_out"
    rollup = sink.query(
        f"SELECT tier, {', '.join(f'sum({c}) AS {c}' for c in cols.split(', '))} FROM {db}.usage_daily"
        f" WHERE tenant_id = '{tenant}' GROUP BY tier ORDER BY tier"
    ).to_pylist()
    direct = sink.query(
        f"SELECT tier, countIf(kind = 'object.created') AS writes,"
        f" sumIf(bytes, kind = 'object.created') AS bytes_written,"
        f" sumIf(count, kind = 'object.read') AS reads,"
        f" countIf(kind = 'object.purged') AS purges, sumIf(bytes, kind = 'object.purged') AS bytes_purged,"
        f" countIf(kind = 'object.moved') AS moves_in, sumIf(bytes, kind = 'object.moved') AS bytes_moved_in,"
        f" sumIf(bytes, kind IN ('object.created', 'object.moved')) AS bytes_in,"
        f" sumIf(bytes, kind = 'object.purged') AS bytes_out"
        f" FROM {db}.events WHERE tenant_id = '{tenant}'"
        f" AND kind IN ('object.created', 'object.read', 'object.purged', 'object.moved')"
        f" GROUP BY tier ORDER BY tier"
    ).to_pylist()
    assert rollup == direct and rollup[0]["writes"] == 12 and rollup[0]["purges"] == 3


class FlakySink:
    """Forwards to a real sink, refusing the first ``failures`` inserts (ClickHouse down)."""

    def __init__(self, inner: EventSink, failures: int) -> None:
        self.inner, self.failures = inner, failures
        self.name, self.database = inner.name, inner.database

    def insert_events(self, batch: object, *, token: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("ClickHouse is down")
        self.inner.insert_events(batch, token=token)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Callable[..., object]:
        return getattr(self.inner, name)  # type: ignore[no-any-return]


def test_clickhouse_down_loses_nothing(service: LiquidService, tenant: str, sink: EventSink) -> None:
    _seed(service, tenant, 6)
    # Retried through a short outage.
    flaky = FlakySink(sink, failures=2)
    EventExporter(service.engine, flaky, batch_size=1000, retries=3, backoff=0.01).run_once()  # type: ignore[arg-type]
    assert exported_ids(sink) == _all_ids(service, sink)
    # A long one: the run gives up with a clear error, the events wait, the next run catches up.
    _seed(service, tenant, 4)
    down = FlakySink(sink, failures=100)
    exporter = EventExporter(service.engine, down, retries=2, backoff=0.01)  # type: ignore[arg-type]
    with pytest.raises(SinkUnavailable, match="failed 2 times"):
        exporter.run_once()
    assert exporter.lag().events >= 4
    down.failures = 0
    exporter.run_once()
    assert exported_ids(sink) == _all_ids(service, sink) and exporter.lag().events == 0


def test_an_open_transaction_holds_the_export_back_instead_of_being_skipped(
    service: LiquidService, tenant: str, sink: EventSink
) -> None:
    """An event whose transaction commits after later ids were exported is still exported."""
    from liquid.events import log as events

    exporter = EventExporter(service.engine, sink)
    exporter.run_once()
    started, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with service.engine.begin() as conn:
            events.append(conn, events.NewEvent(events.TENANT_CREATED, service.clock(), tenant_id=tenant))
            started.set()
            release.wait(10)

    t = threading.Thread(target=slow_writer)
    t.start()
    started.wait(10)
    _seed(service, tenant, 2)  # later ids, committed first
    exporter.run_once()
    release.set()
    t.join()
    exporter.run_once()
    assert exported_ids(sink) == _all_ids(service, sink)


def test_cli_exports_with_progress_and_reports(
    service: LiquidService, tenant: str, base_settings: dict[str, object], tmp_path: Path, sink: EventSink
) -> None:
    import json

    from typer.testing import CliRunner

    from liquid.cli import app

    _seed(service, tenant, 3)
    env = {
        "LIQUID_CATALOG_URL": str(base_settings["catalog_url"]),
        "LIQUID_STORES": json.dumps(base_settings["stores"]),
    }
    sink.close()  # chDB holds one path per process: the CLI opens its own
    url = f"chdb://{tmp_path / 'cli-ch'}"
    first = CliRunner().invoke(app, ["export", "clickhouse", "--sink", url, "--batch-size", "20000"], env=env)
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert out["events"] >= 3 and out["lag_events"] == 0
    again = CliRunner().invoke(app, ["export", "clickhouse", "--sink", url], env=env)
    assert json.loads(again.stdout)["events"] == 0
    bad = CliRunner().invoke(app, ["export", "clickhouse", "--sink", "mysql://x"], env=env)
    assert bad.exit_code != 0 and "unknown event sink 'mysql://x'" in str(bad.exception)


def test_retention_drops_only_old_exported_months(
    service: LiquidService, tenant: str, sink: EventSink
) -> None:
    from datetime import UTC, datetime, timedelta

    from liquid.events import log as events
    from liquid.events import retention

    old = datetime(2020, 1, 15, tzinfo=UTC)
    assert retention.ensure_partitions(service.engine, old, ahead=0) in (["events_2020_01"], [])
    with service.engine.begin() as conn:
        events.append(conn, events.NewEvent(events.TENANT_CREATED, old, tenant_id=tenant))
    now = datetime.now(UTC)
    keep = timedelta(days=90)
    exporter = EventExporter(service.engine, sink)
    # Not exported yet: kept.
    exporter.watermark()
    report = retention.prune(service.engine, now, retention=keep, sinks=[sink.name])
    assert report.waiting == ["events_2020_01"] and report.dropped == []
    exporter.run_once()
    report = retention.prune(service.engine, now, retention=keep, sinks=[sink.name])
    assert report.dropped == ["events_2020_01"] and report.rows >= 1
    # Still in ClickHouse; gone from PostgreSQL; this month's partition untouched.
    with service.engine.connect() as conn:
        # (Only ours: other tests' fake clocks leave far-off events in events_default, never pruned.)
        mine = text("SELECT count(*) FROM events WHERE at < '2020-02-01' AND tenant_id = :t")
        assert conn.execute(mine, {"t": tenant}).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM events")).scalar()
    assert retention.prune(service.engine, now, retention=keep, sinks=[]).dropped == []


def test_crashes_at_every_step_of_a_pipelined_run_still_give_every_event_once(
    service: LiquidService, tenant: str, sink: EventSink
) -> None:
    """Runs that die after their second insert (the next batch already being read) and resume."""
    _seed(service, tenant, 24)
    runs = 0
    while True:
        inserts: list[str] = []

        def die_on_second_insert(point: str, inserts: list[str] = inserts) -> None:
            inserts.append(point)
            if len(inserts) == 2:
                raise Crash(point)

        runs += 1
        try:
            EventExporter(service.engine, sink, batch_size=4, crash=die_on_second_insert).run_once()
            break
        except Crash:
            if runs <= 2:
                _seed(service, tenant, 1)  # the log grows between crashes too
        assert runs < 100
    assert runs > 3
    ids = exported_ids(sink)
    assert len(ids) == len(set(ids)), "duplicates"
    assert ids == _all_ids(service, sink), "gaps"
    assert _rollup_writes(sink, tenant) == _raw_writes(sink, tenant) == 26


def test_a_second_exporter_on_the_same_sink_makes_the_first_stop_not_interleave(
    service: LiquidService, tenant: str, sink: EventSink
) -> None:
    from liquid.events.export import ExportConflict

    _seed(service, tenant, 8)
    done: list[int] = []

    def other_exporter_runs_meanwhile(point: str) -> None:
        if not done:
            done.append(EventExporter(service.engine, sink, batch_size=3).run_once().events)

    first = EventExporter(service.engine, sink, batch_size=3, crash=other_exporter_runs_meanwhile)
    with pytest.raises(ExportConflict, match="another exporter writes to the same sink"):
        first.run_once()
    ids = exported_ids(sink)
    assert len(ids) == len(set(ids)) and ids == _all_ids(service, sink)


_TERMINATE = text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :a")


def test_the_reader_replaces_a_connection_that_died_between_batches(
    service: LiquidService, tenant: str, sink: EventSink
) -> None:
    from liquid.events.reader import APPLICATION_NAME

    _seed(service, tenant, 12)
    killed: list[object] = []

    def kill_reader(point: str) -> None:
        if killed:
            return
        with service.engine.begin() as conn:
            killed.extend(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :a"
                    ),
                    {"a": APPLICATION_NAME},
                ).all()
            )
        assert killed, "the reader's connection is kept across batches"

    exporter = EventExporter(service.engine, sink, batch_size=5, crash=kill_reader)
    report = exporter.run_once()
    assert report.batches > 2
    ids = exported_ids(sink)
    assert len(ids) == len(set(ids)) and ids == _all_ids(service, sink)
    assert exporter.lag().events == 0


def _plan_nodes(plan: dict[str, object]) -> Iterator[str]:
    yield str(plan["Node Type"])
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        yield from _plan_nodes(child)


def test_a_batch_read_never_sorts_the_backlog(service: LiquidService, tenant: str, sink: EventSink) -> None:
    """The partitions' (txid, id) indexes give the order: no sort of everything past the watermark."""
    import psycopg

    from liquid.catalog.fastpath import conninfo
    from liquid.events.reader import NO_SORT, PostgresEventReader

    _seed(service, tenant, 4)
    reader = PostgresEventReader(conninfo(service.engine.url.render_as_string(hide_password=False)))
    try:
        # The reader's own transactions run without sorts (COPY cannot carry an EXPLAIN, so the
        # plan is read below in a transaction set up the same way)...
        setting = reader.in_transaction("SELECT current_setting('enable_sort') AS s")
        assert setting.column("s").to_pylist() == ["off"]
    finally:
        reader.close()
    with psycopg.connect(reader.url) as conn:
        conn.execute(NO_SORT)
        row = conn.execute(
            "EXPLAIN (FORMAT JSON) " + reader.query_after(0, 0, horizon=2**62, limit=50_000)
        ).fetchone()
    assert row is not None
    nodes = list(_plan_nodes(row[0][0]["Plan"]))
    assert "Sort" not in nodes and "Incremental Sort" not in nodes, nodes
    assert nodes[0] == "Limit" and {"Index Scan", "Index Only Scan"} & set(nodes), nodes
