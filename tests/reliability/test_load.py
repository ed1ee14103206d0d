"""A bounded loopback load test: mixed put/get/resolve at increasing rates; p99 and errors per rate.

Slow-marked; ``python -m tests.reliability.report`` runs it and reports where p99 passes 100 ms.
The soak (10 minutes at a steady rate, memory at start and end) is also marked ``soak``.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.reliability.harness import Stack, record, start_stack, stop_stack

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    base = Path(tempfile.mkdtemp(prefix="liquid-load-"))
    s = start_stack(base)
    try:
        yield s
    finally:
        stop_stack(s)


def run_at(stack: Stack, rate: float, seconds: float, threads: int = 8) -> dict[str, float]:
    """Open-loop-ish: each thread paces its share of ``rate`` requests/s; returns the figures."""
    uris: list[str] = []
    with stack.client() as http:
        for i in range(50):
            uris.append(http.put(f"/v1/objects/load/seed-{i}", content=os.urandom(2000)).json()["uri"])
    lat: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        interval = threads / rate
        nxt = time.monotonic()
        with stack.client() as http:
            while time.monotonic() < stop:
                nxt += interval
                roll = rng.random()
                t0 = time.monotonic()
                if roll < 0.2:
                    r = http.put(f"/v1/objects/load/w{seed}-{rng.random()}", content=os.urandom(2000))
                elif roll < 0.9:
                    r = http.get("/v1/refs/" + quote(rng.choice(uris), safe=""))
                else:
                    r = http.post("/v1/refs:resolve", json={"refs": rng.sample(uris, 5)})
                dt = time.monotonic() - t0
                with lock:
                    lat.append(dt)
                    errors += r.status_code >= 400
                time.sleep(max(0.0, nxt - time.monotonic()))

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - t0
    lat.sort()
    p99 = lat[int(len(lat) * 0.99) - 1] if lat else 0.0
    return {"target_rps": rate, "achieved_rps": round(len(lat) / elapsed, 1), "p50_ms": round(lat[len(lat) // 2] * 1000, 1),
            "p99_ms": round(p99 * 1000, 1), "errors": errors, "requests": len(lat)}  # fmt: skip


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_rate_steps_until_p99_passes_100ms(stack: Stack) -> None:
    seconds = float(os.environ.get("LIQUID_LOAD_STEP_SECONDS", "8"))
    points = []
    for rate in (50, 100, 200, 400, 800):
        point = run_at(stack, rate, seconds)
        points.append(point)
        assert point["errors"] == 0, point
        if point["p99_ms"] > 100 or point["achieved_rps"] < 0.8 * rate:
            break
    record("load", points)
    assert points[0]["p99_ms"] < 100, points


@pytest.mark.soak
@pytest.mark.timeout(int(float(os.environ.get("LIQUID_SOAK_MINUTES", "10")) * 60 + 300))
def test_soak_memory_stays_flat(stack: Stack) -> None:
    minutes = float(os.environ.get("LIQUID_SOAK_MINUTES", "10"))
    start = rss_mb()
    point = run_at(stack, 100, minutes * 60)
    end = rss_mb()
    record(
        "soak", {"minutes": minutes, "rss_start_mb": round(start, 1), "rss_end_mb": round(end, 1), **point}
    )
    assert point["errors"] == 0
    assert end < start * 1.5 + 50, (start, end)
