"""Put/get latency and throughput per tier, Liquid's core service side by side with the raw clients.

    python -m benchmarks.core_io [--quick]

Starts embedded PostgreSQL, Valkey and SeaweedFS S3 on loopback (or uses
``LIQUID_TEST_POSTGRES_URL`` / ``LIQUID_TEST_REDIS_URL`` / ``LIQUID_TEST_S3_ENDPOINT``),
then for each tier and size runs the same number of operations through
:class:`~liquid.service.LiquidService` and through the raw client on the same server:

* hot:  Liquid ``get`` of a cached object  vs  redis-py ``GET``
* warm: Liquid ``put``/``get`` (catalog row + PostgreSQL blob)  vs  psycopg ``INSERT``/``SELECT`` of a bytea
* cold: Liquid ``put``/``get`` (S3 object + catalog row)  vs  boto3 ``put_object``/``get_object``

Liquid and raw runs alternate in rounds so drift on the machine hits both alike. Warm reads of
values kept in their catalog row (1 KiB, 64 KiB) alternate call by call instead, the raw ``SELECT``
on the very connection ``get`` reads on: where the kernel runs a connection's PostgreSQL process
decides such a round trip more than either statement does (:func:`lane_of`).
Writes ``benchmarks/results/core_io.json`` and ``benchmarks/results/core_io.md``;
the ratio column is Liquid p50 / raw p50 (1.00 = no overhead).

Breakdowns follow in the same run, each step beside its raw client in alternating rounds, with
the CPU each step costs per call in this process (every thread) and, for the cold get, in the
embedded S3 server:

* **warm 1 KiB put**: the raw ``INSERT``; Liquid's own write statement
  (:data:`liquid.catalog.fastpath.INSERT_OBJECT`: version head, object row, event, change feed)
  run on a plain psycopg connection; the same through
  :meth:`~liquid.catalog.fastpath.CatalogFastPath.insert` (what ``put`` calls); and ``put``.
  The statement's line is the floor of any put that writes those rows in one round trip.
* **warm 1 KiB get**: the raw ``SELECT``; Liquid's read statement; the fast path's call of it; and
  ``get``, all on ``get``'s connection, call by call; then the raw ``SELECT``'s round trip with its
  server process pinned to the client's CPU and to the other (the cause of the spread above).
* **cold 4 MiB get**: boto3 ``get_object`` (of SSE-S3 objects, as Liquid stores them; see
  :class:`RawS3`); the SHA-256 of the value alone; the raw ``GET`` then its SHA-256; the raw
  ``GET`` of an object stored without SSE; the raw ``GET`` on Liquid's boto3 client, which
  skips the CRC32 check the default client makes of objects uploaded with one (the raw ones
  are); the store read ``get`` makes (:meth:`~liquid.stores.s3.S3Store.read_into`: the socket
  read into one buffer, each step hashed while the next arrives); Liquid's ``get`` (the same,
  plus the catalog lookup; digest checked before any byte is returned); and ``open``
  streamed, as the API reads (read-ahead thread, last chunk held back until the digest is
  checked).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from liquid.bootstrap import open_runtime
from liquid.catalog.fastpath import INSERT_OBJECT, SELECT_LIVE_VALUE
from liquid.config import Settings
from liquid.refs import ResultRef
from liquid.service import _read_whole

RESULTS = Path(__file__).parent / "results"
KiB, MiB = 1024, 1024 * 1024
SIZES = {"1KiB": KiB, "64KiB": 64 * KiB, "4MiB": 4 * MiB}
TARGETS = {("hot", "1KiB"): 1.3, ("warm", "1KiB"): 1.3, ("cold", "4MiB"): 1.1}
console = Console(stderr=True)


@dataclass
class Cell:
    tier: str
    size: str
    op: str
    liquid: list[float]
    raw: list[float]
    nbytes: int

    def summary(self) -> dict[str, Any]:
        def stats(xs: list[float]) -> dict[str, float]:
            xs = sorted(xs)
            p50 = statistics.median(xs)
            p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
            total = sum(xs)
            return {
                "p50_ms": p50 * 1e3,
                "p99_ms": p99 * 1e3,
                "ops_per_s": len(xs) / total,
                "mb_per_s": len(xs) * self.nbytes / total / 1e6,
            }

        lq, rw = stats(self.liquid), stats(self.raw)
        target = TARGETS.get((self.tier, self.size))
        ratio = lq["p50_ms"] / rw["p50_ms"]
        return {
            "tier": self.tier,
            "size": self.size,
            "op": self.op,
            "n": len(self.liquid),
            "liquid": lq,
            "raw": rw,
            "ratio_p50": ratio,
            "ratio_p99": lq["p99_ms"] / rw["p99_ms"],
            "ratio_throughput": rw["ops_per_s"] / lq["ops_per_s"],
            "target_ratio": target,
            "target_met": None if target is None else ratio <= target,
        }


def timed(
    fn: Callable[[int], object], n: int, rounds: int, out: list[float], progress: Progress, task: Any
) -> None:
    for i in range(n // rounds):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
        progress.advance(task)


def alternate(
    liquid: Callable[[int], object],
    raw: Callable[[int], object],
    n: int,
    progress: Progress,
    label: str,
    rounds: int = 4,
    *,
    each_call: bool = False,
) -> tuple[list[float], list[float]]:
    """``n`` calls of each side, in ``rounds`` alternating blocks, or with ``each_call`` one by one
    (raw, Liquid, Liquid, raw, ...: neither side always goes first)."""
    lq: list[float] = []
    rw: list[float] = []
    task = progress.add_task(label, total=2 * (n // rounds) * rounds)
    if each_call:
        for i in range(n // rounds * rounds):
            for fn, out in ((raw, rw), (liquid, lq)) if i % 2 == 0 else ((liquid, lq), (raw, rw)):
                t0 = time.perf_counter()
                fn(i)
                out.append(time.perf_counter() - t0)
            progress.advance(task, 2)
    else:
        for _ in range(rounds):
            timed(raw, n, rounds, rw, progress, task)
            timed(liquid, n, rounds, lq, progress, task)
    progress.remove_task(task)
    return lq, rw


class RawPostgres:
    """psycopg INSERT/SELECT of one bytea per row, autocommit (one fsync'd commit per insert, like Liquid).

    ``on``, if given, supplies the connection each INSERT and SELECT runs on (see :func:`lane_of`).
    """

    def __init__(self, conn: Any, payload: bytes, *, on: Callable[[], Any] | None = None) -> None:
        self.conn = conn
        self.payload = payload
        self.ids: list[Any] = []
        self.on = on

    def put(self, i: int) -> None:
        conn = self.conn if self.on is None else self.on()
        row = conn.execute(
            "INSERT INTO bench_raw (data) VALUES (%s) RETURNING id", (self.payload,)
        ).fetchone()
        self.ids.append(row[0])

    def get(self, i: int) -> None:
        # Binary results: bytea as its bytes, not hex text twice their size (the floor Liquid's own
        # warm read uses; text would make large values look slow for the raw side).
        conn = self.conn if self.on is None else self.on()
        conn.execute(
            "SELECT data FROM bench_raw WHERE id = %s", (self.ids[i % len(self.ids)],), binary=True
        ).fetchone()


def lane_of(fast: Any) -> Callable[[], Any]:
    """The connection Liquid's warm read of a value kept in its row runs on: the fast path's lane.

    Why the raw SELECT runs there, alternated with ``get`` call by call: PostgreSQL serves each
    connection with a server process of its own, and whether the kernel runs that process on the
    client's CPU or on another decides a 1 KiB round trip more than either statement does (see
    :func:`placement_anatomy`: about 35 µs on one CPU against 120 µs across two on a 2-core VM,
    where waking the other CPU is dear). A connection keeps its placement for seconds at a time,
    so two connections measured in blocks drew theirs apart: one run said 2.64x for ``get`` while
    its own breakdown said 1.16x, another 2.97x for the fast path's statement and 1.31x for the
    ``get`` around it, on the same connection. On one connection, call by call, both sides meet
    the same placement, whichever it is.

    The lane hands its connection back to the pool every ``LANE_SECONDS`` and takes one again; it
    is followed here (the last one is kept while the lane holds none). Read it after a warm read.
    """
    held = [fast._lane]
    if held[0] is None:
        raise RuntimeError("the fast path holds no lane yet: read a warm value first")

    def now() -> Any:
        lane = fast._lane
        if lane is not None:
            held[0] = lane
        return held[0]

    return now


class RawS3:
    """boto3 put_object/get_object on the same bucket.

    Puts ask for SSE-S3, as Liquid's do by default (and as AWS S3 applies to every new object
    since 2023): SeaweedFS encrypts only when asked, and decrypting costs its server about 1.7 ms
    of CPU per 4 MiB GET here, which a plain raw object would leave out of the raw side.
    """

    def __init__(self, s3: Any, bucket: str, size_name: str, payload: bytes) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.size_name = size_name
        self.payload = payload
        self.keys: list[str] = []

    def put(self, i: int) -> None:
        key = f"raw/{self.size_name}/{len(self.keys)}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=self.payload, ServerSideEncryption="AES256")
        self.keys.append(key)

    def get(self, i: int) -> None:
        self.s3.get_object(Bucket=self.bucket, Key=self.keys[i % len(self.keys)])["Body"].read()


def durable_cells(
    svc: Any, tenant: str, tier: str, size_name: str, payload: bytes, raw: Any, n: int, progress: Progress
) -> list[Cell]:
    """Put then get ``n`` objects of one size through Liquid and through the raw client."""
    refs: list[ResultRef] = []

    def lq_put(i: int) -> None:
        refs.append(svc.put(tenant, tier, f"{size_name}/{len(refs)}", payload).ref)

    def lq_get(i: int) -> None:
        svc.get(tenant, refs[i % len(refs)])

    cells = []
    # A value kept in its catalog row is written and read on the fast path's lane: the raw INSERT
    # and SELECT run there too, call by call beside put and get (lane_of says why). Others go to
    # their store's own connections. One untimed put first finds out which, and opens the lane.
    probe = svc.put(tenant, tier, f"{size_name}/probe", payload).ref
    assert svc.head(tenant, probe).home_tier == tier, "object landed in the wrong tier"
    in_row = tier == "warm" and svc.head(tenant, probe).home_store == "catalog"
    if in_row:
        svc.get(tenant, probe)
        raw.on = lane_of(svc.fast)
    lq, rw = alternate(lq_put, raw.put, n, progress, f"{tier} put {size_name}", each_call=in_row)
    cells.append(Cell(tier, size_name, "put", lq, rw, len(payload)))
    assert svc.head(tenant, refs[0]).home_tier == tier, "object landed in the wrong tier"
    lq, rw = alternate(lq_get, raw.get, n, progress, f"{tier} get {size_name}", each_call=in_row)
    cells.append(Cell(tier, size_name, "get", lq, rw, len(payload)))
    return cells


def _put_fields(tenant: str, key: str, payload: bytes) -> dict[str, Any]:
    """What ``LiquidService.put`` hands the write statement for a small warm value."""
    return {
        "tenant": tenant,
        "namespace": "anatomy",
        "key": key,
        "content_type": "application/octet-stream",
        "tags": "{}",
        "classification": None,
        "trace_id": None,
        "correlation_id": None,
        "execution_id": None,
        "now": datetime.now(UTC),
        "expires_at": None,
        "legal_hold": False,
        "scope": None,
        "actor": None,
        "size": len(payload),
        "stored_size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "compression": "none",
        "home_tier": "warm",
        "home_store": "catalog",
        "locator": None,
        "inline_data": payload,
        "latency_ms": 0.0,
    }


def put_anatomy(svc: Any, tenant: str, pconn: Any, n: int, progress: Progress) -> list[dict[str, Any]]:
    """Warm 1 KiB put step by step, each beside the raw INSERT, alternated call by call.

    All on the one connection ``put`` writes on (the fast path's lane, as for the warm get: see
    :func:`lane_of`), so that each step meets the same server process in the same placement.
    """
    payload = os.urandom(KiB)
    count = iter(range(10**9))
    svc.put(tenant, "anatomy", f"put/{next(count)}", payload)  # the lane holds a connection now
    on_lane = lane_of(svc.fast)
    raw = RawPostgres(pconn, payload, on=on_lane)
    kept: dict[Any, Any] = {}  # a cursor per connection, kept as the fast path keeps its own

    def statement(i: int) -> None:
        conn = on_lane()
        if conn not in kept:
            kept[conn] = conn.cursor(binary=True)
        kept[conn].execute(INSERT_OBJECT, _put_fields(tenant, f"stmt/{next(count)}", payload)).fetchone()

    def fast_insert(i: int) -> None:
        svc.fast.insert(_put_fields(tenant, f"fast/{next(count)}", payload))

    def put(i: int) -> None:
        svc.put(tenant, "anatomy", f"put/{next(count)}", payload)

    steps = {
        "raw INSERT of one bytea row (psycopg)": raw.put,
        "Liquid's write statement on psycopg (prepared, a cursor of its own)": statement,
        "CatalogFastPath.insert (the statement as put runs it)": fast_insert,
        "LiquidService.put": put,
    }
    return _anatomy(steps, n, progress, "warm put anatomy", each_call=True)


def put_server_anatomy(tenant: str, dsn: str, n: int, progress: Progress) -> list[dict[str, Any]]:
    """The raw INSERT and Liquid's write statement without waiting for the commit's fsync.

    A diagnostic of the server's own work, which the fsync otherwise hides or inflates as the
    disk is quiet or busy: ``synchronous_commit = off`` on this one connection only (never what
    Liquid runs; its puts wait for the flush).
    """
    import psycopg

    payload = os.urandom(KiB)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        raw = RawPostgres(conn, payload)
        count = iter(range(10**9))

        def statement(i: int) -> None:
            conn.execute(INSERT_OBJECT, _put_fields(tenant, f"nosync/{next(count)}", payload)).fetchone()

        steps = {
            "raw INSERT, not waiting for the fsync (diagnostic)": raw.put,
            "Liquid's write statement, not waiting for the fsync (diagnostic)": statement,
        }
        return _anatomy(steps, n, progress, "warm put server work")


def hot_get_anatomy(svc: Any, tenant: str, rclient: Any, n: int, progress: Progress) -> list[dict[str, Any]]:
    """Hot 1 KiB get step by step, each beside redis-py's GET in the same rounds.

    From the outside in: the raw ``GET`` of the bare value; the ``GET`` of the version's copy on
    the hot cache's own client (its key, its entry header); the same through the guard (bulkhead
    and circuit breaker); then the copy's SHA-256 checked (:func:`liquid.hotcache.decode`);
    :meth:`~liquid.hotcache.HotCache.get` (the version's checksum compared too); and ``get`` (the
    version's facts from the cache, the access count).
    """
    from liquid.hotcache import decode, hot_key

    payload = os.urandom(KiB)
    ref = svc.put(tenant, "anatomy", "hot", payload).ref
    assert svc.fill_hot(ref, svc.fast.find(ref.tenant, ref.namespace, ref.key, ref.version).id)
    assert svc.get(tenant, ref) == payload  # and the version's facts are known
    facts = svc.known(ref)
    rclient.set("raw:anatomy", payload)
    hot, key = svc.hot, hot_key(ref)

    steps = {
        "redis-py GET of the bare value": lambda i: rclient.get("raw:anatomy"),
        "GET of the copy on the hot cache's client": lambda i: hot.client.get(key),
        "the same through the guard (Guard.call)": lambda i: hot.guard.call(hot.client.get, key),
        "guarded GET, then the copy's SHA-256 checked (decode)": lambda i: decode(
            hot.guard.call(hot.client.get, key), facts.sha256, hot.key
        ),
        "HotCache.get (also against the version's checksum)": lambda i: hot.get(
            ref, expect_sha256=facts.sha256
        ),
        "LiquidService.get": lambda i: svc.get(tenant, ref),
    }
    return _anatomy(steps, n, progress, "hot get anatomy")


def warm_get_anatomy(svc: Any, tenant: str, pconn: Any, n: int, progress: Progress) -> list[dict[str, Any]]:
    """Warm 1 KiB get step by step, each beside the raw SELECT, alternated call by call.

    From the outside in: the raw ``SELECT`` of a bytea by primary key; Liquid's read statement
    (:data:`liquid.catalog.fastpath.SELECT_LIVE_VALUE`, on the partitioned ``objects`` table) on a
    psycopg cursor of its own; the same through
    :meth:`~liquid.catalog.fastpath.CatalogFastPath.live_value` (the kept connection, its lock and
    liveness check); and ``get`` (the version's facts from the cache, the SHA-256 check, the access
    count). All four on the one connection ``get`` reads on (the fast path's lane; :func:`lane_of`
    says why), so that each step meets the same server process in the same placement.
    """
    payload = os.urandom(KiB)
    refs = [svc.put(tenant, "anatomy", f"get/{i}", payload).ref for i in range(64)]
    ids = [svc.fast.find(r.tenant, r.namespace, r.key, r.version).id for r in refs]
    assert svc.get(tenant, refs[0]) == payload  # the lane holds a connection now
    on_lane = lane_of(svc.fast)
    raw = RawPostgres(pconn, payload, on=on_lane)
    for i in range(64):
        raw.put(i)

    kept: dict[Any, Any] = {}  # a cursor per connection, kept as the fast path keeps its own

    def statement(i: int) -> None:
        conn = on_lane()
        if conn not in kept:
            kept[conn] = conn.cursor(binary=True)
        kept[conn].execute(SELECT_LIVE_VALUE, (ids[i % 64],)).fetchone()

    steps = {
        "raw SELECT of one bytea row by id (psycopg)": lambda i: raw.get(i % 64),
        "Liquid's read statement on psycopg (prepared, a cursor of its own)": statement,
        "CatalogFastPath.live_value (the statement as get runs it)": lambda i: svc.fast.live_value(
            ids[i % 64]
        ),
        "LiquidService.get": lambda i: svc.get(tenant, refs[i % 64]),
    }
    return _anatomy(steps, n, progress, "warm get anatomy", each_call=True)


def placement_anatomy(dsn: str, n: int, progress: Progress) -> list[dict[str, Any]]:
    """A raw 1 KiB SELECT round trip with its server process on the client's CPU, then on another.

    Explains the warm read's spread across runs (:func:`lane_of`): two connections, this thread
    pinned to the first CPU, one connection's server process to the same CPU and the other's to
    the second, alternated call by call. Only for a PostgreSQL started here (pinning another's
    processes is not a benchmark's business), on Linux with two CPUs or more; empty otherwise.
    Each pin ends with its connection's process; this thread's is restored.
    """
    import psycopg

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return []
    payload = os.urandom(KiB)
    before = os.sched_getaffinity(0)
    with psycopg.connect(dsn, autocommit=True) as near, psycopg.connect(dsn, autocommit=True) as far:
        try:
            os.sched_setaffinity(0, {cpus[0]})
            os.sched_setaffinity(near.info.backend_pid, {cpus[0]})
            os.sched_setaffinity(far.info.backend_pid, {cpus[1]})
        except OSError as exc:  # not ours to pin (another user's server)
            os.sched_setaffinity(0, before)
            console.print(f"placement breakdown skipped: {exc}")
            return []
        try:
            one, two = RawPostgres(near, payload), RawPostgres(far, payload)
            for i in range(64):
                one.put(i)
            two.ids = one.ids
            steps = {
                "raw SELECT, server process on the client's CPU (pinned)": lambda i: one.get(i % 64),
                "raw SELECT, server process on the other CPU (pinned)": lambda i: two.get(i % 64),
            }
            return _anatomy(steps, n, progress, "round trip by placement", each_call=True)
        finally:
            os.sched_setaffinity(0, before)


def cold_get_anatomy(
    svc: Any, tenant: str, raw: RawS3, n: int, progress: Progress, server_cpu: Callable[[], float] | None
) -> list[dict[str, Any]]:
    """Cold 4 MiB get step by step, each beside boto3's GET in the same rounds."""
    payload = raw.payload
    refs = [svc.put(tenant, "anatomy", f"cold/{i}", payload).ref for i in range(4)]
    for i in range(4):
        raw.put(i)

    plain = f"{raw.size_name}/plain"
    raw.s3.put_object(Bucket=raw.bucket, Key=plain, Body=payload)  # without SSE

    def serial(i: int) -> None:
        hashlib.sha256(raw.s3.get_object(Bucket=raw.bucket, Key=raw.keys[i % 4])["Body"].read()).hexdigest()

    rows = [svc.fast.find(tenant, r.namespace, r.key, r.version) for r in refs]
    store = svc.stores[rows[0].home_store]
    lean = store.client  # Liquid's boto3 client: CRC32 checked only when required

    def lean_get(i: int) -> None:
        lean.get_object(Bucket=raw.bucket, Key=raw.keys[i % 4])["Body"].read()

    def read_into(i: int) -> None:
        row = rows[i % 4]
        _read_whole(store.read_into, row.locator, sha256=row.sha256, size=row.size, what="anatomy")

    def streamed(i: int) -> None:
        for _ in svc.open(tenant, refs[i % 4]):
            pass

    steps = {
        "boto3 get_object().read()": lambda i: raw.get(i % 4),
        "SHA-256 of the 4 MiB alone (hashlib)": lambda i: hashlib.sha256(payload).hexdigest(),
        "boto3 GET, then SHA-256 of it": serial,
        "boto3 get_object().read() of an object stored without SSE (the server decrypts none)": lambda i: (
            raw.s3.get_object(Bucket=raw.bucket, Key=plain)["Body"].read()
        ),
        "boto3 get_object().read() without its CRC32 check (Liquid's client settings)": lean_get,
        "S3Store.read_into, each step hashed (get's store read, no catalog)": read_into,
        "LiquidService.get (digest checked before the bytes are returned)": lambda i: svc.get(
            tenant, refs[i % 4]
        ),
        "LiquidService.open streamed (the API's read: read-ahead thread, last chunk held back)": streamed,
    }
    return _anatomy(steps, n, progress, "cold get anatomy", server_cpu=server_cpu)


def _anatomy(
    steps: Mapping[str, Callable[[int], object]],
    n: int,
    progress: Progress,
    label: str,
    rounds: int = 4,
    server_cpu: Callable[[], float] | None = None,
    *,
    each_call: bool = False,
) -> list[dict[str, Any]]:
    """Each step ``n`` times in alternating rounds: p50 wall time, and CPU per call of this process
    (every thread) and, when ``server_cpu`` reads it, of the server (mean over the step's calls).

    ``each_call``: the steps alternate call by call instead (one after the other for each ``i``),
    without the server's CPU (read per round).
    """
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    server: dict[str, float] = dict.fromkeys(steps, 0.0)
    task = progress.add_task(label, total=len(steps) * (n // rounds) * rounds)
    if each_call:
        server_cpu = None
        for i in range(n // rounds * rounds):
            for name, fn in steps.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn(i)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
            progress.advance(task, len(steps))
    for _ in range(0 if each_call else rounds):
        for name, fn in steps.items():
            before = server_cpu() if server_cpu else 0.0
            for i in range(n // rounds):
                t0, c0 = time.perf_counter(), time.process_time()
                fn(i)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                progress.advance(task)
            server[name] += (server_cpu() - before) if server_cpu else 0.0
    progress.remove_task(task)
    base = statistics.median(next(iter(times.values())))
    return [
        {
            "step": name,
            "n": len(xs),
            "p50_ms": statistics.median(xs) * 1e3,
            "ratio": statistics.median(xs) / base,
            "client_cpu_ms": statistics.fmean(cpu[name]) * 1e3,
            "server_cpu_ms": server[name] / len(xs) * 1e3 if server_cpu else None,
        }
        for name, xs in times.items()
    ]


def process_cpu(pid: int) -> Callable[[], float] | None:
    """CPU seconds so far of process ``pid`` and its children (Linux ``/proc``), or None elsewhere."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def one(p: int) -> float:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0  # a child that ended meanwhile
        return (int(fields[11]) + int(fields[12])) / tick  # utime, stime

    def children(p: int) -> list[int]:
        try:
            return [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            return []

    if not Path(f"/proc/{pid}/stat").exists():
        return None
    return lambda: one(pid) + sum(one(c) for c in children(pid))


def start_catalog_and_cache(workdir: Path) -> tuple[str, str, list[Any]]:
    """PostgreSQL and Redis URLs from the environment, or embedded servers under ``workdir``."""
    from liquid import embedded

    started: list[Any] = []
    pg = os.environ.get("LIQUID_TEST_POSTGRES_URL")
    if not pg:
        srv = embedded.EmbeddedPostgres(workdir / "pg")
        pg = srv.start()
        started.append(srv)
    redis_url = os.environ.get("LIQUID_TEST_REDIS_URL")
    if not redis_url:
        srv_r = embedded.EmbeddedValkey(workdir / "valkey")
        redis_url = srv_r.start()
        started.append(srv_r)
    return pg, redis_url, started


def start_servers(workdir: Path) -> tuple[dict[str, Any], list[Any]]:
    """Server URLs from the environment, or embedded servers under ``workdir``."""
    from liquid import embedded

    pg, redis_url, started = start_catalog_and_cache(workdir)
    endpoint = os.environ.get("LIQUID_TEST_S3_ENDPOINT")
    access = os.environ.get("LIQUID_TEST_S3_ACCESS_KEY", "bench")
    secret = os.environ.get("LIQUID_TEST_S3_SECRET_KEY", "bench-secret")
    if not endpoint:
        srv_s = embedded.EmbeddedS3(workdir / "s3", access_key=access, secret_key=secret)
        endpoint = srv_s.start()
        started.append(srv_s)
    return {"pg": pg, "redis": redis_url, "s3": endpoint, "access": access, "secret": secret}, started


def s3_server_cpu(started: list[Any]) -> Callable[[], float] | None:
    """CPU reader of the embedded S3 server (one process), if started here.

    Not PostgreSQL's: its per-connection backends come and go, so a sum over the postmaster's
    children is not monotonic (a backend that exits takes its CPU time out of the sum).
    """
    from liquid import embedded

    for srv in started:
        if isinstance(srv, embedded.EmbeddedS3):
            proc = getattr(getattr(srv, "_process", None), "proc", None)
            if proc is not None:
                return process_cpu(proc.pid)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the operations (smoke run)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    counts = {"1KiB": int(2000 * scale), "64KiB": int(800 * scale), "4MiB": max(int(60 * scale), 8)}

    import boto3
    import psycopg
    import redis

    workdir = Path(tempfile.mkdtemp(prefix="liquid-bench-", dir="/tmp"))
    urls, started = start_servers(workdir)
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = urls["access"], urls["secret"]
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=urls["s3"], region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    cold_url = f"s3://{bucket}/liquid?endpoint={urls['s3']}&region=us-east-1"
    stores = {"hot": urls["redis"], "warm": urls["pg"], "cold": cold_url}

    def service(**overrides: Any) -> Any:
        return open_runtime(Settings(catalog_url=urls["pg"], stores=stores, **overrides))

    # warm: default thresholds but nothing born cold; cold: nothing inline or warm; hot: a filled copy.
    warm_rt = service(warm_max_object_size=64 * MiB, hot={"enabled": False})
    cold_rt = service(inline_threshold=0, warm_max_object_size=0, hot={"enabled": False})
    hot_rt = service(warm_max_object_size=64 * MiB, hot={"max_object_size": 8 * MiB})
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    warm_rt.service.tenancy.create_tenant(tenant)

    rclient = redis.Redis.from_url(urls["redis"])
    pg_dsn = urls["pg"].replace("postgresql+psycopg://", "postgresql://")
    pconn = psycopg.connect(pg_dsn, autocommit=True)
    pconn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, data bytea NOT NULL)")

    cells: list[Cell] = []
    with Progress(console=console, transient=True) as progress:
        for size_name, nbytes in SIZES.items():
            n = counts[size_name]
            payload = os.urandom(nbytes)

            # ---- hot: reads of one cached object
            hsvc = hot_rt.service
            ref = hsvc.put(tenant, "hot", f"obj-{size_name}", payload).ref
            assert hsvc.get(tenant, ref) == payload
            # The daemon's fill: reads never write the hot tier themselves.
            assert hsvc.fill_hot(ref, hsvc.fast.find(ref.tenant, ref.namespace, ref.key, ref.version).id)
            assert hsvc.open(tenant, ref).source == "hot"
            rclient.set(f"raw:{size_name}", payload)
            lq, rw = alternate(
                lambda i, r=ref: hot_rt.service.get(tenant, r),
                lambda i, k=f"raw:{size_name}": rclient.get(k),
                n,
                progress,
                f"hot get {size_name}",
            )
            cells.append(Cell("hot", size_name, "get", lq, rw, nbytes))

            for tier, rt in (("warm", warm_rt), ("cold", cold_rt)):
                raw = RawPostgres(pconn, payload) if tier == "warm" else RawS3(s3, bucket, size_name, payload)
                cells += durable_cells(rt.service, tenant, tier, size_name, payload, raw, n, progress)

        s3_cpu = s3_server_cpu(started)
        anatomy = {
            "warm_put_1KiB": put_anatomy(warm_rt.service, tenant, pconn, counts["1KiB"], progress),
            "warm_put_1KiB_server": put_server_anatomy(tenant, pg_dsn, counts["1KiB"], progress),
            "hot_get_1KiB": hot_get_anatomy(hot_rt.service, tenant, rclient, counts["1KiB"], progress),
            "warm_get_1KiB": warm_get_anatomy(warm_rt.service, tenant, pconn, counts["1KiB"], progress),
            "round_trip_placement": (
                placement_anatomy(pg_dsn, counts["1KiB"], progress)
                if not os.environ.get("LIQUID_TEST_POSTGRES_URL")
                else []
            ),
            "cold_get_4MiB": cold_get_anatomy(
                cold_rt.service,
                tenant,
                RawS3(s3, bucket, "anatomy", os.urandom(4 * MiB)),
                counts["4MiB"],
                progress,
                s3_cpu,
            ),
        }

    summaries = [c.summary() for c in cells]
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "servers": "embedded PostgreSQL 18 (unix socket), Valkey 9 (TCP loopback), SeaweedFS S3 (loopback)",
        "quick": args.quick,
    }
    RESULTS.mkdir(exist_ok=True)
    load = os.getloadavg()
    meta["load_average"] = f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    doc = {"meta": meta, "results": summaries, "anatomy": anatomy}
    (RESULTS / "core_io.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "core_io.md").write_text(render(meta, summaries, anatomy))
    console.print(render(meta, summaries, anatomy))

    for rt in (warm_rt, cold_rt, hot_rt):
        rt.close()
    rclient.close()
    pconn.close()
    for srv in reversed(started):
        srv.stop()
    shutil.rmtree(workdir, ignore_errors=True)  # the servers' data: the disk is shared


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def render(meta: dict[str, Any], rows: list[dict[str, Any]], anatomy: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "# Core I/O: Liquid vs raw client, same servers, same run",
        "",
        f"{meta['when']} · {meta['machine']} · {meta['servers']} · load average at the end "
        f"{meta.get('load_average', '?')}",
        "",
        "| tier | size | op | n | Liquid p50 ms | raw p50 ms | p50 ratio | Liquid p99 ms | raw p99 ms | "
        "Liquid MB/s | raw MB/s | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = f"≤{r['target_ratio']:.1f}x" if r["target_ratio"] else ""
        met = "" if r["target_met"] is None else ("yes" if r["target_met"] else "**no**")
        lines.append(
            f"| {r['tier']} | {r['size']} | {r['op']} | {r['n']} | {r['liquid']['p50_ms']:.3f} | "
            f"{r['raw']['p50_ms']:.3f} | {r['ratio_p50']:.2f}x | {r['liquid']['p99_ms']:.3f} | "
            f"{r['raw']['p99_ms']:.3f} | {r['liquid']['mb_per_s']:.1f} | {r['raw']['mb_per_s']:.1f} | "
            f"{target} | {met} |"
        )
    titles = {
        "warm_put_1KiB": "Warm 1 KiB put, step by step (ratio to the raw INSERT, same rounds)",
        "warm_put_1KiB_server": "Warm 1 KiB put: the server's work, fsync aside (ratio to the raw INSERT)",
        "hot_get_1KiB": "Hot 1 KiB get, step by step (ratio to redis-py's GET, same rounds)",
        "warm_get_1KiB": "Warm 1 KiB get, step by step (ratio to the raw SELECT; one connection, each call)",
        "round_trip_placement": "1 KiB SELECT round trip by where its server process runs (diagnostic)",
        "cold_get_4MiB": "Cold 4 MiB get, step by step (ratio to boto3's GET, same rounds)",
    }
    for name, steps in anatomy.items():
        if not steps:
            continue
        lines += [
            "",
            f"## {titles[name]}",
            "",
            "| step | n | p50 ms | ratio | client CPU ms/op | server CPU ms/op |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {s['step']} | {s['n']} | {s['p50_ms']:.3f} | {s['ratio']:.2f}x | "
            f"{_ms(s.get('client_cpu_ms'))} | {_ms(s.get('server_cpu_ms'))} |"
            for s in steps
        ]
    lines += floors(anatomy)
    lines.append("")
    return "\n".join(lines)


def floors(anatomy: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    """What the breakdowns above say the two targets can reach on this machine, in this run."""
    out = ["", "## What the breakdowns say (computed from the tables above)", ""]
    put, server = anatomy.get("warm_put_1KiB"), anatomy.get("warm_put_1KiB_server")
    if put and server:
        raw_synced, raw_bare, stmt_bare = put[0]["p50_ms"], server[0]["p50_ms"], server[1]["p50_ms"]
        flush = max(raw_synced - raw_bare, 0.0)
        least = (flush + stmt_bare) / (flush + raw_bare)
        out.append(
            f"- Warm 1 KiB put: waiting for the commit's flush costs the raw INSERT {flush:.3f} ms here "
            f"({raw_synced:.3f} with it, {raw_bare:.3f} without); Liquid's one statement does "
            f"{stmt_bare:.3f} ms of server work against the raw INSERT's {raw_bare:.3f} (it must write four "
            f"rows: version head, object, event, change feed; benchmarks/put_server.py times each part and "
            f"their floor). With the same flush, the statement alone is {least:.2f}x the raw INSERT "
            f"before any client code: the 1.3x target "
            + ("is within reach only because the flush dominates." if least <= 1.3 else "is out of reach.")
        )
    hot = anatomy.get("hot_get_1KiB")
    if hot and len(hot) == 6:
        raw_get, copy, guarded, checked, cache, whole = (st["p50_ms"] * 1e3 for st in hot)
        out.append(
            f"- Hot 1 KiB get, in µs over the raw GET's {raw_get:.0f}: the copy on the hot cache's client "
            f"{copy - raw_get:+.1f}, its guard {guarded - copy:+.1f}, the copy's SHA-256 check "
            f"{checked - guarded:+.1f}, HotCache.get's own work {cache - checked:+.1f}, `get` around it "
            f"{whole - cache:+.1f} (client CPU per call: raw {hot[0]['client_cpu_ms'] * 1e3:.0f} µs, get "
            f"{hot[-1]['client_cpu_ms'] * 1e3:.0f} µs)."
        )
    warm = anatomy.get("warm_get_1KiB")
    if warm and len(warm) == 4:
        raw_sel, stmt, fast, whole = warm
        out.append(
            f"- Warm 1 KiB get, on one connection: Liquid's read statement alone is {stmt['ratio']:.2f}x "
            f"the raw SELECT ({stmt['p50_ms'] - raw_sel['p50_ms']:+.3f} ms: the same primary-key lookup, "
            f"on the partitioned objects table, with liveness judged in it); the fast path's lock and "
            f"liveness check add {fast['p50_ms'] - stmt['p50_ms']:+.3f} ms and `get` around it "
            f"{whole['p50_ms'] - fast['p50_ms']:+.3f} ms. Client CPU per call: raw "
            f"{raw_sel['client_cpu_ms'] * 1e3:.0f} µs, statement {stmt['client_cpu_ms'] * 1e3:.0f} µs, "
            f"live_value {fast['client_cpu_ms'] * 1e3:.0f} µs, get {whole['client_cpu_ms'] * 1e3:.0f} µs."
        )
    placed = anatomy.get("round_trip_placement")
    if placed and len(placed) == 2:
        near, far = placed
        out.append(
            f"- Where PostgreSQL's server process runs decides a small read's round trip: "
            f"{near['p50_ms'] * 1e3:.0f} µs with it on the client's CPU, {far['p50_ms'] * 1e3:.0f} µs on "
            f"the other ({far['p50_ms'] / near['p50_ms']:.1f}x). Each connection has its own process, "
            f"placed by the kernel and kept so for seconds, so the warm puts and gets above run the raw "
            f"INSERT and SELECT on Liquid's own connection, call by call: measured on two connections in "
            f"blocks, the ratio "
            f"was the placements' draw (an earlier run: 2.64x in its main table, 1.16x in its own "
            f"breakdown)."
        )
    get = {s["step"]: s for s in anatomy.get("cold_get_4MiB", [])}
    raw_get = get.get("boto3 get_object().read()")
    sha = get.get("SHA-256 of the 4 MiB alone (hashlib)")
    lean = next((s for k, s in get.items() if "without its CRC32" in k), None)
    plain = next((s for k, s in get.items() if "without SSE" in k), None)
    into = next((s for k, s in get.items() if k.startswith("S3Store.read_into")), None)
    liquid = next((s for k, s in get.items() if k.startswith("LiquidService.get")), None)
    if raw_get and sha and lean and plain and into and liquid and raw_get.get("server_cpu_ms") is not None:
        base = raw_get["client_cpu_ms"] + raw_get["server_cpu_ms"]
        ours = liquid["client_cpu_ms"] + liquid["server_cpu_ms"]
        out.append(
            f"- Cold 4 MiB get: a boto3 GET costs {raw_get['client_cpu_ms']:.2f} ms of CPU here "
            f"({lean['client_cpu_ms']:.2f} without the CRC32 check the default client makes) and "
            f"{raw_get['server_cpu_ms']:.2f} ms in the S3 server ({plain['server_cpu_ms']:.2f} for an "
            f"object stored without SSE, {plain['p50_ms']:.2f} ms p50); the SHA-256 a verified read adds "
            f"{sha['client_cpu_ms']:.2f} ms of CPU. `get` reads the socket into one buffer and hashes "
            f"each step as it lands: {into['client_cpu_ms']:.2f} ms of CPU for the store read, "
            f"{liquid['client_cpu_ms']:.2f} ms with the catalog lookup, {liquid['p50_ms']:.2f} ms p50 "
            f"({liquid['ratio']:.2f}x the GET). Client and server CPU together, what wall time tends "
            f"to when every core is busy: {ours:.2f} ms for `get` against {base:.2f} ms for the GET, "
            f"{ours / base:.2f}x."
        )
    return out


if __name__ == "__main__":
    main()
