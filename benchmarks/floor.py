"""The framework floor: bare Starlette endpoints under the same server stack as the Liquid API.

``GET /floor/{name}`` returns the value of the Redis key ``floor:{name}`` (redis-py's asyncio
client, no thread hop, no checks): the same Redis read Liquid's hot GET does.
``POST /floor/echo`` reads the request body and answers a fixed small JSON object: what any
endpoint taking a JSON body (``POST /v1/search``) pays before doing any work of its own.
``POST /floor/answer/{name}`` reads the request body and answers the value of ``floor:{name}``
as JSON: a batch resolve's request and answer bytes carried by the framework, with one Redis
read and none of the resolving.
The benchmarks serve it with uvicorn exactly as the Liquid API is served, so ``Liquid / floor``
is what Liquid's own work costs over the framework's.

    python -m uvicorn benchmarks.floor:app_from_env --factory   # LIQUID_FLOOR_REDIS_URL=redis://...
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis
import redis.asyncio as aredis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def create_floor_app(redis_url: str) -> Starlette:
    client = aredis.Redis.from_url(redis_url)

    async def get(request: Request) -> Response:
        data = await client.get("floor:" + request.path_params["name"])
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="application/octet-stream")

    async def echo(request: Request) -> Response:
        await request.body()
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def answer(request: Request) -> Response:
        await request.body()
        data = await client.get("floor:" + request.path_params["name"])
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="application/json")

    return Starlette(
        routes=[
            Route("/floor/echo", echo, methods=["POST"]),
            Route("/floor/answer/{name}", answer, methods=["POST"]),
            Route("/floor/{name}", get),
        ]
    )


def app_from_env() -> Starlette:
    return create_floor_app(os.environ["LIQUID_FLOOR_REDIS_URL"])


class FloorServer:
    """The floor app on uvicorn in a background thread of this process (loopback, free port)."""

    def __init__(self, redis_url: str) -> None:
        self.redis = redis.Redis.from_url(redis_url)
        config = uvicorn.Config(
            create_floor_app(redis_url), host="127.0.0.1", port=0, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    def put(self, key: str, value: bytes) -> None:
        self.redis.set(key, value)

    def start(self, timeout: float = 20.0) -> str:
        self.thread = threading.Thread(target=self.server.run, name="floor-api", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the floor server did not start")
            time.sleep(0.01)
        sockets: Any = self.server.servers[0].sockets
        port = sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.redis.close()
