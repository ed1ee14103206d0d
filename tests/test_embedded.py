"""The embedded servers behind ``liquid up``: start, reuse, stop, leave nothing running."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from liquid.embedded import MAX_WEED_PORT, EmbeddedStack, EmbeddedValkey, free_port
from liquid.stores import open_store, read_bytes, write_bytes


@pytest.fixture
def root() -> Iterator[Path]:
    # Outside pytest's basetemp on purpose: see EmbeddedPostgres' docstring.
    path = Path(tempfile.mkdtemp(prefix="liquid-test-stack-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Running, not a zombie (a container's init may never reap an orphaned server)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_free_port_is_low_enough_for_weed() -> None:
    port = free_port()
    assert 0 < port < MAX_WEED_PORT


def test_stack_starts_serves_and_stops(root: Path) -> None:
    with EmbeddedStack(root) as stack:
        urls = stack.start()  # a second start reuses what runs
        assert set(urls) == {"postgres", "redis", "cold", "archive"}
        assert urls["postgres"].startswith("postgresql+psycopg://")
        assert urls["redis"].startswith("redis://127.0.0.1:")
        assert urls["cold"] == (root / "cold").as_uri()
        for url in urls.values():
            store = open_store(url)
            store.ping()
            if url.startswith("postgresql"):
                store.create_schema()  # type: ignore[attr-defined]
            write_bytes(store, "stack/probe", b"ok")
            assert read_bytes(store, "stack/probe") == b"ok"
            store.delete("stack/probe")
            store.close()
        valkey_pid = stack.valkey._process.proc.pid  # type: ignore[union-attr]
        pg_pid = stack.postgres._server.get_pid()
    assert not _alive(valkey_pid)
    # pg_ctl stop returns once postmaster.pid is gone, a moment before the process exits.
    deadline = time.monotonic() + 10
    while _alive(pg_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pg_pid)


def test_valkey_is_reused_across_processes(root: Path) -> None:
    first = EmbeddedValkey(root / "valkey")
    url = first.start()
    try:
        code = (
            "from liquid.embedded import EmbeddedValkey; import sys; "
            "v = EmbeddedValkey(sys.argv[1]); print(v.start()); v.stop()"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(root / "valkey")], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == url
        open_store(url).ping()  # the other process's stop() left our server alone
    finally:
        first.stop()


def test_kill_stops_servers_orphaned_by_a_killed_owner(root: Path) -> None:
    """`liquid down`: a SIGKILLed `liquid up` leaves servers behind; kill() stops them anyway."""
    script = (
        "import sys, time\n"
        "from liquid.embedded import EmbeddedStack\n"
        f"EmbeddedStack({str(root)!r}).start()\n"
        "print('up', flush=True)\n"
        "time.sleep(120)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "up"
    finally:
        owner.kill()
        owner.wait(timeout=10)
        if owner.stdout is not None:
            owner.stdout.close()
    pg_pid = int((root / "pg" / "postmaster.pid").read_text().split()[0])
    valkey = EmbeddedValkey(root / "valkey")
    assert valkey._running() is not None, "the orphaned Valkey should still answer"

    assert sorted(EmbeddedStack(root).kill()) == ["postgres", "valkey"]
    assert valkey._running() is None
    assert not _alive(pg_pid)
    assert EmbeddedStack(root).kill() == []


def test_a_restart_of_liquid_up_keeps_the_operators_policies_and_seeds_the_demo_once(root: Path) -> None:
    """``make run`` twice: the demo loads once, an operator's applied policy survives, archive exists."""
    env = {"LIQUID_HOME": str(root), "LIQUID_API__PORT": "0", "LIQUID_DAEMON__METRICS_PORT": "0"}

    def up() -> str:
        out = subprocess.run(
            [sys.executable, "-m", "liquid.cli", "up", "--once"],
            env={**__import__("os").environ, **env},
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    first = " ".join("".join(c if c.isascii() else " " for c in up()).split())
    assert "loaded now" in first and "archive: archive" in first, first
    assert re.search(r"dashboard http://127\.0\.0\.1:\d+ ", first), first  # started, and its URL printed
    policy = root / "mine.yaml"
    policy.write_text(
        "apiVersion: liquid/v1\nkind: TieringPolicy\nmetadata: {name: mine}\n"
        "spec:\n  rules:\n    - {tier: warm, demoteAfter: 1d}\n    - {tier: archive}\n"
    )
    applied = subprocess.run(
        [sys.executable, "-m", "liquid.cli", "policy", "apply", str(policy), "--actor", "operator", "--yes"],
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    EmbeddedStack(root).kill()  # `policy apply` started the embedded servers; a restart starts fresh
    second = up()
    flat = " ".join("".join(c if c.isascii() else " " for c in second).split())  # the table wraps cells
    assert "kept from the last run" in flat, second
    assert "version 2 by operator" in flat, second  # not re-applied over the operator's version
    assert (root / "archive").is_dir()
