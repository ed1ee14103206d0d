"""Running the API: :func:`serve` (blocking, ``liquid api``) and :class:`ApiServer` (a background thread).

``liquid up`` keeps the API running beside the embedded servers::

    from liquid.api.server import ApiServer, demo_key
    server = ApiServer(rt.service, host=settings.api.host, port=settings.api.port)
    base_url = server.start()
    key = demo_key(rt.service, "demo")
    print(curl_example(base_url, key, small.uri))
    ...
    server.stop()
"""

from __future__ import annotations

import gc
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

import uvicorn

from liquid.api.app import create_app

if TYPE_CHECKING:
    from liquid.bootstrap import Runtime
    from liquid.config import Settings
    from liquid.events.sinks import EventSink
    from liquid.service import LiquidService


def serve(
    runtime: Runtime, host: str | None = None, port: int | None = None, *, log_level: str = "info"
) -> None:
    """Serve the API over ``runtime.service`` until interrupted (uvicorn; Ctrl-C / SIGTERM stop it)."""
    settings = runtime.service.settings
    app = create_app(runtime.service, settings)
    # What start-up made (modules, the app, the service: ~190k objects) lives as long as the
    # process: out of the collector's sight, a full collection pauses the loop for well under a
    # millisecond instead of ~25-50 ms (measured on this VM), which every request then waited out.
    gc.freeze()
    uvicorn.run(
        app,
        host=host or settings.api.host,
        port=settings.api.port if port is None else port,
        log_level=log_level,
        proxy_headers=False,
    )


class ApiServer:
    """The API on uvicorn in a background thread; ``port=0`` picks a free port.

    Used by ``liquid up``, the tests and the benchmarks.
    """

    def __init__(
        self,
        service: LiquidService,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        stats_sink: EventSink | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.app = create_app(service, settings, stats_sink=stats_sink)
        self.config = uvicorn.Config(
            self.app, host=host, port=port, log_level=log_level, lifespan="on", access_log=False
        )
        self.server = uvicorn.Server(self.config)
        self.thread: threading.Thread | None = None
        self.base_url = ""

    def __repr__(self) -> str:
        return f"ApiServer({self.base_url or 'not started'})"

    def start(self, timeout: float = 20.0) -> str:
        """Start serving and return the base URL (``http://127.0.0.1:PORT``)."""
        self.thread = threading.Thread(target=self.server.run, name="liquid-api", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on {self.config.host}:{self.config.port}")
            time.sleep(0.01)
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def demo_key(service: LiquidService, tenant: str) -> str:
    """A fresh API key for ``tenant`` (created if missing), for demos."""
    if not service.tenancy.tenant_exists(tenant):
        service.tenancy.create_tenant(tenant, actor="liquid api")
    return service.tenancy.create_api_key(tenant, name="demo", actor="liquid api")


def curl_example(base_url: str, key: str, uri: str) -> str:
    """A ready-to-paste ``curl`` that reads ``uri`` through the API."""
    return f"curl -H 'Authorization: Bearer {key}' {base_url}/v1/refs/{quote(uri, safe='')}"
