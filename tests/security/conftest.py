"""Security fixtures: services on the session's real servers with the encryption settings a test picks."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from liquid.bootstrap import Runtime, open_runtime
from liquid.config import load_settings
from liquid.service import LiquidService

ServiceFactory = Callable[..., LiquidService]


def new_key(key_id: str) -> str:
    """``id:base64`` of a fresh 32-byte master key."""
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


@pytest.fixture
def cold_dir(tmp_path: Path) -> Path:
    return tmp_path / "cold"


@pytest.fixture
def make_service(pg_url: str, redis_url: str, cold_dir: Path) -> Iterator[ServiceFactory]:
    """Services sharing one catalog and one cold directory; objects over 1 KiB are born cold."""
    made: list[Runtime] = []

    def factory(**overrides: Any) -> LiquidService:
        settings: dict[str, Any] = {
            "catalog_url": pg_url,
            "stores": {"hot": redis_url, "warm": pg_url, "cold": cold_dir.as_uri()},
            "warm_max_object_size": 1024,
            "hot": {"enabled": False},
            "shm": {"enabled": False},
            **overrides,
        }
        rt = open_runtime(load_settings(**settings))
        made.append(rt)
        return rt.service

    yield factory
    for rt in made:
        rt.close()


@pytest.fixture
def tenant() -> str:
    return f"sec-{uuid.uuid4().hex[:10]}"
