"""Request traces: seeded generators, and loaders/writers for libCacheSim's formats.

A :class:`Trace` is three aligned arrays (time in seconds from the start, object id, object
size in bytes). Every request is a read; an object's first request is the one that creates it
(its write). Sizes are kept in whole KiB (rounded up) so that Liquid, the libCacheSim peers
(which run in KiB units, see :func:`write_oracle_general`) and the cost model count the same
bytes.

Generators (same seed → same trace, byte for byte):

* :func:`zipf_drift` — Zipf popularity over 100k objects, lognormal sizes (median 64 KiB,
  sigma 2, clipped to 1 KiB to 64 MiB), and the hot set re-drawn every 20% of the trace.
* :func:`scan_mix` — the same Zipf mix, with a full sequential scan over a separate cold range
  after every 80k Zipf requests (20% of requests are scans).
* :func:`workflow` — executions write a few results each; a result is read a few times within
  minutes, and with 10% probability once more days later; 30% of requests go to shared
  knowledge-base documents (Zipf 0.9).
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liquid.tiering.bounds import next_access

KiB = 1024
MiB = 1024 * KiB
DAY = 86400.0
#: libCacheSim's oracleGeneral record: timestamp u32, object id u64, size u32, next access (vtime) i64.
ORACLE_GENERAL = np.dtype([("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")])


@dataclass(frozen=True)
class Trace:
    """One request trace. ``t`` seconds from the start (sorted), ``oid`` ids, ``size`` bytes."""

    name: str
    description: str
    t: np.ndarray
    oid: np.ndarray
    size: np.ndarray
    #: What generated it (``zipf``, ``scan``, ``workflow``; ``file`` for a trace read from disk):
    #: the benchmark picks the policy an operator would write for that kind of workload by it.
    kind: str = "zipf"

    def __repr__(self) -> str:
        return f"Trace({self.name!r}, requests={len(self)}, objects={self.objects()})"

    def __len__(self) -> int:
        return len(self.oid)

    def objects(self) -> int:
        return len(np.unique(self.oid))

    def working_set_bytes(self) -> int:
        """Bytes of the distinct objects requested (each counted once)."""
        _, first = np.unique(self.oid, return_index=True)
        return int(self.size[first].sum())

    def duration(self) -> float:
        return float(self.t[-1] - self.t[0]) if len(self) else 0.0

    def head(self, n: int) -> Trace:
        return Trace(self.name, self.description, self.t[:n], self.oid[:n], self.size[:n], self.kind)


def _sizes(rng: np.random.Generator, n: int) -> np.ndarray:
    raw = rng.lognormal(mean=np.log(64 * KiB), sigma=2.0, size=n)
    kib = np.ceil(np.clip(raw, KiB, 64 * MiB) / KiB).astype(np.int64)
    return kib * KiB


def _zipf_ranks(rng: np.random.Generator, n_objects: int, n: int, alpha: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n_objects + 1, dtype=np.float64) ** alpha
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(n)), n_objects - 1)


def _times(rng: np.random.Generator, n: int, duration: float) -> np.ndarray:
    return np.sort(rng.uniform(0.0, duration, n))


def _drifting(rng: np.random.Generator, n_objects: int, ranks: np.ndarray, drift_every: float) -> np.ndarray:
    """Object ids for popularity ``ranks``, the rank-to-object order re-drawn every ``drift_every``."""
    oid = np.empty(len(ranks), dtype=np.int64)
    phase = max(1, int(len(ranks) * drift_every))
    for start in range(0, len(ranks), phase):
        oid[start : start + phase] = rng.permutation(n_objects)[ranks[start : start + phase]]
    return oid


def zipf_drift(
    alpha: float,
    *,
    n_objects: int = 100_000,
    n_requests: int = 1_000_000,
    drift_every: float = 0.2,
    duration: float = 120 * DAY,
    seed: int = 1,
    name: str | None = None,
) -> Trace:
    """Zipf(``alpha``) reads; the popularity order is re-drawn every ``drift_every`` of the trace."""
    rng = np.random.default_rng(seed)
    sizes = _sizes(rng, n_objects)
    oid = _drifting(rng, n_objects, _zipf_ranks(rng, n_objects, n_requests, alpha), drift_every)
    return Trace(
        name or f"zipf{alpha}",
        f"Zipf alpha={alpha}, {n_objects} objects, hot set re-drawn every {drift_every:.0%}",
        _times(rng, n_requests, duration),
        oid,
        sizes[oid],
    )


def scan_mix(
    *,
    n_objects: int = 100_000,
    scan_objects: int = 20_000,
    n_requests: int = 1_000_000,
    alpha: float = 0.9,
    duration: float = 120 * DAY,
    seed: int = 2,
) -> Trace:
    """Zipf reads with a full in-order scan of ``scan_objects`` cold objects after every 4 scan-lengths."""
    rng = np.random.default_rng(seed)
    sizes = _sizes(rng, n_objects + scan_objects)
    perm = rng.permutation(n_objects)
    zipf_block = 4 * scan_objects
    scan = np.arange(n_objects, n_objects + scan_objects, dtype=np.int64)
    parts: list[np.ndarray] = []
    total = 0
    while total < n_requests:
        block = perm[_zipf_ranks(rng, n_objects, zipf_block, alpha)]
        parts += [block, scan]
        total += zipf_block + scan_objects
    oid = np.concatenate(parts)[:n_requests]
    return Trace(
        "scan",
        f"Zipf {alpha} over {n_objects} objects + a full scan of {scan_objects} cold objects every "
        f"{zipf_block} requests",
        _times(rng, n_requests, duration),
        oid,
        sizes[oid],
        "scan",
    )


def workflow(
    *,
    n_requests: int = 1_000_000,
    duration: float = 120 * DAY,
    shared_docs: int = 10_000,
    shared_share: float = 0.3,
    seed: int = 3,
) -> Trace:
    """Executions write results read a few times within minutes, then rarely; plus shared documents."""
    rng = np.random.default_rng(seed)
    per_result = 1 + 3 + 0.1  # write, ~3 reads soon after, a late read 10% of the time
    results = int(n_requests * (1 - shared_share) / per_result) + 1
    execs = max(1, results // 5)
    exec_t = np.sort(rng.uniform(0.0, duration, execs))
    n_res = 1 + rng.poisson(4.0, execs)
    write_t = np.repeat(exec_t, n_res) + rng.uniform(0, 60.0, int(n_res.sum()))  # steps within a minute
    n = len(write_t)
    rid = np.arange(n, dtype=np.int64) + shared_docs
    reads = 1 + rng.poisson(2.0, n)
    read_t = np.repeat(write_t, reads) + rng.exponential(120.0, int(reads.sum()))
    read_id = np.repeat(rid, reads)
    late = rng.random(n) < 0.1
    late_t = write_t[late] + rng.exponential(3 * DAY, int(late.sum()))
    n_shared = int(n_requests * shared_share)
    shared_id = _zipf_ranks(rng, shared_docs, n_shared, 0.9)
    shared_t = rng.uniform(0.0, duration, n_shared)
    t = np.concatenate([write_t, read_t, late_t, shared_t])
    oid = np.concatenate([rid, read_id, rid[late], shared_id])
    order = np.argsort(t, kind="stable")
    t, oid = t[order], oid[order]
    keep = t < duration
    t, oid = t[keep][:n_requests], oid[keep][:n_requests]
    sizes = _sizes(rng, shared_docs + n)
    return Trace(
        "workflow",
        "executions write ~5 results read ~3 times within minutes, 10% read again days later; "
        f"{shared_share:.0%} of reads to {shared_docs} shared documents (Zipf 0.9)",
        t,
        oid,
        sizes[oid],
        "workflow",
    )


#: The Zipf part of the grid: (alpha, drift every, days for the whole trace). Popularity from
#: flat (0.7) to steep (1.2); the hot set re-drawn every 20% or every 5% of the trace; 1M
#: requests over 120 days or packed into 12 (ten times the density).
ZIPF_GRID = (
    (0.7, 0.2, 120),
    (0.9, 0.2, 120),
    (1.1, 0.2, 120),
    (1.2, 0.2, 120),
    (0.9, 0.2, 12),
    (0.8, 0.05, 12),
    (1.1, 0.05, 12),
    (0.8, 0.05, 120),
    (1.1, 0.05, 120),
)


def grid_traces(n_requests: int) -> list[Trace]:
    """The benchmark's grid: :data:`ZIPF_GRID`, the scan mix and the workflow trace.

    Durations are for 1M requests; fewer requests keep the density (and the drift's share of
    the trace), so ``n_requests=250_000`` packs "1M over 12 days" into 3 days.
    """
    scale = n_requests / 1_000_000
    out = [
        zipf_drift(
            alpha,
            n_requests=n_requests,
            drift_every=drift,
            duration=days * scale * DAY,
            seed=100 + i,
            name=f"zipf{alpha}-drift{drift:.0%}-{days * scale:g}d",
        )
        for i, (alpha, drift, days) in enumerate(ZIPF_GRID)
    ]
    return [
        *out,
        scan_mix(n_requests=n_requests, duration=120 * scale * DAY),
        workflow(n_requests=n_requests, duration=120 * scale * DAY),
    ]


def standard_traces(n_requests: int) -> list[Trace]:
    """The four traces the benchmark reports, each ``n_requests`` long."""
    return [
        zipf_drift(0.9, n_requests=n_requests, seed=1),
        zipf_drift(1.1, n_requests=n_requests, seed=11),
        scan_mix(n_requests=n_requests),
        workflow(n_requests=n_requests),
    ]


#: Held-out Zipf traces (alpha, drift every, days for 1M requests, objects): made after the grid
#: was tuned, to check that what holds on it is not fitted to it: other alphas, traffic from
#: 1M requests in 4 hours to 1M in 4 years, a universe of 10k and of 1M objects.
HOLDOUT_ZIPF = (
    (1.0, 0.1, 12, 100_000),
    (0.6, 0.2, 120, 100_000),
    (1.4, 0.2, 12, 100_000),
    (0.9, 0.2, 1 / 6, 100_000),
    (0.9, 0.2, 1, 100_000),
    (0.9, 0.2, 4 * 365, 100_000),
    (1.1, 0.2, 4 * 365, 100_000),
    (0.8, 0.05, 12 * 365, 100_000),
    (0.8, 0.2, 40, 1_000_000),
    (0.9, 0.2, 12, 10_000),
)


def _days(days: float) -> str:
    return f"{days * 24:g}h" if days < 1 else (f"{days / 365:g}y" if days >= 365 else f"{days:g}d")


def equal_sizes(trace: Trace, size: int, name: str) -> Trace:
    """``trace`` with every object ``size`` bytes (byte and object hit ratios coincide)."""
    return Trace(
        name,
        f"{trace.description}; every object {size // KiB} KiB",
        trace.t,
        trace.oid,
        np.full(len(trace), size, dtype=np.int64),
        trace.kind,
    )


def diurnal(*, n_requests: int, duration: float, seed: int) -> Trace:
    """Zipf 1.0 reads (hot set re-drawn every 20%) ten times as dense from 9:00 to 17:00."""
    base = zipf_drift(1.0, n_requests=n_requests, duration=duration, seed=seed)
    rng = np.random.default_rng(seed + 1)
    t = np.empty(0)
    while len(t) < n_requests:
        cand = rng.uniform(0.0, duration, 4 * n_requests)
        hour = (cand % DAY) / 3600.0
        busy = (hour >= 9.0) & (hour < 17.0)
        t = np.concatenate([t, cand[rng.random(len(cand)) < np.where(busy, 1.0, 0.1)]])
    return Trace(
        "diurnal",
        "Zipf 1.0, 100000 objects, hot set re-drawn every 20%; 10x the reads 9:00-17:00",
        np.sort(t[:n_requests]),
        base.oid,
        base.size,
    )


def loop_mix(*, n_requests: int, duration: float, loop: int = 15_000, seed: int) -> Trace:
    """Every other read goes round a loop of ``loop`` objects in order; the rest are Zipf 0.9."""
    rng = np.random.default_rng(seed)
    n_zipf = 100_000
    sizes = _sizes(rng, n_zipf + loop)
    oid = np.empty(n_requests, dtype=np.int64)
    oid[0::2] = rng.permutation(n_zipf)[_zipf_ranks(rng, n_zipf, len(oid[0::2]), 0.9)]
    oid[1::2] = n_zipf + np.arange(len(oid[1::2])) % loop
    return Trace(
        "loop",
        f"half the reads round a loop of {loop} objects, half Zipf 0.9 over {n_zipf}",
        _times(rng, n_requests, duration),
        oid,
        sizes[oid],
    )


def sized_by_popularity(*, n_requests: int, duration: float, small_popular: bool, seed: int) -> Trace:
    """Zipf 0.9 (hot set re-drawn every 20%) where an object's size follows its popularity when
    first read: the most popular smallest, or largest."""
    rng = np.random.default_rng(seed)
    n_obj = 100_000
    by_rank = np.sort(_sizes(rng, n_obj))
    if not small_popular:
        by_rank = by_rank[::-1]
    ranks = _zipf_ranks(rng, n_obj, n_requests, 0.9)
    oid = _drifting(rng, n_obj, ranks, 0.2)
    _, first = np.unique(oid, return_index=True)
    size_of = np.zeros(n_obj, dtype=np.int64)
    size_of[oid[first]] = by_rank[ranks[first]]
    which = "small" if small_popular else "large"
    return Trace(
        f"{which}-popular",
        f"Zipf 0.9, the popular objects {which}",
        _times(rng, n_requests, duration),
        oid,
        size_of[oid],
    )


def news(*, n_requests: int, duration: float, seed: int) -> Trace:
    """Objects born all along the trace, each read a Pareto-distributed number of times, mostly
    within hours of its birth (a news feed's or a workflow's fresh results)."""
    rng = np.random.default_rng(seed)
    n_obj = max(1, int(n_requests * 0.24))
    birth = np.sort(rng.uniform(0.0, duration, n_obj))
    reads = np.minimum(rng.poisson((rng.pareto(1.2, n_obj) + 0.2) * 2.0), 500)
    oid = np.repeat(np.arange(n_obj), reads)
    t = np.repeat(birth, reads) + rng.exponential(duration / 40.0, int(reads.sum()))
    order = np.argsort(t, kind="stable")
    t, oid = t[order][:n_requests], oid[order][:n_requests]
    return Trace(
        "news",
        "objects born all along, each read a Pareto number of times, mostly soon after birth",
        t,
        oid,
        _sizes(rng, n_obj)[oid],
    )


def holdout_traces(n_requests: int) -> list[Trace]:
    """Traces the grid's tuning never saw (``--holdout``): :data:`HOLDOUT_ZIPF`, equal sizes, a
    diurnal day, a loop, sizes tied to popularity and a news feed. Durations are for 1M requests
    and keep their density at other lengths, as in :func:`grid_traces`."""
    scale = n_requests / 1_000_000
    out = [
        zipf_drift(
            alpha,
            n_objects=objects,
            n_requests=n_requests,
            drift_every=drift,
            duration=days * scale * DAY,
            seed=900 + i,
            name=f"zipf{alpha}-drift{drift:.0%}-{_days(days * scale)}"
            + {10_000: "-10k-objects", 1_000_000: "-1M-objects"}.get(objects, ""),
        )
        for i, (alpha, drift, days, objects) in enumerate(HOLDOUT_ZIPF)
    ]
    month = 40 * scale * DAY
    return [
        *out,
        equal_sizes(
            zipf_drift(0.9, n_requests=n_requests, duration=month, seed=920), 64 * KiB, "equal-64KiB"
        ),
        diurnal(n_requests=n_requests, duration=month, seed=921),
        loop_mix(n_requests=n_requests, duration=20 * scale * DAY, seed=922),
        sized_by_popularity(n_requests=n_requests, duration=month, small_popular=True, seed=923),
        sized_by_popularity(n_requests=n_requests, duration=month, small_popular=False, seed=924),
        news(n_requests=n_requests, duration=month, seed=925),
    ]


# ------------------------------------------------------------------ libCacheSim formats


def write_oracle_general(trace: Trace, path: Path, *, unit: int = KiB) -> Path:
    """Write ``trace`` as oracleGeneral, sizes in ``unit`` bytes (rounded up; KiB by default).

    Time is whole seconds; object ids are mapped to 1..n (libCacheSim treats 0 as unset).
    """
    rec = np.empty(len(trace), dtype=ORACLE_GENERAL)
    rec["t"] = np.floor(trace.t - (trace.t[0] if len(trace) else 0)).astype(np.uint32)
    rec["id"] = trace.oid.astype(np.uint64) + 1
    rec["size"] = np.maximum(1, -(-trace.size // unit)).astype(np.uint32)
    rec["next"] = next_access(trace.oid)
    rec.tofile(path)
    return path


#: Size units a trace file's sizes may be in (``--size-unit``).
UNITS = {"B": 1, "bytes": 1, "KiB": KiB, "KB": 1000, "MiB": MiB, "MB": 1000**2}


class TraceFormatError(ValueError):
    """A trace file that does not parse; the message says which file and what is wrong."""


def size_unit(name: str) -> int:
    """Bytes per unit of a ``--size-unit`` value (``B``, ``KiB``, ``KB``, ``MiB``, ``MB`` or an integer)."""
    if name in UNITS:
        return UNITS[name]
    if name.isdigit() and int(name) > 0:
        return int(name)
    raise ValueError(f"unknown size unit {name!r}: use one of {', '.join(UNITS)} or a positive integer")


def _read_bytes(path: Path) -> bytes:
    """A file's bytes, decompressed when it ends in ``.zst`` (libCacheSim ships its traces so)."""
    raw = Path(path).read_bytes()
    if Path(path).suffix != ".zst":
        return raw
    import zstandard

    try:
        with zstandard.ZstdDecompressor().stream_reader(raw) as reader:
            return reader.read()
    except zstandard.ZstdError as exc:
        raise TraceFormatError(f"{path}: not a zstd stream ({exc})") from exc


def trace_name(path: Path) -> str:
    """A trace's name from its file's: libCacheSim's ``w44.oracleGeneral.bin.zst`` is ``w44``;
    other names lose only a ``.zst`` and a ``.bin`` (``zipf0.9-30d.bin`` stays ``zipf0.9-30d``)."""
    name = Path(path).name.removesuffix(".zst")
    if ".oracleGeneral" in name:
        return name.split(".oracleGeneral")[0]
    return name.removesuffix(".bin")


def load_oracle_general(path: Path, *, unit: int, name: str | None = None, limit: int = -1) -> Trace:
    """Read a libCacheSim oracleGeneral file (``.zst`` or not); sizes are multiplied by ``unit``.

    There is no default unit: libCacheSim's published traces are often in KiB, and reading
    them as bytes shrinks a 30 GiB working set to 0.03 GiB without a word. A file whose
    length is not whole 24-byte records, that is empty, whose times go backwards or that
    holds zero sizes is rejected with :class:`TraceFormatError`.
    """
    path = Path(path)
    data = _read_bytes(path)
    rec_size = ORACLE_GENERAL.itemsize
    if not data:
        raise TraceFormatError(f"{path}: empty file")
    if len(data) % rec_size:
        raise TraceFormatError(
            f"{path}: {len(data)} bytes is not a whole number of {rec_size}-byte oracleGeneral records "
            "(is it compressed, or another format?)"
        )
    n = len(data) // rec_size
    rec = np.frombuffer(data, dtype=ORACLE_GENERAL, count=min(limit, n) if limit > 0 else n)
    back = np.flatnonzero(np.diff(rec["t"].astype(np.int64)) < 0)
    if len(back):
        i = int(back[0]) + 1
        raise TraceFormatError(
            f"{path}: record {i} goes back in time ({int(rec['t'][i])} after {int(rec['t'][i - 1])}); "
            "oracleGeneral traces are sorted by time"
        )
    zero = np.flatnonzero(rec["size"] == 0)
    if len(zero):
        raise TraceFormatError(f"{path}: record {int(zero[0])} has size 0")
    return _normalised(
        name or trace_name(path),
        f"oracleGeneral {path.name} (sizes in units of {unit} B)",
        rec["t"],
        rec["id"],
        rec["size"].astype(np.int64) * unit,
        "file",
    )


def load_csv(
    path: Path,
    *,
    time_col: int = 0,
    id_col: int = 1,
    size_col: int = 2,
    header: bool | None = None,
    delimiter: str = ",",
    name: str | None = None,
    limit: int = -1,
    unit: int = 1,
) -> Trace:
    """Read a CSV trace like libCacheSim's csv reader (``-t "time-col=1,obj-id-col=2,obj-size-col=3"``).

    Columns are 0-based here. Non-numeric object ids are hashed to integers. ``header=None``
    detects a header row by whether the time column parses as a number. Sizes are multiplied
    by ``unit``. A row that is short or does not parse raises :class:`TraceFormatError` with
    its line number.
    """
    ts: list[float] = []
    ids: list[int] = []
    sizes: list[int] = []
    with open(path, newline="") as fh:
        for i, rec in enumerate(csv.reader(fh, delimiter=delimiter)):
            if not rec:
                continue
            if i == 0 and header is not False:
                try:
                    float(rec[time_col])
                except ValueError:
                    continue
            try:
                raw_id = rec[id_col]
                t, size = float(rec[time_col]), int(float(rec[size_col]))
            except (IndexError, ValueError) as exc:
                raise TraceFormatError(
                    f"{path}:{i + 1}: cannot read time, id and size ({exc}): {rec!r}"
                ) from exc
            if size <= 0 or not math.isfinite(t):
                raise TraceFormatError(f"{path}:{i + 1}: size must be positive and time finite: {rec!r}")
            ids.append(int(raw_id) if raw_id.isdigit() else _hash_id(raw_id))
            ts.append(t)
            sizes.append(size * unit)
            if 0 < limit <= len(ids):
                break
    if not ids:
        raise TraceFormatError(f"{path}: no requests")
    return _normalised(
        name or Path(path).stem,
        f"csv {Path(path).name}",
        np.array(ts),
        np.array(ids),
        np.array(sizes, dtype=np.int64),
        "file",
    )


def _hash_id(raw: str) -> int:
    """A stable 63-bit id for a non-numeric key (Python's ``hash`` differs between processes)."""
    return int.from_bytes(hashlib.blake2b(raw.encode(), digest_size=8).digest(), "big") >> 1


def _normalised(
    name: str, description: str, t: np.ndarray, ids: np.ndarray, size: np.ndarray, kind: str
) -> Trace:
    """Dense ids, times from 0, sizes in whole KiB."""
    _, dense = np.unique(ids, return_inverse=True)
    t = t.astype(np.float64)
    t = t - t.min() if len(t) else t
    kib = np.maximum(1, -(-size // KiB)) * KiB
    return Trace(name, description, t, dense.astype(np.int64), kib.astype(np.int64), kind)
