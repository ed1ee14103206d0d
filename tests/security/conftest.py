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


class KmsServer:
    """A KMS-API server on loopback (moto's server mode) and a boto3 client of it."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.endpoint = endpoint
        self.region = "us-east-1"
        self.client = boto3.client("kms", endpoint_url=endpoint, region_name=self.region)

    def new_key(self) -> str:
        """A fresh enabled symmetric key, as ``alias/NAME``."""
        key_id = self.client.create_key()["KeyMetadata"]["KeyId"]
        alias = f"alias/liquid-{uuid.uuid4().hex[:10]}"
        self.client.create_alias(AliasName=alias, TargetKeyId=key_id)
        return alias

    def settings(self, *keys: str, **more: Any) -> dict[str, Any]:
        return {
            "encryption": {
                "envelope": True,
                "kms_keys": list(keys),
                "kms_endpoint": self.endpoint,
                "kms_region": self.region,
                **more,
            }
        }


@pytest.fixture(scope="session")
def kms_server() -> Iterator[KmsServer]:
    """moto's KMS server on 127.0.0.1 (a real HTTP server speaking the KMS API, in a thread).

    boto3 finds its credentials the standard way; the server takes any, so the test process
    gets dummy ones unless it has its own.
    """
    from moto.server import ThreadedMotoServer

    mp = pytest.MonkeyPatch()
    for name, value in (("AWS_ACCESS_KEY_ID", "liquid-test"), ("AWS_SECRET_ACCESS_KEY", "liquid-test")):
        if name not in os.environ:
            mp.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield KmsServer(f"http://{host}:{port}")
    finally:
        server.stop()
        mp.undo()
