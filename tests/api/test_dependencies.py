"""Every route's endpoint and dependencies run on the event loop, never in a worker thread.

FastAPI runs a plain ``def`` endpoint or dependency in its threadpool: a hop to a worker thread
and back on every request that uses it. A router-wide ``Depends`` in plain ``def`` (the UTF-8
path check was one) cost every route on the router that hop: ``/healthz`` took 293 µs in
process against 22 µs for a bare Starlette endpoint, most of it the hop. Blocking work belongs
in :func:`liquid.api.routes.run`, which hops on purpose, with a deadline.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import httpx
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from liquid.api.server import ApiServer


def _on_loop(call: Any) -> bool:
    """Whether FastAPI awaits ``call`` on the loop (a coroutine or async generator function)."""
    for fn in (call, getattr(call, "__call__", None)):  # noqa: B004 - instances with async __call__
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            return True
    return False


def _calls(dependant: Dependant, path: str) -> Iterator[tuple[str, Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield f"{path} <- {getattr(dep.call, '__qualname__', type(dep.call).__name__)}", dep.call
        yield from _calls(dep, path)


def _api_routes(routes: Any) -> Iterator[APIRoute]:
    """The FastAPI routes under ``routes``, through included routers and mounts."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # An included router (FastAPI 0.16x wraps it) or a mount: its own routes.
        elif (children := getattr(getattr(route, "original_router", route), "routes", None)) is not None:
            yield from _api_routes(children)


def test_no_route_hops_to_a_worker_thread(api_server: ApiServer) -> None:
    routes = list({id(r): r for r in _api_routes(api_server.app.routes)}.values())
    assert len(routes) > 20, "the app's FastAPI routes were not found"
    offenders = []
    for route in routes:
        where = f"{sorted(route.methods)} {route.path}"
        if not _on_loop(route.dependant.call):
            offenders.append(f"{where}: endpoint {route.endpoint.__qualname__}")
        offenders += [name for name, call in _calls(route.dependant, where) if not _on_loop(call)]
    assert offenders == [], (
        "plain def endpoints or dependencies (each a thread hop per request):\n" + "\n".join(offenders)
    )


def test_the_path_check_still_refuses_bad_utf8(base_url: str, admin_key: str) -> None:
    # The router-wide dependency, now a coroutine, still answers for every route it guards.
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {admin_key}"}) as client:
        r = client.get("/v1/objects/ns/%FF%FE")
    assert r.status_code == 400, r.text
    assert "not UTF-8" in r.json()["detail"]
