"""``liquid dashboard``: starts Streamlit on 127.0.0.1, prints its URL, stops on a signal; needs a key."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
from typer.testing import CliRunner

from liquid.cli import app as cli
from tests.dashboard.conftest import Dash


def test_liquid_dashboard_serves_until_stopped(dash: Dash) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIQUID_DASHBOARD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "liquid.cli", "dashboard", "--api-url", dash.base_url, "--port", "0"],
        env={**env, "LIQUID_DASHBOARD_API_KEY": dash.admin_key, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"dashboard: (http://127\.0\.0\.1:\d+)", line)
        assert found, line
        health = httpx.get(f"{found.group(1)}/_stcore/health", timeout=10)
        assert health.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "stopped" in proc.stdout.read()
        assert not _listening(found.group(1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _listening(url: str) -> bool:
    try:
        httpx.get(f"{url}/_stcore/health", timeout=2)
    except httpx.TransportError:
        return False
    return True


def test_liquid_dashboard_without_a_key_says_how_to_get_one() -> None:
    env = {"LIQUID_DASHBOARD_API_KEY": ""}
    out = CliRunner().invoke(cli, ["dashboard", "--port", "0"], env=env)
    assert out.exit_code != 0
    assert isinstance(out.exception, Exception) and "liquid key create --admin" in str(out.exception)
