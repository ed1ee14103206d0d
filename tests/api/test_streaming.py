"""A 1 GiB upload and download through a server in its own process, whose peak memory stays small."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import TenantKey

GiB = 1024**3
CHUNK = 1024 * 1024
SERVER = """
import json, sys
from liquid.api.server import serve
from liquid.bootstrap import open_runtime
from liquid.config import load_settings
rt = open_runtime(load_settings(**json.loads(sys.argv[1])), migrate=False)
serve(rt, port=int(sys.argv[2]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def server_process(api_settings: dict[str, Any], tmp_path: Path) -> Iterator[tuple[str, int]]:
    settings = {**api_settings, "shm": {"enabled": False}, "stores": dict(api_settings["stores"])}
    settings["stores"]["cold"] = f"file://{tmp_path / 'cold'}"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(settings), str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_one_gib_streams_with_bounded_server_memory(server_process: tuple[str, int], tk: TenantKey) -> None:
    base, pid = server_process
    block = os.urandom(CHUNK)
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for i in range(GiB // CHUNK):
            chunk = i.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            yield chunk

    headers = {"Authorization": f"Bearer {tk.key}"}
    baseline = peak_rss(pid)
    r = httpx.put(f"{base}/v1/objects/big/one-gib", content=body(), headers=headers, timeout=600)
    assert r.status_code == 201, r.text
    ref = r.json()
    assert ref["size"] == GiB and ref["sha256"] == digest.hexdigest()

    check = hashlib.sha256()
    n = 0
    with httpx.stream("GET", f"{base}/v1/objects/big/one-gib", headers=headers, timeout=600) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_bytes():
            check.update(chunk)
            n += len(chunk)
    assert n == GiB and check.hexdigest() == ref["sha256"]
    grown = peak_rss(pid) - baseline
    assert grown < 200 * 1024**2, f"server peak memory grew by {grown / 1024**2:.0f} MiB for a 1 GiB object"
