"""The peers: published cache policies and offline optima from libCacheSim, on the same trace.

Each trace is written once as an oracleGeneral file in KiB units (libCacheSim's W-TinyLFU
misbehaves on byte capacities above 2^31, so every peer runs on KiB sizes and a KiB capacity),
then replayed in C by ``process_trace``. ``Belady`` is the offline reference for the byte hit
ratio, ``BeladySize`` for the object hit ratio (both read the next-access time the file carries).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.placement.traces import KiB, Trace, write_oracle_general

ONLINE = ("LRU", "ARC", "S3-FIFO", "SIEVE", "W-TinyLFU", "GDSF")
#: More of libCacheSim's online policies, beyond the issue's six (``benchmarks.placement.frontier``).
#: Left out: ClockPro (a byte hit ratio of 0.05 where LRU has 0.35: it misbehaves on sized objects).
MORE_ONLINE = (
    "LIRS",
    "LeCaR",
    "Cacheus",
    "Hyperbolic",
    "LHD",
    "2Q",
    "SLRU",
    "LFUDA",
    "MQ",
    "Clock2QPlus",
)
OFFLINE = ("Belady", "BeladySize")


def _factories() -> dict[str, Callable[[int], Any]]:
    try:
        import libcachesim as lcs
    except ImportError as exc:  # pragma: no cover - the benchmark's one optional dependency
        raise ImportError("libcachesim is not installed: pip install 'libcachesim>=0.3.5'") from exc
    return {
        "LRU": lambda c: lcs.LRU(c),
        "ARC": lambda c: lcs.ARC(c),
        "S3-FIFO": lambda c: lcs.S3FIFO(c),
        "SIEVE": lambda c: lcs.Sieve(c),
        "W-TinyLFU": lambda c: lcs.WTinyLFU(c),
        "GDSF": lambda c: lcs.GDSF(c),
        "Belady": lambda c: lcs.Belady(c),
        "BeladySize": lambda c: lcs.BeladySize(c),
        "LIRS": lambda c: lcs.LIRS(c),
        "LeCaR": lambda c: lcs.LeCaR(c),
        "Cacheus": lambda c: lcs.Cacheus(c),
        "Hyperbolic": lambda c: lcs.Hyperbolic(c),
        "LHD": lambda c: lcs.LHD(c),
        "2Q": lambda c: lcs.TwoQ(c),
        "SLRU": lambda c: lcs.SLRU(c),
        "LFUDA": lambda c: lcs.LFUDA(c),
        "MQ": lambda c: lcs.MQ(c),
        "Clock2QPlus": lambda c: lcs.Clock2QPlus(c),
    }


def oracle_file(trace: Trace, workdir: Path) -> Path:
    """The trace as an oracleGeneral file in KiB units (written once per trace)."""
    path = workdir / f"{trace.name}-{len(trace)}.oracleGeneral.bin"
    if not path.exists():
        write_oracle_general(trace, path, unit=KiB)
    return path


#: libCacheSim's BeladySize (0.3.x) loops forever, warning on every try, when the one object it
#: holds must go for a larger one: it is not run where an object is over half the cache.
BELADY_SIZE_MAX_SHARE = 0.5


def run_peer(name: str, path: Path, capacity_bytes: int, largest: int = 0) -> dict[str, float | None]:
    """One peer over one trace file at one capacity: OHR, BHR and seconds (``largest``: the
    trace's largest object, in bytes; OHR and BHR are None for a peer that cannot run it)."""
    import libcachesim as lcs

    if name == "BeladySize" and largest > BELADY_SIZE_MAX_SHARE * capacity_bytes:
        return {"ohr": None, "bhr": None, "seconds": 0.0}

    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
    cache = _factories()[name](max(1, capacity_bytes // KiB))
    started = time.perf_counter()
    obj_miss, byte_miss = cache.process_trace(reader)
    return {"ohr": 1.0 - obj_miss, "bhr": 1.0 - byte_miss, "seconds": time.perf_counter() - started}
