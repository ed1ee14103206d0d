"""Fault injection: a mover process SIGKILLed at every step of the protocol, over many objects.

Each crash point is hit twice (the 1st and the 3rd time the process reaches it), with
moves queued back and forth between warm and cold so every point has work. After every
kill all objects must read back with the right checksum (through a service without the
hot cache, so reads reach the durable homes); at the end, after recovery and gc, every
object is where the catalog says, every journal row is done, and no store holds a byte
that no object owns.

The test runs twice: with every move on the per-row path (each step journaled), and with
the default ``small_move_size``, where the catalog-row, warm and zstd cold objects move in
batches (no ``copied``/``verified`` steps recorded) and the plain cold ones per row. The
batches run first, so they take the kills.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from liquid.bootstrap import Runtime
from liquid.config import MoverSettings
from liquid.service import LiquidService
from liquid.tiering.gc import reconcile_service
from liquid.tiering.journal import enqueue_move
from liquid.tiering.mover import CRASH_ENV, CRASH_POINTS, Mover
from tests.daemon.util import Obj, journal, live_locators, make_objects, opposite, read_ok, row, stored

ROOT = Path(__file__).resolve().parents[2]


def _requeue(service: LiquidService, tenant: str, objs: list[Obj]) -> None:
    if any(j.step not in ("done", "failed") for j in journal(service, tenant)):
        return
    for o in objs:
        tier, store = opposite(row(service, o.id).home_tier)
        enqueue_move(service.engine, o.id, tier, store, reason="fault test")


@pytest.mark.parametrize("small_move_size", ["0", "1MiB"], ids=["per-row", "batched"])
def test_sigkill_at_every_step_loses_nothing(
    service: LiquidService,
    tenant: str,
    daemon_settings: dict[str, Any],
    make_runtime: Callable[..., Runtime],
    small_move_size: str,
) -> None:
    objs = make_objects(service, tenant, 30)  # 10 catalog rows, 10 warm, 10 cold; half zstd
    assert {row(service, o.id).home_store for o in objs} == {"catalog", "warm", "cold"}
    readers = make_runtime(hot={"enabled": False}).service
    mover = {"grace_period": 0, "concurrency": 2, "max_attempts": 50, "backoff": 0, "lease": 600}
    settings = {
        **daemon_settings,
        "hot": {"enabled": False},
        "mover": {**mover, "small_move_size": small_move_size},
    }
    env = {**os.environ, "LIQUID_TEST_SETTINGS": json.dumps(settings), "PYTHONPATH": str(ROOT)}
    kills = []
    for point in CRASH_POINTS:
        for nth in (1, 3):
            _requeue(service, tenant, objs)
            proc = subprocess.run(
                [sys.executable, "-m", "tests.daemon.mover_proc", "crashy"],
                env={**env, CRASH_ENV: f"{point}:{nth}"},
                cwd=ROOT,
                capture_output=True,
                timeout=120,
            )
            assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr.decode()[-3000:]
            if proc.returncode == -signal.SIGKILL:
                kills.append(f"{point}:{nth}")
            bad = [o.ref.ref for o in objs if not read_ok(readers, tenant, o)]
            assert bad == [], f"after a kill at {point}:{nth}"
    assert len(kills) >= 10 and {k.split(":")[0] for k in kills} == set(CRASH_POINTS), kills

    # Restart: recover the dead worker's rows and finish the queue.
    restarted = Mover.from_service(service, worker_id="crashy", settings=MoverSettings(**settings["mover"]))
    restarted.recover()
    restarted.run_until_idle()
    rows = journal(service, tenant)
    assert rows and all(j.step == "done" for j in rows), [
        (j.id, j.step, j.error) for j in rows if j.step != "done"
    ]
    assert {j.from_store for j in rows} >= {"catalog", "warm", "cold"}
    assert any(j.attempts > 0 for j in rows)  # interrupted attempts were recorded, then resumed

    report = reconcile_service(service, grace=timedelta(0), tenants=[tenant])
    assert report.missing == [] and report.errors == []
    for o in objs:
        assert row(service, o.id).state == "live"
        assert read_ok(readers, tenant, o)
    for store in ("warm", "cold"):
        assert stored(service, store, tenant) == live_locators(service, tenant, store)


def test_a_crashed_movers_rows_come_back_after_its_heartbeat_not_its_lease(
    service: LiquidService, tenant: str, daemon_settings: dict[str, Any]
) -> None:
    """SIGKILLed mid-copy with a 600 s lease: another mover takes its rows within three beats."""
    objs = make_objects(service, tenant, 6, kinds=("warm", "cold"))
    _requeue(service, tenant, objs)
    mover = {
        "grace_period": 0,
        "concurrency": 2,
        "backoff": 0,
        "lease": 600,
        "heartbeat": 1,
        "small_move_size": 0,
    }
    settings = {**daemon_settings, "hot": {"enabled": False}, "mover": mover}
    env = {**os.environ, "LIQUID_TEST_SETTINGS": json.dumps(settings), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.daemon.mover_proc", "crashed-holder"],
        env={**env, CRASH_ENV: "mid_copy:1"},
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-3000:]
    killed = time.monotonic()
    held = [j for j in journal(service, tenant) if j.claimed_by == "crashed-holder"]
    assert held, "the killed mover held no rows"

    survivor = Mover.from_service(service, worker_id="survivor", settings=MoverSettings(**mover))
    taken = 0
    while time.monotonic() - killed < 30 and taken == 0:
        taken = survivor.run_once().claimed
        if taken == 0:
            time.sleep(0.2)
    waited = time.monotonic() - killed
    assert taken, "the crashed mover's rows were still leased after 30 s"
    assert waited < 10, waited  # three 1 s beats, plus a claim; the lease would be 600 s
    survivor.run_until_idle()
    rows = journal(service, tenant)
    assert all(j.step == "done" for j in rows), [(j.id, j.step, j.error) for j in rows]
    assert any(j.attempts > 0 for j in rows if j.id in {h.id for h in held})
    assert all(read_ok(service, tenant, o) for o in objs)
