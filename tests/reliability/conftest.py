"""Reliability suite fixtures: the API's session server (shared with tests/api) and helpers.

Every module here sets ``pytestmark = pytest.mark.reliability``. The fast ones
run in ``make test``; the outage, load and soak tests are also ``slow`` and run with
``python -m tests.reliability.report`` (or ``pytest tests/reliability -m 'reliability and not soak'``).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import (  # noqa: F401  (fixtures, re-exported for this directory)
    TenantKey,
    admin_key,
    api_runtime,
    api_server,
    api_service,
    api_settings,
    auth,
    base_url,
    make_tenant,
    shm_dir,
    tk,
)


@pytest.fixture
def http(base_url: str, auth: dict[str, str]) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=base_url, headers=auth, timeout=30) as c:
        yield c


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.reliability.harness import write_results

    write_results()
