"""The running dashboard in headless Chromium: every page renders real content and no exception box.

Screenshots go to ``tests/artifacts/`` (git-ignored) for a person to look at. ``make test``
installs Debian's ``chromium`` when it is missing and it can; without it this test alone skips.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from dashboard.server import DashboardServer
from tests.dashboard.cdp import Browser, find_chromium
from tests.dashboard.conftest import TENANT, Dash

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
REF = f"liquid://{TENANT}/logs/day-0.log@1"

#: (url path, file name, text that means the page's own content rendered)
PAGES = [
    ("", "overview", "total monthly cost"),
    ("usage", "usage", "Top objects by reads"),
    ("movements", "movements", "warm → cold"),
    ("policies", "policies", "Applied: version"),
    (f"ref_lookup?ref={quote(REF, safe='')}", "ref_lookup", "should be in"),
]
COST = re.compile(r"\$\d+\.\d+/month")


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip(
            "no chromium on this machine (make test installs Debian's `chromium` when run as root"
            " with apt; or: apt-get install -y chromium)"
        )
    return found


@pytest.fixture(scope="module")
def dashboard_url(dash: Dash, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("dashboard") / "streamlit.log"
    with DashboardServer(api_url=dash.base_url, api_key=dash.admin_key, port=0, log_file=log) as server:
        yield server.url


def test_every_page_renders_in_chromium(chromium: str, dashboard_url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with Browser(chromium) as browser:
        for path, name, marker in PAGES:
            probe = browser.open(f"{dashboard_url}/{path}", wait_for=marker)
            shot = ARTIFACTS / f"dashboard-{name}.png"
            browser.screenshot(shot)
            text = probe["text"]
            assert probe["exceptions"] == 0, (name, text[:2000])
            for tier in ("warm", "cold", "archive"):
                assert tier in text, (name, tier)
            assert COST.search(text), (name, text[:2000])
            assert shot.stat().st_size > 20_000, f"{shot} looks blank"
        overview = browser.open(f"{dashboard_url}/", wait_for="total monthly cost")
        assert "Tiers against their budgets" in overview["text"]
