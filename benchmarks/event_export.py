"""Event export throughput and end-to-end lag: N events from the log into embedded chDB.

    python -m benchmarks.event_export [--events 1000000] [--batch 50000]

Starts embedded PostgreSQL (or uses ``LIQUID_TEST_POSTGRES_URL``), appends N ``object.read``
events through :func:`liquid.events.log.insert_from` (the writers' own door), then runs the
daemon's :class:`~liquid.events.export.EventExporter` into a fresh chDB path and reports
events/s and the lag from the last append to the watermark covering it. Writes
``benchmarks/results/event_export.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from liquid.catalog import db
from liquid.embedded import EmbeddedPostgres
from liquid.events import log as events
from liquid.events.export import EventExporter
from liquid.events.sinks import ChDBSink, migrate

RESULTS = Path(__file__).with_name("results")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="liquid-bench-export-"))
    server = None
    url = os.environ.get("LIQUID_TEST_POSTGRES_URL")
    if not url:
        server = EmbeddedPostgres(base / "pg")
        url = server.start()
    try:
        engine = db.make_engine(url)
        db.upgrade(engine)
        seed = events.insert_from(
            "generate_series(1, :n) AS g",
            events.READ,
            at="now()",
            data={},
            tenant_id="'bench-' || (g % 10)",
            object_id="g",
            namespace="'ns'",
            key="'k' || g",
            version="1",
            tier="'warm'",
            count="1 + g % 7",
        )
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text(seed), {"n": args.events})
        appended = time.perf_counter() - t0
        sink = ChDBSink(base / "ch")
        migrate(sink)
        exporter = EventExporter(engine, sink, batch_size=args.batch)
        EventExporter(engine, sink).watermark()
        t1 = time.perf_counter()
        report = exporter.run_once()
        lag_end = time.perf_counter() - t1
        rows = int(sink.query(f"SELECT count() FROM {sink.database}.events").column(0)[0].as_py())
        sink.close()
        result = {
            "events": report.events,
            "rows_in_clickhouse": rows,
            "batch_size": args.batch,
            "append_seconds": round(appended, 2),
            "export_seconds": round(report.seconds, 2),
            "events_per_second": round(report.rate),
            "end_to_end_lag_seconds": round(lag_end, 2),
            "cpus": os.cpu_count(),
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "event_export.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
