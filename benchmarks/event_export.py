"""Event export throughput and end-to-end lag: N events from the log into embedded chDB.

    python -m benchmarks.event_export [--events 1000000] [--transactions 1000] [--batch N]

Starts embedded PostgreSQL (or uses ``LIQUID_TEST_POSTGRES_URL``), appends N ``object.read``
events through :func:`liquid.events.log.insert_from` (the writers' own door) in
``--transactions`` transactions (so the export order spans many txids, as it does in
production), then runs the daemon's :class:`~liquid.events.export.EventExporter` —
``run_once``, the call the daemon's export job and ``liquid export clickhouse`` make — with
the production batch size (``events.batch_size``) into a fresh chDB path, and reports
events/s and the lag from the last append to the watermark covering it.

The machine is shared: the report carries the load average around the run and the CPU
seconds the exporter's process and its PostgreSQL backends used, which say what the
export costs whatever the load. Writes ``benchmarks/results/event_export.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from liquid.catalog import db
from liquid.config import EventsSettings
from liquid.embedded import EmbeddedPostgres
from liquid.events import log as events
from liquid.events.export import EventExporter
from liquid.events.sinks import ChDBSink, migrate

RESULTS = Path(__file__).with_name("results")
GOAL = 100_000


def _stat(pid: int | str) -> list[str]:
    # Fields after the command name: [1] ppid, [11] utime, [12] stime, [13] cutime, [14] cstime.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _server_cpu(engine: Engine) -> float | None:
    """CPU seconds PostgreSQL used so far: its processes, and the backends that ended (reaped).

    None when the server is not on this machine.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    with engine.connect() as conn:
        backend = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        try:
            postmaster = int(_stat(backend)[1])
            mine = _stat(postmaster)
        except OSError:
            return None
        total = sum(int(v) for v in mine[11:15])
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = _stat(entry.name)
                except OSError:
                    continue
                if int(fields[1]) == postmaster:
                    total += int(fields[11]) + int(fields[12])
    return total / ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--transactions", type=int, default=1000, help="transactions the events come in")
    parser.add_argument(
        "--batch", type=int, default=EventsSettings().batch_size, help="default: events.batch_size"
    )
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
            "generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS g",
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
        per_tx = -(-args.events // args.transactions)
        t0 = time.perf_counter()
        for lo in range(1, args.events + 1, per_tx):
            with engine.begin() as conn:
                conn.execute(text(seed), {"lo": lo, "hi": min(args.events, lo + per_tx - 1)})
        appended = time.perf_counter() - t0
        with engine.begin() as conn:
            conn.execute(text("ANALYZE events"))
        sink = ChDBSink(base / "ch")
        migrate(sink)
        exporter = EventExporter(engine, sink, batch_size=args.batch)
        exporter.watermark()
        load_before = os.getloadavg()[0]
        cpu0, server0 = time.process_time(), _server_cpu(engine)
        t1 = time.perf_counter()
        report = exporter.run_once()
        lag_end = time.perf_counter() - t1
        cpu = time.process_time() - cpu0
        server1 = _server_cpu(engine)
        load_after = os.getloadavg()[0]
        rows = int(sink.query(f"SELECT count() FROM {sink.database}.events").column(0)[0].as_py())
        sink.close()
        result: dict[str, Any] = {
            "events": report.events,
            "rows_in_clickhouse": rows,
            "transactions": args.transactions,
            "batch_size": args.batch,
            "append_seconds": round(appended, 2),
            "export_seconds": round(report.seconds, 2),
            "events_per_second": round(report.rate),
            "goal_events_per_second": GOAL,
            "meets_goal": report.rate >= GOAL,
            "end_to_end_lag_seconds": round(lag_end, 2),
            "exporter_process_cpu_seconds": round(cpu, 2),
            "postgres_cpu_seconds": round(server1 - server0, 2) if server0 and server1 else None,
            "load_average_before": round(load_before, 2),
            "load_average_after": round(load_after, 2),
            "cpus": os.cpu_count(),
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "event_export.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "event_export.md").write_text(_markdown(result))
        print(json.dumps(result, indent=2))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _markdown(r: dict[str, Any]) -> str:
    verdict = "met" if r["meets_goal"] else "missed"
    return (
        "# Event export into chDB\n\n"
        f"`python -m benchmarks.event_export`: {r['events']} `object.read` events appended in"
        f" {r['transactions']} transactions, then one `EventExporter.run_once()` (the daemon's export job)"
        f" with `events.batch_size` = {r['batch_size']} into a fresh embedded chDB; {r['cpus']} shared cores,"
        f" load average {r['load_average_before']} before and {r['load_average_after']} after.\n\n"
        "| events | rows in ClickHouse | export s | events/s | end-to-end lag s | exporter CPU s"
        " | PostgreSQL CPU s |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {r['events']} | {r['rows_in_clickhouse']} | {r['export_seconds']} | {r['events_per_second']}"
        f" | {r['end_to_end_lag_seconds']} | {r['exporter_process_cpu_seconds']}"
        f" | {r['postgres_cpu_seconds']} |\n\n"
        f"Goal ≥ {r['goal_events_per_second']} events/s: **{verdict}**. Exporter CPU is the exporting"
        " process (the PostgreSQL client, chDB and its background merges); PostgreSQL CPU is the"
        " server's processes over the same span. Their sum over the export seconds is how many"
        " cores the export kept busy.\n"
    )


if __name__ == "__main__":
    main()
