"""The problem+json check every API test shares."""

from __future__ import annotations

from typing import Any

import httpx

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
