"""Helpers shared by the daemon tests: objects of every home kind, and catalog/store views."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from liquid.refs import RefInfo
from liquid.service import LiquidService
from liquid.stores.base import Store

KiB, MiB = 1024, 1024 * 1024
#: (home kind, size): catalog row, warm store, cold store.
KINDS = {"row": 20 * KiB, "warm": 200 * KiB, "cold": 1 * MiB + 300 * KiB}


@dataclass
class Obj:
    ref: RefInfo
    data_sha: str
    id: int


def payload(size: int, seed: int) -> bytes:
    """Half random, half repetitive: zstd namespaces really compress it."""
    half = size // 2
    return os.urandom(half) + (f"{seed:08d}".encode() * (size // 8 + 1))[: size - half]


def make_objects(
    service: LiquidService, tenant: str, n: int, *, kinds: tuple[str, ...] = tuple(KINDS)
) -> list[Obj]:
    objs = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        namespace = "zdata" if (i // len(kinds)) % 2 else "data"
        data = payload(KINDS[kind] + i, i)
        info = service.put(tenant, namespace, f"obj-{i:03d}", data)
        objs.append(Obj(info, hashlib.sha256(data).hexdigest(), object_id(service, info)))
    return objs


def object_id(service: LiquidService, info: RefInfo) -> int:
    r = info.ref
    with service.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT id FROM objects WHERE tenant_id=:t AND namespace=:n AND key=:k AND version=:v"),
                {"t": r.tenant, "n": r.namespace, "k": r.key, "v": r.version},
            ).scalar_one()
        )


class ForwardingStore:
    """A store that forwards everything to ``inner``; a test overrides the method it breaks."""

    mode = ""
    done = False

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url

    def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        return self.inner.put(locator, chunks, size_hint=size_hint)

    def open(self, locator: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self.inner.open(locator, start=start, end=end)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def row(service: LiquidService, object_id: int) -> Any:
    with service.engine.connect() as conn:
        return conn.execute(text("SELECT * FROM objects WHERE id = :id"), {"id": object_id}).one()


def journal(service: LiquidService, tenant: str) -> list[Any]:
    with service.engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT * FROM move_journal WHERE tenant_id = :t ORDER BY id"), {"t": tenant}
            ).all()
        )


def events(service: LiquidService, tenant: str | None, kind: str) -> list[Any]:
    with service.engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT * FROM events WHERE tenant_id IS NOT DISTINCT FROM :t AND kind = :k ORDER BY id"
                ),
                {"t": tenant, "k": kind},
            ).all()
        )


def stored(service: LiquidService, store: str, tenant: str) -> set[str]:
    """Locators under the tenant's prefix in a store."""
    return {s.locator for s in service.stores[store].list(f"{tenant}/")}


def live_locators(service: LiquidService, tenant: str, store: str) -> set[str]:
    with service.engine.connect() as conn:
        return set(
            conn.execute(
                text(
                    "SELECT locator FROM objects WHERE tenant_id = :t AND home_store = :s AND state = 'live'"
                    " AND locator IS NOT NULL"
                ),
                {"t": tenant, "s": store},
            ).scalars()
        )


def read_ok(service: LiquidService, tenant: str, obj: Obj) -> bool:
    data = service.get(tenant, obj.ref.ref)
    return hashlib.sha256(data).hexdigest() == obj.data_sha


def opposite(home_tier: str) -> tuple[str, str]:
    """(tier, store) to move an object to: warm ↔ cold."""
    return ("cold", "cold") if home_tier == "warm" else ("warm", "warm")
