"""Reliability suite fixtures: the API's session server (shared with tests/api) and helpers.

Every module here sets ``pytestmark = pytest.mark.reliability``. The fast ones
run in ``make test``; the outage, load and soak tests are also ``slow`` and run with
``python -m tests.reliability.report`` (or ``pytest tests/reliability -m 'reliability and not soak'``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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

PROBLEM_KEYS = {"type", "title", "status", "detail", "field"}


def problem_of(response: httpx.Response, status: int, type_: str | None = None) -> dict[str, Any]:
    """Assert an error response is problem+json with this status (and type), and return its body."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS, body
    assert body["status"] == status
    if type_ is not None:
        assert body["type"] == type_, body
    return body


@pytest.fixture
def http(base_url: str, auth: dict[str, str]) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=base_url, headers=auth, timeout=30) as c:
        yield c


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.reliability.harness import write_results

    write_results()
