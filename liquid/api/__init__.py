"""The HTTP API (FastAPI): :func:`create_app` builds it, :func:`liquid.api.server.serve` runs it."""

from __future__ import annotations

from liquid.api.app import create_app

__all__ = ["create_app"]
